"""Metrics: hand-checkable cases and agreement with torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest

from tileuq.metrics import (
    accuracy,
    aurc,
    auroc_ovr,
    binary_auroc,
    brier,
    ece,
    excess_aurc,
    fpr_at_tpr,
    nll,
    ood_auroc,
    reliability,
    risk_coverage_curve,
    selective_risk,
)


def _random_probs(n=600, c=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 2
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(c, p=q) for q in np.exp(z / 1.5) / np.exp(z / 1.5).sum(1)[:, None]])
    return p.astype(np.float32).astype(np.float64), y


def test_hand_checked_classification_metrics():
    p = np.array([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])
    y = np.array([0, 0, 1])
    assert accuracy(p, y) == pytest.approx(1 / 3)  # argmax of a tie is class 0
    assert nll(p, y) == pytest.approx(-(np.log(0.8) + np.log(0.4) + np.log(0.5)) / 3)
    assert brier(p, y) == pytest.approx((0.08 + 0.72 + 0.5) / 3)
    # ECE with 2 equal-width bins: conf 0.8 (right), 0.6 (wrong), 0.5 (wrong) in bin [0.5, 1)
    assert ece(p, y, n_bins=2) == pytest.approx(abs(1 / 3 - (0.8 + 0.6 + 0.5) / 3))
    assert ece(np.eye(3), [0, 1, 2]) == 0.0  # confident and right: perfectly calibrated


def test_equal_mass_bins():
    p, y = _random_probs()
    r = reliability(p, y, n_bins=10, strategy="quantile")
    assert r["count"].tolist() == [60.0] * 10
    assert 0 <= ece(p, y, 10, "quantile") <= 1


def test_binary_auroc_by_hand():
    assert binary_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert binary_auroc([1, 1, 1], [0, 1, 1]) == pytest.approx(0.5)  # ties count one half
    assert np.isnan(binary_auroc([1, 2], [1, 1]))


def test_risk_coverage_by_hand():
    scores = np.array([0.1, 0.2, 0.2, 0.5, 0.9])
    correct = np.array([True, True, False, True, False])
    cov, risk, thr = risk_coverage_curve(scores, correct)
    np.testing.assert_allclose(cov, [0.2, 0.6, 0.8, 1.0])  # the tie at 0.2 moves together
    np.testing.assert_allclose(risk, [0.0, 1 / 3, 0.25, 0.4])
    np.testing.assert_allclose(thr, [0.1, 0.2, 0.5, 0.9])
    assert aurc(scores, correct) == pytest.approx(0.2 * 0 + 0.4 / 3 + 0.2 * 0.25 + 0.2 * 0.4)
    assert selective_risk(scores, correct, 0.5) == pytest.approx(1 / 3)
    assert selective_risk(scores, correct, 1.0) == pytest.approx(0.4)
    # without ties AURC is the mean of the k-most-confident risks
    rng = np.random.default_rng(1)
    s, ok = rng.random(50), rng.random(50) > 0.3
    o = np.argsort(s)
    want = np.mean(np.cumsum(~ok[o]) / np.arange(1, 51))
    assert aurc(s, ok) == pytest.approx(want)
    assert excess_aurc(np.where(ok, 0.0, 1.0), ok) == pytest.approx(0.0)


def test_ood_metrics_by_hand():
    assert ood_auroc([0.1, 0.2, 0.3], [0.4, 0.5]) == 1.0
    assert ood_auroc([0.4, 0.5], [0.1, 0.2, 0.3]) == 0.0
    ins = np.arange(100) / 100  # 0.00 .. 0.99
    out = np.r_[np.full(95, 0.9), np.full(5, 0.0)]
    # 95 % of OOD tiles have score >= 0.9; in-distribution tiles >= 0.9: 0.90..0.99
    assert fpr_at_tpr(ins, out, 0.95) == pytest.approx(0.10)


# --------------------------------------------------------------------------- torchmetrics
torch = pytest.importorskip("torch")
tmf = pytest.importorskip("torchmetrics.functional.classification")


@pytest.mark.parametrize("n_bins", [5, 15, 20])
def test_ece_agrees_with_torchmetrics(n_bins):
    p, y = _random_probs(seed=n_bins)
    p[:5] = np.eye(4)[y[:5]]  # some confidences exactly 1 (their own bin in torchmetrics)
    want = tmf.multiclass_calibration_error(
        torch.tensor(p, dtype=torch.float32),
        torch.tensor(y),
        num_classes=4,
        n_bins=n_bins,
        norm="l1",
    )
    assert ece(p.astype(np.float32), y, n_bins) == pytest.approx(float(want), abs=1e-6)


def test_accuracy_and_auroc_agree_with_torchmetrics():
    p, y = _random_probs(seed=3)
    pt, yt = torch.tensor(p, dtype=torch.float32), torch.tensor(y)
    acc = tmf.multiclass_accuracy(pt, yt, num_classes=4, average="micro")
    assert accuracy(p, y) == pytest.approx(float(acc), abs=1e-6)
    au = tmf.multiclass_auroc(pt, yt, num_classes=4, average="macro", thresholds=None)
    assert auroc_ovr(p.astype(np.float32), y) == pytest.approx(float(au), abs=1e-5)


def test_ood_metrics_agree_with_torchmetrics():
    rng = np.random.default_rng(4)
    ins = rng.beta(2, 5, 700)
    out = rng.beta(4, 3, 300)
    out[:20] = ins[:20]  # some exact ties across the sets
    preds = torch.tensor(np.r_[ins, out], dtype=torch.float64)
    target = torch.tensor(np.r_[np.zeros(700), np.ones(300)]).long()
    assert ood_auroc(ins, out) == pytest.approx(float(tmf.binary_auroc(preds, target)), abs=1e-6)
    spec, _ = tmf.binary_specificity_at_sensitivity(preds, target, min_sensitivity=0.95)
    assert fpr_at_tpr(ins, out, 0.95) == pytest.approx(1 - float(spec), abs=1e-6)


def test_brier_matches_its_definition_with_torch():
    p, y = _random_probs(seed=5)
    onehot = torch.nn.functional.one_hot(torch.tensor(y), 4).double()
    want = ((torch.tensor(p) - onehot) ** 2).sum(1).mean()
    assert brier(p, y) == pytest.approx(float(want))
    want_nll = torch.nn.functional.nll_loss(torch.tensor(p).log(), torch.tensor(y))
    assert nll(p, y) == pytest.approx(float(want_nll))
