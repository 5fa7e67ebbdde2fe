"""The :class:`Calibration` record: rejection rules, their guarantee, and how to apply them.

A Calibration holds one or more :class:`Rule`s.  A tile is **accepted** when every rule accepts
it (``score <= threshold``) and **rejected** otherwise.  The reason shown for a rejected tile is
``"unfamiliar"`` when any rule of that kind rejects it (the tile is unlike the training data),
else ``"ambiguous"`` (it lies between classes).  The first rule is the *primary* one; its score
and threshold are :attr:`Calibration.score` and :attr:`Calibration.threshold`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.errors import CalibrationError

__all__ = ["FORMAT", "Calibration", "Rule"]

FORMAT = "tileuq.calibration/1"


def _num(x: float | None) -> float | str | None:
    """JSON-safe float: infinities and NaN become strings (strict JSON has no Infinity)."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _unnum(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True)
class Rule:
    """One rejection rule: reject a tile when ``score > threshold`` (or the score is NaN).

    Attributes
    ----------
    score
        Score (column) name; larger = less trustworthy.
    threshold
        Accept when ``score <= threshold``.
    reason
        ``"ambiguous"`` or ``"unfamiliar"``: what a rejection by this rule means.
    role
        ``"coverage"`` (calibrated to accept a fraction of tiles), ``"risk"`` (calibrated to
        bound the error rate of accepted tiles) or ``"gate"`` (an unfamiliar-score rule
        calibrated for coverage in front of a risk rule).
    coverage
        Coverage level this rule alone was calibrated for (``None`` for a risk rule).
    delta
        Failure probability of this rule's own statement.
    """

    score: str
    threshold: float
    reason: str
    role: str = "coverage"
    coverage: float | None = None
    delta: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["threshold"] = _num(self.threshold)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["threshold"] = float(kw["threshold"])
        return cls(**kw)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version() -> str:
    from tileuq import __version__

    return __version__


@dataclass
class Calibration:
    """Calibrated rejection rules with the statement they come with.

    Build one with :func:`tileuq.uncertainty.calibrate_scores` or :func:`tileuq.calibrate`.

    Attributes
    ----------
    rules
        The rejection rules (first = primary).  See the module docstring.
    target_coverage, target_risk
        The requested target (exactly one is set).
    delta
        Allowed probability, over calibration draws, that the stated guarantee fails.
    n
        Calibration-set size.
    coverage, risk
        Achieved on the calibration set by the combined rule (``risk`` is ``None`` when the
        correctness of the predictions was not given).
    accepted
        Calibration tiles accepted by the combined rule.
    method
        How the thresholds were chosen (e.g. ``"conformal-pac"``, ``"ltt"``).
    guarantee
        Plain-language statement of what is guaranteed and under which assumptions.
    risk_bound
        One-sided ``1 - delta`` upper bound on the selective risk at the chosen threshold
        (risk target only).
    model_hash, model_id, classes
        The model the scores came from (when known); :meth:`apply` checks the hash.
    temperature
        Temperature fitted on the calibration set (probabilities ``softmax(logits / T)``);
        ``None`` when not fitted.  It does not change the rules, which use the scores as the
        model reports them.
    reference
        Per score: sorted calibration scores (all when ``n <= keep``, else evenly spaced order
        statistics), used by :func:`tileuq.shift_test`.
    created, version
        UTC time stamp and tileuq version.
    info
        Free-form extra information (source of the calibration set, class counts, ...).
    """

    rules: list[Rule]
    target_coverage: float | None
    target_risk: float | None
    delta: float
    n: int
    coverage: float
    risk: float | None
    accepted: int
    method: str
    guarantee: str = ""
    risk_bound: float | None = None
    model_hash: str | None = None
    model_id: str | None = None
    classes: list[str] | None = None
    temperature: float | None = None
    reference: dict[str, list[float]] = field(default_factory=dict)
    created: str = field(default_factory=_now)
    version: str = field(default_factory=_version)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.rules:
            raise CalibrationError("Calibration: needs at least one rule")
        if (self.target_coverage is None) == (self.target_risk is None):
            raise CalibrationError(
                "Calibration: exactly one of target_coverage and target_risk must be set"
            )

    # -- the primary rule, for the common single-score case ------------------------------
    @property
    def score(self) -> str:
        """Name of the primary score."""
        return self.rules[0].score

    @property
    def threshold(self) -> float:
        """Threshold of the primary score (accept ``score <= threshold``)."""
        return self.rules[0].threshold

    @property
    def reason(self) -> dict[str, str]:
        """Score name -> reason (``"ambiguous"``/``"unfamiliar"``) of every rule."""
        return {r.score: r.reason for r in self.rules}

    @property
    def thresholds(self) -> dict[str, float]:
        """Score name -> threshold of every rule."""
        return {r.score: r.threshold for r in self.rules}

    @property
    def target(self) -> dict[str, float]:
        """``{"coverage": q}`` or ``{"risk": alpha}``."""
        if self.target_coverage is not None:
            return {"coverage": self.target_coverage}
        assert self.target_risk is not None
        return {"risk": self.target_risk}

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self, *, reference: bool = True) -> dict[str, Any]:
        """JSON-ready dictionary (strict JSON: infinities are written as strings)."""
        d: dict[str, Any] = {"format": FORMAT}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "rules":
                value = [r.to_dict() for r in self.rules]
            elif f.name == "reference":
                if not reference:
                    continue
                value = {k: [_num(v) for v in vals] for k, vals in value.items()}
            elif isinstance(value, float):
                value = _num(value)
            d[f.name] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; raises :class:`CalibrationError` on a bad record."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise CalibrationError(f"not a tileuq calibration (format {got!r}, expected {FORMAT})")
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        try:
            kw["rules"] = [Rule.from_dict(r) for r in kw["rules"]]
            kw["reference"] = {
                k: [float(v) for v in vals] for k, vals in kw.get("reference", {}).items()
            }
            for k in ("coverage", "risk", "risk_bound", "temperature", "delta"):
                if k in kw:
                    kw[k] = _unnum(kw[k])
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration record is incomplete or invalid: {exc}") from exc

    def to_json(self, *, indent: int | None = 2) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Parse :meth:`to_json` output."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"calibration JSON is not valid JSON: {exc}") from exc
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the calibration as JSON, atomically; returns the path."""
        from tileuq._io import atomic_write

        path = Path(path)
        with atomic_write(path, "w") as f:
            f.write(self.to_json())
            f.write("\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a calibration JSON file, or the ``calibration`` key of a ``model.json``.

        ``path`` may also be a model folder holding a ``model.json``.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "model.json"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CalibrationError(f"{path}: cannot read calibration ({exc})") from exc
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(d, dict) and d.get("format") != FORMAT and "calibration" in d:
            d = d["calibration"]
        if d is None:
            raise CalibrationError(f"{path}: holds no calibration")
        try:
            return cls.from_dict(d)
        except CalibrationError as exc:
            raise CalibrationError(f"{path}: {exc}") from exc

    def to_manifest(self) -> dict[str, Any]:
        """Return the dictionary stored under the ``calibration`` key of ``model.json``."""
        return self.to_dict()

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Calibration | None:
        """Return the calibration stored in a model manifest (``None`` when it has none)."""
        d = manifest.get("calibration")
        return None if d is None else cls.from_dict(d)

    # -- use ------------------------------------------------------------------------------
    def decide(self, scores: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rejection flags and reasons for a table or mapping of score columns.

        Parameters
        ----------
        scores
            A DataFrame or a mapping from score name to a 1-D array.

        Returns
        -------
        rejected : numpy.ndarray of bool
        reason : numpy.ndarray of str
            ``""`` (accepted), ``"unfamiliar"`` or ``"ambiguous"``.
        """
        from tileuq.uncertainty._apply import decide

        return decide(self.rules, scores)

    def apply(self, results: Any, *, check_model: bool = True) -> Any:
        """Add ``rejected`` (bool) and ``reason`` columns to a TileResults table.

        Parameters
        ----------
        results
            A TileResults-like object (with ``.table``) or a pandas DataFrame holding the
            score columns named by the rules.
        check_model
            Raise when ``results.meta`` names a model whose hash differs from
            :attr:`model_hash` (a threshold means nothing for another model).

        Returns
        -------
        Same kind as ``results``: a new DataFrame, or a shallow copy of the results object
        whose ``table`` is a new DataFrame and whose ``meta`` gains a ``calibration`` summary.
        The input is never modified.  A tile whose score is NaN is rejected.
        """
        from tileuq.uncertainty._apply import apply_calibration

        return apply_calibration(self, results, check_model=check_model)

    def summary(self) -> dict[str, Any]:
        """Compact description (no reference scores) for run metadata and reports."""
        return self.to_dict(reference=False)

    def describe(self) -> str:
        """One paragraph for people: rules, target, what was achieved, the guarantee."""
        rules = ", ".join(f"{r.score} <= {r.threshold:.4g} ({r.reason})" for r in self.rules)
        tgt = (
            f"coverage >= {self.target_coverage:g}"
            if self.target_coverage is not None
            else f"selective risk <= {self.target_risk:g}"
        )
        risk = "" if self.risk is None else f", risk {self.risk:.3f}"
        return (
            f"Accept when {rules}. Target {tgt} with probability >= {1 - self.delta:g} "
            f"({self.method}); on the {self.n} calibration tiles: coverage {self.coverage:.3f}"
            f"{risk}. {self.guarantee}"
        ).strip()
