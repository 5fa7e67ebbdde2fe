"""Labelled tile sets for calibration and evaluation: folders of images and arrays.

A labelled folder holds one sub-folder per class, named exactly as the model's classes
(``tiles/tumor/*.png``, ``tiles/stroma/*.png``, ...).  Images are read exactly as training
reads them (:func:`tileuq.tile_images.read_image`: transparency on white, centre square,
resized to the model's ``tile_px``), so calibration sees the tiles the model was trained on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tileuq.errors import CalibrationError
from tileuq.tile_images import IMAGE_SUFFIXES, read_image

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "TileSet",
    "iter_image_batches",
    "list_images",
    "tile_arrays",
    "tile_folder",
    "unlabelled_folder",
]


@dataclass
class TileSet:
    """Paths (or an array) of tiles with integer labels into ``classes`` (-1: unlabelled)."""

    paths: list[Path] | None
    images: NDArray[np.uint8] | None
    labels: NDArray[np.int64]
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.labels.size)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """All image files under ``folder`` (recursive, sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: not a folder")
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def tile_folder(folder: str | os.PathLike[str], classes: Sequence[str]) -> TileSet:
    """Scan a labelled folder with one sub-folder per class.

    Raises
    ------
    CalibrationError
        When the folder is missing or empty, or holds class folders the model does not know
        (named in the message, with the model's classes).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: not a folder")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    with_images = [d for d in subdirs if list_images(d)]
    if not with_images:
        raise CalibrationError(
            f"{folder}: expected one sub-folder of images per class (e.g. "
            f"{folder}/{classes[0] if classes else 'tumor'}/*.png); found none"
        )
    index = {c: i for i, c in enumerate(classes)}
    unknown = [d.name for d in with_images if d.name not in index]
    if unknown:
        raise CalibrationError(
            f"{folder}: class folder(s) {unknown} are not classes of the model "
            f"(model classes: {list(classes)})"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for d in with_images:
        imgs = list_images(d)
        paths += imgs
        labels += [index[d.name]] * len(imgs)
    return TileSet(paths, None, np.asarray(labels, dtype=np.int64), list(classes), str(folder))


def read_tile(path: Path, tile_px: int) -> NDArray[np.uint8]:
    """Read one image as ``(tile_px, tile_px, 3)`` uint8 RGB (raises ``OSError``/``ValueError``)."""
    return read_image(path, tile_px)


def iter_image_batches(
    tiles: TileSet, tile_px: int, batch_size: int = 64, *, on_error: str = "raise"
) -> Iterator[tuple[NDArray[np.uint8], NDArray[np.int64]]]:
    """Yield ``(images, indices)`` batches of a TileSet.

    Unreadable files raise a :class:`CalibrationError` naming them (``on_error="raise"``, after
    trying every file of the batch) or are skipped with a warning (``on_error="skip"``).
    """
    if tiles.images is not None:
        imgs = tiles.images
        for i in range(0, len(imgs), batch_size):
            idx = np.arange(i, min(i + batch_size, len(imgs)), dtype=np.int64)
            yield _resize_array(imgs[idx], tile_px), idx
        return
    assert tiles.paths is not None
    bad: list[str] = []
    for i in range(0, len(tiles.paths), batch_size):
        arrays, kept = [], []
        for j in range(i, min(i + batch_size, len(tiles.paths))):
            try:
                arrays.append(read_tile(tiles.paths[j], tile_px))
                kept.append(j)
            except (OSError, ValueError, SyntaxError) as exc:
                bad.append(f"{tiles.paths[j]} ({exc})")
        if bad and on_error == "raise":
            shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise CalibrationError(f"unreadable tile image(s): {shown}")
        if arrays:
            yield np.stack(arrays), np.asarray(kept, dtype=np.int64)
    if bad:
        log.warning("skipped %d unreadable tile image(s): %s", len(bad), "; ".join(bad[:5]))


def _resize_array(batch: NDArray[np.uint8], tile_px: int) -> NDArray[np.uint8]:
    if batch.shape[1:3] == (tile_px, tile_px):
        return batch
    from PIL import Image

    return np.stack(
        [
            np.asarray(
                Image.fromarray(im).resize((tile_px, tile_px), Image.Resampling.BILINEAR),
                dtype=np.uint8,
            )
            for im in batch
        ]
    )


def tile_arrays(images: object, labels: object, classes: Sequence[str]) -> TileSet:
    """Wrap ``(N, H, W, 3)`` uint8 images and labels (indices or class names)."""
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[-1] != 3:
        raise CalibrationError(f"images: expected (N, H, W, 3) RGB tiles, got shape {imgs.shape}")
    if imgs.dtype != np.uint8:
        raise CalibrationError(f"images: expected uint8 tiles, got {imgs.dtype}")
    lab = np.asarray(labels).ravel()
    if lab.size != imgs.shape[0]:
        raise CalibrationError(f"labels: expected {imgs.shape[0]} values, got {lab.size}")
    if lab.dtype.kind in "OUS":
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in lab if str(v) not in index})
        if unknown:
            raise CalibrationError(
                f"labels: class(es) {unknown} are not classes of the model "
                f"(model classes: {list(classes)})"
            )
        lab = np.asarray([index[str(v)] for v in lab], dtype=np.int64)
    else:
        lab = lab.astype(np.int64)
        bad = sorted({int(v) for v in lab if not 0 <= v < len(classes)})
        if bad:
            raise CalibrationError(
                f"labels: class index(es) {bad} out of range for a model with "
                f"{len(classes)} classes {list(classes)}"
            )
    return TileSet(None, imgs, lab, list(classes), "arrays")


def unlabelled_folder(folder: str | os.PathLike[str]) -> TileSet:
    """All images under ``folder`` (recursive) as an unlabelled TileSet (labels ``-1``)."""
    paths = list_images(folder)
    if not paths:
        raise CalibrationError(f"{folder}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return TileSet(paths, None, np.full(len(paths), -1, dtype=np.int64), [], str(folder))
