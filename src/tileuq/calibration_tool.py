"""Interactive threshold setting without Qt: what the napari calibrate widget shows and saves.

:class:`ThresholdSession` holds one slide's results, an optional starting
:class:`~tileuq.uncertainty.Calibration` and optional labelled calibration data
(:class:`CalibrationData`: per-tile scores and whether the prediction was right, from a labelled
tile folder or from a reviewer's decisions).  It produces a Calibration for each way of setting
the threshold, always through the calibration module:

* ``"coverage"`` / ``"risk"``: :func:`tileuq.uncertainty.calibrate_scores` on the calibration
  data (the guarantee is the calibration module's).  A coverage target without labelled data
  uses the slide's own tiles: it then only describes this slide (stated in ``guarantee``).
* ``"manual"``: the threshold a person chose; other rules of the starting calibration are kept,
  and ``method="manual"`` says no guarantee comes with it.

Nothing here draws; the widget plots :meth:`histogram`, :meth:`risk_coverage` and shows
:meth:`summary`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tileuq.calibration_data import CalibrationData
from tileuq.errors import CalibrationError
from tileuq.uncertainty import Calibration, Rule, calibrate_scores, reason_for, shift_test
from tileuq.uncertainty.fit import reference_sketch

__all__ = ["MODES", "CalibrationData", "ThresholdSession"]

MODES = ("manual", "coverage", "risk")
MANUAL_NOTE = "Threshold chosen by hand: no statistical guarantee."


class ThresholdSession:
    """Thresholds for one slide's results (see the module docstring).

    Parameters
    ----------
    results
        The slide's :class:`~tileuq.TileResults`.
    calibration
        Starting calibration (e.g. saved with the results or carried by the model).
    data
        Labelled calibration data.
    """

    def __init__(
        self,
        results: Any,
        calibration: Calibration | None = None,
        data: CalibrationData | None = None,
    ) -> None:
        self.results = results
        self.base = calibration
        self.calibration = calibration
        self.data = data
        self._slide_scores: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ inputs
    @property
    def scores(self) -> list[str]:
        """Scores that can be thresholded (present in the results table)."""
        t = self.results.table
        return [s for s in self.results.score_names if s in t.columns]

    def slide_scores(self, score: str) -> np.ndarray:
        """Return the slide's values of ``score`` (cached)."""
        if score not in self._slide_scores:
            col = self.results.table[score]
            self._slide_scores[score] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return self._slide_scores[score]

    def score_range(self, score: str) -> tuple[float, float]:
        """Finite min and max of ``score`` over the slide and the calibration data."""
        v = [self.slide_scores(score)]
        if self.data is not None and score in self.data.scores:
            v.append(self.data.scores[score])
        elif self.calibration is not None and self.calibration.reference.get(score):
            v.append(np.asarray(self.calibration.reference[score], dtype=np.float64))
        a = np.concatenate(v)
        a = a[np.isfinite(a)]
        if a.size == 0:
            return 0.0, 1.0
        lo, hi = float(a.min()), float(a.max())
        return (lo, hi) if hi > lo else (lo, lo + 1.0)

    def threshold_for(self, score: str) -> float | None:
        """Return the current threshold of ``score`` (``None`` when no rule uses it)."""
        if self.calibration is None:
            return None
        return self.calibration.thresholds.get(score)

    # ------------------------------------------------------------------ calibrations
    def calibrate(
        self,
        score: str,
        mode: str,
        *,
        threshold: float | None = None,
        target_coverage: float | None = None,
        target_risk: float | None = None,
        delta: float = 0.05,
    ) -> Calibration:
        """Set the threshold of ``score`` by ``mode``; the result becomes :attr:`calibration`."""
        if mode not in MODES:
            raise CalibrationError(f"mode: expected one of {MODES}, got {mode!r}")
        if score not in self.scores:
            raise CalibrationError(f"score {score!r} is not in the results ({self.scores})")
        if mode == "manual":
            if threshold is None:
                raise CalibrationError("threshold: needed to set a threshold by hand")
            cal = self._manual(score, float(threshold), delta)
        else:
            cal = self._targeted(score, mode, target_coverage, target_risk, delta)
        self.calibration = cal
        return cal

    def _provenance(self) -> dict[str, Any]:
        m = self.results.meta.get("model", {})
        return {"model_hash": m.get("hash"), "model_id": m.get("id"), "classes": m.get("classes")}

    def _targeted(
        self, score: str, mode: str, cov: float | None, risk: float | None, delta: float
    ) -> Calibration:
        prov = self._provenance()
        if self.data is not None:
            return calibrate_scores(
                self.data.scores[score],
                self.data.correct,
                score_name=score,
                target_coverage=cov if mode == "coverage" else None,
                target_risk=risk if mode == "risk" else None,
                delta=delta,
                info={"source": self.data.source, **self.data.info},
                **prov,
            )
        if mode == "risk":
            raise CalibrationError(
                "a risk target needs labelled calibration data: load a labelled tile folder "
                "or use your review decisions"
            )
        s = self.slide_scores(score)
        cal = calibrate_scores(
            s[np.isfinite(s)],
            score_name=score,
            target_coverage=cov,
            delta=delta,
            info={"source": "this slide's tiles (unlabelled)"},
            **prov,
        )
        note = (
            " Calibrated on this slide's own tiles: it describes this slide only, not new "
            "slides, and says nothing about errors."
        )
        return dataclasses.replace(cal, guarantee=(cal.guarantee + note).strip())

    def _manual(self, score: str, threshold: float, delta: float) -> Calibration:
        base = self.calibration or self.base
        if base is not None and score in base.thresholds:
            rules = [
                dataclasses.replace(r, threshold=threshold, role="manual", coverage=None)
                if r.score == score
                else r
                for r in base.rules
            ]
        else:
            rules = [Rule(score, threshold, reason_for(score), role="manual")]
        probe = dataclasses.replace(base, rules=rules) if base is not None else None
        if self.data is not None:
            n = len(self.data)
            tmp = probe or _bare(rules, n, delta)
            rejected, _ = tmp.decide(self.data.scores)
            accepted = int((~rejected).sum())
            ok = self.data.correct[~rejected]
            risk: float | None = float((~ok).mean()) if accepted else 0.0
            reference = {r.score: reference_sketch(self.data.scores[r.score]) for r in rules}
        elif base is not None:  # keep the base's numbers: they describe its calibration set
            n, accepted, risk, reference = base.n, base.accepted, None, dict(base.reference)
        else:
            s = self.slide_scores(score)
            n, accepted, risk = int(s.size), int((s <= threshold).sum()), None
            reference = {}
        coverage = accepted / n if n else 1.0
        fields_: dict[str, Any] = {
            "rules": rules,
            "target_coverage": min(max(coverage, 1e-9), 1 - 1e-9),
            "target_risk": None,
            "delta": delta,
            "n": n,
            "coverage": coverage,
            "risk": risk,
            "accepted": accepted,
            "method": "manual",
            "guarantee": MANUAL_NOTE,
            "risk_bound": None,
            "reference": reference,
        }
        if base is not None:
            return dataclasses.replace(base, **fields_)
        return Calibration(**fields_, **self._provenance())

    # ------------------------------------------------------------------ what to show
    def slide_coverage(self, calibration: Calibration | None = None) -> float:
        """Fraction of this slide's tiles the calibration accepts."""
        cal = calibration or self.calibration
        if cal is None or len(self.results.table) == 0:
            return 1.0
        rejected, _ = cal.decide({s: self.slide_scores(s) for s in cal.thresholds})
        return float(1.0 - rejected.mean())

    def histogram(self, score: str, bins: int = 60) -> dict[str, Any]:
        """Histogram of the slide's (and calibration data's) ``score``, density-normalised."""
        lo, hi = self.score_range(score)
        edges = np.linspace(lo, hi, bins + 1)
        s = self.slide_scores(score)
        out: dict[str, Any] = {
            "edges": edges,
            "slide": np.histogram(s[np.isfinite(s)], edges, density=True)[0],
            "threshold": self.threshold_for(score),
        }
        ref: Any = None
        if self.data is not None and score in self.data.scores:
            ref = self.data.scores[score]
        elif self.calibration is not None and self.calibration.reference.get(score):
            ref = np.asarray(self.calibration.reference[score])  # its calibration set's sketch
        if ref is not None:
            out["calibration"] = np.histogram(ref, edges, density=True)[0]
        return out

    def risk_coverage(self, score: str) -> dict[str, Any] | None:
        """Risk–coverage curve of ``score`` on the calibration data and the operating point."""
        if self.data is None or score not in self.data.scores:
            return None
        from tileuq.metrics import risk_coverage_curve

        cov, risk, thr = risk_coverage_curve(self.data.scores[score], self.data.correct)
        point = None
        cal = self.calibration
        if cal is not None and score in cal.thresholds:
            rejected, _ = cal.decide(self.data.scores)
            acc = ~rejected
            point = (
                float(acc.mean()),
                float((~self.data.correct[acc]).mean()) if acc.any() else 0.0,
            )
        return {"coverage": cov, "risk": risk, "thresholds": thr, "point": point}

    def shift(self) -> Any:
        """:func:`tileuq.shift_test` of the slide against the calibration, or ``None``."""
        cal = self.calibration
        if cal is None or not cal.reference.get(cal.score):
            return None
        return shift_test(self.results, cal)

    def summary(self) -> dict[str, Any]:
        """Numbers for the widget: slide coverage, calibration coverage/risk, bound, verdict."""
        cal = self.calibration
        if cal is None:
            return {"slide_coverage": 1.0}
        report = self.shift()
        return {
            "slide_coverage": self.slide_coverage(cal),
            "calibration_coverage": cal.coverage,
            "calibration_risk": cal.risk,
            "risk_bound": cal.risk_bound,
            "n": cal.n,
            "method": cal.method,
            "guarantee": cal.guarantee,
            "shift": None if report is None else report.verdict,
            "shifted": None if report is None else bool(report.shifted),
        }

    def summary_text(self) -> tuple[str, str]:
        """Return the summary for people: ``(numbers, shift verdict)``."""
        s = self.summary()
        lines = [f"slide: {_pct(s['slide_coverage'])} of tiles accepted"]
        if s.get("calibration_coverage") is not None and s.get("method") != "manual":
            line = f"calibration set (n={s['n']}): coverage {_pct(s['calibration_coverage'])}"
            if s.get("calibration_risk") is not None:
                line += f", risk {_pct(s['calibration_risk'])}"
            if s.get("risk_bound") is not None:
                line += f" (bound {_pct(s['risk_bound'])})"
            lines.append(line)
        elif s.get("calibration_risk") is not None:
            lines.append(f"labelled tiles: risk {_pct(s['calibration_risk'])} at this threshold")
        if s.get("method") == "manual":
            lines.append("set by hand: no statistical guarantee")
        elif s.get("method"):
            lines.append(f"method: {s['method']} (hover for the guarantee)")
        verdict = s.get("shift") or "Shift alarm: needs calibration data (reference scores)."
        return "\n".join(lines), ("⚠ " if s.get("shifted") else "") + verdict


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _bare(rules: list[Rule], n: int, delta: float) -> Calibration:
    return Calibration(
        rules=rules, target_coverage=0.5, target_risk=None, delta=delta, n=n,
        coverage=0.0, risk=None, accepted=0, method="manual",
    )  # fmt: skip
