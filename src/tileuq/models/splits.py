r"""Stratified splits, split files and the data hash of labelled tile folders.

Split file (JSON, written by :func:`write_split`, read by :func:`read_split`)::

    {"format": "tileuq-split", "format_version": 1, "dataset": ..., "seed": 0,
     "fractions": {"train": 0.6, ...}, "classes": [...], "data_hash": ...,
     "counts": {"train": {"AC": 72, ...}, ...},
     "splits": {"train": ["AC/image_AC_1000.jpg", ...], "calibration": [...], "test": [...]}}

Only ``"splits"`` is required: names of files relative to the tile folder, ``/``-separated.

Data hash (:func:`data_hash`): sha256 over the sorted lines ``"<relative path>\t<sha256 of the
file bytes>\n"`` of the files used; it changes when a file is renamed, moved to another
class, or edited.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tileuq._io import write_json
from tileuq.errors import DataError
from tileuq.models.data import TileFolder

SPLIT_FORMAT = "tileuq-split"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_hash(folder: TileFolder, indices: Sequence[int] | NDArray[np.int64] | None = None) -> str:
    r"""Hash the files used: sha256 over sorted ``"<relative path>\t<sha256 of bytes>\n"``."""
    idx = range(len(folder)) if indices is None else [int(i) for i in indices]
    lines = sorted(f"{folder.files[i]}\t{file_sha256(folder.path(i))}\n" for i in idx)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def stratified_split(
    labels: Sequence[int] | NDArray[np.int64], fractions: Sequence[float], seed: int = 0
) -> list[NDArray[np.int64]]:
    """Split indices into parts with the given fractions, class by class.

    Each class is shuffled (``numpy.random.default_rng(seed)``, classes in label order) and cut
    by largest-remainder rounding, so every part keeps the class proportions to within one
    tile per class; a part with a non-zero fraction gets at least one tile of every class that
    has enough tiles for all such parts.  Returns one sorted index array per part.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or len(fr) < 1 or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise DataError(f"split fractions must be >= 0 and sum to 1, got {list(fractions)}")
    lab = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fr]
    nonzero = np.flatnonzero(fr > 0)
    for c in np.unique(lab):
        members = np.flatnonzero(lab == c)
        members = members[rng.permutation(len(members))]
        n = len(members)
        raw = fr * n
        counts = np.floor(raw).astype(np.int64)
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[: n - int(counts.sum())]] += 1
        if n >= len(nonzero):
            for k in nonzero:  # no empty part for this class: take one from the largest
                if counts[k] == 0:
                    counts[int(np.argmax(counts))] -= 1
                    counts[k] += 1
        ends = np.cumsum(counts)
        for j in range(len(fr)):
            parts[j] += members[int(ends[j] - counts[j]) : int(ends[j])].tolist()
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def make_split(
    folder: TileFolder,
    fractions: Mapping[str, float],
    seed: int = 0,
    *,
    dataset: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Build a split file dictionary: named stratified parts of ``folder``."""
    names = list(fractions)
    parts = stratified_split(folder.labels, [float(fractions[n]) for n in names], seed)
    return {
        "format": SPLIT_FORMAT,
        "format_version": 1,
        "dataset": dataset or folder.root.name,
        "note": note,
        "seed": int(seed),
        "fractions": {n: float(fractions[n]) for n in names},
        "classes": list(folder.classes),
        "data_hash": data_hash(folder),
        "counts": {n: folder.class_counts(p) for n, p in zip(names, parts, strict=True)},
        "splits": {n: [folder.files[i] for i in p] for n, p in zip(names, parts, strict=True)},
    }


def write_split(path: str | os.PathLike[str], split: Mapping[str, Any]) -> None:
    """Write a split dictionary as JSON, atomically."""
    write_json(path, dict(split))


def read_split(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Read and validate a split file (or dictionary): ``{"splits": {name: [relative paths]}}``."""
    import json

    where = "split" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        obj: Any = dict(source)
    else:
        try:
            obj = json.loads(Path(source).read_text(encoding="utf-8"))
        except OSError as exc:
            raise DataError(f"split file {where!r}: cannot be read ({exc})") from None
        except ValueError as exc:
            raise DataError(f"split file {where!r}: not valid JSON ({exc})") from None
    splits = obj.get("splits") if isinstance(obj, dict) else None
    if not isinstance(splits, dict) or not splits:
        raise DataError(
            f"split file {where!r}: expected an object with 'splits': {{name: [files]}}"
        )
    for name, files in splits.items():
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise DataError(f"split file {where!r}: split {name!r} must be a list of file names")
    return dict(obj)
