"""Per-tile results of one slide: :class:`TileResults` (``tiles.parquet`` + ``run.json``).

A result folder holds two files written atomically (temporary file + rename):

``tiles.parquet``
    One row per tile, in tile order (plane, then grid order).  Columns: ``x, y`` (level-0
    top-left), ``size`` (tile side in level-0 px), ``row, col`` (grid indices), ``plane``,
    ``tissue`` (tissue fraction), ``prob_<class>`` per class, ``prediction`` (class name,
    categorical), ``pred_index``, ``confidence`` and one column per uncertainty score the model
    gives (larger = less trustworthy).
``run.json``
    :attr:`TileResults.meta`: slide (path, header hash, geometry), model (id, hash, method,
    classes, colors, tile_px, mpp), spec (tiling), versions, device, timings and ``status``
    (``"complete"`` or ``"partial"``).

This module imports neither torch nor napari: results can be read anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tileuq._io import atomic_path, write_json
from tileuq.errors import ResultsError

TABLE_FILE = "tiles.parquet"
META_FILE = "run.json"
FORMAT = "tileuq.tile-results"
FORMAT_VERSION = 1

#: columns every table starts with, in order, with their dtypes
BASE_COLUMNS: dict[str, str] = {
    "x": "int64",
    "y": "int64",
    "size": "int32",
    "row": "int32",
    "col": "int32",
    "plane": "int32",
    "tissue": "float32",
}


def prob_column(class_name: str) -> str:
    """Name of the probability column of ``class_name``."""
    return f"prob_{class_name}"


def build_table(
    geometry: Mapping[str, np.ndarray],
    probabilities: np.ndarray,
    pred_index: np.ndarray,
    confidence: np.ndarray,
    scores: Mapping[str, np.ndarray],
    classes: Sequence[str],
    score_names: Sequence[str],
) -> pd.DataFrame:
    """Assemble a results table with the canonical column order and dtypes.

    Parameters
    ----------
    geometry
        Arrays for :data:`BASE_COLUMNS` (``x, y, size, row, col, plane, tissue``), length N.
    probabilities
        ``(N, C)`` class probabilities.
    pred_index, confidence
        ``(N,)`` predicted class index and its confidence.
    scores
        ``{name: (N,)}`` uncertainty scores.
    classes, score_names
        Class names (C) and score names, in column order.
    """
    n = len(pred_index)
    cols: dict[str, Any] = {}
    for name, dtype in BASE_COLUMNS.items():
        cols[name] = np.asarray(geometry[name]).astype(dtype, copy=False).reshape(n)
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(n, len(classes))
    for j, c in enumerate(classes):
        cols[prob_column(c)] = probabilities[:, j]
    pred_index = np.asarray(pred_index, dtype=np.int64).reshape(n)
    cols["prediction"] = pd.Categorical.from_codes(pred_index, categories=pd.Index(list(classes)))
    cols["pred_index"] = pred_index
    cols["confidence"] = np.asarray(confidence, dtype=np.float32).reshape(n)
    for s in score_names:
        if s in cols:
            raise ResultsError(f"score name {s!r} collides with a results column")
        cols[s] = np.asarray(scores[s], dtype=np.float32).reshape(n)
    return pd.DataFrame(cols)


class TileResults:
    """Per-tile predictions and uncertainty of one slide.

    Parameters
    ----------
    table
        One row per tile (see the module docstring for the columns).
    meta
        The ``run.json`` dictionary.

    Examples
    --------
    >>> res = TileResults.load("tileuq-out/CMU-1-Small-Region")  # doctest: +SKIP
    >>> res.table.groupby("prediction").size()  # doctest: +SKIP
    >>> heat = res.grid("entropy")  # (n_rows, n_cols), NaN where no tile  # doctest: +SKIP
    """

    def __init__(self, table: pd.DataFrame, meta: dict[str, Any]) -> None:
        self.table = table
        self.meta = meta

    # ------------------------------------------------------------------ convenience
    @property
    def classes(self) -> list[str]:
        """Class names in probability-column order."""
        return list(self.meta["model"]["classes"])

    @property
    def colors(self) -> list[str]:
        """One ``"#rrggbb"`` colour per class."""
        return list(self.meta["model"].get("colors") or [])

    @property
    def score_names(self) -> list[str]:
        """Names of the uncertainty-score columns (larger = less trustworthy)."""
        return list(self.meta["model"]["score_names"])

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of the tile lattice."""
        r, c = self.meta["spec"]["grid_shape"]
        return int(r), int(c)

    @property
    def mpp(self) -> float | None:
        """Target µm per tile pixel (``None``: native level-0 pixels)."""
        mpp = self.meta["spec"].get("mpp")
        return None if mpp is None else float(mpp)

    @property
    def status(self) -> str:
        """``"complete"`` or ``"partial"``."""
        return str(self.meta.get("status", "complete"))

    @property
    def planes(self) -> list[int]:
        """Planes present in the run (``[0]`` for an ordinary slide)."""
        return [int(p) for p in self.meta["spec"].get("planes", [0])]

    @property
    def origin(self) -> tuple[int, int]:
        """Level-0 ``(x, y)`` of grid cell ``(0, 0)``."""
        x0, y0 = self.meta["spec"].get("origin", (0, 0))
        return int(x0), int(y0)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        name = self.meta.get("slide", {}).get("name", "?")
        return (
            f"<TileResults {name!r}: {len(self)} tiles, {len(self.classes)} classes, "
            f"grid {self.grid_shape}, {self.status}>"
        )

    def grid(self, column: str, *, plane: int | None = None) -> np.ndarray:
        """Return a column as a small per-tile image.

        Parameters
        ----------
        column
            A numeric or boolean column; ``"prediction"`` gives the class index.
        plane
            Plane of a stack.  ``None``: a 2-D array for an ordinary slide, a 3-D
            ``(planes, n_rows, n_cols)`` array for a stack.

        Returns
        -------
        numpy.ndarray
            ``float64`` ``(n_rows, n_cols)`` (or ``(planes, n_rows, n_cols)``) with NaN where no
            tile was kept.  Cell ``(row, col)`` covers level-0
            ``x = origin_x + col * stride``, ``y = origin_y + row * stride``.
        """
        if column == "prediction":
            column = "pred_index"
        if column not in self.table.columns:
            raise ResultsError(
                f"no column {column!r} in the results (columns: {', '.join(self.table.columns)})"
            )
        values = self.table[column]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            raise ResultsError(f"column {column!r} is not numeric; grid() needs numbers")
        n_rows, n_cols = self.grid_shape
        planes = self.planes if plane is None else [plane]
        out = np.full((len(planes), n_rows, n_cols), np.nan, dtype=np.float64)
        tab_plane = self.table["plane"].to_numpy()
        rows = self.table["row"].to_numpy()
        cols = self.table["col"].to_numpy()
        vals = values.to_numpy(dtype=np.float64, na_value=np.nan)
        for k, p in enumerate(planes):
            sel = tab_plane == p
            out[k, rows[sel], cols[sel]] = vals[sel]
        return out[0] if (plane is not None or len(planes) == 1) else out

    # ------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``tiles.parquet`` then ``run.json`` into ``folder``, each atomically.

        ``run.json`` is written last so that its presence marks a usable folder.
        """
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"cannot create results folder {folder}: {exc}") from exc
        write_table(self.table, folder / TABLE_FILE)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.meta}
        write_json(folder / META_FILE, meta)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> TileResults:
        """Read a result folder written by :meth:`save` (or by a run).

        Raises
        ------
        ResultsError
            When the folder, ``run.json`` or ``tiles.parquet`` is missing or unreadable, or the
            table does not match its metadata.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ResultsError(f"{folder}: not a results folder (it does not exist)")
        meta = read_meta(folder)
        table_path = folder / TABLE_FILE
        if not table_path.is_file():
            raise ResultsError(f"{table_path}: missing (the run did not finish writing)")
        try:
            table = pd.read_parquet(table_path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise ResultsError(f"{table_path}: cannot read the table ({exc})") from exc
        try:
            classes = list(meta["model"]["classes"])
            missing = [
                c
                for c in [*BASE_COLUMNS, *map(prob_column, classes), "pred_index"]
                if c not in table.columns
            ]
        except (KeyError, TypeError) as exc:
            raise ResultsError(f"{folder / META_FILE}: incomplete metadata ({exc})") from exc
        if missing:
            raise ResultsError(f"{table_path}: columns missing: {', '.join(missing)}")
        # parquet keeps categories only when there are rows; restore them from the metadata
        table["prediction"] = pd.Categorical.from_codes(
            table["pred_index"].to_numpy(dtype=np.int64), categories=pd.Index(classes)
        )
        return cls(table, meta)


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write a table to parquet atomically (deterministic bytes for equal tables)."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False, compression="zstd")


def read_meta(folder: Path) -> dict[str, Any]:
    """Read and check ``run.json`` of a result folder."""
    path = folder / META_FILE
    if not path.is_file():
        raise ResultsError(f"{path}: missing (not a tileuq results folder, or unfinished run)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ResultsError(f"{path}: not a tileuq results file (format {found!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ResultsError(
            f"{path}: written by a newer tileuq (format version {meta['format_version']})"
        )
    for key in ("model", "spec", "slide"):
        if not isinstance(meta.get(key), dict):
            raise ResultsError(f"{path}: the {key!r} section is missing")
    return meta
