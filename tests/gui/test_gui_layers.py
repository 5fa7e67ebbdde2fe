"""Result layers in a real viewer: alignment with the slide at several zooms, sample, writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gui_helpers import not_blank

pytestmark = pytest.mark.gui


def _layers_by_kind(viewer):
    out = {}
    for layer in viewer.layers:
        kind = layer.metadata.get("tileuq", {}).get("kind") if layer.metadata else None
        if kind:
            out.setdefault(kind, []).append(layer)
    return out


def test_sample_with_results_shows_every_layer(make_napari_viewer, sample_results, artifacts_dir):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("tileuq", "cmu1_with_results")
    kinds = _layers_by_kind(viewer)
    assert {"classes", "heatmap", "rejected", "flagged"} <= set(kinds)
    slide = viewer.layers["CMU-1-Small-Region"]
    assert slide.multiscale
    # the review widget can find the session behind the layers
    from tileuq.napari._common import sessions_in

    (session,) = sessions_in(viewer)
    assert session.calibration is not None and len(session.results) > 0
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    from PIL import Image

    path = artifacts_dir / "napari_all_layers.png"
    Image.fromarray(shot).save(path)
    assert not_blank(shot)
    full = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(full).save(artifacts_dir / "napari_window_all_layers.png")
    assert not_blank(full)


def test_tile_pixel_lies_over_its_slide_region_at_every_zoom(
    make_napari_viewer, sample_slide_path, demo_results_folder
):
    """data→world of each class pixel's corners = the slide layer's world coords of its tile."""
    from tileuq.engine.results import TileResults
    from tileuq.layers import from_results
    from tileuq.napari._common import add_or_replace

    viewer = make_napari_viewer(show=True)
    (slide,) = viewer.open(str(sample_slide_path), plugin="tileuq")
    res = TileResults.load(demo_results_folder)
    add_or_replace(
        viewer, from_results(res, slide_scale=slide.scale, slide_translate=slide.translate)
    )
    classes = viewer.layers["classes"]
    classes.opacity = 1.0
    t = res.table
    mpp_y, mpp_x = (float(v) for v in res.meta["slide"]["mpp"][::-1])
    stride = int(res.meta["spec"]["stride_level0"])
    for i in range(len(t)):
        r, c, x, y, s = (int(t[k].iloc[i]) for k in ("row", "col", "x", "y", "size"))
        # the cell covers the tile's level-0 pixels [x, x + s) when stride == size, else the
        # stride square centred on the tile (overlapping grids; see tileuq.layers.geometry)
        pad = (s - stride) / 2
        x0, y0, x1, y1 = x + pad, y + pad, x + pad + stride, y + pad + stride
        top_left = classes.data_to_world((r - 0.5, c - 0.5))
        bottom_right = classes.data_to_world((r + 0.5, c + 0.5))
        np.testing.assert_allclose(top_left, slide.data_to_world((y0 - 0.5, x0 - 0.5)), atol=1e-6)
        np.testing.assert_allclose(
            bottom_right, slide.data_to_world((y1 - 0.5, x1 - 0.5)), atol=1e-6
        )
        np.testing.assert_allclose(top_left, ((y0 - 0.5) * mpp_y, (x0 - 0.5) * mpp_x), atol=1e-6)

    # on screen: at several zooms, the colour edge of a tile sits where its slide pixels start
    for layer in viewer.layers:
        layer.visible = layer is classes
    data = classes.data
    rows, cols = t["row"].to_numpy(), t["col"].to_numpy()
    edge = [(c == 0 or data[r, c - 1] != data[r, c]) for r, c in zip(rows, cols, strict=True)]
    i = int(np.flatnonzero(edge)[0])  # a tile whose left neighbour shows another colour
    r, c, x, y = (int(t[k].iloc[i]) for k in ("row", "col", "x", "y"))
    pad = (int(t["size"].iloc[i]) - stride) / 2
    left_world = slide.data_to_world((y, x + pad - 0.5))[1]
    mid_world = slide.data_to_world((y + t["size"].iloc[i] / 2, x))[0]
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    for zoom in (0.5, 2.0, 6.0):  # canvas pixels per µm
        camera.center = (mid_world, left_world)
        camera.zoom = zoom
        shot = viewer.screenshot(canvas_only=True, flash=False)
        h, w = shot.shape[:2]
        row = shot[h // 2, :, :3].astype(int)
        inside = row[w // 2 + 3]
        hexcol = res.colors[int(classes.data[r, c]) - 1].lstrip("#")
        color = np.array([int(hexcol[k : k + 2], 16) for k in (0, 2, 4)])
        assert np.abs(inside - color).max() <= 3, (zoom, inside, color)
        assert np.abs(row[w // 2 - 3] - color).max() > 20, (zoom, row[w // 2 - 3], color)


def test_writer_exports_result_layers_as_qupath_geojson(
    make_napari_viewer, sample_results, tmp_path
):
    viewer = make_napari_viewer()
    viewer.open_sample("tileuq", "cmu1_with_results")
    kinds = _layers_by_kind(viewer)
    chosen = [kinds["classes"][0], kinds["rejected"][0], kinds["flagged"][0]]
    path = tmp_path / "layers.geojson"
    from napari.plugins.io import save_layers

    written = save_layers(str(path), chosen, plugin="tileuq")
    assert written == [str(path)]
    fc = json.loads(path.read_text())
    assert fc["type"] == "FeatureCollection"
    names = {f["properties"]["classification"]["name"] for f in fc["features"]}
    session_classes = kinds["classes"][0].metadata["tileuq"]["classes"]
    assert names & set(session_classes)  # class regions
    # tile squares of the flagged layer are in level-0 pixels
    flagged = kinds["flagged"][0].features
    tiles = [f for f in fc["features"] if f["properties"]["objectType"] == "tile"]
    assert len(tiles) == len(flagged)
    if len(tiles):
        ring = np.asarray(tiles[0]["geometry"]["coordinates"][0])
        x, y, s = (int(flagged[k].iloc[0]) for k in ("x", "y", "size"))
        assert ring[:, 0].min() == x and ring[:, 1].min() == y and np.ptp(ring[:, 0]) == s
    # the class regions cover exactly the cells (stride squares; = tiles when no overlap)
    import shapely

    polys = [
        shapely.geometry.shape(f["geometry"])
        for f in fc["features"]
        if f["properties"]["name"].startswith("classes")
    ]
    res_table = kinds["classes"][0].data
    stride = kinds["classes"][0].metadata["tileuq"]["geometry"]["stride"]
    assert sum(p.area for p in polys) == pytest.approx((res_table > 0).sum() * stride * stride)
