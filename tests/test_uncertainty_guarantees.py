"""Simulation checks of the finite-sample guarantees (coverage and selective risk).

Each test draws many independent calibration sets from a known distribution, runs the
procedure, and computes the *true* coverage / selective risk of the returned threshold
analytically.  The guarantee holds when the violation rate is not significantly above delta
(one-sided binomial test at 0.001); a naive procedure is checked to violate far more often,
which shows the check can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tileuq.errors import CalibrationError
from tileuq.uncertainty import (
    coverage_rank,
    coverage_threshold,
    min_n_coverage,
    min_n_risk,
    risk_threshold,
)


def _not_above(violations: int, reps: int, delta: float) -> bool:
    """Violation count consistent with a rate <= delta (one-sided binomial test, 0.001)."""
    return stats.binom.sf(violations - 1, reps, delta) > 1e-3


# --------------------------------------------------------------------------- coverage
@pytest.mark.parametrize("n,q,delta", [(50, 0.9, 0.05), (400, 0.9, 0.1), (1000, 0.95, 0.05)])
def test_pac_coverage_holds_and_naive_quantile_fails(n, q, delta):
    rng = np.random.default_rng(n)
    reps = 4000
    u = np.sort(rng.random((reps, n)), axis=1)  # U(0, 1) scores: coverage of t is t itself
    k = coverage_rank(n, q, delta)
    assert k is not None
    cov = u[:, k - 1]
    viol = int((cov < q).sum())
    assert _not_above(viol, reps, delta), (viol, reps)
    assert viol / reps > delta / 4  # not absurdly conservative (the rank is the smallest)
    # the plain empirical quantile violates about half of the time
    naive = u[:, int(np.ceil(n * q)) - 1]
    assert (naive < q).mean() > 0.3


def test_marginal_coverage_holds_on_average():
    rng = np.random.default_rng(1)
    n, q = 99, 0.9
    u = np.sort(rng.random((20000, n)), axis=1)
    k = coverage_rank(n, q, guarantee="marginal")
    assert k == 90  # ceil((n + 1) q)
    assert u[:, k - 1].mean() >= q - 0.002  # E[coverage] = k / (n + 1) = 0.9


def test_pac_coverage_with_ties_through_coverage_threshold():
    # discrete scores (many ties): the <= rule accepts every tied tile, so coverage can only
    # grow; the true coverage of t is P(S <= t) under the known distribution
    rng = np.random.default_rng(2)
    values = np.arange(10)
    probs = np.array([0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05, 0.03, 0.02, 0.01])
    cdf = np.cumsum(probs)
    n, q, delta, reps = 200, 0.85, 0.1, 1500
    viol = 0
    for _ in range(reps):
        s = rng.choice(values, size=n, p=probs).astype(float)
        sel = coverage_threshold(s, q, delta)
        viol += cdf[int(sel.threshold)] < q
    assert _not_above(viol, reps, delta)


def test_min_n_coverage_is_tight():
    for q, delta in [(0.9, 0.05), (0.95, 0.01), (0.8, 0.1)]:
        n = min_n_coverage(q, delta)
        assert coverage_rank(n, q, delta) is not None
        assert coverage_rank(n - 1, q, delta) is None
    assert min_n_coverage(0.9, 0.05) == 29  # 0.9**29 = 0.047 <= 0.05 < 0.9**28
    n = min_n_coverage(0.9, guarantee="marginal")
    assert coverage_rank(n, 0.9, guarantee="marginal") == n
    assert coverage_rank(n - 1, 0.9, guarantee="marginal") is None


# --------------------------------------------------------------------------- risk
A = 0.25  # error probability eta(s) = A s^2 for s ~ U(0, 1): R(t) = A t^2 / 3


def _true_risk(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return A * t * t / 3.0


def _naive_threshold(s, wrong, alpha):
    """Largest threshold whose *empirical* selective risk is <= alpha (no guarantee)."""
    o = np.argsort(s)
    r = np.cumsum(wrong[o]) / np.arange(1, len(s) + 1)
    ok = np.nonzero(r <= alpha)[0]
    return s[o][ok[-1]] if ok.size else -np.inf


@pytest.mark.parametrize("method", ["ltt", "bonferroni"])
def test_risk_guarantee_holds(method):
    rng = np.random.default_rng(7)
    n, alpha, delta, reps = 600, 0.05, 0.1, 600
    viol = naive_viol = certified = 0
    for _ in range(reps):
        s = rng.random(n)
        wrong = rng.random(n) < A * s**2
        sel = risk_threshold(s, wrong, alpha, delta, method=method)
        if sel.threshold is not None:
            certified += 1
            viol += _true_risk(sel.threshold) > alpha
        naive_viol += _true_risk(_naive_threshold(s, wrong, alpha)) > alpha
    assert certified > 0.9 * reps  # it does find thresholds (R(1) = 0.083 > alpha)
    assert _not_above(viol, reps, delta), (viol, reps)
    assert naive_viol / reps > 0.3  # the plug-in threshold violates often: the check can fail


def test_risk_guarantee_with_confidently_wrong_tiles():
    # label noise among the most confident tiles: the risk curve is not monotone.  The
    # multi-start LTT still certifies a useful threshold and keeps the guarantee.
    rng = np.random.default_rng(11)
    n, alpha, delta, reps = 1000, 0.1, 0.1, 300
    grid = np.linspace(0, 1, 4001)
    eta = np.where(grid < 0.01, 0.5, A * grid**2)
    risk_curve = np.cumsum(eta) / np.arange(1, grid.size + 1)
    viol, cov = 0, []
    for _ in range(reps):
        s = rng.random(n)
        wrong = rng.random(n) < np.where(s < 0.01, 0.5, A * s**2)
        sel = risk_threshold(s, wrong, alpha, delta)
        t = -1.0 if sel.threshold is None else sel.threshold
        cov.append(max(t, 0.0))
        if t >= 0:
            viol += risk_curve[round(t * 4000)] > alpha
    assert _not_above(viol, reps, delta)
    assert np.mean(cov) > 0.7
    # plain fixed-sequence from the minimum count is stopped by the noisy top tiles
    s = rng.random(n)
    w = rng.random(n) < np.where(s < 0.01, 0.5, A * s**2)
    w[np.argsort(s)[:3]] = True
    assert risk_threshold(s, w, alpha, delta, starts=(0.0,)).threshold is None


def test_risk_threshold_reports_achieved_numbers():
    rng = np.random.default_rng(3)
    s = rng.random(500)
    wrong = rng.random(500) < A * s**2
    sel = risk_threshold(s, wrong, 0.1, 0.05)
    acc = s <= sel.threshold
    assert sel.accepted == acc.sum()
    assert sel.errors == wrong[acc].sum()
    assert sel.pvalue <= 0.05
    assert sel.upper_bound >= sel.errors / sel.accepted


def test_bonferroni_threshold_is_strictly_below_a_calibration_score():
    rng = np.random.default_rng(4)
    s = rng.random(800)
    wrong = rng.random(800) < A * s**2
    sel = risk_threshold(s, wrong, 0.05, 0.05, method="bonferroni")
    assert sel.threshold is not None
    assert sel.accepted == int((s <= sel.threshold).sum())
    nxt = np.nextafter(sel.threshold, np.inf)
    assert np.isinf(sel.threshold) or nxt in s


def test_min_n_risk():
    assert min_n_risk(0.05, 0.05) == 59  # 0.95**59 = 0.0485
    assert min_n_risk(0.1, 0.05) == 29
    s = np.linspace(0, 1, 58)
    sel = risk_threshold(s, np.zeros(58, bool), 0.05, 0.05)
    assert sel.threshold is None and sel.needed_n == 59
    assert "at least 59" in sel.message
    sel = risk_threshold(np.linspace(0, 1, 59), np.zeros(59, bool), 0.05, 0.05, starts=(0,))
    assert sel.threshold == 1.0


def test_calibration_error_is_a_value_error():
    assert issubclass(CalibrationError, ValueError)
