"""Training: tile folders, splits, augmentation, the four methods, SNGP precision, demo model."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tileuq
from tileuq.errors import DataError
from tileuq.models import training as training_mod
from tileuq.models.augment import AugmentConfig, augment, to_float
from tileuq.models.data import iter_decode, read_image, scan_tile_folder
from tileuq.models.splits import data_hash, read_split, stratified_split
from tileuq.models.training import iter_train, rebuild_precision

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sample_data" / "demo_model"
SPLIT = REPO / "benchmarks" / "splits" / "colorectal_split.json"
COLOURS = {"a": (200, 80, 150), "b": (90, 60, 160), "c": (235, 215, 225)}
FAST = {"backbone": "resnet_slim", "tile_px": 32, "batch_size": 8, "threads": 2}


def _write_folder(root: Path, n: int = 6, size: int = 40, seed: int = 0) -> Path:
    """Real image files (PNG, JPEG, TIFF) with class-specific colour and texture."""
    rng = np.random.default_rng(seed)
    for c, col in COLOURS.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(rng.normal(col, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            ext = ("png", "jpg", "tif")[i % 3]
            Image.fromarray(arr).save(root / c / f"tile_{i}.{ext}")
    return root


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("train") / "tiles")


def _drain(gen):  # type: ignore[no-untyped-def]
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


# ---------------------------------------------------------------------- data
def test_stratified_split_keeps_class_proportions() -> None:
    labels = np.repeat([0, 1, 2], [30, 20, 10])
    parts = stratified_split(labels, [0.6, 0.2, 0.2], seed=3)
    counts = [np.bincount(labels[p], minlength=3).tolist() for p in parts]
    assert counts == [[18, 12, 6], [6, 4, 2], [6, 4, 2]]
    assert sorted(np.concatenate(parts).tolist()) == list(range(60))  # disjoint and complete
    again = stratified_split(labels, [0.6, 0.2, 0.2], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = stratified_split(labels, [0.6, 0.2, 0.2], seed=4)
    assert not np.array_equal(parts[0], other[0])
    # a small class still gets a tile in every non-empty part
    small = stratified_split(np.repeat([0, 1], [40, 3]), [0.8, 0.1, 0.1], seed=0)
    assert [int((np.repeat([0, 1], [40, 3])[p] == 1).sum()) for p in small] == [1, 1, 1]
    with pytest.raises(DataError, match="sum to 1"):
        stratified_split(labels, [0.5, 0.2], seed=0)


def test_scan_folder_and_bad_inputs(tiles: Path, tmp_path: Path) -> None:
    folder = scan_tile_folder(tiles)
    assert folder.classes == ["a", "b", "c"]
    assert folder.class_counts() == {"a": 6, "b": 6, "c": 6}
    assert folder.files[0] == "a/tile_0.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_tile_folder(tmp_path / "empty")
    with pytest.raises(DataError, match="not a folder"):
        scan_tile_folder(tmp_path / "missing")
    one = tmp_path / "one"
    (one / "tumor").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(one / "tumor" / "x.png")
    with pytest.raises(DataError, match="at least 2 classes"):
        scan_tile_folder(one)
    with pytest.raises(DataError, match="not in"):
        scan_tile_folder(tiles, ["a", "b"])
    with pytest.raises(DataError, match="no images for class"):
        scan_tile_folder(tiles, ["a", "b", "c", "d"])
    with pytest.raises(DataError, match=r"a/nope\.png"):
        folder.indices_of(["a/nope.png"])


def test_unreadable_image_is_named_or_skipped(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    root = _write_folder(tmp_path / "t", n=3, size=16)
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    folder = scan_tile_folder(root)
    with pytest.raises(DataError, match=r"b/broken\.png"):
        _drain(iter_decode(folder, range(len(folder)), 16))
    with pytest.raises(DataError, match=r"b/broken\.png"):
        tileuq.train(root, method="deterministic", epochs=1, **{**FAST, "tile_px": 16})
    with caplog.at_level(logging.WARNING):
        (imgs, kept, bad), _ = _drain(iter_decode(folder, range(len(folder)), 16, on_error="skip"))
    assert len(imgs) == len(folder) - 1 and len(bad) == 1
    assert "broken.png" in caplog.text
    assert folder.files.index("b/broken.png") not in kept.tolist()


def test_read_image_formats(tmp_path: Path) -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :15, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png", 20)  # centre crop 20x20 of 20x30, no resize
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert out[10, 0].tolist() == [255, 0, 0] and out[10, -1].tolist() == [255, 255, 255]
    import tifffile

    grey16 = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", grey16)
    g = read_image(tmp_path / "g.tif", 32)
    assert g.shape == (32, 32, 3) and g.max() > 200 and (g[..., 0] == g[..., 2]).all()


def test_augment_is_seeded_exact_and_mild() -> None:
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (16, 24, 24, 3), np.uint8))
    geo = AugmentConfig(crop_scale=(1.0, 1.0), hed_sigma=0, hed_bias=0, brightness=0, contrast=0)
    y = augment(x, geo, torch.Generator().manual_seed(0))
    xf = to_float(x)
    for i in range(16):  # without a crop, geometry is one of the 8 symmetries, exactly
        cands = [torch.rot90(t, k, (1, 2)) for t in (xf[i], xf[i].flip(2)) for k in range(4)]
        assert any(torch.equal(c, y[i]) for c in cands)
    a = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (16, 3, 24, 24)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    colour = AugmentConfig(flips=False, rot90=False, crop_scale=(1.0, 1.0))
    c = augment(x, colour, torch.Generator().manual_seed(2))
    diff = (c - xf).abs().mean(dim=(1, 2, 3))
    assert (diff > 0).all() and float(diff.max()) < 0.15  # jitter is there, and mild


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("method", ["deterministic", "sngp", "ensemble", "mc_dropout"])
def test_each_method_trains_saves_and_loads(tiles: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / method
    result, events = _drain(
        iter_train(
            tiles, out, method=method, epochs=2, members=2, mc_samples=3, val_fraction=0.34,
            model_kwargs={"num_inducing": 128} if method == "sngp" else None, **FAST,
        )
    )  # fmt: skip
    stages = {e.stage for e in events}
    assert {"load", "train", "epoch", "evaluate", "save", "done"} <= stages
    model = tileuq.load_model(out)
    assert model.method == method and model.classes == ["a", "b", "c"]
    assert model.tile_px == 32 and len(model.members) == (2 if method == "ensemble" else 1)
    tile = read_image(tiles / "c" / "tile_0.png", 32)[None]
    pred = model.predict(tile)
    assert pred["probabilities"].shape == (1, 3)
    assert torch.allclose(pred["probabilities"].sum(-1), torch.ones(1), atol=1e-5)
    assert set(model.score_names) == set(pred["scores"])
    ref = result.model.predict(tile)["probabilities"]
    assert torch.allclose(pred["probabilities"], ref, atol=1e-6)  # saved == trained
    metrics = json.loads((out / "metrics.json").read_text())
    per_member = 2 if method == "ensemble" else 1
    assert len(metrics["history"]) == 2 * per_member
    for rec in metrics["history"]:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "val_nll", "val_ece"):
            assert np.isfinite(rec[key])
    info = model.manifest["training"]
    split = json.loads((out / "training_split.json").read_text())["splits"]
    folder = scan_tile_folder(tiles)
    used = folder.indices_of(split["train"] + split["val"])
    assert info["data"]["hash"] == data_hash(folder, used)
    assert info["data"]["class_counts"]["val"] == {"a": 2, "b": 2, "c": 2}
    assert info["data"]["class_counts"]["train"] == {"a": 4, "b": 4, "c": 4}
    assert info["seed"] == 0 and "torch" in info["versions"]
    assert info["metrics"]["val"] == metrics["final"]["val"]


@pytest.mark.slow  # two short SNGP trainings: ~15-30 s on two shared cores
def test_sngp_precision_reset_every_epoch_and_final_pass(
    tiles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tileuq.models.sngp import SNGPHead

    resets: list[bool] = []
    head_outputs: list[torch.Tensor] = []
    mean_field_in_training: list[bool] = []
    losses: list[torch.Tensor] = []
    orig_reset, orig_forward = tileuq.TileModel.reset_precision, SNGPHead.forward
    orig_mf, orig_ce = SNGPHead.mean_field_logits, torch.nn.functional.cross_entropy

    def spy_reset(self: tileuq.TileModel) -> None:
        resets.append(self.training)
        orig_reset(self)

    def spy_forward(self: SNGPHead, features: torch.Tensor) -> torch.Tensor:
        out = orig_forward(self, features)
        if self.training:
            head_outputs.append(out)
        return out

    def spy_mf(self: SNGPHead, logits: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        mean_field_in_training.append(self.training)
        return orig_mf(self, logits, variance)

    def spy_ce(logits: torch.Tensor, target: torch.Tensor, *a, **k):  # type: ignore[no-untyped-def]
        losses.append(logits)
        return orig_ce(logits, target, *a, **k)

    monkeypatch.setattr(tileuq.TileModel, "reset_precision", spy_reset)
    monkeypatch.setattr(SNGPHead, "forward", spy_forward)
    monkeypatch.setattr(SNGPHead, "mean_field_logits", spy_mf)
    monkeypatch.setattr(training_mod.F, "cross_entropy", spy_ce)
    result, _ = _drain(
        iter_train(
            tiles, None, method="sngp", epochs=3, patience=None, val_fraction=0.34,
            model_kwargs={"num_inducing": 128}, **FAST,
        )
    )  # fmt: skip
    model = result.model
    head = model.sngp_heads()[0]
    # one reset per epoch, in training mode, then one for the final pass (eval backbone)
    assert resets == [True, True, True, False]
    # after training the precision holds exactly one pass over the 12 training tiles ...
    assert int(head.seen) == len(result.train_files) == 12
    assert model.hyperparameters["num_data"] == 12  # a forgotten reset would have raised
    # ... equal to ridge*I + sum phi phi^T over them under the final weights (no augmentation)
    imgs = np.stack([read_image(tiles / f, 32) for f in result.train_files])
    with torch.no_grad():
        feats = model.members[0].forward_features(model.normalize(imgs))
        phi = head.random_features_of(feats).double()
    assert torch.allclose(head.precision_accum, phi.T @ phi, atol=1e-6)
    # the loss was computed on the head's raw logits (the very tensors), never on mean-field
    assert len(losses) == 3 * 2  # 3 epochs x 2 batches
    assert all(any(lg is h for h in head_outputs) for lg in losses)
    assert mean_field_in_training and not any(mean_field_in_training)
    # without the final pass, the precision is the best epoch's, also one epoch's worth
    kept, _ = _drain(
        iter_train(
            tiles, None, method="sngp", epochs=1, val_fraction=0.34,
            sngp_final_pass=False, model_kwargs={"num_inducing": 128}, **FAST,
        )
    )  # fmt: skip
    assert int(kept.model.sngp_heads()[0].seen) == 12
    assert "kept from the best epoch" in kept.model.training_info["recipe"]["sngp_precision"]


def test_same_seed_same_weights_and_explicit_split(tiles: Path) -> None:
    folder = scan_tile_folder(tiles)
    split = {
        "splits": {
            "train": [f for f in folder.files if not f.endswith(("_0.png", "_5.tif"))],
            "val": [f for f in folder.files if f.endswith(("_0.png", "_5.tif"))],
        }
    }
    kw = dict(method="deterministic", epochs=1, split=split, val_subset="val", **FAST)
    a = tileuq.train(tiles, **kw)
    b = tileuq.train(tiles, **kw)
    c = tileuq.train(tiles, **{**kw, "seed": 1})
    assert a.model_hash == b.model_hash
    assert a.model_hash != c.model_hash
    assert a.training_info["data"]["n_val"] == 6 and a.training_info["data"]["n_train"] == 12
    with pytest.raises(DataError, match="no part named 'test'"):
        tileuq.train(tiles, **{**kw, "val_subset": "test"})
    bad = {"splits": {"train": [*split["splits"]["train"], "a/ghost.png"]}}
    with pytest.raises(DataError, match=r"a/ghost\.png"):
        tileuq.train(tiles, **{**kw, "split": bad, "val_subset": None})
    assert read_split(split)["splits"]["val"] == split["splits"]["val"]


def test_cli_train(tiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tileuq.cli import main

    out = tmp_path / "m"
    argv = ["train", "--tiles", str(tiles), "--out", str(out), "--method", "mc_dropout"]
    argv += ["--backbone", "resnet_slim", "--tile-px", "32", "--mpp", "2.0", "--epochs", "1"]
    argv += ["--batch-size", "8", "--mc-samples", "4", "--no-progress", "--threads", "2"]
    assert main([*argv, "--set", "drop_rate=0.3"]) == 0
    model = tileuq.load_model(out)
    assert model.mpp == 2.0 and model.hyperparameters["drop_rate"] == 0.3
    assert "validation accuracy" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["train", "--tiles", str(tmp_path / "empty"), "--out", str(out)]) == 1
    assert "no class sub-folders" in capsys.readouterr().err


# ---------------------------------------------------------------------- the demo model
def test_demo_model_loads_with_classes_and_colours(sample_slide_path: Path) -> None:
    model = tileuq.load_model(DEMO)
    assert model.method == "sngp" and model.backbone == "resnet_slim"
    assert model.classes == ["AC", "H", "S", "T", "V"]
    assert len(set(model.colors)) == 5 and all(c.startswith("#") for c in model.colors)
    assert model.mpp is not None and "estimated" in model.training_info["mpp_note"]
    assert sum(f.stat().st_size for f in DEMO.iterdir()) < 8e6
    # out of domain (skin), but it must give valid outputs on a real slide tile
    from tileuq.slide import open_slide

    with open_slide(sample_slide_path) as slide:
        region = slide.read_region((800, 1200), 0, (448, 448))
    tile = np.array(Image.fromarray(region).resize((model.tile_px,) * 2))[None]
    pred = model.predict(tile)
    assert torch.isfinite(pred["probabilities"]).all()
    assert 0.0 < float(pred["variance"][0]) <= 1.5


@pytest.mark.shared
def test_demo_model_accuracy_on_test_split(shared_data: Path) -> None:
    root = shared_data / "tiles" / "colorectal_polyp_flagy_5class"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    model = tileuq.load_model(DEMO)
    split = read_split(SPLIT)
    folder = scan_tile_folder(root, model.classes)
    assert split["data_hash"] == data_hash(folder)
    idx = folder.indices_of(split["splits"]["test"])
    imgs = np.stack([read_image(folder.path(int(i)), model.tile_px) for i in idx])
    probs = torch.cat(
        [model.predict(imgs[i : i + 64])["probabilities"] for i in range(0, len(imgs), 64)]
    )
    acc = float((probs.argmax(-1).numpy() == folder.labels[idx]).mean())
    assert acc >= 0.5, f"demo test accuracy {acc:.3f} (chance 0.2)"
    nll = float(-torch.log(probs[torch.arange(len(idx)), folder.labels[idx]]).mean())
    assert nll < math.log(5), f"demo test NLL {nll:.3f} is no better than uniform"


def test_rebuild_precision_counts_tiles() -> None:
    model = tileuq.build_model("sngp", "resnet_slim", num_classes=2, tile_px=16, num_inducing=64)
    imgs = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), np.uint8)
    assert rebuild_precision(model, imgs, torch.device("cpu"), 2) == 5
    assert not model.training
    head = model.sngp_heads()[0]
    with torch.no_grad():
        phi = head.random_features_of(model.members[0].forward_features(model.normalize(imgs)))
    assert torch.allclose(head.precision_accum, (phi.T @ phi).double(), atol=1e-5)
