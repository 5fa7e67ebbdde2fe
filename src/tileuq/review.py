"""Reviewing flagged tiles without Qt: the queue order and the decisions file.

The napari review widget (:mod:`tileuq.napari.review_widget`) is a thin shell over this module,
so the logic can be tested and reused from scripts.

Queue
    :func:`review_queue` orders the tiles a reviewer should look at: the rejected tiles (by the
    calibration, or the table's ``rejected`` column) from most to least uncertain
    (``order="score"``), unfamiliar before ambiguous (``order="reason"``), or — for building an
    *unbiased* calibration set — a seeded random sample of all tiles (``order="random"``).
    Without any rejection information the most uncertain tiles come first.

Decisions file
    ``decisions.jsonl`` beside the results (format: :mod:`tileuq.uncertainty.decisions`, one
    JSON object per line, the last line per tile wins).  :class:`DecisionLog` appends each
    decision as one ``write`` on a file opened with ``O_APPEND``, then ``fsync`` s it: a crash
    (even ``kill -9``) loses at most the decision being written, never an earlier one.  A line
    cut short by a crash or a full disk is set aside on the next load (kept in
    ``decisions.jsonl.damaged``) instead of making the file unreadable.

Calibration caveat
    Decisions on *flagged* tiles are not a random sample of the slide: a calibration fitted on
    them describes the hardest tiles, not the slide.  Review ``order="random"`` tiles to build
    a set whose guarantee holds for the slide (see ``docs/calibration.md``).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tileuq.errors import CalibrationError, ResultsError
from tileuq.uncertainty.decisions import (
    DECISIONS,
    DECISIONS_FILE,
    decision_record,
    read_decisions,
)

log = logging.getLogger(__name__)

__all__ = [
    "DECISION_CODES",
    "DECISION_COLORS",
    "ORDERS",
    "DecisionLog",
    "decided_rows",
    "decision_for_tile",
    "decisions_grid_codes",
    "describe_tile",
    "match_decisions",
    "next_undecided",
    "primary_score",
    "read_decisions_empty",
    "review_queue",
]

ORDERS = ("score", "reason", "random")
#: label value of each decision in the decisions layer (0 = not decided)
DECISION_CODES: dict[str, int] = {d: i + 1 for i, d in enumerate(DECISIONS)}
DECISION_COLORS: dict[str, str] = {
    "accept": "#1a9850",  # green
    "relabel": "#4575b4",  # blue
    "artefact": "#7f7f7f",  # grey
    "unsure": "#fee08b",  # yellow
}
#: preference order for the primary score when no calibration says (queue order, default
#: heatmap, overview): a carried feature distance first (on real data the reliable "unfamiliar"
#: signal, ``docs/evidence.md``), then the method's own score, then the softmax scores
PREFERRED_SCORES = (
    "mahalanobis",
    "knn_euclidean",
    "knn_cosine",
    "variance",
    "mutual_information",
    "entropy",
    "margin",
    "msp",
    "energy",
)


def primary_score(results: Any, calibration: Any = None) -> str:
    """Score used to order the queue: the calibration's primary score, else a sensible one."""
    table = getattr(results, "table", results)
    if calibration is not None and calibration.score in table.columns:
        return str(calibration.score)
    names = list(getattr(results, "score_names", []) or [])
    for s in PREFERRED_SCORES:
        if s in table.columns and (not names or s in names):
            return s
    if names:
        return names[0]
    raise ResultsError("results table: no uncertainty score column to order tiles by")


def review_queue(
    table: pd.DataFrame,
    *,
    score: str,
    rejected: np.ndarray | None = None,
    reason: np.ndarray | None = None,
    order: str = "score",
    limit: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Row indices of ``table`` in the order a reviewer should see them.

    Parameters
    ----------
    table
        A results table with the ``score`` column.
    score
        Score to sort by (larger = less trustworthy; NaN counts as the largest).
    rejected, reason
        Per-row rejection flags and reasons (e.g. from ``Calibration.decide``).  ``None``: use
        the table's ``rejected``/``reason`` columns if present, else queue every tile.
    order
        ``"score"`` (most uncertain first), ``"reason"`` (unfamiliar, then ambiguous, each
        most uncertain first) or ``"random"`` (a seeded random sample of **all** tiles, for an
        unbiased calibration set).
    limit
        Keep at most this many tiles.
    seed
        Seed of ``order="random"``.
    """
    if order not in ORDERS:
        raise ResultsError(f"order: expected one of {ORDERS}, got {order!r}")
    if score not in table.columns:
        raise ResultsError(f"score {score!r} is not a column of the results table")
    n = len(table)
    if order == "random":
        idx = np.random.default_rng(seed).permutation(n)
        return idx[:limit] if limit is not None else idx
    if rejected is None and "rejected" in table.columns:
        rejected = table["rejected"].to_numpy(dtype=bool)
        if reason is None and "reason" in table.columns:
            reason = table["reason"].to_numpy()
    s = table[score].to_numpy(dtype=np.float64, na_value=np.nan)
    s = np.where(np.isnan(s), np.inf, s)
    keys: list[np.ndarray] = [np.arange(n), -s]  # lexsort: last key is the primary one
    if order == "reason" and reason is not None:
        keys.append(np.where(np.asarray(reason) == "unfamiliar", 0, 1))
    idx = np.lexsort(keys)
    if rejected is not None:
        idx = idx[np.asarray(rejected, dtype=bool)[idx]]
    return idx[:limit] if limit is not None else idx


def decision_for_tile(
    results: Any,
    index: int,
    decision: str,
    *,
    label: str | None = None,
    reviewer: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Build the decision record for row ``index`` of ``results.table``.

    Parameters
    ----------
    results
        TileResults the tile belongs to.
    index
        Row (position) in the table.
    decision
        ``"accept"``, ``"relabel"``, ``"artefact"`` or ``"unsure"``.
    label
        The true class for ``"relabel"``; a relabel to the predicted class is stored as
        ``"accept"``.
    reviewer
        Reviewer name (default: the login name).
    note
        Free text.
    """
    row = results.table.iloc[int(index)]
    prediction = str(row["prediction"])
    if decision == "relabel":
        if label not in results.classes:
            raise CalibrationError(
                f"label: {label!r} is not a class of the model ({results.classes})"
            )
        if label == prediction:
            decision = "accept"
    extra: dict[str, Any] = {}
    slide = results.meta.get("slide", {}).get("name")
    model_hash = results.meta.get("model", {}).get("hash")
    if slide:
        extra["slide"] = str(slide)
    if model_hash:
        extra["model_hash"] = str(model_hash)
    if note:
        extra["note"] = note
    tile_px = results.meta.get("spec", {}).get("tile_px")
    return decision_record(
        x=int(row["x"]),
        y=int(row["y"]),
        plane=int(row["plane"]),
        size=int(row["size"]),
        prediction=prediction,
        decision=decision,
        label=label if decision == "relabel" else None,
        reviewer=default_reviewer() if reviewer is None else reviewer,
        tile_px=int(tile_px) if tile_px is not None else None,
        **extra,
    )


def describe_tile(results: Any, index: int) -> str:
    """Two lines about a tile for people: position, prediction, top probabilities, scores."""
    t = results.table.iloc[int(index)]
    probs = sorted(
        ((float(t[f"prob_{c}"]), c) for c in results.classes if f"prob_{c}" in t.index),
        reverse=True,
    )
    top = ", ".join(f"{c} {p:.2f}" for p, c in probs[:3])
    scores = ", ".join(f"{s} {float(t[s]):.3g}" for s in results.score_names if s in t.index)
    reason = f" — rejected: {t['reason']}" if "reason" in t.index and t["reason"] else ""
    return (
        f"x={int(t['x'])}, y={int(t['y'])}: predicted {t['prediction']} ({top}){reason}\n{scores}"
    )


def default_reviewer() -> str:
    """Return the login name, or ``""`` when there is none."""
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers)
        return ""


class DecisionLog:
    """Append-only decisions file (see the module docstring).

    Parameters
    ----------
    path
        The ``.jsonl`` file, or a results folder (``decisions.jsonl`` inside it).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        self.path = p / DECISIONS_FILE if p.is_dir() else p

    def __repr__(self) -> str:
        return f"DecisionLog({str(self.path)!r})"

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``record`` and append it durably (one ``write`` + ``fsync``)."""
        try:
            rec = decision_record(**dict(record))
        except TypeError as exc:  # a missing or unknown keyword
            raise CalibrationError(f"decision record: {exc}") from exc
        data = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        new = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ResultsError(f"{self.path}: cannot open the decisions file ({exc})") from exc
        try:
            self._start_on_new_line(fd)
            written = os.write(fd, data)
            if written != len(data):
                raise ResultsError(f"{self.path}: short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError as exc:
            raise ResultsError(f"{self.path}: cannot write the decision ({exc})") from exc
        finally:
            os.close(fd)
        if new:
            _fsync_dir(self.path.parent)
        return rec

    def _start_on_new_line(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(fd, b"\n")

    def load(self) -> pd.DataFrame:
        """Read the decisions (last per tile wins); an empty table when there is no file.

        A last line cut short by a crash is moved to ``<file>.damaged`` with a warning.
        """
        if not self.path.exists():
            return read_decisions_empty()
        self._repair_tail()
        return read_decisions(self.path)

    def _repair_tail(self) -> None:
        raw = self.path.read_bytes()
        if not raw or raw.endswith(b"\n"):
            return
        cut = raw.rfind(b"\n") + 1
        tail = raw[cut:]
        try:
            json.loads(tail.decode("utf-8"))
            return  # a complete record that only lacks its newline
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass
        log.warning("%s: setting aside an incomplete last line (%d bytes)", self.path, len(tail))
        damaged = self.path.with_name(self.path.name + ".damaged")
        with open(damaged, "ab") as f:
            f.write(tail + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with open(self.path, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())


def read_decisions_empty() -> pd.DataFrame:
    """Return an empty decisions table with the standard columns."""
    cols = ["x", "y", "plane", "size", "prediction", "decision", "time", "reviewer", "label"]
    return pd.DataFrame(columns=cols)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform / filesystem
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def match_decisions(table: pd.DataFrame, decisions: pd.DataFrame) -> np.ndarray:
    """Row index in ``table`` of each decision (``-1`` when the tile is not in the table).

    Tiles are matched on ``(x, y, plane)``.
    """
    if decisions.empty:
        return np.empty(0, dtype=np.int64)
    key = pd.MultiIndex.from_arrays(
        [table["x"].to_numpy(np.int64), table["y"].to_numpy(np.int64), table["plane"].to_numpy()]
    )
    want = pd.MultiIndex.from_arrays(
        [
            decisions["x"].to_numpy(np.int64),
            decisions["y"].to_numpy(np.int64),
            decisions["plane"].to_numpy(np.int64),
        ]
    )
    return np.asarray(key.get_indexer(want), dtype=np.int64)


def decisions_grid_codes(decisions: pd.DataFrame) -> np.ndarray:
    """Label value (:data:`DECISION_CODES`) of every decision row."""
    return np.asarray(
        [DECISION_CODES.get(str(d), 0) for d in decisions.get("decision", [])], dtype=np.uint8
    )


def decided_rows(table: pd.DataFrame, decisions: pd.DataFrame) -> set[int]:
    """Table rows that already have a decision."""
    idx = match_decisions(table, decisions)
    return {int(i) for i in idx if i >= 0}


def next_undecided(
    queue: Sequence[int] | np.ndarray, decided: set[int], start: int = 0, step: int = 1
) -> int:
    """Position in ``queue`` of the first undecided tile from ``start`` in direction ``step``.

    Returns ``start`` clipped to the queue when every tile from there on is decided.
    """
    n = len(queue)
    if n == 0:
        return 0
    pos = min(max(start, 0), n - 1)
    while 0 <= pos < n:
        if int(queue[pos]) not in decided:
            return pos
        pos += step
    return min(max(start, 0), n - 1)
