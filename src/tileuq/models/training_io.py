"""Training plumbing: progress events, data preparation, metrics, provenance and saving."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from tileuq._io import write_json
from tileuq.errors import DataError
from tileuq.models.data import TileFolder, iter_decode, scan_tile_folder
from tileuq.models.splits import data_hash, read_split, stratified_split
from tileuq.models.tile_model import TileModel

__all__ = [
    "PreparedData",
    "TrainProgress",
    "TrainResult",
    "classification_metrics",
    "predict_probabilities",
]


@dataclass(frozen=True)
class TrainProgress:
    """Where a training run stands (yielded by :func:`tileuq.models.training.iter_train`).

    Attributes
    ----------
    stage
        ``"load"`` (decoding tiles), ``"train"`` (after each batch), ``"epoch"`` (after each
        epoch, with ``metrics``), ``"final_pass"`` (SNGP precision), ``"evaluate"``,
        ``"save"`` or ``"done"`` (with the final validation ``metrics``).
    member, members
        Ensemble member being trained (0 for single networks) and their number.
    epoch, epochs
        Current epoch (1-based) and the maximum.
    done, total
        Batches done in this epoch (``"load"``: tiles decoded) and in all.
    loss
        Running training loss of the epoch.
    metrics
        The epoch record (``"epoch"``) or the final validation metrics (``"done"``).
    elapsed_s
        Seconds since training started.
    message
        Optional detail.
    """

    stage: str
    member: int = 0
    members: int = 1
    epoch: int = 0
    epochs: int = 0
    done: int = 0
    total: int = 0
    loss: float | None = None
    metrics: dict[str, Any] | None = None
    elapsed_s: float = 0.0
    message: str = ""

    def __str__(self) -> str:
        who = f"member {self.member + 1}/{self.members} " if self.members > 1 else ""
        if self.stage in ("train", "epoch"):
            loss = f" loss {self.loss:.4f}" if self.loss is not None else ""
            return f"{who}epoch {self.epoch}/{self.epochs} {self.done}/{self.total}{loss}"
        return f"{self.stage} {self.done}/{self.total} {self.message}".strip()


@dataclass
class TrainResult:
    """What :func:`~tileuq.models.training.iter_train` returns."""

    model: TileModel
    out: Path | None
    metrics: dict[str, Any]
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)


@dataclass
class PreparedData:
    """Decoded training and validation tiles and where they came from."""

    folder: TileFolder
    train_index: NDArray[np.int64]
    val_index: NDArray[np.int64]
    train_images: NDArray[np.uint8] = field(repr=False)
    train_labels: NDArray[np.int64] = field(repr=False)
    val_images: NDArray[np.uint8] = field(repr=False)
    val_labels: NDArray[np.int64] = field(repr=False)
    split_info: dict[str, Any]
    skipped: list[str]


def prepare_data(
    tiles: str | os.PathLike[str],
    tile_px: int,
    classes: Sequence[str] | None,
    seed: int,
    val_fraction: float,
    split: str | os.PathLike[str] | Mapping[str, Any] | None,
    train_subset: str,
    val_subset: str | None,
    on_error: str,
) -> Generator[Any, None, PreparedData]:
    """Scan, split and decode the training data (yields ``"load"`` progress)."""
    folder = scan_tile_folder(tiles, classes)
    info: dict[str, Any] = {"seed": int(seed)}
    if split is not None:
        sp = read_split(split)
        info["file"] = None if isinstance(split, Mapping) else str(split)
        parts = sp["splits"]
        for part in (train_subset, val_subset):
            if part is not None and part not in parts:
                raise DataError(f"split: no part named {part!r} (parts: {sorted(parts)})")
        pool = folder.indices_of(parts[train_subset], f"split part {train_subset!r}")
        info["train_subset"] = train_subset
        val_given = (
            folder.indices_of(parts[val_subset], f"split part {val_subset!r}")
            if val_subset
            else None
        )
        info["val_subset"] = val_subset
    else:
        pool, val_given = np.arange(len(folder), dtype=np.int64), None
    if val_given is not None:
        if np.intersect1d(pool, val_given).size:
            raise DataError(f"split: parts {train_subset!r} and {val_subset!r} share files")
        train_idx, val_idx = np.sort(pool), np.sort(val_given)
    else:
        if not 0.0 < float(val_fraction) < 1.0:
            raise DataError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        counts = np.bincount(folder.labels[pool], minlength=len(folder.classes))
        few = [c for c, n in zip(folder.classes, counts, strict=True) if n < 2]
        if few:
            raise DataError(
                f"tiles {str(folder.root)!r}: class(es) {few} have fewer than 2 training tiles; "
                "each class needs at least one tile for training and one for validation"
            )
        a, b = stratified_split(folder.labels[pool], [1.0 - val_fraction, val_fraction], seed)
        train_idx, val_idx = pool[a], pool[b]
        info["val_fraction"] = float(val_fraction)
    missing = [c for c, n in folder.class_counts(train_idx).items() if n == 0]
    if missing:
        raise DataError(f"tiles {str(folder.root)!r}: no training tiles for class(es) {missing}")
    both = np.concatenate([train_idx, val_idx])
    images = yield from _decode_with_progress(folder, both, tile_px, on_error)
    imgs, kept, skipped = images
    is_train = np.isin(kept, train_idx)
    tr, va = kept[is_train], kept[~is_train]
    if len(tr) < 2 or len(va) < 1:
        raise DataError(f"tiles {str(folder.root)!r}: too few readable tiles to train")
    return PreparedData(
        folder=folder,
        train_index=tr,
        val_index=va,
        train_images=imgs[is_train],
        train_labels=folder.labels[tr],
        val_images=imgs[~is_train],
        val_labels=folder.labels[va],
        split_info=info,
        skipped=skipped,
    )


def _decode_with_progress(
    folder: TileFolder, indices: NDArray[np.int64], tile_px: int, on_error: str
) -> Generator[Any, None, tuple[NDArray[np.uint8], NDArray[np.int64], list[str]]]:
    gen = iter_decode(folder, indices, tile_px, on_error=on_error)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        yield TrainProgress("load", done=done, total=total, message="decoding tiles")


def predict_probabilities(model: TileModel, images: NDArray[np.uint8], batch_size: int) -> Any:
    """``model.predict`` probabilities ``(N, C)`` of uint8 tiles, batch by batch (numpy)."""
    out = [
        model.predict(images[i : i + batch_size])["probabilities"]
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy().astype(np.float64)


def classification_metrics(probs: Any, labels: Any) -> dict[str, float]:
    """Accuracy, NLL, Brier and top-label ECE (15 equal-width bins) of probabilities."""
    from tileuq.metrics import accuracy, brier, ece, nll

    p, y = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    return {
        "n": len(y),
        "accuracy": float(accuracy(p, y)),
        "nll": float(nll(p, y)),
        "ece": float(ece(p, y)),
        "brier": float(brier(p, y)),
    }


def _versions() -> dict[str, str]:
    import PIL

    from tileuq import __version__

    return {
        "tileuq": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }


def finish(
    model: TileModel,
    data: PreparedData,
    out: str | os.PathLike[str] | None,
    settings: dict[str, Any],
    **kw: Any,
) -> Generator[TrainProgress, None, TrainResult]:
    """Evaluate on the validation tiles, record provenance, save; return the result."""
    n = len(model.members)
    t0 = kw.pop("t0")
    yield TrainProgress("evaluate", 0, n, elapsed_s=time.perf_counter() - t0)
    final = classification_metrics(
        predict_probabilities(model, data.val_images, 128), data.val_labels
    )
    elapsed = time.perf_counter() - t0
    model.training_info = provenance(
        model, data, {**settings, **kw}, final=final, threads=torch.get_num_threads(),
        seconds=elapsed,
    )  # fmt: skip
    metrics = {"history": kw["history"], "members": kw["members"], "final": {"val": final}}
    if out is not None:
        yield TrainProgress("save", 0, n, message=str(out))
        save_training(model, Path(out), metrics, data)
    yield TrainProgress("done", 0, n, done=1, total=1, metrics=final, elapsed_s=elapsed)
    files = data.folder.files
    return TrainResult(
        model,
        None if out is None else Path(out),
        metrics,
        [files[i] for i in data.train_index],
        [files[i] for i in data.val_index],
    )


def provenance(
    model: TileModel, data: PreparedData, settings: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Build the manifest's ``"training"`` section."""
    folder = data.folder
    kw = {**settings, **extra}
    aug = kw["aug"]
    used = np.concatenate([data.train_index, data.val_index])
    recipe = {
        "optimizer": "AdamW",
        "lr": kw["lr"],
        "weight_decay": kw["weight_decay"],
        "no_weight_decay_on": "biases and normalization parameters",
        "batch_size": kw["batch_size"],
        "max_epochs": kw["epochs"],
        "schedule": kw["schedule"],
        "warmup_epochs": kw["warmup_epochs"] if kw["schedule"] == "cosine" else None,
        "early_stopping": {"monitor": "val_nll", "patience": kw["patience"], "keep": "best"},
        "loss": "cross-entropy on raw logits (no mean-field)",
        "augmentation": None if aug is None else aug.to_dict(),
        "precise_bn": (
            f"BatchNorm statistics re-estimated before each validation (on up to "
            f"{kw['precise_bn_tiles']} training tiles) and after training (all of them)"
            if kw["precise_bn"]
            else "no (exponential moving average from training)"
        ),
    }
    if model.method == "sngp":
        recipe["sngp_precision"] = (
            "reset every epoch; rebuilt after training by one pass over the training tiles "
            "on the final weights (eval backbone, no augmentation)"
            if kw["sngp_final_pass"]
            else "reset every epoch; kept from the best epoch (accumulated during training)"
        )
        recipe["sngp_final_pass_tiles"] = kw["final_pass_tiles"]
    return {
        "trainer": "tileuq.train",
        "seed": int(kw["seed"]),
        "data": {
            "root": str(folder.root),
            "hash": data_hash(folder, used),
            "hash_method": "sha256 of sorted lines '<relative path>\\t<sha256 of file bytes>\\n'"
            " over the training and validation files",
            "n_train": len(data.train_index),
            "n_val": len(data.val_index),
            "class_counts": {
                "train": folder.class_counts(data.train_index),
                "val": folder.class_counts(data.val_index),
            },
            "split": data.split_info,
            "skipped_unreadable": data.skipped,
        },
        "recipe": recipe,
        "members": kw["members"],
        "metrics": {"val": kw["final"]},
        "device": str(kw["device"]),
        "threads": int(kw["threads"]),
        "seconds": round(float(kw["seconds"]), 2),
        "versions": _versions(),
    }


def save_training(model: TileModel, out: Path, metrics: dict[str, Any], data: PreparedData) -> None:
    """Write the model, ``metrics.json`` and ``training_split.json`` into ``out``."""
    model.save(out)
    write_json(out / "metrics.json", {"model_id": model.model_id, **metrics})
    folder = data.folder
    write_json(
        out / "training_split.json",
        {
            "format": "tileuq-split",
            "format_version": 1,
            "dataset": folder.root.name,
            "classes": folder.classes,
            "splits": {
                "train": [folder.files[i] for i in data.train_index],
                "val": [folder.files[i] for i in data.val_index],
            },
        },
    )
