"""Classification and calibration metrics on numpy arrays (no torch needed).

Conventions (chosen to agree with torchmetrics where it defines the same quantity):

- ``accuracy``: fraction of tiles whose arg-max class equals the label
  (``multiclass_accuracy(average="micro")``).
- ``nll``: mean ``-log p_label`` (probabilities clipped at ``1e-12``).
- ``brier``: mean over tiles of ``sum_c (p_c - 1[c = label])**2`` (multiclass Brier score,
  range [0, 2]).
- ``ece``: top-label expected calibration error, L1.  ``strategy="uniform"``: ``n_bins``
  equal-width bins over [0, 1], a tile with confidence ``c`` in bin ``i`` when
  ``i / n <= c < (i + 1) / n`` and confidence exactly 1 in a bin of its own, as
  ``multiclass_calibration_error(norm="l1")``.  ``strategy="quantile"``: adaptive ECE,
  ``n_bins`` bins holding (nearly) equal numbers of tiles sorted by confidence.
- ``auroc_ovr``: macro average over classes of the one-vs-rest AUROC of ``p_c``
  (``multiclass_auroc(average="macro")``); classes absent from the labels (or present in all)
  are left out of the average.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = ["accuracy", "auroc_ovr", "binary_auroc", "brier", "ece", "nll", "reliability"]


def _probs_labels(
    probabilities: ArrayLike, labels: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    if p.ndim != 2:
        raise ValueError(f"probabilities: expected an (N, C) array, got shape {p.shape}")
    if y.size != p.shape[0]:
        raise ValueError(f"labels: expected {p.shape[0]} values, got {y.size}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels: must lie in [0, {p.shape[1] - 1}]")
    return p, y


def accuracy(probabilities: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of tiles whose arg-max class is the label (``probabilities`` may be (N,) ints)."""
    p = np.asarray(probabilities)
    pred = p.argmax(axis=1) if p.ndim == 2 else p.astype(np.int64)
    y = np.asarray(labels).astype(np.int64).ravel()
    if pred.size != y.size:
        raise ValueError(f"labels: expected {pred.size} values, got {y.size}")
    return float((pred == y).mean()) if y.size else float("nan")


def nll(probabilities: ArrayLike, labels: ArrayLike, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the labels."""
    p, y = _probs_labels(probabilities, labels)
    return float(-np.log(np.clip(p[np.arange(y.size), y], eps, None)).mean())


def brier(probabilities: ArrayLike, labels: ArrayLike) -> float:
    """Multiclass Brier score ``mean_i sum_c (p_ic - onehot_ic)**2``."""
    p, y = _probs_labels(probabilities, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def reliability(
    probabilities: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: str = "uniform"
) -> dict[str, NDArray[Any]]:
    """Per-bin mean confidence, accuracy and count (the data of a reliability diagram).

    Returns
    -------
    dict
        ``confidence``, ``accuracy``, ``count`` (length = number of bins; empty bins have
        count 0 and NaN means) and ``edges`` (bin edges; quantile bins: confidence values).
    """
    p, y = _probs_labels(probabilities, labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    if n_bins < 1:
        raise ValueError(f"n_bins: must be >= 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        idx = np.searchsorted(edges, conf, side="right") - 1  # torch.bucketize(right=True) - 1
        nb = n_bins + 1  # confidence == 1 gets its own bin, as torchmetrics
    elif strategy == "quantile":
        order = np.argsort(conf, kind="stable")
        idx = np.empty(conf.size, dtype=np.int64)
        idx[order] = np.arange(conf.size) * n_bins // max(conf.size, 1)
        nb = n_bins
        edges = np.quantile(conf, np.linspace(0, 1, n_bins + 1)) if conf.size else np.zeros(0)
    else:
        raise ValueError(f"strategy: expected 'uniform' or 'quantile', got {strategy!r}")
    count = np.bincount(idx, minlength=nb).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=nb) / count
        mean_acc = np.bincount(idx, weights=correct, minlength=nb) / count
    return {"confidence": mean_conf, "accuracy": mean_acc, "count": count, "edges": edges}


def ece(
    probabilities: ArrayLike, labels: ArrayLike, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Top-label expected calibration error (L1): ``sum_b (n_b / N) |acc_b - conf_b|``."""
    r = reliability(probabilities, labels, n_bins, strategy)
    n = r["count"].sum()
    if n == 0:
        return float("nan")
    gap = np.nan_to_num(np.abs(r["accuracy"] - r["confidence"]))
    return float((gap * r["count"]).sum() / n)


def binary_auroc(scores: ArrayLike, positive: ArrayLike) -> float:
    """AUROC of ``scores`` for ``positive`` (ties count one half; NaN without both classes)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positive).astype(bool).ravel()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_ovr(probabilities: ArrayLike, labels: ArrayLike) -> float:
    """Macro one-vs-rest AUROC of the class probabilities."""
    p, y = _probs_labels(probabilities, labels)
    vals = [binary_auroc(p[:, c], y == c) for c in range(p.shape[1])]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")
