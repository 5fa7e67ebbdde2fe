"""Building blocks of the training loop: seeded streams, batches, schedule, BatchNorm, SNGP."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tileuq.errors import DataError
from tileuq.models.augment import AugmentConfig, to_float
from tileuq.models.tile_model import TileModel

__all__ = [
    "batches",
    "epoch_record",
    "lr_lambda",
    "make_optimizer",
    "member_val_probs",
    "model_hyperparameters",
    "rebuild_precision",
    "refresh_batchnorm",
    "resolve_augmentation",
    "seeded_generator",
]


def seeded_generator(seed: int, *keys: int) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded from ``(seed, *keys)`` (independent streams)."""
    state = np.random.SeedSequence([int(seed), *keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def batches(n: int, batch_size: int, g: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a trailing batch of one tile joins the previous one (BatchNorm)."""
    perm = torch.randperm(n, generator=g)
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


def lr_lambda(warmup: int, total: int, floor: float = 0.01) -> Any:
    """Per-step factor: linear warm-up over ``warmup`` steps, then cosine down to ``floor``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def member_val_probs(
    model: TileModel, k: int, images: np.ndarray, device: torch.device, batch_size: int
) -> np.ndarray:
    """Softmax of ensemble member ``k`` alone (eval mode) for early stopping."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(images[i : i + batch_size]).to(device)
            out.append(torch.softmax(model(x, member=k).float(), -1).cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def refresh_batchnorm(
    model: TileModel,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    *,
    member: int | None = None,
    passes: int = 2,
    seed: int = 0,
) -> None:
    """Re-estimate BatchNorm running statistics on ``images`` ("precise BN").

    The statistics are the plain average over shuffled batches of ``batch_size`` (batch
    statistics as in training; no augmentation), with everything but BatchNorm in eval mode.
    Two passes, because the bounded BatchNorm of SNGP scales its output by a factor computed
    from its running variance: the second pass measures every layer under the first pass's
    estimates of the layers before it.  Small training sets need this: with few steps the
    exponential moving average (momentum 0.1, starting from variance 1) lags far behind the
    small activations of spectrally normalized networks, and eval-mode features collapse.
    """
    net = model if member is None else model.members[member]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or len(images) < 2:
        return
    order = torch.randperm(len(images), generator=seeded_generator(seed, 7)).numpy()
    chunks = [c for c in np.array_split(order, max(1, len(order) // batch_size)) if len(c) > 1]
    from tileuq.models.spectral import SpectralBatchNorm2d

    if not any(isinstance(m, SpectralBatchNorm2d) for m in bns):
        passes = 1  # plain BatchNorm: its output does not depend on the running statistics
    momenta = [m.momentum for m in bns]
    model.eval()
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
            m.train()
        for p in range(passes):
            if p:
                for m in bns:
                    m.num_batches_tracked.zero_()  # type: ignore[union-attr]
            for c in chunks:
                x = to_float(torch.from_numpy(images[c]).to(device))
                model(x, member=member) if member is not None else model(x)
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.eval()


@torch.no_grad()
def rebuild_precision(
    model: TileModel, images: np.ndarray, device: torch.device, batch_size: int
) -> int:
    """Reset and rebuild the SNGP precision from ``images`` (no augmentation), eval backbone.

    Only the GP heads are put in training mode (they accumulate only then); BatchNorm uses its
    running statistics, dropout is off and spectral-norm power iteration does not run.
    Returns the number of tiles accumulated.  The covariance is computed at the end.
    """
    heads = model.sngp_heads()
    model.eval()
    model.reset_precision()
    for h in heads:
        h.train()
    try:
        for i in range(0, len(images), batch_size):
            model(torch.from_numpy(images[i : i + batch_size]).to(device))
    finally:
        model.eval()
    model.finalize()
    return int(heads[0].seen) if heads else 0


def resolve_augmentation(
    augmentation: AugmentConfig | Mapping[str, Any] | bool,
) -> AugmentConfig | None:
    """Resolve ``augmentation``: True (defaults), False (None), a config or its dictionary."""
    if augmentation is True:
        return AugmentConfig()
    if augmentation is False:
        return None
    if isinstance(augmentation, AugmentConfig):
        return augmentation
    try:
        return AugmentConfig.from_dict(dict(augmentation))
    except (TypeError, ValueError) as exc:
        raise DataError(f"augmentation: {exc}") from None


def model_hyperparameters(
    method: str,
    seed: int,
    members: int,
    mc_samples: int,
    n_train: int,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``build_model`` hyperparameters of a training run (seed, K, T, SNGP ``num_data``)."""
    hyper: dict[str, Any] = dict(extra or {})
    hyper["seed"] = int(seed)
    if method == "ensemble":
        hyper["num_members"] = int(members)
    elif method == "mc_dropout":
        hyper["mc_samples"] = int(mc_samples)
    elif method == "sngp":
        hyper.setdefault("num_data", int(n_train))  # a forgotten precision reset raises
    return hyper


def make_optimizer(
    net: torch.nn.Module,
    lr: float,
    weight_decay: float,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no decay on biases and normalization parameters) and its LR schedule."""
    params = [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups: list[dict[str, Any]] = [
        {"params": decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(
        groups,
        lr=lr,
        weight_decay=weight_decay,
    )
    if schedule == "cosine":
        sched: Any = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(warmup_steps, total_steps))
    else:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    return opt, sched


def epoch_record(
    member: int,
    epoch: int,
    opt: torch.optim.Optimizer,
    loss_sum: float,
    correct: int,
    seen: int,
    val: dict[str, float],
    best: bool,
    seconds: float,
) -> dict[str, Any]:
    """One line of ``metrics.json``'s history."""
    return {
        "member": member,
        "epoch": epoch,
        "lr": float(opt.param_groups[0]["lr"]),
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "val_loss": val["nll"],
        "val_acc": val["accuracy"],
        "val_nll": val["nll"],
        "val_ece": val["ece"],
        "val_brier": val["brier"],
        "best": best,
        "seconds": seconds,
    }
