"""Small HTML building blocks for self-contained reports (no external assets)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

INTENDED_USE = (
    "<strong>Research use only &mdash; not for diagnosis.</strong> The predictions, "
    "uncertainty scores and rejected regions in this report are an aid for a human reviewer: "
    "a qualified pathologist must check every result before it informs any decision. "
    "Rejection thresholds keep their stated guarantee only for tiles exchangeable with the "
    "calibration set, and no uncertainty score is guaranteed to catch every kind of "
    "distribution shift: a slide without an alarm can still be unlike the training data."
)

CSS = """
:root { --fg:#1d1d1f; --muted:#5f6368; --line:#d9d9de; --bg:#ffffff; --soft:#f5f5f7;
        --ok:#1b7f3b; --alarm:#b3261e; --warn-bg:#fff4e5; --warn-line:#f0a03c; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0 auto; max-width: 1180px;
       padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 10px;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.sub, .note { color: var(--muted); font-size: 12.5px; }
.warning { background: var(--warn-bg); border-left: 5px solid var(--warn-line);
           padding: 10px 14px; margin: 14px 0; }
.verdict { padding: 10px 14px; border-radius: 6px; font-weight: 600; margin: 8px 0; }
.verdict.ok { background: #e6f4ea; color: var(--ok); }
.verdict.alarm { background: #fce8e6; color: var(--alarm); }
.verdict.na { background: var(--soft); color: var(--muted); }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size: 12px; word-break: break-all; }
.panels { display: flex; flex-wrap: wrap; gap: 16px; }
.panel { flex: 1 1 300px; max-width: 370px; }
.panel img { width: 100%; border: 1px solid var(--line); }
.legend { font-size: 12px; margin-top: 4px; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #555;
          margin: 0 4px -1px 8px; }
.bar img { height: 150px; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th.asc::after { content: " \\25B2"; }
table.sortable th.desc::after { content: " \\25BC"; }
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        var v = cell.getAttribute('data-sort');
        if (v === null) { v = cell.textContent.trim(); }
        var n = parseFloat(v);
        return (v !== '' && !isNaN(n) && isFinite(v)) ? [0, n] : [1, v.toLowerCase()];
      }
      rows.sort(function (a, b) {
        var ka = key(a), kb = key(b);
        if (ka[0] !== kb[0]) { return ka[0] - kb[0]; }
        var r = ka[1] < kb[1] ? -1 : (ka[1] > kb[1] ? 1 : 0);
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(value: Any) -> str:
    """HTML-escape any value's text."""
    return html.escape("" if value is None else str(value), quote=True)


def num(value: float | None, digits: int = 3) -> str:
    """Format a number for people (``n/a`` for None/NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def pct(value: float | None, digits: int = 1) -> str:
    """Format a fraction as a percentage (``n/a`` for None)."""
    return "n/a" if value is None else f"{100 * value:.{digits}f} %"


def area(value: float | None) -> str:
    """Format an area in mm² (``n/a`` without a physical pixel size)."""
    return "n/a" if value is None else f"{value:.3f}"


def img(data: bytes, alt: str, *, mime: str = "image/png", **attrs: str) -> str:
    """Return an ``<img>`` with the image embedded as a base64 data URI (PNG unless ``mime``)."""
    b64 = base64.b64encode(data).decode("ascii")
    extra = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items())
    return f'<img src="data:{mime};base64,{b64}" alt="{esc(alt)}"{extra}>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[int] = (),
    cls: str = "",
    raw: bool = False,
) -> str:
    """Return a table; cells are escaped unless ``raw``; ``numeric`` columns are right-aligned.

    A cell may be a ``(text, sort_key)`` tuple: ``sort_key`` goes to ``data-sort``.
    """
    num_cols = set(numeric)

    def cell(tag: str, i: int, value: Any) -> str:
        sort = ""
        if isinstance(value, tuple):
            value, key = value
            sort = f' data-sort="{esc(key)}"'
        klass = ' class="num"' if i in num_cols else ""
        text = str(value) if raw else esc(value)
        return f"<{tag}{klass}{sort}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    klass = f' class="{esc(cls)}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(items: Mapping[str, Any]) -> str:
    """Return a two-column key/value table (values escaped; lists joined by commas)."""
    rows = []
    for k, v in items.items():
        if isinstance(v, list | tuple):
            v = ", ".join(str(x) for x in v)
        rows.append(f"<tr><th>{esc(k)}</th><td class='mono'>{esc(v)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def page(title: str, body: str, *, script: str = "") -> str:
    """Return a complete, self-contained HTML document."""
    js = f"<script>{script}</script>" if script else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}{js}</body></html>\n"
    )
