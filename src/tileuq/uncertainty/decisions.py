"""Reviewer decisions: the JSON Lines file the GUI writes beside a slide's results.

One JSON object per line (UTF-8), for example::

    {"x": 4096, "y": 2048, "plane": 0, "size": 448, "tile_px": 224, "prediction": "tumor",
     "decision": "relabel", "label": "stroma", "time": "2024-05-01T10:22:03+00:00",
     "reviewer": "jdoe", "slide": "case12.svs", "model_hash": "9f2c..."}

Required keys: ``x, y`` (level-0 top-left, int), ``plane`` (int), ``size`` (tile side in
level-0 px), ``prediction`` (class the model predicted), ``decision`` (``"accept"``,
``"relabel"``, ``"artefact"`` or ``"unsure"``), ``time`` (ISO 8601), ``reviewer``.
``label`` is required for ``"relabel"`` (the true class) and is the prediction for
``"accept"``.  Optional: ``tile_px``, ``slide``, ``model_hash``, ``note``.  When a tile appears
on several lines the last line wins (a reviewer may change their mind).

For calibration, ``accept`` = the prediction was right, ``relabel`` = it was wrong (unless the
label equals the prediction), ``artefact`` and ``unsure`` are left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tileuq._io import atomic_write
from tileuq.errors import CalibrationError

__all__ = [
    "DECISIONS",
    "DECISIONS_FILE",
    "append_decision",
    "decision_record",
    "read_decisions",
    "write_decisions",
]

DECISIONS_FILE = "decisions.jsonl"
DECISIONS = ("accept", "relabel", "artefact", "unsure")
_REQUIRED = ("x", "y", "plane", "size", "prediction", "decision", "time", "reviewer")
_INT = ("x", "y", "plane", "size", "tile_px")


def decision_record(
    *,
    x: int,
    y: int,
    plane: int = 0,
    size: int,
    prediction: str,
    decision: str,
    label: str | None = None,
    reviewer: str = "",
    tile_px: int | None = None,
    time: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build and validate one decision record (``time`` defaults to now, UTC)."""
    rec: dict[str, Any] = {
        "x": x,
        "y": y,
        "plane": plane,
        "size": size,
        "tile_px": tile_px,
        "prediction": prediction,
        "decision": decision,
        "label": prediction if decision == "accept" and label is None else label,
        "time": time or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reviewer": reviewer,
        **extra,
    }
    if rec["tile_px"] is None:
        del rec["tile_px"]
    return _validate(rec, "decision")


def _validate(rec: Any, where: str) -> dict[str, Any]:
    if not isinstance(rec, Mapping):
        raise CalibrationError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    rec = dict(rec)
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise CalibrationError(f"{where}: missing key(s) {missing}")
    for k in _INT:
        if k in rec and rec[k] is not None:
            v = rec[k]
            if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
                raise CalibrationError(f"{where}: {k} must be an integer, got {v!r}")
            rec[k] = int(v)
    if rec["decision"] not in DECISIONS:
        raise CalibrationError(
            f"{where}: decision must be one of {DECISIONS}, got {rec['decision']!r}"
        )
    if rec["decision"] == "relabel" and not rec.get("label"):
        raise CalibrationError(f"{where}: a 'relabel' decision needs a label")
    if rec["decision"] == "accept" and not rec.get("label"):
        rec["label"] = rec["prediction"]
    return rec


def read_decisions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a decisions file; the last line per tile ``(x, y, plane)`` wins.

    Returns
    -------
    pandas.DataFrame
        One row per tile with at least the required columns and ``label``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read decisions ({exc})") from exc
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path}:{i}: not valid JSON ({exc.msg})") from exc
        records.append(_validate(obj, f"{path}:{i}"))
    cols = [*_REQUIRED, "label"]
    if not records:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame.from_records(records)
    for c in cols:
        if c not in df.columns:
            df[c] = None
    return df.drop_duplicates(["x", "y", "plane"], keep="last").reset_index(drop=True)


def write_decisions(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> Path:
    """Write decision records as JSON Lines, atomically (validates every record)."""
    path = Path(path)
    recs = [_validate(r, f"{path}: record {i}") for i, r in enumerate(records)]
    with atomic_write(path, "w") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def append_decision(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Add one decision (the file is rewritten atomically; earlier lines are kept)."""
    path = Path(path)
    rec = _validate(record, "decision")
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    with atomic_write(path, "w") as f:
        f.write(old)
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path
