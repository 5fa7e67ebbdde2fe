"""Import published nirschl-lab/sngp_core SNGP and baseline ResNet checkpoints.

sngp_core publishes ``<name>/config.json`` + ``<name>/model.pt`` (a state dict) on the Hub
repo ``nirschl-lab/sngp-models`` (e.g. ``wong_sngp_resnet18``, ``acevedo_baseline_resnet18``);
``config.json`` holds ``model_type`` (``"sngp"``/``"baseline"``), ``arch``, ``num_classes``
and, for SNGP, ``rff_dim``, ``length_scale``, ``ridge_penalty``, ``cov_momentum``,
``mean_field``; for the baseline ``dropout_p``.

Layouts read (sngp_core ``main`` 6433cc5, ``src/models/sngp/sngp_classifier.py`` and
``src/models/baseline/baseline_models.py``; see ``../shared/docs/sngp-reference.md`` §5):

- SNGP ``SNGPClassifier``: ``backbone`` = ``nn.Sequential`` of torchvision ResNet children
  without ``fc`` (``backbone.0`` conv1, ``.1`` bn1, ``.4``-``.7`` layer1-4; a torchvision-named
  ``backbone.conv1...`` layout is accepted too), every Conv2d wrapped by
  ``torch.nn.utils.spectral_norm`` (``weight_orig``, ``weight_u``, ``weight_v``); head
  ``gp_head.W`` (in, M) (already divided by the lengthscale), ``gp_head.b``,
  ``gp_head.classifier`` (Linear with bias), ``gp_head.cov_ema`` (M, M), ``gp_head.num_updates``,
  ``gp_head.I``.
- Baseline ``BaselineClassifier``: ``feature_extractor`` = torchvision ResNet with
  ``fc = Identity``; ``classifier`` = Dropout + Linear (``classifier.1``).

Conventions mapped faithfully so imported models predict as ``quick_sngp_inference`` does (in
eval mode):

- spectral norm: torch's built-in divides by ``sigma = u . (W_mat v)`` from the stored
  vectors in eval (no iteration, sigma = 1 exactly, reshaped kernel, BatchNorm unbounded); the
  import bakes ``W = weight_orig / sigma`` into plain convolutions;
- head: no input LayerNorm, ``phi = sqrt(2/M) cos(h W + b)`` (lengthscale 1 on the stored
  ``W``), output bias, precision ``cov_ema + ridge I`` with ridge ``ridge_penalty`` (1e-3) and
  the EMA momentum ``cov_momentum`` (0.999; first batch copied), variance
  ``phi (cov_ema + ridge I)^-1 phi`` **without** the ridge factor, mean field
  ``logits / sqrt(1 + var)`` (lambda = 1; none when ``mean_field`` is false);
- outputs: ``logits`` = mean-field logits, ``probabilities``/``predictions``/``confidence``
  from them; ``variance`` is (N,) here, ``[B, 1]`` in sngp_core.

Inputs: sngp_core models take already-normalized tensors; a TileModel normalizes uint8/[0, 1]
tiles itself, with ImageNet statistics unless ``mean``/``std`` say otherwise.  The later
"corrected" sngp_core head (``precision_accum`` buffers) is a different model and is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tileuq.errors import ModelError
from tileuq.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from tileuq.models.tile_model import TileModel

_SEQ = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_ARCHS = ("resnet18", "resnet34", "resnet50")


def _files(source: Any) -> tuple[Path, Path]:
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise ModelError("import_sngp_core: give a folder or (config.json, model.pt)")
        return Path(source[0]), Path(source[1])
    p = Path(source)
    if p.is_dir():
        return p / "config.json", p / "model.pt"
    if p.name == "config.json":
        return p, p.parent / "model.pt"
    return p.parent / "config.json", p


def _backbone_name(rest: str, where: str) -> str:
    head, _, tail = rest.partition(".")
    if head.isdigit():
        if head not in _SEQ:
            raise ModelError(f"{where}: unexpected backbone entry 'backbone.{rest}'")
        return f"{_SEQ[head]}.{tail}"
    return rest


def _bake_spectral_norm(tensors: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Replace ``X.weight_orig/_u/_v`` by ``X.weight = weight_orig / (u . W_mat v)``."""
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if k.endswith((".weight_u", ".weight_v")):
            continue
        if k.endswith(".weight_orig"):
            base = k[: -len("_orig")]
            try:
                u, vv = tensors[base + "_u"], tensors[base + "_v"]
            except KeyError:
                raise ModelError(f"{where}: '{k}' without its weight_u/weight_v") from None
            w = v.double()
            sigma = torch.dot(u.double(), w.reshape(w.shape[0], -1) @ vv.double())
            out[base] = (w / sigma).to(v.dtype)
        else:
            out[k] = v
    return out


def import_sngp_core(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    classes: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    tile_px: int = 224,
    mpp: float | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    method: str | None = None,
    name: str | None = None,
) -> TileModel:
    """Import an sngp_core SNGP or baseline ResNet checkpoint as a :class:`TileModel`.

    Parameters
    ----------
    source
        A folder with ``config.json`` and ``model.pt``, the pair of files, the path of either,
        or ``"hf://nirschl-lab/sngp-models/<name>"``.
    classes, colors
        Class names and colours (sngp_core configs carry none; default ``class_<i>``).
    tile_px, mpp
        Tile geometry the model expects (sngp_core trained at 224 px).
    mean, std
        Normalization applied to [0, 1] tiles (ImageNet by default).
    method
        For baselines: ``"deterministic"`` (default, as ``quick_baseline_inference``) or
        ``"mc_dropout"`` (dropout ``dropout_p`` before the head).  SNGP checkpoints: ``"sngp"``.
    name
        Model name (default: the folder name).
    """
    from tileuq.models.build import build_model
    from tileuq.models.checkpoint import (
        as_state_dict,
        load_state_checked,
        read_json_file,
        torch_load_safe,
    )

    if isinstance(source, str) and source.startswith("hf://"):
        from tileuq.models.hub import resolve_hf

        source = resolve_hf(source)
    cfg_path, pt_path = _files(source)
    for p in (cfg_path, pt_path):
        if not p.is_file():
            raise ModelError(f"import_sngp_core: {p} not found")
    cfg = read_json_file(cfg_path)
    where = str(pt_path)
    raw = torch_load_safe(pt_path)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    state = dict(as_state_dict(raw, where))
    for prefix in ("net.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}

    model_type = cfg.get("model_type")
    if model_type is None:
        model_type = "sngp" if any(k.startswith("gp_head.") for k in state) else "baseline"
    arch = cfg.get("arch", "resnet18")
    if arch not in _ARCHS:
        raise ModelError(f"{cfg_path}: arch {arch!r} is not supported (only {_ARCHS})")
    if any(
        k.startswith("gp_head.") and k.split(".")[-1] in ("precision_accum", "covariance")
        for k in state
    ):
        raise ModelError(
            f"{where}: this is the later 'corrected' sngp_core head (precision_accum), whose "
            "conventions differ; only the published main-branch head (cov_ema) is supported"
        )
    names: dict[str, str] = {}
    mapped: dict[str, torch.Tensor] = {}
    hyper: dict[str, Any]
    if model_type == "sngp":
        if method not in (None, "sngp"):
            raise ModelError(f"method={method!r}: an sngp_core SNGP checkpoint imports as 'sngp'")
        back = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        other = [k for k in state if not k.startswith(("backbone.", "gp_head."))]
        if other:
            raise ModelError(f"{where}: unexpected tensors {other[:8]}")
        back = _bake_spectral_norm({_backbone_name(k, where): v for k, v in back.items()}, where)
        for k, v in back.items():
            mapped[f"core.net.{k}"] = v
            names[f"core.net.{k}"] = f"backbone.{k}"
        need = ("W", "b", "classifier.weight", "cov_ema")
        missing = [n for n in need if f"gp_head.{n}" not in state]
        if missing:
            raise ModelError(
                f"{where}: missing SNGP head tensors {['gp_head.' + n for n in missing]}"
            )
        w = state["gp_head.W"]
        c = state["gp_head.classifier.weight"].shape[0]
        num_classes = int(cfg.get("num_classes", c))
        rff = int(cfg.get("rff_dim", w.shape[1]))
        pairs = {
            "rff_weight": ("W", w.t().contiguous()),
            "rff_bias": ("b", state["gp_head.b"]),
            "output.weight": ("classifier.weight", state["gp_head.classifier.weight"]),
            "precision_accum": ("cov_ema", state["gp_head.cov_ema"].double()),
            "num_updates": ("num_updates", state.get("gp_head.num_updates", torch.tensor(0))),
            "seen": ("num_updates", torch.tensor(0)),
        }
        if "gp_head.classifier.bias" in state:
            pairs["output.bias"] = ("classifier.bias", state["gp_head.classifier.bias"])
        for ours, (theirs, t) in pairs.items():
            mapped[f"core.net.fc.{ours}"] = t
            names[f"core.net.fc.{ours}"] = f"gp_head.{theirs}"
        hyper = {
            "spectral_norm": False,
            "num_inducing": rff,
            "ridge": float(cfg.get("ridge_penalty", 1e-3)),
            "lengthscale": 1.0,
            "normalize_input": False,
            "mean_field_factor": 1.0 if cfg.get("mean_field", True) else -1.0,
            "momentum": float(cfg.get("cov_momentum", 0.999)),
            "output_bias": "gp_head.classifier.bias" in state,
            "scale_variance_by_ridge": False,
            "random_features": "rff",
        }
        method = "sngp"
    elif model_type == "baseline":
        method = method or "deterministic"
        if method not in ("deterministic", "mc_dropout"):
            raise ModelError(f"method={method!r}: a baseline imports as deterministic/mc_dropout")
        if float(cfg.get("temperature", 1.0)) != 1.0:
            raise ModelError(f"{cfg_path}: temperature != 1 is not supported")
        for k, v in state.items():
            if k.startswith("feature_extractor."):
                rest = _backbone_name(k[len("feature_extractor.") :], where)
                ours = f"core.net.{rest}"
            elif k.startswith("classifier.1."):
                ours = f"core.net.fc.{k[len('classifier.1.') :]}"
            else:
                raise ModelError(f"{where}: unexpected tensor '{k}' in a baseline checkpoint")
            mapped[ours] = v
            names[ours] = k
        if "classifier.1.weight" not in state:
            raise ModelError(f"{where}: missing tensor 'classifier.1.weight'")
        c = state["classifier.1.weight"].shape[0]
        num_classes = int(cfg.get("num_classes", c))
        drop = float(cfg.get("dropout_p", 0.5))
        hyper = {"drop_rate": drop} if (method == "mc_dropout" or drop > 0) else {}
    else:
        raise ModelError(f"{cfg_path}: unknown model_type {model_type!r}")
    model = build_model(
        method,
        arch,
        num_classes=num_classes,
        classes=classes,
        colors=colors,
        tile_px=tile_px,
        mpp=mpp,
        name=name or re.sub(r"[^A-Za-z0-9._-]", "_", cfg_path.parent.name) or None,
        mean=mean,
        std=std,
        _materialize=False,
        **hyper,
    )
    mapped["normalizer.mean"] = model.normalizer.mean
    mapped["normalizer.std"] = model.normalizer.std
    load_state_checked(model, mapped, where, names)
    model.source = {
        "format": "sngp_core",
        "repository": "nirschl-lab/sngp_core",
        "model_type": model_type,
        "config": cfg,
    }
    model.eval()
    return model
