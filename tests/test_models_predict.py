"""The predict contract shared by all four methods (keys, shapes, dtypes, inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import tileuq
from tileuq.models import METHODS

N, PX, C = 4, 48, 3
RNG = np.random.default_rng(0)
TILES = RNG.integers(0, 256, (N, PX, PX, 3), dtype=np.uint8)
HYPER = {
    "sngp": {"num_inducing": 64},
    "ensemble": {"num_members": 2},
    "mc_dropout": {"mc_samples": 4},
    "deterministic": {},
}


@pytest.fixture(scope="module", params=METHODS)
def model(request: pytest.FixtureRequest) -> tileuq.TileModel:
    return tileuq.build_model(
        request.param,
        "resnet_slim",
        classes=["tumour", "stroma", "fat"],
        colors=["#FF0000", "#00ff00", "#0000ff"],
        tile_px=PX,
        mpp=0.5,
        **HYPER[request.param],
    ).eval()


def test_output_keys_shapes_and_dtypes(model: tileuq.TileModel) -> None:
    out = model.predict(TILES)
    expected = {"logits", "probabilities", "predictions", "confidence", "scores"}
    if model.method == "sngp":
        expected |= {"variance", "raw_logits"}
    assert set(out) == expected
    assert out["logits"].shape == (N, C) and out["logits"].dtype == torch.float32
    assert out["probabilities"].shape == (N, C) and out["probabilities"].dtype == torch.float32
    assert out["predictions"].shape == (N,) and out["predictions"].dtype == torch.int64
    assert out["confidence"].shape == (N,) and out["confidence"].dtype == torch.float32
    assert tuple(out["scores"]) == model.score_names
    for name, s in out["scores"].items():
        assert s.shape == (N,) and s.dtype == torch.float32, name
        assert bool(torch.isfinite(s).all()), name
    for v in (out["logits"], out["probabilities"]):
        assert v.device.type == "cpu"
    p = out["probabilities"]
    assert torch.allclose(p.sum(1), torch.ones(N), atol=1e-5)
    assert torch.allclose(F.softmax(out["logits"], -1), p, atol=1e-5)
    assert torch.equal(out["predictions"], p.argmax(1))
    assert torch.allclose(out["confidence"], p.max(1).values)
    s = out["scores"]
    assert torch.allclose(s["msp"], 1 - out["confidence"])
    top2 = p.topk(2, 1).values
    assert torch.allclose(s["margin"], 1 - (top2[:, 0] - top2[:, 1]))
    assert bool((s["entropy"] >= 0).all()) and bool((s["entropy"] <= np.log(C) + 1e-5).all())


def test_score_names_per_method(model: tileuq.TileModel) -> None:
    base = ("msp", "margin", "entropy", "energy")
    extra = {
        "sngp": ("variance",),
        "ensemble": ("mutual_information", "expected_entropy"),
        "mc_dropout": ("mutual_information", "expected_entropy"),
        "deterministic": (),
    }[model.method]
    assert model.score_names == base + extra


def test_input_forms_agree(model: tileuq.TileModel) -> None:
    ref = model.predict(TILES)["probabilities"]
    as_torch = model.predict(torch.from_numpy(TILES))["probabilities"]
    as_float = model.predict(torch.from_numpy(TILES).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(ref, as_torch)
    assert torch.allclose(ref, as_float["probabilities"], atol=1e-5)


def test_features_on_request(model: tileuq.TileModel) -> None:
    out = model.predict(TILES, return_features=True)
    d = model.members[0].num_features
    k = len(model.members) if model.method == "ensemble" else 1
    assert out["features"].shape == (N, k * d)
    assert "features" not in model.predict(TILES)


def test_predict_is_safe_under_autocast_and_does_not_mutate(model: tileuq.TileModel) -> None:
    before = model.model_hash
    ref = model.predict(TILES)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.predict(TILES)
    assert model.training
    model.eval()
    assert model.model_hash == before
    assert out["probabilities"].dtype == torch.float32
    assert torch.allclose(out["probabilities"], ref["probabilities"], atol=0.05)
    if model.method == "sngp":
        assert out["variance"].dtype == torch.float32


def test_sngp_logits_are_mean_field_of_raw_logits() -> None:
    model = tileuq.build_model("sngp", "resnet_slim", num_classes=C, num_inducing=64, tile_px=PX)
    out = model.predict(TILES)
    head = model.sngp_heads()[0]
    lam = head.mean_field_factor
    expected = out["raw_logits"] / torch.sqrt(1 + lam * out["variance"])[:, None]
    assert torch.allclose(out["logits"], expected, atol=1e-6)
    assert torch.equal(out["scores"]["variance"], out["variance"])
    # untrained: prior variance ~ 1 (ridge 1)
    assert bool((out["variance"] > 0.5).all())


def test_identity_attributes(model: tileuq.TileModel) -> None:
    assert model.classes == ["tumour", "stroma", "fat"]
    assert model.colors == ["#ff0000", "#00ff00", "#0000ff"]
    assert model.tile_px == PX and model.mpp == 0.5
    assert len(model.model_hash) == 64 and int(model.model_hash, 16) >= 0
    assert model.model_id.endswith(model.model_hash[:12])
    m = model.manifest
    assert m["method"] == model.method and m["classes"] == model.classes
    assert m["calibration"] is None and m["weights"]["sha256"] == model.model_hash
    assert set(m["normalization"]) == {"mean", "std"}


def test_channels_last_model() -> None:
    model = tileuq.build_model("deterministic", "resnet_slim", num_classes=C, tile_px=PX).eval()
    ref = model.predict(TILES)["probabilities"]
    model = model.to(memory_format=torch.channels_last)
    assert torch.allclose(model.predict(TILES)["probabilities"], ref, atol=1e-5)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), r"\(N, H, W, 3\)"),
        (torch.zeros(2, 8, 8, 3), r"\(N, 3, H, W\)"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), "uint8 or floating"),
        ([[1, 2, 3]], "numpy array or torch tensor"),
    ],
)
def test_bad_batches_raise_model_error(batch: object, match: str) -> None:
    model = tileuq.build_model("deterministic", "resnet_slim", num_classes=C, tile_px=PX)
    with pytest.raises(tileuq.ModelError, match=match):
        model.predict(batch)


def test_build_model_argument_errors() -> None:
    with pytest.raises(tileuq.ModelError, match="unknown hyperparameter"):
        tileuq.build_model("sngp", "resnet_slim", num_classes=2, num_inducng=10)
    with pytest.raises(tileuq.ModelError, match="method"):
        tileuq.build_model("bayes", "resnet_slim", num_classes=2)
    with pytest.raises(tileuq.ModelError, match="backbone"):
        tileuq.build_model("sngp", "vit", num_classes=2)
    with pytest.raises(tileuq.ModelError, match="num_classes=3"):
        tileuq.build_model("deterministic", "resnet_slim", num_classes=3, classes=["a", "b"])
    with pytest.raises(tileuq.ModelError, match="colors"):
        tileuq.build_model(
            "deterministic", "resnet_slim", classes=["a", "b"], colors=["red", "#000000"]
        )
    with pytest.raises(tileuq.ModelError, match="num_classes or classes"):
        tileuq.build_model("deterministic", "resnet_slim")


def test_eval_forward_with_autograd_after_predict() -> None:
    """Caches filled under inference_mode must not break a later eval pass with gradients."""
    model = tileuq.build_model("sngp", "resnet_slim", num_classes=C, num_inducing=32, tile_px=PX)
    model.predict(TILES)
    model.eval()
    x = torch.from_numpy(TILES).permute(0, 3, 1, 2).float().div(255).requires_grad_(True)
    model(x).sum().backward()  # e.g. a saliency map
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
