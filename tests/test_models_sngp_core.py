"""Import of nirschl-lab/sngp_core checkpoints (config.json + model.pt).

The checkpoints are built here in sngp_core's layout, read from its source (main branch,
``src/models/sngp/sngp_classifier.py``, ``src/models/baseline/baseline_models.py``,
``src/models/hf_loader.py``, ``scripts/example_inference.py``):

- ``SNGPClassifier``: ``backbone = nn.Sequential(*list(torchvision_resnet.children())[:-1])``
  (so ``backbone.0`` = conv1, ``backbone.1`` = bn1, ``backbone.4..7`` = layer1..4), every
  Conv2d wrapped by ``torch.nn.utils.spectral_norm`` (``weight_orig``/``weight_u``/``weight_v``);
  ``gp_head.W`` (in_dim, rff_dim), ``gp_head.b``, ``gp_head.classifier`` (Linear, bias),
  ``gp_head.cov_ema``, ``gp_head.num_updates``, ``gp_head.I``.  Forward (eval):
  ``phi = sqrt(2/M) cos(x W + b)``, ``raw = classifier(phi)``,
  ``var = phi (cov_ema + ridge I)^-1 phi^T`` (Cholesky solves, [B, 1]),
  ``logits = raw / sqrt(1 + var)``.
- ``BaselineClassifier``: ``feature_extractor`` = torchvision ResNet with ``fc = Identity``,
  ``classifier = Sequential(Dropout, Linear)``.

The reference forward below is an independent functional re-implementation of torchvision's
ResNet-18 and of that head, applied to the raw checkpoint tensors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import tileuq
from tileuq.models import build_backbone, import_sngp_core

SEQ = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
M, C = 64, 4
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
TILES = np.random.default_rng(3).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)


def _random_torchvision_resnet18(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = build_backbone("resnet18", normalize=False)  # torchvision names and architecture
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net


def _sngp_state(seed: int = 0) -> dict[str, torch.Tensor]:
    net = _random_torchvision_resnet18(seed)
    for m in list(net.modules()):
        for cname, child in list(m.named_children()):
            if isinstance(child, nn.Conv2d):
                setattr(m, cname, nn.utils.spectral_norm(child))
    net.train()
    with torch.no_grad():  # a few training steps move u and v (and BN stats)
        for _ in range(2):
            net.forward_features(torch.randn(2, 3, 64, 64))
    state = {}
    for k, v in net.state_dict().items():
        if k.startswith(("fc.", "input_norm.")):
            continue
        head, _, rest = k.partition(".")
        state[f"backbone.{SEQ[head]}.{rest}"] = v.clone()
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(300, M, generator=g) / math.sqrt(M)
    state.update(
        {
            "gp_head.W": torch.randn(512, M, generator=g) / 1.0,
            "gp_head.b": 2 * math.pi * torch.rand(M, generator=g),
            "gp_head.classifier.weight": torch.randn(C, M, generator=g) * 0.3,
            "gp_head.classifier.bias": torch.randn(C, generator=g) * 0.1,
            "gp_head.cov_ema": phi.t() @ phi / 300,
            "gp_head.num_updates": torch.tensor(1234),
            "gp_head.I": torch.eye(M),
        }
    )
    return state


def _write(folder: Path, config: dict, state: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(state, folder / "model.pt")
    return folder


SNGP_CONFIG = {
    "model_type": "sngp",
    "arch": "resnet18",
    "num_classes": C,
    "rff_dim": M,
    "length_scale": 1.0,
    "ridge_penalty": 1e-3,
    "cov_momentum": 0.999,
    "mean_field": True,
}


# ------------------------------------------------------------------ reference forward
def _conv(sd: dict, p: str, x: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    if p + ".weight_orig" in sd:  # torch.nn.utils.spectral_norm in eval: W / (u . W_mat v)
        w = sd[p + ".weight_orig"]
        sigma = torch.dot(sd[p + ".weight_u"], w.reshape(w.shape[0], -1) @ sd[p + ".weight_v"])
        w = w / sigma
    else:
        w = sd[p + ".weight"]
    return F.conv2d(x, w, None, stride, pad)


def _bn(sd: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(
        x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
        False, 0.0, 1e-5,
    )  # fmt: skip


def _resnet18_features(sd: dict, x: torch.Tensor, names: dict[str, str]) -> torch.Tensor:
    x = F.relu(_bn(sd, names["bn1"], _conv(sd, names["conv1"], x, 2, 3)))
    x = F.max_pool2d(x, 3, 2, 1)
    for i in range(4):
        for b in range(2):
            p = f"{names[f'layer{i + 1}']}.{b}"
            stride = 2 if (i > 0 and b == 0) else 1
            out = F.relu(_bn(sd, p + ".bn1", _conv(sd, p + ".conv1", x, stride, 1)))
            out = _bn(sd, p + ".bn2", _conv(sd, p + ".conv2", out, 1, 1))
            idt = x
            if any(k.startswith(p + ".downsample.0.") for k in sd):
                idt = _bn(sd, p + ".downsample.1", _conv(sd, p + ".downsample.0", x, stride, 0))
            x = F.relu(out + idt)
    return x.mean(dim=(2, 3))


def _reference_sngp(state: dict, x01: torch.Tensor) -> dict[str, torch.Tensor]:
    sd = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    feats = _resnet18_features(sd, (x01 - MEAN) / STD, SEQ)
    phi = torch.cos(feats @ state["gp_head.W"] + state["gp_head.b"]) * math.sqrt(2.0 / M)
    raw = phi @ state["gp_head.classifier.weight"].t() + state["gp_head.classifier.bias"]
    a = state["gp_head.cov_ema"] + 1e-3 * state["gp_head.I"]
    chol = torch.linalg.cholesky(a.double())
    solved = torch.cholesky_solve(phi.t().double(), chol).t()
    var = (phi.double() * solved).sum(1, keepdim=True).clamp_min(0).float()  # [B, 1]
    logits = raw / torch.sqrt(1.0 + var)
    probs = F.softmax(logits, 1)
    return {"logits": logits, "raw": raw, "variance": var, "probabilities": probs}


def _x01() -> torch.Tensor:
    return torch.from_numpy(TILES).permute(0, 3, 1, 2).float() / 255


# ------------------------------------------------------------------ tests
def test_sngp_checkpoint_predicts_as_the_original(tmp_path: Path) -> None:
    state = _sngp_state()
    folder = _write(tmp_path / "wong_sngp_resnet18", SNGP_CONFIG, state)
    model = import_sngp_core(folder, tile_px=64)
    ref = _reference_sngp(state, _x01())
    out = model.predict(TILES)
    assert out["variance"].shape == (3,) and ref["variance"].shape == (3, 1)
    assert torch.allclose(out["variance"], ref["variance"][:, 0], rtol=1e-4, atol=1e-4)
    assert torch.allclose(out["raw_logits"], ref["raw"], rtol=1e-4, atol=1e-4)
    assert torch.allclose(out["logits"], ref["logits"], rtol=1e-4, atol=1e-4)
    assert torch.allclose(out["probabilities"], ref["probabilities"], atol=1e-5)
    assert torch.equal(out["predictions"], ref["probabilities"].argmax(1))
    # the variance scale of sngp_core (no ridge factor, ridge 1e-3): far above 1
    assert float(out["variance"].min()) > 1.0
    h = model.manifest["hyperparameters"]
    assert h["ridge"] == 1e-3 and h["momentum"] == 0.999 and h["mean_field_factor"] == 1.0
    assert h["scale_variance_by_ridge"] is False and h["normalize_input"] is False
    assert model.source["format"] == "sngp_core"
    assert model.name == "wong_sngp_resnet18"


def test_sngp_import_keys_and_round_trip(tmp_path: Path) -> None:
    state = _sngp_state(1)
    folder = _write(tmp_path / "m", SNGP_CONFIG, state)
    model = tileuq.load_model(folder)  # load_model recognises the layout
    head = model.sngp_heads()[0]
    assert torch.equal(head.rff_weight, state["gp_head.W"].t())
    assert torch.equal(head.precision_accum, state["gp_head.cov_ema"].double())
    assert int(head.num_updates) == 1234
    sd = model.state_dict()
    assert sd["core.net.layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert not any("weight_orig" in k or "weight_u" in k for k in sd)
    same = tileuq.load_model(folder / "model.pt")
    assert same.model_hash == model.model_hash
    model.save(tmp_path / "saved")
    again = tileuq.load_model(tmp_path / "saved")
    assert torch.equal(again.predict(TILES)["logits"], model.predict(TILES)["logits"])


def test_baseline_checkpoint_predicts_as_the_original(tmp_path: Path) -> None:
    net = _random_torchvision_resnet18(2)
    state = {
        f"feature_extractor.{k}": v
        for k, v in net.state_dict().items()
        if not k.startswith(("fc.", "input_norm."))
    }
    state["classifier.1.weight"] = torch.randn(C, 512) * 0.05
    state["classifier.1.bias"] = torch.randn(C) * 0.1
    config = {"model_type": "baseline", "arch": "resnet18", "num_classes": C, "dropout_p": 0.5}
    folder = _write(tmp_path / "acevedo_baseline_resnet18", config, state)
    model = import_sngp_core(folder, tile_px=64)
    assert model.method == "deterministic"
    sd = {k[len("feature_extractor.") :]: v for k, v in state.items() if "feature_" in k}
    names = {k: k for k in SEQ}
    feats = _resnet18_features(sd, (_x01() - MEAN) / STD, names)
    logits = feats @ state["classifier.1.weight"].t() + state["classifier.1.bias"]
    out = model.predict(TILES)
    assert torch.allclose(out["logits"], logits, rtol=1e-4, atol=1e-4)
    mc = import_sngp_core(folder, tile_px=64, method="mc_dropout")
    assert mc.method == "mc_dropout" and mc.hyperparameters["drop_rate"] == 0.5


def test_import_errors(tmp_path: Path) -> None:
    state = _sngp_state()
    bad_classes = _write(tmp_path / "a", {**SNGP_CONFIG, "num_classes": 5}, state)
    with pytest.raises(tileuq.ModelError, match=r"gp_head\.classifier\.weight"):
        import_sngp_core(bad_classes)
    corrected = dict(state)
    corrected["gp_head.precision_accum"] = corrected.pop("gp_head.cov_ema")
    with pytest.raises(tileuq.ModelError, match="corrected"):
        import_sngp_core(_write(tmp_path / "b", SNGP_CONFIG, corrected))
    with pytest.raises(tileuq.ModelError, match="arch"):
        import_sngp_core(_write(tmp_path / "c", {**SNGP_CONFIG, "arch": "vit_b_16"}, state))
    with pytest.raises(tileuq.ModelError, match="not found"):
        import_sngp_core(tmp_path / "nothing")
