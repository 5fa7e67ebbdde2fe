"""``calibrate_scores``: thresholds with finite-sample guarantees on precomputed scores.

How several rules share one target (see ``docs/calibration.md``):

* **coverage target** ``q`` with ``R`` rules: each rule ``j`` gets a share ``w_j`` of the miss
  budget ``1 - q`` and of ``delta`` (Bonferroni): it is calibrated to coverage
  ``q_j = 1 - w_j (1 - q)`` at ``delta_j = w_j delta``.  With probability ``>= 1 - delta``
  every rule reaches its level, and then the combined coverage is ``>= 1 - sum_j (1 - q_j) = q``
  (union bound; usually higher, as rules reject overlapping tiles).
* **risk target** ``alpha``: one rule is calibrated for risk (the "ambiguous" score), optionally
  behind one *gate* on an "unfamiliar" score.  The gate is a coverage rule (level
  ``unfamiliar_coverage``, at ``delta``) with threshold ``g = u_(k)``; the risk rule is then
  calibrated only on the calibration tiles with ``u < g``.  Given ``u_(k)``, those tiles are an
  i.i.d. sample of ``u < g`` (order-statistic argument), so the risk statement keeps its full
  ``delta`` and refers to the combined rule "``u <= g`` and ``score <= t``" (exactly so when
  the gate score has no tie at ``g``, as for continuous distances and variances).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tileuq.errors import CalibrationError
from tileuq.uncertainty.calibration import Calibration, Rule
from tileuq.uncertainty.scores import REASONS, reason_for
from tileuq.uncertainty.thresholds import coverage_threshold, risk_threshold

__all__ = ["calibrate_scores", "reference_sketch"]

#: calibration scores kept verbatim for the shift test up to this many tiles
KEEP_SCORES = 2000


def reference_sketch(scores: ArrayLike, keep: int = KEEP_SCORES) -> list[float]:
    """Sorted scores, or ``keep`` evenly spaced order statistics when there are more."""
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if s.size > keep:
        idx = np.round(np.linspace(0, s.size - 1, keep)).astype(np.int64)
        s = s[idx]
    return [float(v) for v in s]


def _as_scores(scores: Any, score_name: str | None) -> dict[str, NDArray[np.float64]]:
    if hasattr(scores, "columns"):  # DataFrame
        scores = {str(c): scores[c].to_numpy() for c in scores.columns}
    if isinstance(scores, Mapping):
        if not scores:
            raise CalibrationError("scores: the mapping is empty")
        out = {str(k): np.asarray(v, dtype=np.float64).ravel() for k, v in scores.items()}
    else:
        out = {score_name or "score": np.asarray(scores, dtype=np.float64).ravel()}
    sizes = {k: v.size for k, v in out.items()}
    if len(set(sizes.values())) != 1:
        raise CalibrationError(f"scores: the score arrays differ in length: {sizes}")
    for k, v in out.items():
        bad = int(np.isnan(v).sum())
        if bad:
            raise CalibrationError(f"scores[{k!r}]: {bad} NaN value(s) in the calibration set")
    return out


def _reasons(names: Sequence[str], reason: str | Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str]
    if reason is None:
        out = {k: reason_for(k) for k in names}
    elif isinstance(reason, str):
        out = dict.fromkeys(names, reason)
    else:
        out = {k: reason.get(k, reason_for(k)) for k in names}
    for k, r in out.items():
        if r not in REASONS:
            raise CalibrationError(f"reason for {k!r}: expected one of {REASONS}, got {r!r}")
    return out


def _too_small(n: int, needed: int, what: str) -> CalibrationError:
    return CalibrationError(
        f"calibration set too small: {n} tile(s), but {what} needs at least {needed}"
    )


def calibrate_scores(
    scores: ArrayLike | Mapping[str, ArrayLike] | Any,
    correct: ArrayLike | None = None,
    *,
    target_coverage: float | None = None,
    target_risk: float | None = None,
    delta: float = 0.05,
    score_name: str | None = None,
    reason: str | Mapping[str, str] | None = None,
    guarantee: str = "pac",
    method: str = "ltt",
    split: Mapping[str, float] | None = None,
    unfamiliar_coverage: float = 0.95,
    model_hash: str | None = None,
    model_id: str | None = None,
    classes: Sequence[str] | None = None,
    temperature: float | None = None,
    info: Mapping[str, Any] | None = None,
) -> Calibration:
    """Calibrate rejection thresholds on precomputed scores.

    A tile is accepted when ``score <= threshold`` for every rule (scores are larger = less
    trustworthy).  Calibration tiles must be exchangeable with the tiles the thresholds will
    be used on (same distribution: same scanner, stain, tissue mix, model) and their labels
    right; see ``docs/calibration.md``.

    Parameters
    ----------
    scores
        One score per calibration tile (1-D array, named ``score_name``), or a mapping /
        DataFrame ``{score name: array}`` for several rules (the first is the primary rule).
    correct
        Whether the model's prediction on each tile was right (needed for ``target_risk``;
        with ``target_coverage`` only used to report the achieved risk).
    target_coverage
        Accept at least this fraction of new in-distribution tiles:
        ``P(coverage >= q) >= 1 - delta`` over calibration draws (``guarantee="pac"``), or
        ``E[coverage] >= q`` (``guarantee="marginal"``, the split-conformal rank
        ``ceil((n + 1) q)``; ``delta`` unused).
    target_risk
        Largest coverage whose error rate among accepted tiles is ``<= alpha`` with
        probability ``>= 1 - delta`` (:func:`~tileuq.uncertainty.thresholds.risk_threshold`,
        ``method="ltt"`` or ``"bonferroni"``).
    delta
        Allowed failure probability over calibration draws.
    score_name
        Name of a 1-D ``scores`` array (default ``"score"``).
    reason
        Override the reason(s) (``"ambiguous"``/``"unfamiliar"``) from the score registry.
    guarantee
        ``"pac"`` or ``"marginal"`` (coverage target only).
    method
        Risk procedure: ``"ltt"`` (default) or ``"bonferroni"``.
    split
        Coverage target with several rules: share of the miss budget and of ``delta`` per
        score (normalised; default equal shares).
    unfamiliar_coverage
        Risk target with a gate: coverage level of the unfamiliar-score gate.
    model_hash, model_id, classes, temperature, info
        Provenance stored in the :class:`Calibration`.

    Raises
    ------
    CalibrationError
        Bad arguments, NaN scores, a set too small for the requested guarantee (the message
        says how many tiles are needed), or a risk target no threshold can certify.
    """
    if (target_coverage is None) == (target_risk is None):
        raise CalibrationError("give exactly one of target_coverage and target_risk")
    if not 0.0 < delta < 1.0:
        raise CalibrationError(f"delta: must lie strictly between 0 and 1, got {delta}")
    for name, v in (("target_coverage", target_coverage), ("target_risk", target_risk)):
        if v is not None and not 0.0 < v < 1.0:
            raise CalibrationError(f"{name}: must lie strictly between 0 and 1, got {v}")
    if guarantee not in ("pac", "marginal"):
        raise CalibrationError(f"guarantee: expected 'pac' or 'marginal', got {guarantee!r}")
    cols = _as_scores(scores, score_name)
    names = list(cols)
    n = int(next(iter(cols.values())).size)
    if n == 0:
        raise CalibrationError("calibration set is empty")
    reasons = _reasons(names, reason)
    ok: NDArray[np.bool_] | None = None
    if correct is not None:
        ok = np.asarray(correct).astype(bool).ravel()
        if ok.size != n:
            raise CalibrationError(f"correct: expected {n} values (one per tile), got {ok.size}")

    if target_coverage is not None:
        rules, meth, text = _coverage_rules(cols, reasons, target_coverage, delta, guarantee, split)
        bound = None
    else:
        if ok is None:
            raise CalibrationError("target_risk needs `correct` (was each prediction right?)")
        assert target_risk is not None
        rules, meth, text, bound = _risk_rules(
            cols, reasons, ~ok, target_risk, delta, method, unfamiliar_coverage
        )

    accept = np.ones(n, dtype=bool)
    for r in rules:
        accept &= cols[r.score] <= r.threshold
    accepted = int(accept.sum())
    risk = None if ok is None else (float((~ok[accept]).mean()) if accepted else 0.0)
    return Calibration(
        rules=rules,
        target_coverage=target_coverage,
        target_risk=target_risk,
        delta=float(delta),
        n=n,
        coverage=accepted / n,
        risk=risk,
        accepted=accepted,
        method=meth,
        guarantee=text,
        risk_bound=bound,
        model_hash=model_hash,
        model_id=model_id,
        classes=list(classes) if classes is not None else None,
        temperature=temperature,
        reference={r.score: reference_sketch(cols[r.score]) for r in rules},
        info=dict(info or {}),
    )


def _coverage_rules(
    cols: dict[str, NDArray[np.float64]],
    reasons: dict[str, str],
    q: float,
    delta: float,
    guarantee: str,
    split: Mapping[str, float] | None,
) -> tuple[list[Rule], str, str]:
    names = list(cols)
    n = int(cols[names[0]].size)
    if split is None:
        w = dict.fromkeys(names, 1.0 / len(names))
    else:
        unknown = sorted(set(split) - set(names))
        if unknown or any(split.get(k, 0) <= 0 for k in names):
            raise CalibrationError(
                f"split: needs a positive share for each score {names} (unknown: {unknown})"
            )
        total = float(sum(split[k] for k in names))
        w = {k: float(split[k]) / total for k in names}
    rules = []
    for k in names:
        qk = 1.0 - w[k] * (1.0 - q)
        dk = w[k] * delta
        sel = coverage_threshold(cols[k], qk, dk, guarantee=guarantee)
        if sel.threshold is None:
            need = max(
                coverage_threshold(
                    np.zeros(1), 1.0 - w[j] * (1.0 - q), w[j] * delta, guarantee=guarantee
                ).needed_n
                for j in names
            )
            what = (
                f"coverage {q:g} with probability {1 - delta:g}"
                if guarantee == "pac"
                else f"expected coverage {q:g}"
            )
            if len(names) > 1:
                what += f" over {len(names)} rules"
            raise _too_small(n, need, what)
        rules.append(Rule(k, sel.threshold, reasons[k], "coverage", qk, dk))
    meth = "conformal-pac" if guarantee == "pac" else "conformal-marginal"
    if len(names) > 1:
        meth += "+bonferroni"
    if guarantee == "pac":
        text = (
            f"With probability >= {1 - delta:g} over the draw of the calibration set, at least "
            f"{q:.1%} of new tiles exchangeable with it are accepted."
        )
    else:
        text = (
            f"Averaged over calibration sets, at least {q:.1%} of new tiles exchangeable with "
            f"it are accepted (a single calibration may fall short)."
        )
    return rules, meth, text


def _risk_rules(
    cols: dict[str, NDArray[np.float64]],
    reasons: dict[str, str],
    wrong: NDArray[np.bool_],
    alpha: float,
    delta: float,
    method: str,
    unfamiliar_coverage: float,
) -> tuple[list[Rule], str, str, float]:
    names = list(cols)
    n = int(wrong.size)
    if len(names) == 1:
        risk_name, gate_name = names[0], None
    elif len(names) == 2:
        unf = [k for k in names if reasons[k] == "unfamiliar"]
        amb = [k for k in names if reasons[k] == "ambiguous"]
        if len(unf) != 1 or len(amb) != 1:
            raise CalibrationError(
                f"target_risk with two scores needs one 'unfamiliar' gate and one 'ambiguous' "
                f"score; got reasons {reasons}"
            )
        risk_name, gate_name = amb[0], unf[0]
    else:
        raise CalibrationError(
            f"target_risk supports one score, or one 'ambiguous' score behind one "
            f"'unfamiliar' gate; got {len(names)} scores {names}"
        )
    rules: list[Rule] = []
    subset = np.ones(n, dtype=bool)
    if gate_name is not None:
        gate = coverage_threshold(cols[gate_name], unfamiliar_coverage, delta)
        if gate.threshold is None:
            raise _too_small(
                n, gate.needed_n, f"an unfamiliar gate at coverage {unfamiliar_coverage:g}"
            )
        rules.append(
            Rule(gate_name, gate.threshold, reasons[gate_name], "gate", unfamiliar_coverage, delta)
        )
        subset = cols[gate_name] < gate.threshold
    sel = risk_threshold(cols[risk_name][subset], wrong[subset], alpha, delta, method=method)
    if sel.threshold is None:
        if int(subset.sum()) < sel.needed_n:
            need = sel.needed_n
            if gate_name is not None:
                need = math.ceil((sel.needed_n + 1) / unfamiliar_coverage)
            raise _too_small(
                n, need, f"a selective risk <= {alpha:g} with probability {1 - delta:g}"
            )
        raise CalibrationError(f"calibration failed: {sel.message}")
    rules.insert(0, Rule(risk_name, sel.threshold, reasons[risk_name], "risk", None, delta))
    meth = f"risk-{sel.method}" + ("+gate" if gate_name else "")
    text = (
        f"With probability >= {1 - delta:g} over the draw of the calibration set, the error "
        f"rate among accepted new tiles exchangeable with it is <= {alpha:g}"
    )
    if method == "ltt":
        text += (
            " (Learn-then-Test fixed-sequence; assumes the error rate does not fall and rise "
            "again across the most confident tiles)."
        )
    else:
        text += " (Bonferroni over fixed ranks; no assumption on the risk curve)."
    return rules, meth, text, sel.upper_bound
