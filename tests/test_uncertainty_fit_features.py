"""Fitting model-carried feature scorers; the engine, layers, calibration and CLI use them."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

import tileuq  # noqa: E402
from engine_helpers import FAST, slim_model  # noqa: E402
from tileuq.cli import main  # noqa: E402
from tileuq.errors import CalibrationError, ResultsError  # noqa: E402
from tileuq.uncertainty import (  # noqa: E402
    Calibration,
    calibrate,
    default_scores,
    fit_feature_scorers,
)

CLASSES = ["tumour", "stroma", "other"]  # engine_helpers' classes


def _tiles(root, n=12, seed=0, size=72):
    rng = np.random.default_rng(seed)
    for k, c in enumerate(CLASSES):
        (root / c).mkdir(parents=True)
        for i in range(n):
            base = np.array([200, 120, 160]) * (0.6 + 0.2 * k)
            img = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    return _tiles(tmp_path_factory.mktemp("train"), seed=0)


@pytest.fixture(scope="module")
def cal_dir(tmp_path_factory):
    return _tiles(tmp_path_factory.mktemp("cal"), n=20, seed=1)


@pytest.fixture(scope="module")
def fitted(train_dir):
    model = slim_model("sngp")
    return fit_feature_scorers(model, train_dir, ("mahalanobis", "knn_euclidean"), k=5)


def test_fit_records_provenance_and_scores_like_the_scorer(fitted, train_dir):
    assert fitted.score_names[-2:] == ("mahalanobis", "knn_euclidean")
    ref = fitted.feature_scorer_info["mahalanobis"]
    assert ref["n_tiles"] == 36 and ref["class_counts"] == dict.fromkeys(CLASSES, 12)
    assert ref["source"] == str(train_dir) and len(ref["data_hash"]) == 64
    assert ref["matches_training_data"] is None  # an untrained model records no data hash
    imgs = np.stack([np.asarray(Image.open(p).resize((64, 64))) for p in
                     sorted((train_dir / "tumour").glob("*.png"))[:4]])  # fmt: skip
    out = fitted.predict(imgs, return_features=True)
    want = fitted.feature_scorers["mahalanobis"].score(out["features"].numpy())
    np.testing.assert_allclose(out["scores"]["mahalanobis"].numpy(), want, rtol=1e-6)
    # unfamiliar input scores far higher than the reference tiles
    blank = np.full((2, 64, 64, 3), 255, np.uint8)
    assert fitted.predict(blank)["scores"]["mahalanobis"].min() > 5 * want.max()


def test_split_file_limits_the_reference_tiles(train_dir, tmp_path):
    files = [f"{c}/{i:03d}.png" for c in CLASSES for i in range(5)]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"splits": {"train": files, "test": ["tumour/011.png"]}}))
    model = fit_feature_scorers(slim_model("sngp"), train_dir, split_file=split)
    ref = model.feature_scorer_info["mahalanobis"]
    assert ref["n_tiles"] == 15 and ref["split"] == "train"
    with pytest.raises(CalibrationError, match="no part 'valid'"):
        fit_feature_scorers(slim_model("sngp"), train_dir, split_file=split, split="valid")
    with pytest.raises(CalibrationError, match="unknown scorer 'knn'"):
        fit_feature_scorers(slim_model("sngp"), train_dir, ("knn",))


def test_refitting_drops_a_calibration_that_uses_the_score(fitted, cal_dir):
    model = slim_model("sngp")
    model.feature_scorers = dict(fitted.feature_scorers)
    images = np.stack([np.asarray(Image.open(p).resize((64, 64)))
                       for p in sorted(cal_dir.rglob("*.png"))])  # fmt: skip
    labels = np.repeat(np.arange(3), 20)
    cal = calibrate(model, (images, labels), score="entropy", target_coverage=0.8)
    model.calibration = cal.to_manifest()
    fit_feature_scorers(model, (images, labels), ("knn_cosine",), k=3)  # not used by the rule
    assert model.calibration["model_hash"] == model.model_hash  # kept, re-stamped
    cal2 = calibrate(model, (images, labels), score=["entropy", "knn_cosine"],
                     target_coverage=0.8)  # fmt: skip
    model.calibration = cal2.to_manifest()
    with pytest.warns(UserWarning, match="was dropped"):
        fit_feature_scorers(model, (images, labels), ("knn_cosine",), k=4)
    assert model.calibration is None


def test_default_rule_gates_on_the_carried_distance(fitted, cal_dir):
    assert default_scores(fitted.score_names) == ["entropy", "mahalanobis"]
    assert default_scores(slim_model("sngp").score_names) == ["entropy", "variance"]
    cal = calibrate(fitted, cal_dir, target_coverage=0.8)
    assert [r.score for r in cal.rules] == ["entropy", "mahalanobis"]
    assert cal.reason["mahalanobis"] == "unfamiliar" and cal.model_hash == fitted.model_hash


def test_engine_layers_and_calibration_use_the_score(fitted, cal_dir, sample_slide_path, tmp_path):
    from tileuq.layers import from_results

    res = tileuq.run_slide(sample_slide_path, fitted, out=tmp_path / "run", **FAST)
    table = res.table
    assert {"mahalanobis", "knn_euclidean"} <= set(table.columns)
    assert res.meta["model"]["hash"] == fitted.model_hash
    assert "mahalanobis" in res.score_names
    # the engine's column is the model's score for that tile (batch-independent)
    with tileuq.open_slide(sample_slide_path) as slide:
        grid = tileuq.tile_grid(slide, tile_px=64, mpp=2.0)
        one = fitted.predict(grid.read_batch(slide, [0, 3]))["scores"]["mahalanobis"]
    np.testing.assert_allclose(table["mahalanobis"].to_numpy()[[0, 3]], one, rtol=1e-4)
    cal = calibrate(fitted, cal_dir, score=["entropy", "mahalanobis"], target_coverage=0.8)
    applied = cal.apply(res)
    gate = cal.rules[1].threshold
    far = table["mahalanobis"].to_numpy() > gate
    assert (applied.table["reason"].to_numpy()[far] == "unfamiliar").all()
    layers = from_results(applied, cal)
    names = [meta.get("name") for _, meta, _ in layers]
    assert "uncertainty: mahalanobis" in names
    heat = next(d for d, m, _ in layers if m.get("name") == "uncertainty: mahalanobis")
    assert np.nanmax(heat) == pytest.approx(table["mahalanobis"].max(), rel=1e-5)
    # results of the model without scorers are not silently resumed with the new one
    tileuq.run_slide(sample_slide_path, slim_model("sngp"), out=tmp_path / "old", **FAST)
    with pytest.raises(ResultsError):
        tileuq.run_slide(sample_slide_path, fitted, out=tmp_path / "old", **FAST)


@pytest.mark.slow
def test_cli_fit_scorers_then_calibrate(train_dir, cal_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    slim_model("sngp").save(folder)
    before = (folder / "model.json").read_text()
    args = ["fit-scorers", "--model", str(folder), "--tiles", str(train_dir), "-q"]
    assert main([*args, "--kind", "mahalanobis", "--kind", "knn_cosine", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "fitted mahalanobis, knn_cosine on 36 tiles" in out
    assert (folder / "model.json.bak").read_text() == before
    model = tileuq.load_model(folder)
    assert model.score_names[-2:] == ("mahalanobis", "knn_cosine")
    assert model.feature_scorers["knn_cosine"].k == 3
    code = main(["calibrate", "--model", str(folder), "--tiles", str(cal_dir),
                 "--target-coverage", "0.8", "-q"])  # fmt: skip
    assert code == 0
    cal = Calibration.from_dict(tileuq.load_model(folder).calibration)
    assert [r.score for r in cal.rules] == ["entropy", "mahalanobis"]
    # refitting mahalanobis drops that calibration (it would no longer hold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(args) == 0
    assert "carries no calibration now" in capsys.readouterr().out
    assert tileuq.load_model(folder).calibration is None
    assert (folder / "scorers.safetensors.bak").is_file()
    # a lone file needs --out
    assert main(["fit-scorers", "--model", str(folder / "model.safetensors"),
                 "--tiles", str(train_dir), "-q"]) == 1  # fmt: skip
    assert "--out" in capsys.readouterr().err
