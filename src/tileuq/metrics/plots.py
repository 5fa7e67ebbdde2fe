"""PNG plots: reliability diagram, risk–coverage curve, score histograms (in vs out).

matplotlib is imported inside each function and drawn on a bare ``Figure`` (Agg, no pyplot
state); every file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tileuq._io import atomic_path
from tileuq.metrics.classification import ece, reliability
from tileuq.metrics.selective import aurc, risk_coverage_curve

__all__ = ["plot_reliability", "plot_risk_coverage", "plot_score_histograms"]


def _figure(size: tuple[float, float] = (4.5, 4.0)) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=120, layout="constrained")


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_reliability(
    probabilities: ArrayLike,
    labels: ArrayLike,
    path: str | os.PathLike[str],
    *,
    n_bins: int = 15,
    title: str = "",
) -> Path:
    """Reliability diagram: accuracy vs mean confidence per bin, with the ECE."""
    r = reliability(probabilities, labels, n_bins)
    fig = _figure()
    ax = fig.add_subplot()
    edges = np.linspace(0, 1, n_bins + 1)
    acc = np.nan_to_num(r["accuracy"][:n_bins])
    ax.bar(
        edges[:-1],
        acc,
        width=1 / n_bins,
        align="edge",
        color="#4c72b0",
        edgecolor="white",
        label="accuracy",
    )
    conf = r["confidence"][:n_bins]
    has = r["count"][:n_bins] > 0
    ax.bar(
        edges[:-1][has],
        (conf - acc)[has],
        bottom=acc[has],
        width=1 / n_bins,
        align="edge",
        color="#dd8452",
        alpha=0.5,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    e = ece(probabilities, labels, n_bins)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence",
        ylabel="accuracy",
        title=(title + "\n" if title else "") + f"ECE = {e:.3f}",
    )
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_risk_coverage(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | os.PathLike[str],
    *,
    operating_point: tuple[float, float] | None = None,
    target_risk: float | None = None,
    title: str = "",
) -> Path:
    """Risk–coverage curves ``{score name: (scores, correct)}`` with an operating point."""
    fig = _figure((5.0, 4.0))
    ax = fig.add_subplot()
    for name, (scores, correct) in curves.items():
        cov, risk, _ = risk_coverage_curve(scores, correct)
        ax.plot(cov, risk, lw=1.5, label=f"{name} (AURC {aurc(scores, correct):.3f})")
    if operating_point is not None:
        c, r = operating_point
        ax.plot([c], [r], "o", color="black", ms=7, label=f"operating point ({c:.2f}, {r:.3f})")
    if target_risk is not None:
        ax.axhline(target_risk, color="grey", ls=":", lw=1, label=f"target risk {target_risk:g}")
    ax.set(
        xlim=(0, 1),
        ylim=(0, None),
        xlabel="coverage (fraction accepted)",
        ylabel="selective risk (error rate)",
        title=title,
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_score_histograms(
    scores_in: ArrayLike,
    scores_out: Mapping[str, ArrayLike],
    path: str | os.PathLike[str],
    *,
    score: str = "score",
    threshold: float | None = None,
    bins: int = 40,
) -> Path:
    """Histograms of one score on in-distribution tiles and on each OOD set."""
    a = np.asarray(scores_in, dtype=np.float64)
    sets = {"in-distribution": a, **{k: np.asarray(v, np.float64) for k, v in scores_out.items()}}
    allv = np.concatenate([v[np.isfinite(v)] for v in sets.values()])
    edges = np.histogram_bin_edges(allv, bins=bins) if allv.size else np.linspace(0, 1, bins)
    fig = _figure((5.0, 3.6))
    ax = fig.add_subplot()
    for name, v in sets.items():
        ax.hist(
            v[np.isfinite(v)],
            bins=edges,
            density=True,
            histtype="stepfilled",
            alpha=0.45,
            label=f"{name} (n={v.size})",
        )
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set(xlabel=f"{score} (larger = less trustworthy)", ylabel="density")
    ax.legend(fontsize=8)
    return _save(fig, path)
