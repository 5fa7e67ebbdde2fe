"""Feature scorers carried by a model: predict, identity, save/load (folder, zip), tampering."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import tileuq
from tileuq.errors import ModelError
from tileuq.models.feature_scorers import FILE, check_scorer, write_feature_scorers
from tileuq.uncertainty import KNNScorer, MahalanobisScorer

RNG = np.random.default_rng(7)
TILES = RNG.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
LABELS = np.arange(12) % 3
HYPER = {"sngp": {"num_inducing": 32}, "ensemble": {"num_members": 2}, "deterministic": {}}


def _model(method: str = "sngp") -> tileuq.TileModel:
    return tileuq.build_model(
        method, "resnet_slim", classes=["a", "b", "c"], tile_px=32, **HYPER[method]
    )


def _with_scorers(method: str = "sngp") -> tileuq.TileModel:
    model = _model(method)
    feats = model.predict(TILES, return_features=True)["features"].numpy()
    model.feature_scorers["mahalanobis"] = MahalanobisScorer().fit(feats, LABELS)
    model.feature_scorers["knn_cosine"] = KNNScorer(k=3, metric="cosine").fit(feats)
    model.feature_scorer_info["mahalanobis"] = {"data_hash": "ab" * 32, "n_tiles": 12}
    return model


@pytest.mark.parametrize("method", ["sngp", "ensemble"])
def test_predict_adds_the_scores_of_the_same_features(method: str) -> None:
    model = _with_scorers(method)
    assert model.score_names[-2:] == ("mahalanobis", "knn_cosine")
    out = model.predict(TILES, return_features=True)
    feats = out["features"].numpy()
    # ensembles: the members' features concatenated
    assert feats.shape[1] == sum(m.num_features for m in model.members)
    for name, scorer in model.feature_scorers.items():
        got = out["scores"][name]
        assert got.dtype == torch.float32 and got.shape == (12,)
        np.testing.assert_allclose(got.numpy(), scorer.score(feats), rtol=1e-6)
    assert set(out["scores"]) == set(model.score_names)
    assert "features" not in model.predict(TILES)  # only when asked


def test_a_tiles_score_does_not_depend_on_its_batch() -> None:
    model = _with_scorers("sngp")
    whole = model.predict(TILES)["scores"]
    alone = [model.predict(TILES[i : i + 1])["scores"] for i in (0, 5, 11)]
    other = model.predict(TILES[5:9])["scores"]
    for name in ("mahalanobis", "knn_cosine"):
        for j, i in enumerate((0, 5, 11)):
            np.testing.assert_allclose(alone[j][name][0], whole[name][i], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(other[name], whole[name][5:9], rtol=1e-4, atol=1e-6)


def test_model_hash_covers_the_scorers() -> None:
    model = _model()
    plain = model.model_hash
    assert plain == model.weights_hash
    model = _with_scorers()
    assert model.weights_hash == plain and model.model_hash != plain
    assert model.model_id.endswith(model.model_hash[:12])
    before = model.model_hash
    feats = model.predict(TILES, return_features=True)["features"].numpy()
    model.feature_scorers["knn_cosine"] = KNNScorer(k=4, metric="cosine").fit(feats)
    assert model.model_hash != before  # refitting changes the identity
    m = model.manifest
    assert m["model_hash"] == model.model_hash and m["weights"]["sha256"] == plain
    assert list(m["feature_scorers"]["scorers"]) == ["mahalanobis", "knn_cosine"]
    assert m["feature_scorers"]["scorers"]["mahalanobis"]["reference"]["n_tiles"] == 12


@pytest.mark.parametrize("target", ["folder", "zip"])
def test_save_load_round_trip(tmp_path: Path, target: str) -> None:
    model = _with_scorers("ensemble")
    dest = tmp_path / ("m.zip" if target == "zip" else "m")
    model.save(dest)
    if target == "folder":
        names = sorted(p.name for p in dest.iterdir())
        assert names == ["model.json", "model.safetensors", FILE]
        entry = json.loads((dest / "model.json").read_text())["feature_scorers"]
        sc = entry["scorers"]["mahalanobis"]
        assert sc["kind"] == "mahalanobis" and sc["feature_dim"] == 2 * 192
        assert sc["params"]["shrinkage"] == "ledoit-wolf"
        assert sc["reference"] == {"data_hash": "ab" * 32, "n_tiles": 12}
    else:
        with zipfile.ZipFile(dest) as zf:
            assert sorted(zf.namelist()) == ["model.json", "model.safetensors", FILE]
    loaded = tileuq.load_model(dest)
    assert loaded.score_names == model.score_names
    assert loaded.model_hash == model.model_hash
    a, b = model.predict(TILES), loaded.predict(TILES)
    for name in model.score_names:
        assert torch.equal(a["scores"][name], b["scores"][name]), name
    assert loaded.feature_scorer_info["mahalanobis"]["data_hash"] == "ab" * 32


def test_tampered_or_missing_scorer_file_is_refused(tmp_path: Path) -> None:
    model = _with_scorers()
    model.save(tmp_path / "m")
    f = tmp_path / "m" / FILE
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # one float changed
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"scorers\.safetensors does not match model\.json"):
        tileuq.load_model(tmp_path / "m")
    f.unlink()
    with pytest.raises(ModelError, match=r"scorers\.safetensors is missing"):
        tileuq.load_model(tmp_path / "m")
    # zip with a swapped scorers member
    model.save(tmp_path / "a.zip")
    other = _with_scorers()
    other.feature_scorers["knn_cosine"].k = 2
    other.save(tmp_path / "b.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as za, zipfile.ZipFile(tmp_path / "b.zip") as zb:
        members = {n: za.read(n) for n in za.namelist()}
        members[FILE] = zb.read(FILE)
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as zc:
        for n, d in members.items():
            zc.writestr(n, d)
    with pytest.raises(ModelError, match=r"does not match model\.json"):
        tileuq.load_model(tmp_path / "c.zip")


def test_a_lone_weights_file_loads_without_its_scorers(tmp_path: Path) -> None:
    model = _with_scorers()
    model.save(tmp_path / "m")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.safetensors").write_bytes(
        (tmp_path / "m" / "model.safetensors").read_bytes()
    )
    with pytest.warns(UserWarning, match="loaded without the feature scorers"):
        lone = tileuq.load_model(tmp_path / "w" / "model.safetensors")
    assert "mahalanobis" not in lone.score_names and lone.model_hash == model.weights_hash
    beside = tileuq.load_model(tmp_path / "m" / "model.safetensors")
    assert beside.model_hash == model.model_hash


def test_scorers_must_fit_the_model() -> None:
    model = _model()
    feats = RNG.normal(size=(30, 7)).astype(np.float32)
    with pytest.raises(ModelError, match="fitted on 7 features per tile"):
        check_scorer(model, "mahalanobis", MahalanobisScorer().fit(feats, np.arange(30) % 3))
    with pytest.raises(ModelError, match="own score name"):
        check_scorer(model, "knn_cosine", KNNScorer(metric="euclidean").fit(feats))


def test_write_feature_scorers_updates_a_folder_in_place(tmp_path: Path) -> None:
    model = _model()
    model.training_info = {"note": "kept"}
    model.save(tmp_path / "m")
    old = (tmp_path / "m" / "model.json").read_text()
    weights = (tmp_path / "m" / "model.safetensors").read_bytes()
    fitted = _with_scorers()
    model.feature_scorers = dict(fitted.feature_scorers)
    with torch.no_grad():
        next(fitted.parameters()).add_(1.0)
    with pytest.raises(ModelError, match="holds weights"):
        write_feature_scorers(tmp_path / "m", fitted)  # other weights
    write_feature_scorers(tmp_path / "m", model)
    assert (tmp_path / "m" / "model.json.bak").read_text() == old
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == weights  # untouched
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    assert manifest["training"] == {"note": "kept"}
    assert manifest["model_hash"] == model.model_hash
    assert manifest["score_names"][-2:] == ["mahalanobis", "knn_cosine"]
    again = tileuq.load_model(tmp_path / "m")
    assert again.model_hash == model.model_hash
    # a second write keeps the previous scorers as .bak
    del model.feature_scorers["knn_cosine"]
    write_feature_scorers(tmp_path / "m", model)
    assert (tmp_path / "m" / (FILE + ".bak")).is_file()
    assert tileuq.load_model(tmp_path / "m").score_names[-1] == "mahalanobis"
