"""Score helpers, the registry, feature-space distances and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from tileuq.errors import CalibrationError
from tileuq.uncertainty import (
    SCORES,
    KNNScorer,
    MahalanobisScorer,
    apply_temperature,
    energy,
    entropy,
    fit_temperature,
    load_scorer,
    margin,
    msp,
    probability_scores,
    reason_for,
    softmax,
)
from tileuq.uncertainty.distances import ledoit_wolf


def test_hand_checked_scores():
    p = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(msp(p), [0.3, 2 / 3, 0.0])
    np.testing.assert_allclose(margin(p), [0.5, 1.0, 0.0])
    h = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))
    np.testing.assert_allclose(entropy(p), [h, np.log(3), 0.0])
    z = np.array([[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(energy(z), [-np.log(np.e**2 + 1), -np.log(2)])
    np.testing.assert_allclose(energy(z, 2.0), -2 * np.log(np.exp(z / 2).sum(1)))
    np.testing.assert_allclose(softmax(z).sum(1), 1.0)
    out = probability_scores(logits=z)
    assert set(out) == {"msp", "margin", "entropy", "energy"}
    # huge logits stay finite
    assert np.isfinite(energy([[1e4, 0.0]])).all() and np.isfinite(softmax([[1e4, 0.0]])).all()


def test_orientation_larger_is_less_trustworthy():
    confident = np.array([[0.98, 0.01, 0.01]])
    unsure = np.array([[0.4, 0.35, 0.25]])
    for f in (msp, margin, entropy):
        assert f(unsure)[0] > f(confident)[0]
    assert energy([[0.1, 0.0]])[0] > energy([[8.0, 0.0]])[0]  # little evidence = larger


def test_registry():
    assert {
        "msp",
        "margin",
        "entropy",
        "energy",
        "variance",
        "mutual_information",
        "expected_entropy",
        "knn_euclidean",
        "knn_cosine",
        "mahalanobis",
    } <= set(SCORES)
    unfamiliar = {k for k, v in SCORES.items() if v.reason == "unfamiliar"}
    assert unfamiliar == {
        "variance",
        "mutual_information",
        "knn_euclidean",
        "knn_cosine",
        "mahalanobis",
        "energy",
    }
    assert reason_for("entropy") == "ambiguous" and reason_for("nope") == "ambiguous"


def test_agrees_with_the_models_torch_scores():
    torch = pytest.importorskip("torch")
    ms = pytest.importorskip("tileuq.models.scores")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 5)) * 3
    p = softmax(z)
    pt = torch.tensor(p)
    np.testing.assert_allclose(ms.msp_score(pt).numpy(), msp(p), atol=1e-12)
    np.testing.assert_allclose(ms.margin_score(pt).numpy(), margin(p), atol=1e-12)
    np.testing.assert_allclose(ms.entropy(pt).numpy(), entropy(p), atol=1e-10)
    np.testing.assert_allclose(ms.energy_score(torch.tensor(z), 1.5).numpy(), energy(z, 1.5))


# --------------------------------------------------------------------------- distances
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_matches_brute_force(metric, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(300, 16)).astype(np.float32)
    q = rng.normal(size=(70, 16)).astype(np.float32) * 1.5
    monkeypatch.setattr("tileuq.uncertainty.distances._BLOCK", 300 * 8)  # force 9 blocks
    sc = KNNScorer(k=5, metric=metric).fit(ref)
    got = sc.score(q)
    d = cdist(q.astype(np.float64), ref.astype(np.float64), metric=metric)
    want = np.sort(d, axis=1)[:, 4]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert sc.name == f"knn_{metric}"
    path = sc.save(tmp_path / "knn.npz")
    again = load_scorer(path)
    assert isinstance(again, KNNScorer) and again.k == 5
    np.testing.assert_allclose(again.score(q), got)


def test_knn_far_points_score_higher():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(500, 8))
    sc = KNNScorer(k=10).fit(ref)
    near, far = sc.score(rng.normal(size=(100, 8))), sc.score(rng.normal(size=(100, 8)) + 4)
    assert near.max() < far.min()


def test_mahalanobis_matches_direct_formula(tmp_path):
    rng = np.random.default_rng(3)
    d, n = 6, 400
    y = rng.integers(0, 3, n)
    means = rng.normal(size=(3, d)) * 3
    x = means[y] + rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    sc = MahalanobisScorer(shrinkage=0.0).fit(x, y)
    centred = x - np.stack([x[y == c].mean(0) for c in range(3)])[y]
    prec = np.linalg.inv(centred.T @ centred / n)
    q = rng.normal(size=(20, d)) * 2
    mu = np.stack([x[y == c].mean(0) for c in range(3)])
    want = np.min([np.einsum("ij,jk,ik->i", q - m, prec, q - m) for m in mu], axis=0)
    np.testing.assert_allclose(sc.score(q), want, rtol=1e-5)  # float32 features
    lw = MahalanobisScorer().fit(x, y)
    assert 0.0 <= lw.shrinkage_used <= 1.0
    lw.save(tmp_path / "m.npz")
    again = load_scorer(tmp_path / "m.npz")
    np.testing.assert_allclose(again.score(q), lw.score(q))
    with pytest.raises(CalibrationError, match="features per tile"):
        sc.score(q[:, :3])


def test_ledoit_wolf_formula():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 10))
    x -= x.mean(0)
    n, d = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / d
    delta2 = np.sum((s - mu * np.eye(d)) ** 2) / d
    beta2 = sum(np.sum((np.outer(r, r) - s) ** 2) for r in x) / d / n**2
    shrink = min(beta2, delta2) / delta2
    cov, got = ledoit_wolf(x)
    assert got == pytest.approx(shrink)
    np.testing.assert_allclose(cov, shrink * mu * np.eye(d) + (1 - shrink) * s)
    # few samples per feature: heavy shrinkage keeps the covariance invertible
    assert np.linalg.cond(ledoit_wolf(rng.normal(size=(8, 30)))[0]) < 1e6


def test_scorer_files_refuse_pickles(tmp_path):
    np.save(tmp_path / "x.npy", np.array([object()], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "bad.npz", __meta__=np.array([{"kind": "knn"}], dtype=object))
    with pytest.raises(CalibrationError, match="cannot read"):
        load_scorer(tmp_path / "bad.npz")


# --------------------------------------------------------------------------- temperature
def test_temperature_scaling_recovers_the_true_temperature():
    rng = np.random.default_rng(5)
    n, c = 20000, 4
    true_logits = rng.normal(size=(n, c)) * 2
    y = np.array([rng.choice(c, p=p) for p in softmax(true_logits)])
    t = fit_temperature(y, logits=true_logits * 3.0)  # over-confident by a factor 3
    assert t == pytest.approx(3.0, rel=0.05)
    # probabilities give the same answer
    assert fit_temperature(y, probabilities=softmax(true_logits * 3.0)) == pytest.approx(t, 1e-4)
    scaled = apply_temperature(t, logits=true_logits * 3.0)
    np.testing.assert_allclose(scaled.argmax(1), true_logits.argmax(1))
    with pytest.raises(CalibrationError, match="labels"):
        fit_temperature([0, 9], logits=np.zeros((2, 3)))
