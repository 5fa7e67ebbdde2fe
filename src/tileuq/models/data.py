"""Labelled tile folders for training: scanning, decoding, stratified splits, split files, hashes.

A labelled tile folder holds one sub-folder per class (``tiles/AC/*.jpg``, ``tiles/H/*.jpg``,
...); files are found recursively inside each class folder, so ``tiles/AC/slide1/*.png`` works
too.  Files are named by their path relative to the root, with ``/`` separators
(``"AC/image_AC_1000.jpg"``); split files list those names.

Decoding rules (:func:`read_image`):

- any format Pillow reads (PNG, JPEG, TIFF, BMP, WebP, GIF; suffixes :data:`IMAGE_SUFFIXES`);
  TIFFs Pillow cannot decode (e.g. 16-bit RGB, float) are read with tifffile;
- transparency (RGBA, LA, palette with transparency) is composited **on white** (background
  of a slide), 16-bit and float images are scaled to 8 bits, grey is replicated to RGB;
- a non-square image is centre-cropped to a square (no stretching, so the resolution stays
  isotropic), then resized to ``tile_px`` with Pillow's antialiased bilinear filter, as
  :func:`tileuq.tiling.resize_tile` does for slide tiles.

Unreadable files: by default every file is decoded before training starts and **all**
unreadable files are reported in one :class:`~tileuq.errors.DataError` naming them
(``on_error="raise"``); ``on_error="skip"`` leaves them out with a warning that lists them,
and the training provenance records them.

Splits, split files and the data hash live in :mod:`tileuq.models.splits`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tileuq.errors import DataError
from tileuq.tile_images import IMAGE_SUFFIXES, decode_rgb, fit_square, read_image

__all__ = [
    "IMAGE_SUFFIXES",
    "TileFolder",
    "decode_rgb",
    "fit_square",
    "iter_decode",
    "read_image",
    "scan_tile_folder",
]

log = logging.getLogger(__name__)


@dataclass
class TileFolder:
    """The labelled image files of a class-per-subfolder tile folder.

    Attributes
    ----------
    root
        The folder.
    classes
        Class names in label order.
    files
        Relative POSIX paths of the image files (``"<class>/<...>/<name>"``), sorted.
    labels
        ``(N,)`` int64 label of each file (index into ``classes``).
    """

    root: Path
    classes: list[str]
    files: list[str]
    labels: NDArray[np.int64] = field(repr=False)

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        """Absolute path of file ``i``."""
        return self.root / self.files[i]

    def class_counts(
        self, indices: Sequence[int] | NDArray[np.int64] | None = None
    ) -> dict[str, int]:
        """Count the files per class (all files, or those at ``indices``)."""
        lab = self.labels if indices is None else self.labels[np.asarray(indices, dtype=np.int64)]
        counts = np.bincount(lab, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def indices_of(self, names: Sequence[str], what: str = "split") -> NDArray[np.int64]:
        """Return the indices of relative paths ``names`` (unknown ones raise, named)."""
        index = {f: i for i, f in enumerate(self.files)}
        missing = [n for n in names if n not in index]
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise DataError(f"{what}: {len(missing)} file(s) not found under {self.root}: {shown}")
        if len(set(names)) != len(names):
            raise DataError(f"{what}: lists the same file more than once")
        return np.asarray([index[n] for n in names], dtype=np.int64)


def scan_tile_folder(
    root: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    *,
    min_classes: int = 2,
) -> TileFolder:
    """List the images of a class-per-subfolder tile folder.

    Parameters
    ----------
    root
        The folder; each sub-folder holding images is a class (hidden folders are ignored).
    classes
        Class names in the wanted label order (default: sorted folder names).  Every folder
        with images must be one of them; a class without images is an error.
    min_classes
        Fewest classes accepted (2 for training).

    Raises
    ------
    DataError
        Missing or empty folder, too few classes, empty or unknown class folders.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"tiles {str(root)!r}: not a folder")
    found: dict[str, list[str]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        imgs = sorted(
            p.relative_to(root).as_posix()
            for p in d.rglob("*")
            if p.is_file()
            and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        if imgs:
            found[d.name] = imgs
    if not found:
        stray = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES][:3]
        hint = f" (images directly in the folder, e.g. {stray}, have no class)" if stray else ""
        raise DataError(
            f"tiles {str(root)!r}: no class sub-folders with images; expected "
            f"{root}/<class>/<image>.png, one sub-folder per class{hint}"
        )
    if classes is None:
        names = sorted(found)
    else:
        names = list(classes)
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise DataError(f"tiles {str(root)!r}: class folder(s) {unknown} are not in {names}")
        empty = [c for c in names if c not in found]
        if empty:
            raise DataError(f"tiles {str(root)!r}: no images for class(es) {empty}")
    if len(names) < min_classes:
        raise DataError(
            f"tiles {str(root)!r}: found {len(names)} class folder(s) {names}; training needs "
            f"at least {min_classes} classes (one sub-folder of images per class)"
        )
    files: list[str] = []
    labels: list[int] = []
    for i, c in enumerate(names):
        files += found[c]
        labels += [i] * len(found[c])
    return TileFolder(root, names, files, np.asarray(labels, dtype=np.int64))


def iter_decode(
    folder: TileFolder,
    indices: Sequence[int] | NDArray[np.int64],
    tile_px: int,
    *,
    on_error: str = "raise",
) -> Generator[tuple[int, int], None, tuple[NDArray[np.uint8], NDArray[np.int64], list[str]]]:
    """Decode the files at ``indices`` into memory, yielding ``(done, total)`` as it goes.

    Returns ``(images (n, tile_px, tile_px, 3) uint8, kept indices, skipped file messages)``.
    ``on_error="raise"`` tries every file, then raises one :class:`DataError` naming all the
    unreadable ones; ``"skip"`` leaves them out and logs a warning listing them.
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    idx = np.asarray(indices, dtype=np.int64)
    out = np.empty((len(idx), tile_px, tile_px, 3), dtype=np.uint8)
    kept: list[int] = []
    bad: list[str] = []
    step = max(1, len(idx) // 100)
    for j, i in enumerate(idx):
        try:
            out[len(kept)] = read_image(folder.path(int(i)), tile_px)
            kept.append(int(i))
        except (OSError, ValueError) as exc:
            bad.append(f"{folder.files[int(i)]} ({exc})")
        if (j + 1) % step == 0 or j + 1 == len(idx):
            yield j + 1, len(idx)
    if bad:
        shown = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        if on_error == "raise":
            raise DataError(f"tiles {str(folder.root)!r}: unreadable image file(s): {shown}")
        log.warning("skipped %d unreadable image file(s): %s", len(bad), shown)
    return out[: len(kept)], np.asarray(kept, dtype=np.int64), bad
