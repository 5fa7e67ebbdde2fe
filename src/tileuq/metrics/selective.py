"""Selective prediction: the risk–coverage curve, AURC and the risk at a coverage.

Scores are larger = less trustworthy; accepting the tiles with ``score <= t`` gives coverage
``c(t)`` (fraction accepted) and selective risk ``r(t)`` (error rate among accepted).  Tied
scores are accepted or rejected together, so the curve has one point per distinct score.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["aurc", "excess_aurc", "risk_coverage_curve", "selective_risk"]


def _prep(scores: ArrayLike, correct: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    c = np.asarray(correct).astype(bool).ravel()
    if s.size != c.size:
        raise ValueError(f"correct: expected {s.size} values, got {c.size}")
    if np.isnan(s).any():
        raise ValueError("scores: NaN values")
    return s, c


def risk_coverage_curve(
    scores: ArrayLike, correct: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Coverage, selective risk and threshold at every distinct score (increasing coverage)."""
    s, c = _prep(scores, correct)
    if s.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    order = np.argsort(s, kind="stable")
    s, wrong = s[order], ~c[order]
    ends = np.nonzero(np.append(s[1:] != s[:-1], True))[0]
    m = ends + 1
    risk = np.cumsum(wrong)[ends] / m
    return m / s.size, risk.astype(np.float64), s[ends]


def aurc(scores: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk–coverage curve (Geifman et al., 2019).

    ``sum_g (c_g - c_{g-1}) r_g`` over groups of tied scores; without ties this is the usual
    ``(1/n) sum_k r(k)``, ``r(k)`` the error rate of the ``k`` most confident tiles.
    """
    cov, risk, _ = risk_coverage_curve(scores, correct)
    if cov.size == 0:
        return float("nan")
    return float((np.diff(np.r_[0.0, cov]) * risk).sum())


def excess_aurc(scores: ArrayLike, correct: ArrayLike) -> float:
    """AURC minus that of an oracle ranking all errors last (E-AURC)."""
    _, c = _prep(scores, correct)
    oracle = (~c).astype(np.float64)  # correct tiles first
    return aurc(scores, correct) - aurc(oracle, c)


def selective_risk(scores: ArrayLike, correct: ArrayLike, coverage: float) -> float:
    """Error rate among the accepted tiles at the smallest threshold covering ``coverage``."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage: must lie in (0, 1], got {coverage}")
    cov, risk, _ = risk_coverage_curve(scores, correct)
    if cov.size == 0:
        return float("nan")
    i = int(np.searchsorted(cov, coverage - 1e-12, side="left"))
    return float(risk[min(i, risk.size - 1)])
