"""``build_model``: construct a :class:`~tileuq.TileModel` for any method from plain arguments."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch

from tileuq.errors import ModelError
from tileuq.models.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, Normalize, ResNet
from tileuq.models.backbones import build_backbone as _build_backbone
from tileuq.models.ensemble import MODES, DeepEnsemble
from tileuq.models.methods import DeterministicMethod, EnsembleMethod, MCDropoutMethod, SNGPMethod
from tileuq.models.sngp import SNGPHead
from tileuq.models.spectral import spectral_norm
from tileuq.models.tile_model import TileModel

METHODS = ("sngp", "ensemble", "mc_dropout", "deterministic")

_COMMON: dict[str, Any] = {
    "drop_rate": 0.0,  # dropout before the head
    "block_drop_rate": 0.0,  # dropout inside residual blocks
    "seed": 0,  # weight initialisation (member k of an ensemble: seed + k)
    "energy_temperature": 1.0,
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "deterministic": {},
    "mc_dropout": {"drop_rate": 0.5, "mc_samples": 20, "mc_seed": 0},
    "ensemble": {"num_members": 5, "ensemble_mode": "auto"},
    "sngp": {
        "num_inducing": 1024,
        "ridge": 1.0,
        "lengthscale": None,  # None: sqrt(d)/2 with normalize_input, else 1
        "normalize_input": True,
        "mean_field_factor": math.pi / 8,
        "momentum": -1.0,
        "output_bias": False,
        "scale_variance_by_ridge": True,
        "random_features": "orf",
        "num_data": None,
        "spectral_norm": True,
        "sn_bound": 0.95,
        "sn_iterations": 1,
        # False (default): BatchNorm unbounded, as the uncertainty-baselines SNGP ResNets; the
        # convolutions keep their bound.  None: BN bounded at sn_bound (DUE style) -- on the
        # colorectal demo data a 0.95 BN bound divided gamma by 14-111x and collapsed the
        # eval-mode features (docs/models-demo.md), so it is opt-in.
        "sn_batchnorm_bound": False,
        "sn_conv_mode": "operator",
    },
}

# a categorical palette (matplotlib tab10) for classes without explicit colours
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def default_hyperparameters(method: str) -> dict[str, Any]:
    """Return the hyperparameters ``build_model`` accepts for ``method``, with their defaults."""
    if method not in METHODS:
        raise ModelError(f"method: unknown method {method!r}; choose one of {METHODS}")
    return {**_COMMON, **_DEFAULTS[method]}


def _check_classes(
    num_classes: int | None, classes: Sequence[str] | None, colors: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    if classes is not None:
        if isinstance(classes, str) or not all(isinstance(c, str) and c for c in classes):
            raise ModelError("classes: expected a list of non-empty class names")
        if len(set(classes)) != len(classes):
            raise ModelError(f"classes: names must be unique, got {list(classes)}")
        if num_classes is not None and int(num_classes) != len(classes):
            raise ModelError(
                f"num_classes={num_classes} does not match the {len(classes)} class names given"
            )
        names = list(classes)
    elif num_classes is not None:
        if int(num_classes) < 1:
            raise ModelError(f"num_classes must be >= 1, got {num_classes}")
        names = [f"class_{i}" for i in range(int(num_classes))]
    else:
        raise ModelError("build_model needs num_classes or classes")
    if colors is None:
        cols = [PALETTE[i % len(PALETTE)] for i in range(len(names))]
    else:
        cols = list(colors)
        if len(cols) != len(names) or not all(isinstance(c, str) and _HEX.match(c) for c in cols):
            raise ModelError(
                f"colors: expected {len(names)} colours as '#rrggbb', got {list(colors)}"
            )
        cols = [c.lower() for c in cols]
    return names, cols


def _resolve(method: str, hyper: dict[str, Any]) -> dict[str, Any]:
    allowed = default_hyperparameters(method)
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        raise ModelError(
            f"build_model: unknown hyperparameter(s) {unknown} for method {method!r}; "
            f"known: {sorted(allowed)}"
        )
    out = {**allowed, **hyper}
    for key in ("drop_rate", "block_drop_rate"):
        if not 0.0 <= float(out[key]) < 1.0:
            raise ModelError(f"{key} must lie in [0, 1), got {out[key]}")
    if method == "ensemble":
        if not 1 <= int(out["num_members"]) <= 64:
            raise ModelError(f"num_members must be in 1..64, got {out['num_members']}")
        if out["ensemble_mode"] not in MODES:
            raise ModelError(f"ensemble_mode must be one of {MODES}, got {out['ensemble_mode']!r}")
    if method == "mc_dropout":
        if not 1 <= int(out["mc_samples"]) <= 10_000:
            raise ModelError(f"mc_samples must be in 1..10000, got {out['mc_samples']}")
        if float(out["drop_rate"]) <= 0 and float(out["block_drop_rate"]) <= 0:
            raise ModelError("mc_dropout needs drop_rate > 0 or block_drop_rate > 0")
    if method == "sngp" and not 1 <= int(out["num_inducing"]) <= 65_536:
        raise ModelError(f"num_inducing must be in 1..65536, got {out['num_inducing']}")
    return out


def _network(backbone: str, num_classes: int, h: dict[str, Any]) -> ResNet:
    return _build_backbone(
        backbone,
        num_classes=num_classes,
        drop_rate=float(h["drop_rate"]),
        block_drop_rate=float(h["block_drop_rate"]),
        normalize=False,
    )


def build_model(
    method: str = "sngp",
    backbone: str = "resnet18",
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    tile_px: int = 224,
    mpp: float | None = None,
    *,
    name: str | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    _materialize: bool = True,
    **hyperparams: Any,
) -> TileModel:
    """Build an untrained :class:`~tileuq.TileModel`.

    Parameters
    ----------
    method
        ``"sngp"``, ``"ensemble"``, ``"mc_dropout"`` or ``"deterministic"``.
    backbone
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet_slim"``.
    num_classes, classes
        Number of classes and/or their names (default names ``class_<i>``).
    colors
        One ``"#rrggbb"`` colour per class (default: a categorical palette).
    tile_px, mpp
        Tile side in pixels and target microns per pixel (None: native resolution).
    name
        Optional model name (used in ``model_id``).
    mean, std
        Input normalization statistics (ImageNet by default).
    **hyperparams
        Method hyperparameters; see :func:`default_hyperparameters` (e.g. ``num_members``,
        ``mc_samples``, ``num_inducing``, ``ridge``, ``lengthscale``, ``sn_bound``).
        Unknown names raise :class:`~tileuq.errors.ModelError`.
    """
    if method not in METHODS:
        raise ModelError(f"method: unknown method {method!r}; choose one of {METHODS}")
    if backbone not in BACKBONES:
        raise ModelError(
            f"backbone: unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}"
        )
    names, cols = _check_classes(num_classes, classes, colors)
    if not isinstance(tile_px, int) or not 8 <= tile_px <= 65_536:
        raise ModelError(f"tile_px must be an integer in 8..65536, got {tile_px!r}")
    if mpp is not None and not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and mpp > 0):
        raise ModelError(f"mpp must be a positive number or None, got {mpp!r}")
    h = _resolve(method, hyperparams)
    c = len(names)
    try:
        normalizer = Normalize(mean, std)
    except ValueError as e:
        raise ModelError(f"mean/std: {e}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(h["seed"]))
        core: torch.nn.Module
        if method == "deterministic":
            core = DeterministicMethod(_network(backbone, c, h), h["energy_temperature"])
        elif method == "mc_dropout":
            core = MCDropoutMethod(
                _network(backbone, c, h),
                int(h["mc_samples"]),
                int(h["mc_seed"]),
                h["energy_temperature"],
            )
        elif method == "ensemble":
            members = []
            for k in range(int(h["num_members"])):
                torch.manual_seed(int(h["seed"]) + k)
                members.append(_network(backbone, c, h))
            core = EnsembleMethod(
                DeepEnsemble(members, h["ensemble_mode"]), h["energy_temperature"]
            )
        else:
            net = _network(backbone, 0, h)
            if h["spectral_norm"]:
                spectral_norm(
                    net,
                    float(h["sn_bound"]),
                    int(h["sn_iterations"]),
                    batchnorm_bound=h["sn_batchnorm_bound"],
                    conv_mode=h["sn_conv_mode"],
                )
            head = SNGPHead(
                net.num_features,
                c,
                num_inducing=int(h["num_inducing"]),
                ridge=float(h["ridge"]),
                lengthscale=h["lengthscale"],
                normalize_input=bool(h["normalize_input"]),
                mean_field_factor=float(h["mean_field_factor"]),
                momentum=float(h["momentum"]),
                output_bias=bool(h["output_bias"]),
                scale_variance_by_ridge=bool(h["scale_variance_by_ridge"]),
                random_features=h["random_features"],
                num_data=None if h["num_data"] is None else int(h["num_data"]),
                seed=int(h["seed"]),
            )
            h["lengthscale"] = head.lengthscale
            net.fc = head
            core = SNGPMethod(net, h["energy_temperature"])
            if h["spectral_norm"] and _materialize:
                # create the conv power-iteration state for the tile size now, so the weights
                # (and model_hash) do not change on the first predict
                was = net.training
                net.eval()
                with torch.no_grad():
                    net.forward_features(torch.zeros(1, 3, tile_px, tile_px))
                net.train(was)
    model = TileModel(
        core,
        normalizer,
        method=method,
        backbone=backbone,
        classes=names,
        colors=cols,
        tile_px=tile_px,
        mpp=None if mpp is None else float(mpp),
        hyperparameters=h,
        name=name,
    )
    return model
