"""Uncertainty scores, calibrated rejection thresholds and the slide-level shift alarm.

Scores are oriented **larger = less trustworthy**; a tile is accepted when
``score <= threshold``.  Main entry points:

- :func:`calibrate_scores` — thresholds with finite-sample guarantees on precomputed scores
  (coverage target: conformal / PAC quantile; risk target: Learn-then-Test or Bonferroni with
  exact binomial tests).  See ``docs/calibration.md``.
- :func:`calibrate` — the same from a model and a labelled tile folder, arrays, or a
  reviewer's decisions file.
- :class:`Calibration` — the rules, the statement they carry, JSON / model-manifest storage and
  :meth:`Calibration.apply` (``rejected`` and ``reason`` columns).
- :func:`shift_test` — does a slide look like the calibration data?
- score helpers (:func:`msp`, :func:`margin`, :func:`entropy`, :func:`energy`), the registry
  :data:`SCORES`, and feature-space scorers (:class:`KNNScorer`, :class:`MahalanobisScorer`;
  :func:`fit_feature_scorers` fits them on a model's training tiles and attaches them to the
  model, whose ``predict`` then reports their scores).

Importing this package does not import torch.
"""

from __future__ import annotations

from tileuq.uncertainty.bounds import (
    binomial_pvalue,
    clopper_pearson_upper,
    coverage_rank,
    min_n_coverage,
    min_n_risk,
)
from tileuq.uncertainty.calibration import Calibration, Rule
from tileuq.uncertainty.decisions import (
    DECISIONS_FILE,
    append_decision,
    decision_record,
    read_decisions,
    write_decisions,
)
from tileuq.uncertainty.distances import KNNScorer, MahalanobisScorer, load_scorer
from tileuq.uncertainty.fit import calibrate_scores
from tileuq.uncertainty.fit_features import fit_feature_scorers, iter_fit_feature_scorers
from tileuq.uncertainty.manifest import write_calibration
from tileuq.uncertainty.model_calibration import calibrate, default_scores, iter_calibrate
from tileuq.uncertainty.predict import Progress
from tileuq.uncertainty.scores import (
    REASONS,
    SCORES,
    ScoreInfo,
    energy,
    entropy,
    margin,
    msp,
    probability_scores,
    reason_for,
    score_info,
    softmax,
)
from tileuq.uncertainty.shift import ShiftReport, shift_test
from tileuq.uncertainty.temperature import apply_temperature, fit_temperature
from tileuq.uncertainty.thresholds import coverage_threshold, risk_threshold

__all__ = [
    "DECISIONS_FILE",
    "REASONS",
    "SCORES",
    "Calibration",
    "KNNScorer",
    "MahalanobisScorer",
    "Progress",
    "Rule",
    "ScoreInfo",
    "ShiftReport",
    "append_decision",
    "apply_temperature",
    "binomial_pvalue",
    "calibrate",
    "calibrate_scores",
    "clopper_pearson_upper",
    "coverage_rank",
    "coverage_threshold",
    "decision_record",
    "default_scores",
    "energy",
    "entropy",
    "fit_feature_scorers",
    "fit_temperature",
    "iter_calibrate",
    "iter_fit_feature_scorers",
    "load_scorer",
    "margin",
    "min_n_coverage",
    "min_n_risk",
    "msp",
    "probability_scores",
    "read_decisions",
    "reason_for",
    "risk_threshold",
    "score_info",
    "shift_test",
    "softmax",
    "write_calibration",
    "write_decisions",
]
