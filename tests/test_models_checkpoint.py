"""Checkpoints: round trips, untrusted files, mismatches."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import tileuq
from tileuq.models import METHODS

TILES = np.random.default_rng(1).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
HYPER = {
    "sngp": {"num_inducing": 32},
    "ensemble": {"num_members": 2},
    "mc_dropout": {"mc_samples": 3},
    "deterministic": {},
}


def _model(method: str = "deterministic", **kw: object) -> tileuq.TileModel:
    args = {**HYPER[method], **kw}
    return tileuq.build_model(method, "resnet_slim", classes=["a", "b", "c"], tile_px=48, **args)


def _trained_sngp() -> tileuq.TileModel:
    model = _model("sngp")
    model.train()
    model.reset_precision()
    with torch.no_grad():
        model(TILES)
    model.eval()
    model.finalize()
    return model


def _assert_same_outputs(a: tileuq.TileModel, b: tileuq.TileModel) -> None:
    oa, ob = a.predict(TILES, return_features=True), b.predict(TILES, return_features=True)
    for key in ("logits", "probabilities", "predictions", "confidence", "features"):
        assert torch.equal(oa[key], ob[key]), key
    for key in oa["scores"]:
        assert torch.equal(oa["scores"][key], ob["scores"][key]), key


@pytest.mark.parametrize("method", METHODS)
def test_folder_round_trip_gives_identical_outputs(method: str, tmp_path: Path) -> None:
    model = _trained_sngp() if method == "sngp" else _model(method)
    model.training_info = {"data_hash": "abc123", "epochs": 3}
    model.calibration = {"msp": 0.2}
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]
    loaded = tileuq.load_model(tmp_path / "m")
    assert not loaded.training
    _assert_same_outputs(model, loaded)
    assert loaded.model_hash == model.model_hash
    assert loaded.model_id == model.model_id
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    assert manifest["method"] == method and manifest["classes"] == ["a", "b", "c"]
    assert manifest["training"] == {"data_hash": "abc123", "epochs": 3}
    assert loaded.calibration == {"msp": 0.2}
    assert manifest["weights"]["sha256"] == model.model_hash
    if method == "sngp":  # the precision (float64) travels with the weights
        h0, h1 = model.sngp_heads()[0], loaded.sngp_heads()[0]
        assert h1.precision_accum.dtype == torch.float64
        assert torch.equal(h0.precision_accum, h1.precision_accum)


def test_other_containers(tmp_path: Path) -> None:
    model = _trained_sngp()
    model.save(tmp_path / "m.zip")
    _assert_same_outputs(model, tileuq.load_model(tmp_path / "m.zip"))
    model.save(tmp_path / "dir")
    # a lone safetensors file carries the manifest in its metadata
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes((tmp_path / "dir" / "model.safetensors").read_bytes())
    _assert_same_outputs(model, tileuq.load_model(lone))
    _assert_same_outputs(model, tileuq.load_model(tmp_path / "dir" / "model.json"))
    # a weights-only .pt holding {"manifest", "state_dict"}
    torch.save({"manifest": model.manifest, "state_dict": model.state_dict()}, tmp_path / "m.pt")
    _assert_same_outputs(model, tileuq.load_model(tmp_path / "m.pt"))


def _make_marker(path: str) -> None:
    Path(path).write_text("code ran")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_make_marker, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["torch", "plain_pickle"])
def test_pickle_that_would_run_code_is_refused(kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pt"
    payload = {"conv1.weight": torch.zeros(1), "x": _Evil(marker)}
    if kind == "torch":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    (tmp_path / "model.json").write_text(json.dumps(_model().manifest))
    with pytest.raises(tileuq.ModelError, match="refused to load") as err:
        tileuq.load_model(evil)
    assert "Nothing was executed" in str(err.value)
    assert not marker.exists()
    # the crafted file is a real threat: an unsafe load would have run it
    if kind == "torch":
        torch.load(evil, weights_only=False)
    else:
        pickle.loads(evil.read_bytes())
    assert marker.read_text() == "code ran"


def test_class_count_mismatch_names_the_layer(tmp_path: Path) -> None:
    _model().save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    manifest.update(num_classes=4, classes=["a", "b", "c", "d"], colors=None)
    (tmp_path / "m" / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(tileuq.ModelError, match=r"core\.net\.fc\.weight.*class-count mismatch"):
        tileuq.load_model(tmp_path / "m")


def test_architecture_mismatch_names_the_layer(tmp_path: Path) -> None:
    _model().save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    manifest["backbone"] = "resnet18"
    (tmp_path / "m" / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(tileuq.ModelError, match=r"layer 'core\.net\.conv1\.weight' has shape"):
        tileuq.load_model(tmp_path / "m")


def test_modified_weights_fail_the_hash_check(tmp_path: Path) -> None:
    model = _model()
    model.save(tmp_path / "m")
    other = _model(seed=5)
    other.save(tmp_path / "o")
    (tmp_path / "m" / "model.safetensors").write_bytes(
        (tmp_path / "o" / "model.safetensors").read_bytes()
    )
    with pytest.raises(tileuq.ModelError, match="sha256"):
        tileuq.load_model(tmp_path / "m")


def test_manifest_validation(tmp_path: Path) -> None:
    _model().save(tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    good = json.loads(path.read_text())
    for change, match in [
        ({"method": "magic"}, "unknown method"),
        ({"hyperparameters": {**good["hyperparameters"], "evil": 1}}, "unknown hyperparameter"),
        ({"format": "other"}, "not a tileuq model"),
        ({"tile_px": -3}, "tile_px"),
    ]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(tileuq.ModelError, match=match):
            tileuq.load_model(tmp_path / "m")
    path.write_text("{not json")
    with pytest.raises(tileuq.ModelError, match="not valid JSON"):
        tileuq.load_model(tmp_path / "m")


@pytest.mark.parametrize(
    "name", ["../model.json", "/abs/model.json", "a/b/model.json", "x\\model.json", "evil.py"]
)
def test_archive_with_unsafe_member_names_is_refused(name: str, tmp_path: Path) -> None:
    _model().save(tmp_path / "good.zip")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(tmp_path / "good.zip") as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr(name, b"{}")
    with pytest.raises(tileuq.ModelError, match="archive"):
        tileuq.load_model(bad)
    assert not (tmp_path.parent / "model.json").exists()


def test_unreadable_sources(tmp_path: Path) -> None:
    with pytest.raises(tileuq.ModelError, match="no such file"):
        tileuq.load_model(tmp_path / "missing")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(tileuq.ModelError, match="safetensors"):
        tileuq.load_model(tmp_path / "junk.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(tileuq.ModelError, match="not a model folder"):
        tileuq.load_model(tmp_path / "empty")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(tileuq.ModelError, match="unsupported file type"):
        tileuq.load_model(tmp_path / "m.onnx")
    torch.save({"w": torch.zeros(2)}, tmp_path / "empty" / "w.pt")
    with pytest.raises(tileuq.ModelError, match=r"needs model\.json"):
        tileuq.load_model(tmp_path / "empty" / "w.pt")


def test_demo_name_loads_the_bundled_model() -> None:
    from tileuq.bundled import demo_model_path

    model = tileuq.load_model("demo")
    assert demo_model_path() is not None
    assert model.classes == ["AC", "H", "S", "T", "V"] and model.method == "sngp"
