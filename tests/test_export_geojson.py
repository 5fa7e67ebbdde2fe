"""QuPath GeoJSON export on real results: schema, level-0 coordinates, merging, decisions."""

from __future__ import annotations

import json
import shutil
import uuid

import geojson
import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from _export_data import CLASSES, COLORS
from tileuq.engine.results import TileResults
from tileuq.errors import ResultsError
from tileuq.export._common import hex_to_rgb, prepare
from tileuq.export.decisions import decisions_to_geojson
from tileuq.export.geojson import rejected_class_name, results_to_geojson, write_geojson
from tileuq.uncertainty.decisions import read_decisions


@pytest.fixture(scope="module")
def calibrated(export_data):
    return prepare(export_data.results, export_data.calibration)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def test_tile_features_follow_qupath_conventions(export_data, calibrated) -> None:
    res, _ = calibrated
    fc = results_to_geojson(export_data.results, export_data.calibration)
    assert fc["type"] == "FeatureCollection"
    feats = fc["features"]
    assert len(feats) == len(res.table) > 50
    ids = [f["id"] for f in feats]
    assert len(set(ids)) == len(ids)
    rgb = {n: list(hex_to_rgb(c)) for n, c in zip(CLASSES, COLORS, strict=True)}
    reasons = res.table["reason"].astype(str).tolist()
    for f, pred, why in zip(feats, res.table["prediction"].astype(str), reasons, strict=True):
        uuid.UUID(f["id"])  # QuPath >= 0.4 reads ids as UUIDs
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
        p = f["properties"]
        assert p["objectType"] == "tile"
        assert p["classification"] == {"name": pred, "color": rgb[pred]}
        m = p["measurements"]
        assert all(_is_number(v) for v in m.values()), m  # QuPath: Map<String, Double>
        assert {f"prob_{c}" for c in CLASSES} <= set(m)
        assert {"variance", "entropy", "confidence", "tissue"} <= set(m)
        assert m["rejected"] == int(why != "")
        assert m["reason_unfamiliar"] == int(why == "unfamiliar")
        assert m["reason_ambiguous"] == int(why == "ambiguous")
        assert p["metadata"].get("reason", "") == why
        assert p.get("name", "") == (f"rejected: {why}" if why else "")
    assert 0 < sum(r != "" for r in reasons) < len(reasons)
    json.dumps(fc, allow_nan=False)  # strict JSON


def test_measurements_equal_the_table(export_data, calibrated) -> None:
    res, _ = calibrated
    fc = results_to_geojson(export_data.results, export_data.calibration)
    m = np.array([f["properties"]["measurements"]["variance"] for f in fc["features"]])
    np.testing.assert_allclose(m, res.table["variance"].to_numpy(np.float64), rtol=0, atol=0)


def test_coordinates_are_level0_tile_boxes(export_data) -> None:
    res = TileResults.load(export_data.results)
    fc = results_to_geojson(res, calibration=False)
    t = res.table
    assert res.meta["spec"]["tile_size_level0"] > 100  # level-0 px, not tile px (32)
    for f, x, y, s in zip(fc["features"], t["x"], t["y"], t["size"], strict=True):
        g = shape(f["geometry"])
        assert g.bounds == (x, y, x + s, y + s)
        assert g.area == s * s and g.exterior.is_ccw  # RFC 7946 right-hand rule
        ring = f["geometry"]["coordinates"][0]
        assert all(isinstance(v, int) for pt in ring for v in pt)
    assert "plane" not in fc["features"][0]["geometry"]  # plane 0: QuPath's default plane


def test_uncalibrated_export_has_no_rejection(export_data) -> None:
    fc = results_to_geojson(export_data.results, calibration=False)
    m = fc["features"][0]["properties"]["measurements"]
    assert "rejected" not in m and "reason_unfamiliar" not in m
    merged = results_to_geojson(export_data.results, calibration=False, merge=True)
    names = [f["properties"]["classification"]["name"] for f in merged["features"]]
    assert not [n for n in names if n.startswith("Rejected")]


def test_merge_reduces_features_and_preserves_areas(export_data, calibrated, tmp_path) -> None:
    res, _ = calibrated
    t = res.table
    stride = res.meta["spec"]["stride_level0"]
    path = write_geojson(
        results_to_geojson(export_data.results, export_data.calibration, merge=True),
        tmp_path / "regions.geojson",
    )
    # parse with the geojson package (validates the structure) and with shapely
    with open(path, encoding="utf-8") as f:
        fc = geojson.load(f)
    assert fc.is_valid, fc.errors()
    feats = fc["features"]
    assert len(feats) < len(t) / 2
    by_class: dict[str, list] = {}
    for f in feats:
        assert f["properties"]["objectType"] == "annotation"
        g = shape(f["geometry"])
        assert g.is_valid and g.geom_type == "Polygon" and g.exterior.is_ccw
        assert all(not ring.is_ccw for ring in g.interiors)
        by_class.setdefault(f["properties"]["classification"]["name"], []).append((f, g))
    reason = t["reason"].astype(str).to_numpy()
    groups = {c: (t["prediction"].astype(str) == c).to_numpy() for c in CLASSES}
    groups |= {rejected_class_name(r): reason == r for r in ("unfamiliar", "ambiguous")}
    for name, sel in groups.items():
        polys = [g for _, g in by_class.get(name, [])]
        n_tiles = int(sel.sum())
        if not n_tiles:
            assert not polys
            continue
        # the union of the tiles (no overlap: cells = tiles) ...
        x, y, s = (t[k].to_numpy(np.float64)[sel] for k in ("x", "y", "size"))
        tiles_union = shapely.union_all(shapely.box(x, y, x + s, y + s))
        # ... equals the merged regions, which do not overlap each other
        merged = shapely.union_all(polys)
        assert merged.area == pytest.approx(tiles_union.area) == n_tiles * stride**2
        assert sum(p.area for p in polys) == pytest.approx(merged.area)
        assert merged.symmetric_difference(tiles_union).area == pytest.approx(0, abs=1e-6)
        counts = sum(f["properties"]["measurements"]["tiles"] for f, _ in by_class[name])
        assert counts == n_tiles  # every tile belongs to exactly one region
    # tissue area of the class regions adds up to the run's tissue area
    names = [f["properties"]["classification"]["name"] for f in feats]
    areas = [f["properties"]["measurements"]["tissue_area_mm2"] for f in feats]
    total = sum(a for n, a in zip(names, areas, strict=True) if not n.startswith("Rejected"))
    assert total == pytest.approx(res.meta["summary"]["tissue_area_mm2"], rel=1e-6)


def test_calibration_saved_beside_the_results_is_used(export_data, tmp_path) -> None:
    folder = tmp_path / "res"
    shutil.copytree(export_data.results, folder)
    assert "rejected" not in results_to_geojson(folder)["features"][0]["properties"]["measurements"]
    shutil.copy(export_data.calibration, folder / "calibration.json")  # as the GUI saves it
    assert "rejected" in results_to_geojson(folder)["features"][0]["properties"]["measurements"]


def test_ids_are_deterministic(export_data) -> None:
    a = results_to_geojson(export_data.results, export_data.calibration, merge=True)
    b = results_to_geojson(export_data.results, export_data.calibration, merge=True)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_object_type_option_and_validation(export_data) -> None:
    fc = results_to_geojson(export_data.results, False, object_type="detection")
    assert {f["properties"]["objectType"] for f in fc["features"]} == {"detection"}
    with pytest.raises(ResultsError, match="object_type"):
        results_to_geojson(export_data.results, False, object_type="cell")


def test_results_folder_errors(tmp_path, export_data) -> None:
    with pytest.raises(ResultsError, match=r"run\.json"):
        results_to_geojson(tmp_path)
    with pytest.raises(ResultsError, match="batch folder"):
        results_to_geojson(export_data.batch)


def test_decisions_export(export_data) -> None:
    res = TileResults.load(export_data.results)
    dec = read_decisions(export_data.decisions)
    fc = decisions_to_geojson(export_data.decisions, res)
    feats = fc["features"]
    assert len(feats) == len(dec) == 4
    names = [f["properties"]["classification"]["name"] for f in feats]
    expected = [str(dec["prediction"][0]), "tumour", "tumour", "Artefact"]
    assert names == expected
    assert feats[1]["properties"]["classification"]["color"] == list(hex_to_rgb(COLORS[0]))
    for f, row in zip(feats, dec.itertuples(), strict=True):
        assert f["properties"]["objectType"] == "annotation"
        assert shape(f["geometry"]).bounds == (row.x, row.y, row.x + row.size, row.y + row.size)
        m = f["properties"]["measurements"]
        assert all(_is_number(v) for v in m.values())
        assert m[f"decision_{row.decision}"] == 1
        assert f["properties"]["metadata"]["reviewer"] == "tester"
        assert "prob_tumour" in m  # measurements of the reviewed tile
    m0 = feats[0]["properties"]["measurements"]
    assert m0["agrees_with_model"] == 1
    assert "agrees_with_model" not in feats[3]["properties"]["measurements"]

    merged = decisions_to_geojson(export_data.decisions, res, merge=True)["features"]
    by_name = {f["properties"]["classification"]["name"]: f for f in merged}
    assert len(merged) < len(feats)
    size = float(dec["size"][1])
    tumour = shape(by_name["tumour"]["geometry"])
    n_tumour = names.count("tumour")  # 2 relabelled (+ the accepted one if predicted tumour)
    assert tumour.geom_type == "Polygon"  # adjacent tiles became one region
    assert tumour.area == pytest.approx(n_tumour * size * size)
    assert by_name["tumour"]["properties"]["measurements"]["decision_relabel"] == 2
