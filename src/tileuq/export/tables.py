"""The results table, with the calibration columns, as CSV or Parquet (written atomically).

Columns are those of :class:`~tileuq.TileResults` (``x, y, size, row, col, plane, tissue,
prob_<class>..., prediction, pred_index, confidence, <scores>``) followed, when a calibration
is known, by ``rejected`` (bool) and ``reason`` (``""``, ``"unfamiliar"``, ``"ambiguous"``).
``prediction`` is written as the class name.  CSV uses ``.`` decimals, ``,`` separators, a
header row and no index, and round-trips through :func:`read_table`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tileuq._io import atomic_path
from tileuq.errors import ResultsError
from tileuq.export._common import prepare

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults

__all__ = ["FORMATS", "export_table", "read_table", "table_for_export"]

FORMATS = ("csv", "parquet")


def table_for_export(
    results: TileResults | str | os.PathLike[str], calibration: Any = None
) -> pd.DataFrame:
    """Return the results table with ``rejected``/``reason`` when a calibration is known.

    Returns
    -------
    pandas.DataFrame
    """
    res, _ = prepare(results, calibration)
    table = res.table.copy()
    if "reason" in table.columns:
        table["reason"] = table["reason"].astype(str)
    if "rejected" in table.columns:
        table["rejected"] = table["rejected"].astype(bool)
    return table


def export_table(
    results: TileResults | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    calibration: Any = None,
    fmt: str | None = None,
) -> Path:
    """Write the results table to ``path`` as CSV or Parquet, atomically.

    Parameters
    ----------
    results
        :class:`~tileuq.TileResults` or a results folder.
    path
        Output file; the format follows its suffix (``.csv``, ``.parquet``) unless ``fmt``.
    calibration
        See :func:`tileuq.export.resolve_calibration`.
    fmt
        ``"csv"`` or ``"parquet"``.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt == "pq":
        fmt = "parquet"
    if fmt not in FORMATS:
        raise ResultsError(f"{path}: unknown table format {fmt!r}; use .csv or .parquet")
    table = table_for_export(results, calibration)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False, float_format="%.9g")
        else:
            table.to_parquet(tmp, index=False, compression="zstd")
    return path


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written by :func:`export_table` (CSV or Parquet) with its dtypes."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path, keep_default_na=False, na_values=["", "NaN", "nan"])
        else:
            table = pd.read_parquet(path)
    except Exception as exc:  # pandas/pyarrow raise several types
        raise ResultsError(f"{path}: cannot read the table ({exc})") from exc
    if "reason" in table.columns:
        table["reason"] = table["reason"].fillna("").astype(str)
    if "rejected" in table.columns and table["rejected"].dtype != bool:
        table["rejected"] = table["rejected"].astype(str).str.lower().isin({"true", "1"})
    for c in table.columns:
        if c.startswith("prob_") or c in ("tissue", "confidence"):
            table[c] = table[c].astype(np.float32)
    return table
