"""``tileuq.train``: train a tile model of any method on a class-per-subfolder tile folder.

Recipe (every choice is recorded in the model manifest under ``"training"``):

- **Data**: :mod:`tileuq.models.data`; the pool is the folder or one part of a split file
  (:mod:`tileuq.models.splits`), validation another part or a stratified ``val_fraction`` of
  it.  Decoded tiles are held in memory at ``tile_px``.
- **Augmentation**: :mod:`tileuq.models.augment` (flips, 90° rotations, mild resized crop,
  HED stain jitter, brightness/contrast), seeded.
- **Optimisation**: AdamW; cosine schedule with linear warm-up (per step) or
  reduce-on-plateau of the validation NLL; cross-entropy on the **raw** logits
  (``model(x)``; for SNGP the logits before the mean-field adjustment, which is applied only in
  :meth:`~tileuq.TileModel.predict`, ``../shared/docs/sngp-reference.md`` §3).
- **Early stopping** on the validation NLL of the predictive distribution
  (:meth:`~tileuq.TileModel.predict`; an ensemble member on its own softmax): the best epoch's
  weights are kept (``patience`` epochs without improvement stop a member).
- **Ensembles**: members trained one after the other, member ``k`` initialised with seed
  ``seed + k`` (by :func:`~tileuq.build_model`) and with its own data-order and augmentation
  streams; each has its own optimizer, schedule and early stopping.  **MC dropout**: trained
  like the deterministic network (dropout on), ``mc_samples`` passes at inference.
- **SNGP precision**: reset at the start of every epoch (exact per-epoch sum, reference §2;
  ``num_data`` is set, so a forgotten reset raises).  The reference practice keeps the
  precision of the last epoch, accumulated while the weights move, on augmented tiles, with
  BatchNorm in training mode.  With ``sngp_final_pass=True`` (default) the precision is instead
  rebuilt after training by one clean pass over the training pool on the **final** (best)
  weights: backbone in eval mode (running BatchNorm statistics, no dropout, no power
  iteration), no augmentation, only the GP head in training mode so that it accumulates.  It
  then equals ``ridge I + sum_i phi_i phi_i^T`` over exactly the training tiles under the model
  that is shipped, which is the Laplace approximation the variance formula assumes.
  ``sngp_final_pass=False`` keeps the best epoch's in-training precision (reference
  behaviour).  The covariance is computed once at the end (``model.finalize()``).
- **Precise BatchNorm** (``precise_bn``): running statistics re-estimated on training tiles
  before every validation and after training (:func:`refresh_batchnorm`); with few steps per
  epoch the moving average lags and eval-mode features of spectrally normalized nets collapse.
- **Determinism**: same seed, device and thread count → same weights on CPU (dropout uses
  torch's global RNG, re-seeded every epoch: do not draw from it between progress events).

Written to ``out``: ``model.safetensors`` + ``model.json`` (provenance under ``"training"``),
``metrics.json`` (per-epoch train/val loss, accuracy, NLL, ECE), ``training_split.json``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from tileuq._generators import result_of
from tileuq.errors import DataError, ModelError
from tileuq.models.augment import AugmentConfig, augment, to_float
from tileuq.models.build import METHODS, build_model
from tileuq.models.tile_model import TileModel
from tileuq.models.train_steps import (
    batches,
    epoch_record,
    make_optimizer,
    member_val_probs,
    model_hyperparameters,
    rebuild_precision,
    refresh_batchnorm,
    resolve_augmentation,
    seeded_generator,
)
from tileuq.models.training_io import (
    TrainProgress,
    TrainResult,
    classification_metrics,
    finish,
    predict_probabilities,
    prepare_data,
)

# arguments recorded in the manifest's training provenance
RECORDED = (
    "method", "seed", "epochs", "batch_size", "lr", "weight_decay", "schedule",
    "warmup_epochs", "patience", "sngp_final_pass", "precise_bn", "precise_bn_tiles",
)  # fmt: skip

__all__ = [
    "TrainProgress",
    "TrainResult",
    "iter_train",
    "rebuild_precision",
    "refresh_batchnorm",
    "train",
]


def iter_train(
    tiles: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    method: str = "sngp",
    backbone: str = "resnet18",
    tile_px: int = 224,
    mpp: float | None = None,
    classes: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    name: str | None = None,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    schedule: str = "cosine",
    warmup_epochs: float = 1.0,
    patience: int | None = 8,
    seed: int = 0,
    val_fraction: float = 0.2,
    split: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    train_subset: str = "train",
    val_subset: str | None = None,
    members: int = 5,
    mc_samples: int = 20,
    augmentation: AugmentConfig | Mapping[str, Any] | bool = True,
    sngp_final_pass: bool = True,
    precise_bn: bool = True,
    precise_bn_tiles: int = 256,
    device: str | torch.device = "auto",
    threads: int | None = None,
    on_error: str = "raise",
    eval_batch_size: int = 128,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train a model, yielding :class:`TrainProgress` events; returns a :class:`TrainResult`.

    Parameters
    ----------
    tiles
        Class-per-subfolder tile folder (see :mod:`tileuq.models.data`).
    out
        Model folder to write (model, ``metrics.json``, ``training_split.json``); None: no files.
    method, backbone, tile_px, mpp, classes, colors, name
        As :func:`tileuq.build_model`; ``classes`` fixes the label order (default: sorted
        folder names); ``mpp`` is the tiles' resolution once resized to ``tile_px``.
    epochs, batch_size, lr, weight_decay
        Maximum epochs per member, batch size, AdamW learning rate and weight decay.
    schedule
        ``"cosine"`` (per step, after ``warmup_epochs`` of linear warm-up) or ``"plateau"``
        (halve the rate after 2 epochs without validation-NLL improvement).
    patience
        Stop a member after this many epochs without validation-NLL improvement (None: never).
    seed
        Seed of everything (weights, data order, augmentation, validation split, dropout).
    val_fraction
        Stratified fraction of the pool held out for validation (when ``val_subset`` is None).
    split, train_subset, val_subset
        Split file or dict (:mod:`tileuq.models.splits`): train on part ``train_subset``,
        validate on part ``val_subset`` (None: on ``val_fraction`` of the training part).
    members, mc_samples
        Ensemble size (``method="ensemble"``) and MC-dropout passes (``"mc_dropout"``).
    augmentation
        True (defaults), False (none), or an :class:`AugmentConfig` / its dict.
    sngp_final_pass
        Rebuild the SNGP precision on the final weights (see the module docstring).
    precise_bn, precise_bn_tiles
        Re-estimate BatchNorm statistics (:func:`refresh_batchnorm`) before every validation
        (on ``precise_bn_tiles`` training tiles) and after training (on all of them).
    device, threads
        ``"auto"``, ``"cpu"``, ``"cuda"``...; torch CPU threads during training (restored).
    on_error
        Unreadable images: ``"raise"`` (one error naming them all) or ``"skip"`` (warning).
    model_kwargs
        Extra :func:`~tileuq.build_model` hyperparameters (``drop_rate``, ``lengthscale``...).
    """
    t0 = time.perf_counter()
    settings = {k: v for k, v in locals().items() if k in RECORDED}
    if method not in METHODS:
        raise ModelError(f"method: unknown method {method!r}; choose one of {METHODS}")
    if int(epochs) < 1 or int(batch_size) < 2:
        raise DataError(f"epochs must be >= 1 and batch_size >= 2, got {epochs}, {batch_size}")
    if not (lr > 0 and weight_decay >= 0):
        raise DataError(f"lr must be > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
    if schedule not in ("cosine", "plateau"):
        raise DataError(f"schedule must be 'cosine' or 'plateau', got {schedule!r}")
    aug = resolve_augmentation(augmentation)
    dev = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if str(device) == "auto" else device
    )
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        data = yield from prepare_data(
            tiles, tile_px, classes, seed, val_fraction, split, train_subset, val_subset, on_error
        )
        hyper = model_hyperparameters(
            method, seed, members, mc_samples, len(data.train_images), model_kwargs
        )
        model = build_model(
            method,
            backbone,
            classes=data.folder.classes,
            colors=colors,
            tile_px=int(tile_px),
            mpp=mpp,
            name=name,
            **hyper,
        ).to(dev)
        n_members = len(model.members)
        n_train = len(data.train_images)
        steps = math.ceil(n_train / batch_size)
        if n_train % batch_size == 1 and steps > 1:
            steps -= 1
        bn_subset = np.sort(
            np.random.default_rng(seed).permutation(n_train)[: max(2, int(precise_bn_tiles))]
        )
        history: list[dict[str, Any]] = []
        member_info: list[dict[str, Any]] = []
        for k in range(n_members):
            net = model.members[k]
            info: dict[str, Any] = {"member": k, "init_seed": int(seed) + k}
            g_data, g_aug = seeded_generator(seed, k, 1), seeded_generator(seed, k, 2)
            opt, sched = make_optimizer(
                net, lr, weight_decay, schedule, round(warmup_epochs * steps), int(epochs) * steps
            )
            best: tuple[float, int, dict[str, torch.Tensor]] | None = None
            stale = 0
            for epoch in range(1, int(epochs) + 1):
                te = time.perf_counter()
                torch.manual_seed(seeded_generator(seed, k, 3, epoch).initial_seed())
                model.train()
                model.reset_precision()  # SNGP: exact per-epoch precision (no-op otherwise)
                loss_sum, correct, seen = 0.0, 0, 0
                chunks = batches(n_train, batch_size, g_data)
                for b, idx in enumerate(chunks):
                    xb = torch.from_numpy(data.train_images[idx.numpy()]).to(dev)
                    yb = torch.from_numpy(data.train_labels[idx.numpy()]).to(dev)
                    x = augment(xb, aug, g_aug) if aug is not None else to_float(xb)
                    logits = model(x, member=k) if method == "ensemble" else model(x)
                    loss = F.cross_entropy(logits, yb)  # raw logits (never mean-field)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if schedule == "cosine":
                        sched.step()
                    loss_sum += float(loss.detach()) * len(idx)
                    correct += int((logits.detach().argmax(-1) == yb).sum())
                    seen += len(idx)
                    yield TrainProgress(
                        "train", k, n_members, epoch, int(epochs), b + 1, len(chunks),
                        loss=loss_sum / seen, elapsed_s=time.perf_counter() - t0,
                    )  # fmt: skip
                if precise_bn:
                    refresh_batchnorm(
                        model, data.train_images[bn_subset], batch_size, dev,
                        member=k if method == "ensemble" else None, seed=seed + epoch,
                    )  # fmt: skip
                if method == "ensemble":
                    probs = member_val_probs(model, k, data.val_images, dev, eval_batch_size)
                else:
                    probs = predict_probabilities(model, data.val_images, eval_batch_size)
                val = classification_metrics(probs, data.val_labels)
                if schedule == "plateau":
                    sched.step(val["nll"])
                improved = best is None or val["nll"] < best[0]
                if improved:
                    state = {n_: t.detach().clone() for n_, t in net.state_dict().items()}
                    best, stale = (val["nll"], epoch, state), 0
                else:
                    stale += 1
                record = epoch_record(
                    k, epoch, opt, loss_sum, correct, seen, val, improved, time.perf_counter() - te
                )
                history.append(record)
                yield TrainProgress(
                    "epoch", k, n_members, epoch, int(epochs), len(chunks), len(chunks),
                    loss=record["train_loss"], metrics=record,
                    elapsed_s=time.perf_counter() - t0,
                )  # fmt: skip
                if patience is not None and stale >= int(patience):
                    break
            assert best is not None
            net.load_state_dict(best[2])
            info.update(
                best_epoch=best[1], best_val_nll=best[0], epochs_run=epoch,
                stopped_early=epoch < int(epochs),
            )  # fmt: skip
            member_info.append(info)
        if precise_bn:
            yield TrainProgress("precise_bn", 0, n_members, message="BatchNorm statistics")
            for k in range(n_members):
                refresh_batchnorm(
                    model, data.train_images, batch_size, dev,
                    member=k if method == "ensemble" else None, seed=seed,
                )  # fmt: skip
        model.eval()
        final_pass = None
        if method == "sngp":
            if sngp_final_pass:
                yield TrainProgress("final_pass", 0, n_members, message="SNGP precision")
                final_pass = rebuild_precision(model, data.train_images, dev, eval_batch_size)
            model.finalize()
        return (
            yield from finish(
                model, data, out, settings, aug=aug, final_pass_tiles=final_pass,
                members=member_info, history=history, device=dev, t0=t0,
            )
        )  # fmt: skip
    finally:
        torch.set_num_threads(old_threads)


def train(
    tiles: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, **kwargs: Any
) -> TileModel:
    """Train a model and return it (drains :func:`iter_train`; same arguments).

    Returns
    -------
    TileModel
        The trained model in eval mode; also saved to ``out`` when given.
    """
    return result_of(iter_train(tiles, out, **kwargs)).model
