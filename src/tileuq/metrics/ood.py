"""Out-of-distribution detection metrics: positive = OOD, larger score = more OOD."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from tileuq.metrics.classification import binary_auroc

__all__ = ["fpr_at_tpr", "ood_auroc"]


def _both(scores_in: ArrayLike, scores_out: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(scores_in, dtype=np.float64).ravel()
    b = np.asarray(scores_out, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("OOD metrics need in-distribution and OOD scores")
    return a, b


def ood_auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """``P(score_out > score_in) + P(equal) / 2``: 1 = perfect separation, 0.5 = chance."""
    a, b = _both(scores_in, scores_out)
    return binary_auroc(np.r_[a, b], np.r_[np.zeros(a.size, bool), np.ones(b.size, bool)])


def fpr_at_tpr(scores_in: ArrayLike, scores_out: ArrayLike, tpr: float = 0.95) -> float:
    """Fraction of in-distribution tiles flagged when ``tpr`` of the OOD tiles are flagged.

    A tile is flagged when ``score >= t``; ``t`` is the largest threshold flagging at least
    ``tpr`` of the OOD tiles (``1 - specificity`` at sensitivity ``>= tpr``).
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr: must lie in (0, 1], got {tpr}")
    a, b = _both(scores_in, scores_out)
    k = math.ceil(tpr * b.size - 1e-9)
    t = np.sort(b)[::-1][k - 1]
    return float((a >= t).mean())
