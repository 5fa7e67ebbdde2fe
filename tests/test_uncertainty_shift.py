"""The slide-level shift alarm: calibrated under no shift, small p-values under shift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tileuq.errors import CalibrationError
from tileuq.uncertainty import calibrate_scores, shift_test


def _reps(shift: float, reps: int, n_cal=400, n_slide=300, seed=0, **kw):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        cal = calibrate_scores(rng.normal(size=n_cal), target_coverage=0.9, score_name="entropy")
        slide = pd.DataFrame({"entropy": rng.normal(loc=shift, size=n_slide)})
        out.append(shift_test(slide, cal, **kw))
    return out


def test_pvalues_are_calibrated_without_shift():
    reports = _reps(0.0, 400)
    p_dist = np.array([r.p_distribution for r in reports])
    p_count = np.array([r.p_count for r in reports])
    p = np.array([r.p_value for r in reports])
    # the rank test is continuous: uniform
    assert stats.kstest(p_dist, "uniform").pvalue > 1e-3
    # the count test is exact but discrete, the combination Bonferroni: super-uniform
    for u in (0.01, 0.05, 0.1, 0.2):
        for pv in (p_count, p):
            assert stats.binom.sf((pv <= u).sum() - 1, len(pv), u) > 1e-3, (u, (pv <= u).mean())
    # ... and not uselessly conservative
    assert (p_count <= 0.2).mean() > 0.12
    assert np.mean([r.shifted for r in reports]) <= 0.03


def test_shift_is_detected_and_explained():
    reports = _reps(0.6, 30, seed=1)
    assert np.median([r.p_value for r in reports]) < 1e-3
    assert all(r.shifted for r in reports)
    r = reports[0]
    assert r.rejected_fraction > r.expected_upper > r.expected_fraction
    assert r.verdict.startswith("This slide looks unlike the calibration data:")
    assert "% of tiles rejected, expected about" in r.verdict
    assert r.to_dict()["n_tiles"] == 300


def test_design_effect_makes_the_alarm_more_cautious():
    rng = np.random.default_rng(3)
    cal = calibrate_scores(rng.normal(size=500), target_coverage=0.9, score_name="entropy")
    slide = pd.DataFrame({"entropy": rng.normal(loc=0.25, size=400)})
    plain = shift_test(slide, cal)
    clustered = shift_test(slide, cal, design_effect=4.0)
    assert clustered.p_value > plain.p_value
    assert clustered.p_distribution > plain.p_distribution
    assert "independent" in plain.verdict and "independent" not in clustered.verdict
    with pytest.raises(CalibrationError, match="design_effect"):
        shift_test(slide, cal, design_effect=0.5)


def test_large_calibration_sets_keep_a_sketch():
    rng = np.random.default_rng(4)
    cal = calibrate_scores(rng.normal(size=10000), target_coverage=0.9, score_name="entropy")
    assert len(cal.reference["entropy"]) == 2000
    r = shift_test(pd.DataFrame({"entropy": rng.normal(size=500)}), cal)
    assert not r.shifted


def test_tissue_filter_and_empty():
    rng = np.random.default_rng(5)
    cal = calibrate_scores(rng.normal(size=300), target_coverage=0.9, score_name="entropy")
    tissue = np.r_[np.ones(60), np.zeros(40)]
    table = pd.DataFrame({"entropy": rng.normal(size=100), "tissue": tissue})
    assert shift_test(table, cal, tissue_min=0.5).n_tiles == 60
    with pytest.raises(CalibrationError, match="no tiles"):
        shift_test(table.iloc[:0], cal)


def test_few_tiles_are_reported_as_insufficient_evidence_not_as_no_shift():
    rng = np.random.default_rng(6)
    cal = calibrate_scores(rng.normal(size=120), target_coverage=0.5, score_name="entropy")
    assert 0.35 < 1 - cal.accepted / cal.n < 0.5  # about 42 % of null tiles are rejected
    t = cal.threshold
    # 4 tiles, every one rejected: the count cannot reach alpha = 0.01 with 4 tiles
    few = shift_test(pd.DataFrame({"entropy": t + np.linspace(0.05, 0.3, 4)}), cal)
    assert few.n_rejected == 4 and not few.shifted and few.p_best >= few.alpha
    assert few.evidence == "too_few_tiles" and "No sign" not in few.verdict
    assert few.verdict.startswith("Too few tiles to tell whether the slide is shifted: with 4 ")
    assert "100 % of tiles rejected" in few.verdict
    one = shift_test(pd.DataFrame({"entropy": [t + 0.1]}), cal)
    assert one.evidence == "too_few_tiles" and "with 1 tile the" in one.verdict
    # enough tiles to fire, leaning toward a shift without reaching the level
    lean = pd.DataFrame({"entropy": np.r_[t + np.linspace(0.05, 0.3, 12), np.full(4, t - 3)]})
    mid = shift_test(lean, cal)
    assert not mid.shifted and mid.p_best < mid.alpha and mid.p_value < 0.1
    assert mid.evidence == "inconclusive"
    assert mid.verdict.startswith("Not enough evidence to call a shift with 16 tiles")
    assert "the alarm needs p < 0.01" in mid.verdict
    # an ordinary slide: "no sign"
    null = shift_test(pd.DataFrame({"entropy": rng.normal(size=300)}), cal)
    assert null.evidence == "none" and null.verdict.startswith("No sign of a shift")
    # a clear shift on few tiles still fires
    clear = shift_test(pd.DataFrame({"entropy": t + 5 + np.arange(8.0)}), cal)
    assert clear.shifted and clear.evidence == "shift"
