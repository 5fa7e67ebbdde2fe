"""Metrics and plots: accuracy, NLL, Brier, ECE, AURC, risk–coverage, OOD AUROC / FPR95.

All functions take numpy arrays; scores are larger = less trustworthy (OOD metrics: positive
= OOD, larger score = more OOD).  Values agree with torchmetrics where it defines the same
quantity (tested).  Importing this package does not import torch or matplotlib.
"""

from __future__ import annotations

from tileuq.metrics.classification import (
    accuracy,
    auroc_ovr,
    binary_auroc,
    brier,
    ece,
    nll,
    reliability,
)
from tileuq.metrics.ood import fpr_at_tpr, ood_auroc
from tileuq.metrics.plots import plot_reliability, plot_risk_coverage, plot_score_histograms
from tileuq.metrics.selective import aurc, excess_aurc, risk_coverage_curve, selective_risk

__all__ = [
    "accuracy",
    "aurc",
    "auroc_ovr",
    "binary_auroc",
    "brier",
    "ece",
    "excess_aurc",
    "fpr_at_tpr",
    "nll",
    "ood_auroc",
    "plot_reliability",
    "plot_risk_coverage",
    "plot_score_histograms",
    "reliability",
    "risk_coverage_curve",
    "selective_risk",
]
