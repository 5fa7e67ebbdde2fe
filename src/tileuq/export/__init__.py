"""Results out of tileuq: QuPath GeoJSON, CSV/Parquet tables, heatmap images, HTML reports.

Every writer takes a :class:`~tileuq.TileResults` or a results folder and an optional
calibration (a :class:`~tileuq.uncertainty.calibration.Calibration`, a path to one, or
``None`` for the calibration the model carried when the slide was run), and writes its file
atomically.  Names are imported lazily: ``import tileuq.export`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tileuq._lazy import attach

_LAZY = {
    "prepare": "tileuq.export._common",
    "resolve_calibration": "tileuq.export._common",
    "results_to_geojson": "tileuq.export.geojson",
    "decisions_to_geojson": "tileuq.export.decisions",
    "write_geojson": "tileuq.export.geojson",
    "export_table": "tileuq.export.tables",
    "read_table": "tileuq.export.tables",
    "table_for_export": "tileuq.export.tables",
    "HeatmapStyle": "tileuq.export.raster",
    "style_for": "tileuq.export.raster",
    "render_rgba": "tileuq.export.raster",
    "write_heatmap_png": "tileuq.export.heatmap",
    "write_heatmap_tiff": "tileuq.export.ometiff",
    "slide_summary": "tileuq.export.summary",
    "write_report": "tileuq.export.report",
    "write_batch_report": "tileuq.export.batch",
}

__all__ = [
    "HeatmapStyle",
    "decisions_to_geojson",
    "export_table",
    "prepare",
    "read_table",
    "render_rgba",
    "resolve_calibration",
    "results_to_geojson",
    "slide_summary",
    "style_for",
    "table_for_export",
    "write_batch_report",
    "write_geojson",
    "write_heatmap_png",
    "write_heatmap_tiff",
    "write_report",
]


__getattr__, __dir__ = attach(__name__, _LAZY, __all__)


if TYPE_CHECKING:  # pragma: no cover
    from tileuq.export._common import prepare, resolve_calibration
    from tileuq.export.batch import write_batch_report
    from tileuq.export.decisions import decisions_to_geojson
    from tileuq.export.geojson import results_to_geojson, write_geojson
    from tileuq.export.heatmap import write_heatmap_png
    from tileuq.export.ometiff import write_heatmap_tiff
    from tileuq.export.raster import HeatmapStyle, render_rgba, style_for
    from tileuq.export.report import write_report
    from tileuq.export.summary import slide_summary
    from tileuq.export.tables import export_table, read_table, table_for_export
