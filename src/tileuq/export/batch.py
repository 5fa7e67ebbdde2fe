"""Batch report: one sortable summary table over a ``tileuq run`` output folder.

``write_batch_report(batch_dir)`` writes each slide's ``report.html`` into its folder, then
``<batch_dir>/index.html`` (a self-contained page; click a column header to sort) linking to
them, and the same table as ``<batch_dir>/summary.csv``.  Slides that failed (``error.txt``
without results) are listed with their error.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from tileuq._io import atomic_path, atomic_write
from tileuq.errors import ResultsError, TileuqError
from tileuq.export import _html as h

log = logging.getLogger(__name__)

__all__ = ["INDEX_FILE", "SUMMARY_FILE", "BatchRow", "scan_batch", "write_batch_report"]

INDEX_FILE = "index.html"
SUMMARY_FILE = "summary.csv"


@dataclass
class BatchRow:
    """One slide of a batch: its folder, status and summary numbers."""

    folder: Path
    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    report: Path | None = None


def scan_batch(batch_dir: str | os.PathLike[str]) -> list[Path]:
    """Slide folders of a batch (subfolders with ``run.json`` or ``error.txt``), sorted.

    A results folder given directly counts as a batch of one.
    """
    from tileuq.engine.results import META_FILE
    from tileuq.engine.resume import ERROR_FILE

    root = Path(batch_dir)
    if not root.is_dir():
        raise ResultsError(f"{root}: not a folder")
    if (root / META_FILE).is_file():
        return [root]
    found = [
        p
        for p in sorted(root.iterdir())
        if p.is_dir() and ((p / META_FILE).is_file() or (p / ERROR_FILE).is_file())
    ]
    if not found:
        raise ResultsError(
            f"{root}: no slide results found (expected subfolders holding run.json, as written "
            "by 'tileuq run --out')"
        )
    return found


def _row(folder: Path, calibration: Any, reports: bool) -> BatchRow:
    from tileuq.engine.results import META_FILE
    from tileuq.engine.resume import ERROR_FILE
    from tileuq.export._common import prepare
    from tileuq.export.figures import find_slide
    from tileuq.export.report import REPORT_FILE, render_report
    from tileuq.export.summary import summarize

    if not (folder / META_FILE).is_file():
        text = (folder / ERROR_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        return BatchRow(folder, "failed", error=(text[1] if len(text) > 1 else "").strip())
    try:
        res, cal = prepare(folder, calibration)
        row = BatchRow(folder, res.status, summarize(res, cal))
        if reports:
            html = render_report(res, cal, slide_path=find_slide(res, None, folder))
            with atomic_write(folder / REPORT_FILE, "w") as f:
                f.write(html)
            row.report = folder / REPORT_FILE
        return row
    except TileuqError as exc:
        log.warning("%s: %s", folder, exc)
        return BatchRow(folder, "error", error=str(exc))


def _record(row: BatchRow, root: Path) -> dict[str, Any]:
    s = row.summary
    rej = s.get("rejection", {})
    reasons = rej.get("reasons", {})
    shift = s.get("shift", {})
    classes = s.get("classes", [])
    top = max(classes, key=lambda c: c["fraction"]) if classes else None
    return {
        "slide": s.get("name") or row.folder.name,
        "folder": str(row.folder.relative_to(root)) if row.folder != root else ".",
        "status": row.status,
        "tiles": s.get("n_tiles"),
        "tissue_mm2": s.get("tissue_area_mm2"),
        "rejected": rej.get("fraction"),
        "unfamiliar": reasons.get("unfamiliar", {}).get("fraction"),
        "ambiguous": reasons.get("ambiguous", {}).get("fraction"),
        "shift": (None if not shift.get("available") else bool(shift["shifted"])),
        "shift_p": shift.get("p_value") if shift.get("available") else None,
        "top_class": None if top is None else top["name"],
        "top_class_fraction": None if top is None else top["fraction"],
        "model": s.get("provenance", {}).get("model", {}).get("id"),
        "error": row.error,
    }


def _cells(rec: dict[str, Any], row: BatchRow, root: Path) -> list[Any]:
    name = h.esc(rec["slide"])
    if row.report is not None:
        link = row.report.relative_to(root).as_posix()
        name = f"<a href='{h.esc(link)}'>{name}</a>"
    status = h.esc(rec["status"]) + (
        f"<br><span class='note'>{h.esc(rec['error'])}</span>" if rec["error"] else ""
    )
    shift = rec["shift"]
    shift_txt = "n/a" if shift is None else ("<strong>alarm</strong>" if shift else "ok")
    sort_shift = -1 if shift is None else (1 if shift else 0)

    def n(v: Any) -> Any:
        return (h.num(v, 4) if v is not None else "n/a", "" if v is None else v)

    def p(v: Any) -> Any:
        return (h.pct(v), "" if v is None else v)

    top = (
        "n/a"
        if rec["top_class"] is None
        else (f"{h.esc(rec['top_class'])} ({h.pct(rec['top_class_fraction'], 0)})")
    )
    return [
        (name, rec["slide"]),
        status,
        n(rec["tiles"]),
        n(rec["tissue_mm2"]),
        p(rec["rejected"]),
        p(rec["unfamiliar"]),
        p(rec["ambiguous"]),
        (shift_txt, sort_shift),
        n(rec["shift_p"]),
        top,
        h.esc(rec["model"] or ""),
    ]


def write_batch_report(
    batch_dir: str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    calibration: Any = None,
    slide_reports: bool = True,
) -> Path:
    """Write every slide's report and the batch's sortable summary page.

    Parameters
    ----------
    batch_dir
        Output folder of ``tileuq run`` / :func:`tileuq.run_slides` (one subfolder per slide).
    path
        The summary page (default ``<batch_dir>/index.html``); ``summary.csv`` is written
        beside it.
    calibration
        Applied to every slide (see :func:`tileuq.export.resolve_calibration`).
    slide_reports
        Also (re)write each slide's ``report.html``.

    Returns
    -------
    pathlib.Path
        The summary page.
    """
    root = Path(batch_dir)
    folders = scan_batch(root)
    rows = [_row(f, calibration, slide_reports) for f in folders]
    records = [_record(r, root) for r in rows]
    headers = [
        "slide", "status", "tiles", "tissue (mm²)", "rejected", "unfamiliar", "ambiguous",
        "shift alarm", "shift p", "main class", "model",
    ]  # fmt: skip
    body_rows = [_cells(rec, row, root) for rec, row in zip(records, rows, strict=True)]
    n_alarm = sum(1 for r in records if r["shift"])
    n_failed = sum(1 for r in records if r["status"] in ("failed", "error"))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = (
        f"<header><h1>tileuq batch report</h1><p class='sub'>{h.esc(root.resolve())} · "
        f"{len(records)} slides · {n_alarm} shift alarms · {n_failed} failed · generated "
        f"{h.esc(now)}</p></header><div class='warning'>{h.INTENDED_USE}</div>"
        "<p class='note'>Click a column header to sort. Fractions are of each slide's "
        "tissue.</p>"
        + h.table(headers, body_rows, numeric=(2, 3, 4, 5, 6, 8), cls="sortable", raw=True)
    )
    path = Path(path) if path is not None else root / INDEX_FILE
    with atomic_write(path, "w") as f:
        f.write(h.page("tileuq batch report", body, script=h.SORT_JS))
    with atomic_path(path.with_name(SUMMARY_FILE)) as tmp:
        pd.DataFrame.from_records(records).to_csv(tmp, index=False)
    return path
