"""TileResults tables and files, and the run folder's resume bookkeeping (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tileuq.engine.reader import TileReader, plan_batches
from tileuq.engine.results import TileResults, build_table
from tileuq.engine.resume import RunFolder
from tileuq.errors import ResultsError

CLASSES = ["tumour", "stroma", "background"]
SCORES = ["msp", "entropy"]


def make_results(n: int = 5, seed: int = 0) -> TileResults:
    rng = np.random.default_rng(seed)
    rows = np.arange(n) // 3
    cols = np.arange(n) % 3
    geom = {
        "x": cols * 100,
        "y": rows * 100,
        "size": np.full(n, 100),
        "row": rows,
        "col": cols,
        "plane": np.zeros(n, int),
        "tissue": rng.uniform(0.5, 1, n),
    }
    p = rng.dirichlet(np.ones(3), n)
    table = build_table(
        geom,
        p,
        p.argmax(1),
        p.max(1),
        {"msp": 1 - p.max(1), "entropy": -(p * np.log(p)).sum(1)},
        CLASSES,
        SCORES,
    )
    meta = {
        "status": "complete",
        "slide": {"name": "s.svs", "dimensions": [300, 300]},
        "model": {
            "classes": CLASSES,
            "colors": ["#ff0000", "#00ff00", "#0000ff"],
            "score_names": SCORES,
        },
        "spec": {
            "grid_shape": [3, 3],
            "mpp": 0.5,
            "stride_level0": 100,
            "tile_size_level0": 100,
            "planes": [0],
        },
    }
    return TileResults(table, meta)


def test_table_columns_and_dtypes() -> None:
    res = make_results()
    assert list(res.table.columns) == [
        "x", "y", "size", "row", "col", "plane", "tissue",
        "prob_tumour", "prob_stroma", "prob_background",
        "prediction", "pred_index", "confidence", "msp", "entropy",
    ]  # fmt: skip
    assert res.table["prediction"].dtype.name == "category"
    assert list(res.table["prediction"].cat.categories) == CLASSES
    assert (
        res.table["prediction"].astype(str) == [CLASSES[i] for i in res.table["pred_index"]]
    ).all()
    assert res.table["prob_tumour"].dtype == np.float32
    assert res.classes == CLASSES and res.score_names == SCORES and res.grid_shape == (3, 3)
    assert res.mpp == 0.5


def test_save_load_roundtrip_is_byte_identical(tmp_path) -> None:
    res = make_results(7)
    res.save(tmp_path / "a")
    res.save(tmp_path / "b")
    assert (tmp_path / "a/tiles.parquet").read_bytes() == (
        tmp_path / "b/tiles.parquet"
    ).read_bytes()
    back = TileResults.load(tmp_path / "a")
    pd.testing.assert_frame_equal(back.table, res.table)
    assert back.meta["model"] == res.meta["model"]
    assert not list((tmp_path / "a").glob(".*tmp*")), "temporary files left behind"


def test_empty_table_roundtrip_keeps_categories(tmp_path) -> None:
    res = make_results(0)
    res.save(tmp_path)
    back = TileResults.load(tmp_path)
    assert len(back) == 0
    assert list(back.table["prediction"].cat.categories) == CLASSES
    assert np.isnan(back.grid("msp")).all()


def test_grid_places_values_and_nans() -> None:
    res = make_results(5)
    g = res.grid("msp")
    assert g.shape == (3, 3)
    t = res.table
    np.testing.assert_allclose(g[t["row"], t["col"]], t["msp"].to_numpy(), rtol=1e-6)
    assert np.isnan(g[1, 2]) and np.isnan(g[2]).all()  # tiles 5..8 absent
    np.testing.assert_array_equal(res.grid("prediction")[t["row"], t["col"]], t["pred_index"])
    with pytest.raises(ResultsError, match="no column 'nope'"):
        res.grid("nope")


def test_grid_of_a_stack_is_3d() -> None:
    res = make_results(4)
    res.table.loc[2:, "plane"] = 1
    res.meta["spec"]["planes"] = [0, 1]
    assert res.grid("msp").shape == (2, 3, 3)
    assert np.isfinite(res.grid("msp", plane=1)).sum() == 2


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "run.json").unlink(), "run.json: missing"),
        (lambda d: (d / "tiles.parquet").unlink(), "tiles.parquet: missing"),
        (lambda d: (d / "run.json").write_text("{not json"), "run.json: cannot read"),
        (lambda d: (d / "run.json").write_text('{"format": "other"}'), "not a tileuq results file"),
        (lambda d: (d / "tiles.parquet").write_bytes(b"PAR1garbage"), "cannot read the table"),
    ],
)
def test_load_damaged_folder_raises_results_error(tmp_path, damage, message) -> None:
    make_results().save(tmp_path)
    damage(tmp_path)
    with pytest.raises(ResultsError, match=message):
        TileResults.load(tmp_path)


def test_load_missing_folder(tmp_path) -> None:
    with pytest.raises(ResultsError, match="does not exist"):
        TileResults.load(tmp_path / "nope")


# --------------------------------------------------------------------------- run folder


def _fp(model_hash: str = "m1", tile_px: int = 224) -> dict:
    return {
        "slide": {"header_hash": "s"},
        "model": {"hash": model_hash},
        "spec": {"tile_px": tile_px},
    }


def _part(n: int, start: int) -> dict[str, np.ndarray]:
    return {"pred_index": np.arange(start, start + n), "confidence": np.full(n, 0.5, np.float32)}


def test_run_folder_resume_and_merge(tmp_path) -> None:
    f = RunFolder(tmp_path / "run")
    assert f.prepare(_fp()) == "new"
    f.write_part(0, 4, _part(4, 0))
    f.write_part(8, 10, _part(2, 8))
    assert RunFolder(tmp_path / "run").prepare(_fp()) == "resume"
    assert f.done_ranges() == [(0, 4), (8, 10)]
    with pytest.raises(ResultsError, match="missing"):
        f.read_parts(10, ["pred_index"])
    f.write_part(4, 8, _part(4, 4))
    merged = f.read_parts(10, ["pred_index", "confidence"])
    np.testing.assert_array_equal(merged["pred_index"], np.arange(10))


def test_run_folder_refuses_other_arguments(tmp_path) -> None:
    f = RunFolder(tmp_path)
    f.prepare(_fp())
    f.write_part(0, 2, _part(2, 0))
    with pytest.raises(ResultsError, match=r"other arguments \(model.hash: 'm1' -> 'm2'") as exc:
        RunFolder(tmp_path).prepare(_fp("m2"))
    assert "--overwrite" in str(exc.value)
    assert f.done_ranges() == [(0, 2)], "refusing must not touch the parts"
    assert RunFolder(tmp_path).prepare(_fp("m2"), overwrite=True) == "new"
    assert f.done_ranges() == []


def test_damaged_part_is_discarded_and_recomputed(tmp_path) -> None:
    f = RunFolder(tmp_path)
    f.prepare(_fp())
    f.write_part(0, 2, _part(2, 0))
    f.write_part(2, 4, _part(2, 2))
    (tmp_path / "parts" / "p0000000002-0000000004.npz").write_bytes(b"garbage")
    assert f.discard_bad_parts(["pred_index"]) == 1
    assert f.done_ranges() == [(0, 2)]


def test_fingerprint_file_is_json_and_parts_are_not_pickles(tmp_path) -> None:
    f = RunFolder(tmp_path)
    f.prepare(_fp())
    assert json.loads((tmp_path / "fingerprint.json").read_text())["model"]["hash"] == "m1"
    f.write_part(0, 1, {"x": np.array([1])})
    with np.load(tmp_path / "parts" / "p0000000000-0000000001.npz", allow_pickle=False) as z:
        assert z["x"].tolist() == [1]


# --------------------------------------------------------------------------- reader


def test_plan_batches_fixed_cut_points_and_resume() -> None:
    offsets = np.array([0, 10, 13])  # two planes
    full = plan_batches(offsets, 4, [])
    assert [(a, b) for a, b, _ in full] == [(0, 4), (4, 8), (8, 10), (10, 13)]
    resumed = plan_batches(offsets, 4, [(0, 4), (5, 6)])
    assert [(a, b) for a, b, _ in resumed] == [(4, 5), (6, 8), (8, 10), (10, 13)]


def test_reader_yields_in_order_with_bounded_prefetch() -> None:
    import threading
    import time

    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def make():
        def read(idx):
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.002 * (idx[0] % 3))  # finish out of order
            with lock:
                in_flight -= 1
            return np.broadcast_to(idx[:, None, None, None], (len(idx), 2, 2, 3)).astype(np.uint8)

        return read

    batches = plan_batches(np.array([0, 50]), 5, [])
    reader = TileReader(make, batches, (2, 2), threads=3, prefetch=2, split=2)
    seen = []
    for b in reader:
        seen.extend(b.tiles[:, 0, 0, 0].tolist())
        time.sleep(0.001)
    assert seen == list(range(50))
    assert peak <= 3


def test_reader_propagates_errors() -> None:
    def make():
        def read(idx):
            if 7 in idx:
                raise OSError("bad tile 7")
            return np.zeros((len(idx), 2, 2, 3), np.uint8)

        return read

    reader = TileReader(make, plan_batches(np.array([0, 20]), 4, []), (2, 2), threads=2)
    with pytest.raises(OSError, match="bad tile 7"):
        list(reader)
