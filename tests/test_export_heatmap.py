"""Heatmap PNGs and pyramidal OME-TIFF overlays: size, alignment, colours, legend, metadata."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile
from PIL import Image

from _export_data import COLORS
from tileuq import open_slide
from tileuq.engine.results import TileResults, build_table
from tileuq.errors import ResultsError
from tileuq.export._common import REASON_COLORS, geometry, hex_to_rgb, prepare
from tileuq.export.heatmap import write_heatmap_png
from tileuq.export.ometiff import write_heatmap_tiff
from tileuq.export.raster import colorize, render, style_for


@pytest.fixture(scope="module")
def prepared(export_data):
    return prepare(export_data.results, export_data.calibration)


def _centre(row, d: float) -> tuple[int, int]:
    """Pixel (col, row) of a tile's centre at downsample ``d``."""
    return int((row.x + row.size / 2) / d), int((row.y + row.size / 2) / d)


def test_png_size_colours_and_legend(export_data, prepared, tmp_path) -> None:
    res, cal = prepared
    d = 4
    path = write_heatmap_png(
        export_data.results, tmp_path / "h.png", "variance", downsample=d, calibration=cal
    )
    im = Image.open(path)
    meta = json.loads(im.text["tileuq"])
    w, h = math.ceil(2220 / d), math.ceil(2967 / d)  # the sample slide is 2220 x 2967
    assert meta["overlay_size"] == [w, h] and meta["downsample"] == d
    style = style_for(res, "variance", cal)
    assert meta["style"]["vmin"] == pytest.approx(style.vmin)
    assert meta["style"]["threshold"] == pytest.approx(cal.thresholds["variance"])
    px = np.asarray(im.convert("RGBA"))
    assert px.shape[0] >= h and px.shape[1] > w
    overlay, legend = px[:h, :w], px[:, w:]
    for row in res.table.sample(20, random_state=0).itertuples():
        cx, cy = _centre(row, d)
        want = colorize(np.array([row.variance], dtype=np.float64), style)[0]
        assert tuple(overlay[cy, cx]) == tuple(want)
    assert overlay[0, 0, 3] == 0  # no tile in the corner: transparent
    tiles = np.isfinite(res.grid("variance")).sum()
    cell = res.meta["spec"]["stride_level0"] / d
    assert (overlay[..., 3] == 255).sum() == pytest.approx(tiles * cell * cell, rel=0.05)
    # the legend holds a colorbar: many distinct colours, and text (dark pixels)
    colours = {tuple(c) for c in legend.reshape(-1, 4)[:, :3]}
    assert len(colours) > 100
    assert (legend[..., :3].max(axis=-1) < 60).sum() > 50


def test_class_map_png(export_data, prepared, tmp_path) -> None:
    res, _ = prepared
    path = write_heatmap_png(res, tmp_path / "c.png", "class", downsample=8, legend=False)
    px = np.asarray(Image.open(path).convert("RGBA"))
    assert px.shape[:2] == (math.ceil(2967 / 8), math.ceil(2220 / 8))
    for row in res.table.itertuples():
        cx, cy = _centre(row, 8)
        assert tuple(px[cy, cx]) == (*hex_to_rgb(COLORS[row.pred_index]), 255)


def test_rejected_map_needs_calibration(export_data, prepared, tmp_path) -> None:
    with pytest.raises(ResultsError, match="calibration"):
        write_heatmap_png(export_data.results, tmp_path / "r.png", "rejected", calibration=False)
    res, cal = prepared
    path = write_heatmap_png(res, tmp_path / "r.png", "rejected", downsample=8, calibration=cal)
    px = np.asarray(Image.open(path).convert("RGBA"))
    for row in res.table.itertuples():
        cx, cy = _centre(row, 8)
        if row.reason:
            assert tuple(px[cy, cx]) == (*hex_to_rgb(REASON_COLORS[row.reason]), 255)
        else:
            assert px[cy, cx, 3] == 0


def test_unknown_column_is_refused(export_data, tmp_path) -> None:
    with pytest.raises(ResultsError, match="not a numeric results column"):
        write_heatmap_png(export_data.results, tmp_path / "x.png", "prediction_name")


def test_ome_tiff_overlay_aligns_with_the_slide(export_data, prepared, tmp_path) -> None:
    res, cal = prepared
    d = 2
    path = write_heatmap_tiff(
        export_data.results,
        tmp_path / "h.ome.tif",
        "entropy",
        downsample=d,
        calibration=cal,
        tile=128,
    )
    w, h = math.ceil(2220 / d), math.ceil(2967 / d)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        series = tif.series[0]
        assert series.shape == (h, w, 4)
        shapes = [lv.shape[:2] for lv in series.levels]
        assert len(shapes) >= 3 and shapes[0] == (h, w)
        want = [(math.ceil(2967 / (d * 2**k)), math.ceil(2220 / (d * 2**k))) for k in range(9)]
        assert shapes == want[: len(shapes)]
        assert len(tif.pages[0].subifds or ()) == len(shapes) - 1  # levels in SubIFDs
        assert tif.pages[0].is_tiled and tif.pages[0].tilewidth == 128
        ome = tif.ome_metadata
    assert 'PhysicalSizeX="0.998"' in ome  # 0.499 µm/px x 2
    info = json.loads(tifffile.xml2dict(ome)["OME"]["Image"]["Description"])
    assert info["style"]["what"] == "entropy" and info["style"]["cmap"] == "inferno"
    assert info["style"]["threshold"] == pytest.approx(cal.thresholds["entropy"])

    with open_slide(path) as overlay, open_slide(res.meta["slide"]["path"]) as slide:
        assert overlay.dimensions == (w, h) and overlay.level_count == len(shapes)
        for ax in (0, 1):  # same physical extent (to within one overlay pixel)
            size_overlay = overlay.dimensions[ax] * overlay.mpp[ax]
            size_slide = slide.dimensions[ax] * slide.mpp[ax]
            assert abs(size_overlay - size_slide) < overlay.mpp[ax]
        style = style_for(res, "entropy", cal)
        for row in res.table.sample(15, random_state=1).itertuples():
            cx, cy = _centre(row, d)
            got = overlay.read_region((cx, cy), 0, (1, 1))[0, 0]
            want = colorize(np.array([row.entropy], dtype=np.float64), style)[0, :3]
            assert tuple(got) == tuple(want)
        assert tuple(overlay.read_region((0, 0), 0, (1, 1))[0, 0]) == (255, 255, 255)


def _overlap_results() -> TileResults:
    """A 2 x 3 grid of 100-px tiles with stride 50 (50 % overlap), no model needed."""
    rows, cols = np.divmod(np.arange(6), 3)
    geom = {
        "x": 10 + cols * 50,
        "y": 20 + rows * 50,
        "size": np.full(6, 100),
        "row": rows,
        "col": cols,
        "plane": np.zeros(6, int),
        "tissue": np.ones(6),
    }
    p = np.eye(2)[np.arange(6) % 2]
    table = build_table(
        geom, p, np.arange(6) % 2, p.max(1), {"s": np.arange(6.0)}, ["a", "b"], ["s"]
    )
    meta = {
        "slide": {"name": "synthetic", "dimensions": [300, 200], "mpp": [1.0, 1.0]},
        "model": {"classes": ["a", "b"], "colors": ["#ff0000", "#0000ff"], "score_names": ["s"]},
        "spec": {
            "grid_shape": [2, 3],
            "stride_level0": 50,
            "tile_size_level0": 100,
            "planes": [0],
            "origin": [10, 20],
        },
    }
    return TileResults(table, meta)


def test_cells_are_centred_on_overlapping_tiles() -> None:
    res = _overlap_results()
    g = geometry(res)
    img = render(g, res.grid("s"), 1.0)
    assert img.shape == (200, 300)
    # cell (0, 0) covers x in [10 + 25, 10 + 75), y in [20 + 25, 20 + 75)
    assert np.isnan(img[44, 34]) and img[45, 35] == 0 and img[94, 84] == 0
    assert img[45, 85] == 1 and img[95, 35] == 3 and img[144, 184] == 5
    assert np.isnan(img[145, 185]) and np.isnan(img[0, 0])
    assert np.isfinite(img).sum() == 6 * 50 * 50  # cells tile the plane without overlap
