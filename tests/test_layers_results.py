"""tileuq.layers.from_results: placement, colours, heatmaps, rejected regions, flagged tiles."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tileuq.layers import RejectionGrid, TileGeometry, from_results
from tileuq.layers.synthetic import synthetic_results
from tileuq.uncertainty import calibrate_scores


def _by_kind(layers):
    out = {}
    for data, kwargs, kind in layers:
        out.setdefault(kwargs["metadata"]["tileuq"]["kind"], []).append((data, kwargs, kind))
    return out


def _world_edges(kwargs, index):
    """World (y0, x0, y1, x1) of the data pixel at ``index`` (napari: centres at integers)."""
    s = np.asarray(kwargs["scale"])[-2:]
    t = np.asarray(kwargs["translate"])[-2:]
    i = np.asarray(index, dtype=float)
    return np.concatenate([(i - 0.5) * s + t, (i + 0.5) * s + t])


def _slide_world_edges(mpp_yx, x, y, size):
    """World edges of level-0 pixels [x, x+size) x [y, y+size) under the slide layer."""
    my, mx = mpp_yx
    return np.array([(y - 0.5) * my, (x - 0.5) * mx, (y + size - 0.5) * my, (x + size - 0.5) * mx])


def _calibration(res, **kw):
    t = res.table
    rng = np.random.default_rng(1)
    correct = rng.random(len(t)) > t["entropy"].to_numpy() / 2
    return calibrate_scores(
        {"entropy": t["entropy"].to_numpy(), "variance": t["variance"].to_numpy()},
        correct,
        model_hash=res.meta["model"]["hash"],
        **kw,
    )


def test_no_napari_import():
    import subprocess

    code = (
        "import sys; from tileuq.layers import from_results; "
        "from tileuq.layers.synthetic import synthetic_results; "
        "from_results(synthetic_results(50)); print('napari' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("mpp", [(0.5, 0.5), (0.25, 0.3), None])
def test_class_pixel_covers_its_tile(mpp):
    res = synthetic_results(300, size=512, origin=(100, 37), mpp=mpp, seed=3)
    layers = _by_kind(from_results(res))
    data, kwargs, kind = layers["classes"][0]
    assert kind == "labels"
    mpp_yx = (1.0, 1.0) if mpp is None else (mpp[1], mpp[0])
    t = res.table
    for i in [0, 17, len(t) - 1]:
        r, c = int(t["row"].iloc[i]), int(t["col"].iloc[i])
        assert data[r, c] == t["pred_index"].iloc[i] + 1
        got = _world_edges(kwargs, (r, c))
        want = _slide_world_edges(mpp_yx, t["x"].iloc[i], t["y"].iloc[i], 512)
        np.testing.assert_allclose(got, want, atol=1e-9)
    # every grid layer shares the placement
    for kind_name in ("heatmap", "rejected"):
        for _, kw, _ in layers.get(kind_name, []):
            assert kw["scale"] == kwargs["scale"] and kw["translate"] == kwargs["translate"]


def test_overlapping_grid_cells_are_centred_on_tiles():
    res = synthetic_results(200, size=400, stride=300, mpp=0.5)
    ((_, kwargs, _),) = _by_kind(from_results(res))["classes"]
    t = res.table
    i = 5
    y0, x0, y1, x1 = _world_edges(kwargs, (t["row"].iloc[i], t["col"].iloc[i]))
    # cell width = stride, centred on the tile's centre
    assert x1 - x0 == pytest.approx(300 * 0.5)
    tile = _slide_world_edges((0.5, 0.5), t["x"].iloc[i], t["y"].iloc[i], 400)
    assert (x0 + x1) / 2 == pytest.approx((tile[1] + tile[3]) / 2)
    assert (y0 + y1) / 2 == pytest.approx((tile[0] + tile[2]) / 2)


def test_class_colours_names_and_empty_cells():
    res = synthetic_results(400)
    ((data, kwargs, _),) = _by_kind(from_results(res))["classes"]
    cmap = kwargs["colormap"]
    assert cmap[0] == "transparent" and cmap[None] == "transparent"
    assert [cmap[i + 1] for i in range(3)] == res.colors
    feats = kwargs["features"]
    assert list(feats["class"]) == ["(no tile)", *res.classes]
    assert list(feats["index"]) == [0, 1, 2, 3]
    assert (data > 0).sum() == len(res.table)  # one pixel per tile, 0 elsewhere
    assert data.shape == res.grid_shape and data.dtype == np.uint8


def test_heatmaps_nan_where_no_tile_and_percentile_limits():
    res = synthetic_results(500)
    heat = _by_kind(from_results(res))["heatmap"]
    names = [kw["metadata"]["tileuq"]["score"] for _, kw, _ in heat]
    assert sorted(names) == sorted(res.score_names) and names[0] == "variance"  # primary first
    assert not any(kw["visible"] for _, kw, _ in heat)
    data, kw, kind = next(h for h in heat if h[1]["metadata"]["tileuq"]["score"] == "entropy")
    assert kind == "image" and kw["colormap"] == "magma"
    assert np.isnan(data).sum() == data.size - len(res.table)
    v = res.table["entropy"].to_numpy()
    assert kw["contrast_limits"] == pytest.approx(tuple(np.percentile(v, [1, 99])))


def test_heatmap_limits_and_threshold_from_calibration():
    res = synthetic_results(800)
    cal = _calibration(res, target_coverage=0.8)
    heat = _by_kind(from_results(res, cal))["heatmap"]
    _, kw, _ = next(h for h in heat if h[1]["metadata"]["tileuq"]["score"] == "entropy")
    meta = kw["metadata"]["tileuq"]
    lo, hi = kw["contrast_limits"]
    assert meta["threshold"] == pytest.approx(cal.thresholds["entropy"])
    assert lo <= meta["threshold"] <= hi
    assert meta["threshold_position"] == pytest.approx((meta["threshold"] - lo) / (hi - lo))
    assert heat[0][1]["metadata"]["tileuq"]["score"] == cal.score  # the primary one first


def test_rejected_layer_matches_calibration_apply():
    res = synthetic_results(1500, seed=2)
    cal = _calibration(res, target_coverage=0.85)
    ((data, kwargs, kind),) = _by_kind(from_results(res, cal))["rejected"]
    applied = cal.apply(res).table
    t = res.table
    got = data[t["row"].to_numpy(), t["col"].to_numpy()]
    want = np.select(
        [applied["reason"] == "unfamiliar", applied["reason"] == "ambiguous"], [2, 1], 0
    )
    np.testing.assert_array_equal(got, want)
    assert kind == "labels" and set(np.unique(got)) == {0, 1, 2}
    assert kwargs["colormap"][1] != kwargs["colormap"][2]
    assert list(kwargs["features"]["reason"][1:]) == ["ambiguous", "unfamiliar"]
    assert (data > 0).sum() == applied["rejected"].sum()


def test_rejection_grid_repaint_agrees_with_calibration_decide():
    res = synthetic_results(2000, seed=4)
    cal = _calibration(res, target_coverage=0.8)
    geo = TileGeometry.from_results(res)
    grid = RejectionGrid(res.table, cal.rules, geo)
    rng = np.random.default_rng(0)
    t = res.table
    for _ in range(5):
        thr = {r.score: float(rng.uniform(*np.percentile(t[r.score], [5, 95]))) for r in cal.rules}
        import dataclasses

        moved = dataclasses.replace(
            cal, rules=[dataclasses.replace(r, threshold=thr[r.score]) for r in cal.rules]
        )
        rejected, reason = moved.decide(t)
        painted = grid.paint(thr)
        got = painted[t["row"].to_numpy(), t["col"].to_numpy()]
        want = np.select([reason == "unfamiliar", reason == "ambiguous"], [2, 1], 0)
        np.testing.assert_array_equal(got, want)
        assert (painted > 0).sum() == rejected.sum()
        assert grid.coverage() == pytest.approx(1 - rejected.mean())


def test_flagged_points_in_queue_order_with_features():
    res = synthetic_results(1000, seed=5)
    cal = _calibration(res, target_coverage=0.8)
    ((data, kwargs, kind),) = _by_kind(from_results(res, cal))["flagged"]
    feats = kwargs["features"]
    applied = cal.apply(res).table
    assert kind == "points" and len(data) == applied["rejected"].sum() == len(feats)
    assert list(feats["rank"]) == list(range(len(feats)))
    assert np.all(np.diff(feats["entropy"].to_numpy()) <= 0)  # most uncertain first
    for col in ["prob_tumor", "prob_stroma", "prob_normal", "prediction", "entropy", "reason"]:
        assert col in feats.columns
    assert set(feats["reason"]) <= {"ambiguous", "unfamiliar"}
    # points sit on tile centres: level-0 data coords with the slide layer's scale
    i = 0
    assert data[i, 1] == pytest.approx(feats["x"].iloc[i] + (feats["size"].iloc[i] - 1) / 2)
    assert kwargs["scale"] == (0.5, 0.5) and kwargs["symbol"] == "square"
    assert kwargs["size"] == 448.0


def test_flagged_without_calibration_is_top_uncertain():
    res = synthetic_results(1000)
    ((data, kwargs, _),) = _by_kind(from_results(res))["flagged"]
    assert len(data) == 200
    top = np.sort(res.table["variance"].to_numpy())[::-1][:200]
    np.testing.assert_allclose(kwargs["features"]["variance"].to_numpy(), top)
    assert "rejected" not in _by_kind(from_results(res))


def test_stack_layers_have_plane_axis():
    res = synthetic_results(100, planes=3, mpp=0.5)
    layers = _by_kind(from_results(res))
    data, kwargs, _ = layers["classes"][0]
    assert data.shape[0] == 3 and len(kwargs["scale"]) == 3 and kwargs["scale"][0] == 1.0
    t = res.table
    i = len(t) - 1
    assert data[t["plane"].iloc[i], t["row"].iloc[i], t["col"].iloc[i]] > 0
    pts, kw, _ = layers["flagged"][0]
    assert pts.shape[1] == 3 and len(kw["scale"]) == 3


def test_engine_results_on_sample_slide_align(sample_slide_path, tmp_path):
    import tileuq
    from tileuq.layers import slide_layer_data

    model = tileuq.build_model(
        method="sngp", backbone="resnet_slim", num_classes=3, tile_px=32, mpp=4.0
    )
    with tileuq.open_slide(sample_slide_path) as slide:
        res = tileuq.run_slide(slide, model, device="cpu", batch_size=16)
        ((_, slide_kw, _),) = slide_layer_data(slide)
    layers = _by_kind(from_results(res))
    _, kwargs, _ = layers["classes"][0]
    t = res.table
    mpp = (slide_kw["scale"][0], slide_kw["scale"][1])
    for i in range(len(t)):
        got = _world_edges(kwargs, (t["row"].iloc[i], t["col"].iloc[i]))
        want = _slide_world_edges(mpp, t["x"].iloc[i], t["y"].iloc[i], t["size"].iloc[i])
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert layers["classes"][0][1]["metadata"]["tileuq"]["units"] == "µm"
