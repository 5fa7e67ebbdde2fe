"""Calibration and evaluation with a real (small, untrained) TileModel, and their CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from tileuq.cli import main  # noqa: E402
from tileuq.errors import CalibrationError  # noqa: E402
from tileuq.models import build_model, load_model  # noqa: E402
from tileuq.uncertainty import (  # noqa: E402
    Calibration,
    KNNScorer,
    calibrate,
    calibrate_scores,
    iter_calibrate,
)

CLASSES = ["tumor", "stroma", "normal"]


@pytest.fixture(scope="module")
def model():
    return build_model("sngp", "resnet_slim", classes=CLASSES, tile_px=32)


@pytest.fixture(scope="module")
def tiles_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    for k, c in enumerate(CLASSES):
        (root / c).mkdir()
        for i in range(25):
            base = np.array([200, 120, 160]) * (0.6 + 0.2 * k)
            img = np.clip(base + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i:03d}.png")  # 40 px: resized to 32
    return root


@pytest.fixture(scope="module")
def ood_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    rng = np.random.default_rng(1)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.jpg")
    return root


def test_calibrate_from_folder_matches_calibrate_scores(model, tiles_dir):
    progress = []
    gen = iter_calibrate(model, tiles_dir, target_coverage=0.8, batch_size=128)  # one batch
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            cal = stop.value
            break
    assert progress[-1].stage == "calibrate" and progress[-1].fraction == 1.0
    assert [r.score for r in cal.rules] == ["entropy", "variance"]  # SNGP default
    assert cal.reason == {"entropy": "ambiguous", "variance": "unfamiliar"}
    assert cal.n == 75 and cal.model_hash == model.model_hash and cal.classes == CLASSES
    assert cal.info["class_counts"] == {c: 25 for c in CLASSES}
    # the same numbers from model.predict + calibrate_scores
    imgs, labels = [], []
    for k, c in enumerate(CLASSES):
        for p in sorted((tiles_dir / c).glob("*.png")):
            with Image.open(p) as im:
                imgs.append(np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR)))
            labels.append(k)
    out = model.predict(np.stack(imgs))
    ok = out["predictions"].numpy() == np.array(labels)
    direct = calibrate_scores(
        {k: out["scores"][k].numpy() for k in ("entropy", "variance")}, ok, target_coverage=0.8
    )
    # SNGP variance differs by ~1e-5 between identical predict calls (threaded float sums)
    assert cal.thresholds == pytest.approx(direct.thresholds, rel=1e-3)
    assert cal.coverage == pytest.approx(direct.coverage, abs=2 / 75)


def test_calibrate_from_arrays_and_feature_scorer(model):
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8)
    labels = rng.choice(CLASSES, 60)
    feats = model.predict(imgs[:30], return_features=True)["features"].numpy()
    knn = KNNScorer(k=3).fit(feats)
    cal = calibrate(
        model,
        (imgs, labels),
        score=["msp", "knn_euclidean"],
        scorers={"knn_euclidean": knn},
        target_coverage=0.7,
        temperature_scaling=True,
    )
    assert cal.reason == {"msp": "ambiguous", "knn_euclidean": "unfamiliar"}
    assert cal.temperature is not None and cal.temperature > 0
    with pytest.raises(CalibrationError, match=r"\['necrosis'\] are not classes"):
        calibrate(model, (imgs, np.append(labels[:-1], "necrosis")), target_coverage=0.7)
    with pytest.raises(CalibrationError, match="not available"):
        calibrate(model, (imgs, labels), score="mutual_information", target_coverage=0.7)


def test_folder_errors_name_the_problem(model, tiles_dir, tmp_path):
    bad = tmp_path / "tiles"
    for c in ("tumor", "lymphocytes"):
        (bad / c).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bad / c / "a.png")
    with pytest.raises(CalibrationError, match=r"\['lymphocytes'\] are not classes of the model"):
        calibrate(model, bad, target_coverage=0.8)
    (bad / "lymphocytes" / "a.png").unlink()
    (bad / "lymphocytes").rmdir()
    (bad / "tumor" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match=r"unreadable.*broken\.png"):
        calibrate(model, bad, target_coverage=0.8)
    with pytest.raises(CalibrationError, match="too small: 1 tile"):
        calibrate(model, bad, target_coverage=0.8, on_error="skip")


@pytest.mark.slow
def test_cli_calibrate_writes_model_json_with_backup(model, tiles_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    model.save(folder)
    before = (folder / "model.json").read_text()
    code = main(
        [
            "calibrate",
            "--model",
            str(folder),
            "--tiles",
            str(tiles_dir),
            "--target-coverage",
            "0.8",
            "--score",
            "entropy",
            "-q",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Accept when entropy <=" in out and "model.json.bak" in out
    assert (folder / "model.json.bak").read_text() == before
    reloaded = load_model(folder)
    cal = Calibration.from_dict(reloaded.calibration)
    assert cal.score == "entropy" and cal.model_hash == reloaded.model_hash
    assert Calibration.from_manifest(reloaded.manifest) == cal
    # an untrained model cannot reach 5 % risk: error, exit code 1, manifest untouched
    manifest = (folder / "model.json").read_text()
    code = main(
        [
            "calibrate",
            "--model",
            str(folder),
            "--tiles",
            str(tiles_dir),
            "--target-risk",
            "0.05",
            "-q",
        ]
    )
    assert code == 1
    assert "calibration" in capsys.readouterr().err
    assert (folder / "model.json").read_text() == manifest


@pytest.mark.slow
def test_cli_evaluate(model, tiles_dir, ood_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    model.save(folder)
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--model",
            str(folder),
            "--tiles",
            str(tiles_dir),
            "--ood",
            str(ood_dir),
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0]
    for col in ("method", "Acc", "AUROC", "NLL", "Brier", "ECE"):
        assert col in header
    assert "OOD AUROC " + ood_dir.name in text and "variance" in text
    data = json.loads((out / "evaluation.json").read_text())
    res = data["models"][0]
    assert res["n"] == 75 and 0 <= res["accuracy"] <= 1
    assert set(res["scores"]) == set(model.score_names)
    assert 0 <= res["scores"]["variance"]["ood"][ood_dir.name]["auroc"] <= 1
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 2 + len(model.score_names)
    assert all(p.stat().st_size > 1000 for p in out.glob("*.png"))


@pytest.mark.slow
def test_apply_and_shift_test_on_a_real_slide_run(sample_slide_path):
    from tileuq import run_slide
    from tileuq.engine.flagging import flagged_fraction
    from tileuq.engine.results import TileResults
    from tileuq.uncertainty import shift_test

    m = build_model("sngp", "resnet_slim", classes=CLASSES, tile_px=64)
    res = run_slide(sample_slide_path, m, mpp=2.0, batch_size=64, device="cpu", workers=1)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (100, 64, 64, 3), dtype=np.uint8)
    cal = calibrate(m, (imgs, rng.integers(0, 3, 100)), target_coverage=0.8)
    out = cal.apply(res)
    assert isinstance(out, TileResults) and len(out.table) == len(res.table) > 10
    assert set(out.table["reason"]) <= {"", "ambiguous", "unfamiliar"}
    assert (out.table["rejected"] == (out.table["reason"] != "")).all()
    assert out.meta["calibration"]["model_hash"] == m.model_hash == res.meta["model"]["hash"]
    # the engine's run summary uses the calibration the model carries
    meta = {**res.meta, "model": {**res.meta["model"], "calibration": cal.to_manifest()}}
    assert flagged_fraction(TileResults(res.table, meta)) == out.table["rejected"].mean()
    # the shift alarm: quiet against a calibration on the slide's own tiles, loud when the
    # slide's scores all move to the top of the calibration range
    own = calibrate_scores(res.table[["entropy", "variance"]], target_coverage=0.7)
    report = shift_test(res, own)
    assert not report.shifted and report.n_tiles == len(res.table)
    moved = res.table.assign(entropy=res.table["entropy"].max() + 1.0)
    assert shift_test(moved, own).shifted
