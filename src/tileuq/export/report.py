"""The HTML slide report: one self-contained file (images embedded, no external assets).

Contents: the intended-use warning; the shift-alarm verdict; the slide thumbnail with the class
map, an uncertainty heatmap and the rejected regions drawn over it; class areas in mm²; the
fraction of tissue rejected and why; the score histogram against the calibration set; and the
provenance of the slide, model, calibration and run (hashes, dates, targets).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tileuq._io import atomic_write
from tileuq.export import _html as h
from tileuq.export._common import REASON_COLORS, is_calibrated, prepare
from tileuq.export.figures import find_slide, histogram_png, overlay_jpeg, thumbnail
from tileuq.export.heatmap import legend_image
from tileuq.export.raster import HeatmapStyle, default_score, style_for
from tileuq.export.summary import summarize

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults
    from tileuq.uncertainty.calibration import Calibration

__all__ = ["REPORT_FILE", "render_report", "write_report"]

REPORT_FILE = "report.html"

_REASON_TEXT = {
    "unfamiliar": "the tile is unlike the training data (distance- or variance-type score "
    "above its threshold); treat the prediction as unsupported",
    "ambiguous": "the tile resembles the training data but lies between classes "
    "(entropy/margin-type score above its threshold)",
}


def _legend(style: HeatmapStyle) -> str:
    if style.kind == "categorical":
        return "".join(
            f"<span class='swatch' style='background:{h.esc(c)}'></span>{h.esc(n)}"
            for n, c in style.categories
        )
    return "<div class='bar'>" + h.img(_png(legend_image(style, 300, 240)), "colorbar") + "</div>"


def _png(rgba: Any) -> bytes:
    from tileuq.export.figures import png_bytes

    return png_bytes(rgba)


def _panel(title: str, jpeg: bytes, legend: str) -> str:
    return (
        f"<div class='panel'><h3>{h.esc(title)}</h3>{h.img(jpeg, title, mime='image/jpeg')}"
        f"<div class='legend'>{legend}</div></div>"
    )


def _shift_section(shift: dict[str, Any]) -> str:
    if not shift.get("available"):
        return f"<div class='verdict na'>Shift alarm not available: {h.esc(shift.get('why'))}</div>"
    klass = "alarm" if shift["shifted"] else "ok"
    if not shift["shifted"] and shift.get("evidence") in ("inconclusive", "too_few_tiles"):
        klass = "na"  # not an all-clear: too little evidence either way
    rows = {
        "p-value (combined)": h.num(shift["p_value"]),
        "p-value, rejected count": h.num(shift["p_count"]),
        "p-value, score distribution": h.num(shift["p_distribution"]),
        "significance level": h.num(shift["alpha"]),
        "tiles tested / rejected": f"{shift['n_tiles']} / {shift['n_rejected']}",
        "rejected here": h.pct(shift["rejected_fraction"]),
        "expected (calibration)": h.pct(shift["expected_fraction"]),
        "95 % of comparable slides reject at most": h.pct(shift["expected_upper"]),
        f"median {shift['score']} (slide / calibration)": (
            f"{h.num(shift['median_score'])} / {h.num(shift['calibration_median'])}"
        ),
    }
    return (
        f"<div class='verdict {klass}'>{h.esc(shift['verdict'])}</div>{h.kv_table(rows)}"
        "<p class='note'>How to read it: the alarm compares this slide's uncertainty scores "
        "with the calibration set's. An alarm means the slide looks unlike the data the "
        "thresholds were set on (other scanner, stain, tissue or artefacts), so the stated "
        "guarantees may not hold here: review the slide with extra care. No alarm is not "
        "proof of similarity. Neighbouring tiles are correlated, so p-values are optimistic; "
        "treat the alarm as a screening signal.</p>"
    )


def _classes_section(s: dict[str, Any]) -> str:
    rows = []
    for c in s["classes"]:
        name = f"<span class='swatch' style='background:{h.esc(c['color'])}'></span>" + h.esc(
            c["name"]
        )
        row = [name, str(c["tiles"]), h.area(c["area_mm2"]), h.pct(c["fraction"])]
        if s["calibrated"]:
            row.append(h.area(c["accepted_area_mm2"]))
        rows.append(row)
    headers = ["class", "tiles", "area (mm²)", "of tissue"]
    if s["calibrated"]:
        headers.append("accepted area (mm²)")
    total = "n/a" if s["tissue_area_mm2"] is None else f"{s['tissue_area_mm2']:.3f} mm²"
    note = (
        f"<p class='note'>{s['n_tiles']} tissue tiles, {total} of tissue. A tile counts for "
        "its tissue fraction times one grid cell.</p>"
    )
    if s["mpp"] is None:
        note += "<p class='note'>The slide records no pixel size: areas are not available.</p>"
    return h.table(headers, rows, numeric=range(1, len(headers)), raw=True) + note


def _rejection_section(s: dict[str, Any]) -> str:
    if not s["calibrated"]:
        return "<p>No calibration: no tiles were rejected. Calibrate to flag uncertain tissue.</p>"
    rej = s["rejection"]
    text = (
        f"<p><strong>{h.pct(rej['fraction'])}</strong> of the tissue was rejected "
        f"({rej['tiles']} tiles, {h.area(rej['area_mm2'])} mm²).</p>"
    )
    rows = []
    for r, v in rej["reasons"].items():
        sw = f"<span class='swatch' style='background:{REASON_COLORS.get(r, '#000')}'></span>"
        why = h.esc(_REASON_TEXT.get(r, ""))
        rows.append(
            [sw + h.esc(r), str(v["tiles"]), h.pct(v["fraction"]), h.area(v["area_mm2"]), why]
        )
    headers = ["reason", "tiles", "of tissue", "area (mm²)", "meaning"]
    return text + h.table(headers, rows, numeric=(1, 2, 3), raw=True)


def _provenance_section(p: dict[str, Any]) -> str:
    parts = ["<h3>Slide</h3>", h.kv_table(p["slide"]), "<h3>Model</h3>", h.kv_table(p["model"])]
    cal = p.get("calibration")
    if cal:
        rules = "; ".join(
            f"{r['score']} ≤ {h.num(r['threshold'], 5)} ({r['reason']}, {r['role']})"
            for r in cal["rules"]
        )
        target = ", ".join(f"{k} {v}" for k, v in cal["target"].items())
        items = {
            "rules": rules,
            "target": f"{target} with probability ≥ {1 - cal['delta']:g}",
            "method": cal["method"],
            "calibration tiles": cal["n"],
            "coverage / risk on calibration set": f"{h.num(cal['coverage'])} / "
            f"{h.num(cal['risk'])}",
            "risk upper bound": h.num(cal["risk_bound"]),
            "model hash": cal["model_hash"],
            "created": cal["created"],
            "tileuq version": cal["version"],
        }
        parts += ["<h3>Calibration</h3>", h.kv_table(items)]
        if cal.get("guarantee"):
            parts.append(f"<p class='note'>Guarantee: {h.esc(cal['guarantee'])}</p>")
    else:
        parts += ["<h3>Calibration</h3>", "<p>None.</p>"]
    parts += ["<h3>Tiling</h3>", h.kv_table(p["tiling"]), "<h3>Run</h3>", h.kv_table(p["run"])]
    return "".join(parts)


def render_report(
    results: TileResults,
    calibration: Calibration | None,
    *,
    slide_path: Path | None = None,
    score: str | None = None,
) -> str:
    """Build the HTML of a slide report from results that carry the calibration columns."""
    from tileuq import __version__

    s = summarize(results, calibration)
    thumb, note = thumbnail(results, slide_path)
    score = score or (calibration.score if calibration is not None else None)
    score = score or default_score(results)
    panels = []
    if len(results.table):
        cstyle = style_for(results, "class", calibration)
        panels.append(
            _panel("Predicted class", overlay_jpeg(results, thumb, cstyle), _legend(cstyle))
        )
        if score:
            hstyle = style_for(results, score, calibration)
            jpg = overlay_jpeg(results, thumb, hstyle, opacity=0.7)
            panels.append(_panel(f"Uncertainty: {score}", jpg, _legend(hstyle)))
        if is_calibrated(results):
            rstyle = style_for(results, "rejected", calibration)
            jpg = overlay_jpeg(results, thumb, rstyle, opacity=0.8, dim=0.35)
            panels.append(_panel("Rejected regions", jpg, _legend(rstyle)))
    else:
        panels.append("<p>No tissue tiles: nothing to draw.</p>")
    hist = ""
    if score and len(results.table):
        hist = h.img(histogram_png(results, score, calibration), f"histogram of {score}")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = [
        f"<header><h1>{h.esc(s['name'])}</h1><p class='sub'>tileuq slide report · generated "
        f"{h.esc(now)} · tileuq {h.esc(__version__)} · run status {h.esc(s['status'])}</p>"
        "</header>",
        f"<div class='warning'>{h.INTENDED_USE}</div>",
        "<section id='shift'><h2>Shift alarm</h2>",
        _shift_section(s["shift"]),
        "</section><section id='overview'><h2>Overview</h2><div class='panels'>",
        "".join(panels),
        "</div>",
        f"<p class='note'>Overlays: {h.esc(note)}.</p>" if note else "",
        "</section><section id='classes'><h2>Class areas</h2>",
        _classes_section(s),
        "</section><section id='rejected'><h2>Rejected tissue</h2>",
        _rejection_section(s),
        "</section><section id='scores'><h2>Score distribution</h2>",
        hist or "<p>No score to show.</p>",
        "</section><section id='provenance'><h2>Provenance</h2>",
        _provenance_section(s["provenance"]),
        f"</section><footer><div class='warning'>{h.INTENDED_USE}</div></footer>",
    ]
    return h.page(f"tileuq report: {s['name']}", "".join(body))


def write_report(
    results: TileResults | str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    calibration: Any = None,
    slide: str | os.PathLike[str] | None = None,
    score: str | None = None,
) -> Path:
    """Write the self-contained HTML report of one slide (atomically).

    Parameters
    ----------
    results
        A results folder (the report defaults to ``<folder>/report.html``) or
        :class:`~tileuq.TileResults` (then ``path`` is required).
    path
        Output file.
    calibration
        See :func:`tileuq.export.resolve_calibration`.
    slide
        The slide file, when it is no longer where ``run.json`` says (for the thumbnail).
    score
        Score of the heatmap and histogram (default: the calibration's primary score, else
        the run overview's choice).

    Returns
    -------
    pathlib.Path
    """
    from tileuq.errors import ResultsError

    folder = None if hasattr(results, "table") else Path(results)
    if path is None:
        if folder is None:
            raise ResultsError("write_report: give a path when passing TileResults")
        path = folder / REPORT_FILE
    res, cal = prepare(results, calibration)
    html = render_report(res, cal, slide_path=find_slide(res, slide, folder), score=score)
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write(html)
    return path
