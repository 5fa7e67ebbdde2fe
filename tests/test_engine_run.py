"""run_slide / iter_run_slide on the bundled sample slide with real (untrained) slim models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tileuq
from engine_helpers import CLASSES, FAST, slim_model
from tileuq.engine import Progress, TileResults


@pytest.fixture(scope="module")
def sngp():
    return slim_model("sngp")


@pytest.fixture(scope="module")
def sample_results(sample_slide_path, sngp, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "CMU"
    items = list(tileuq.iter_run_slide(sample_slide_path, sngp, out=out, **FAST))
    return out, items


def test_table_matches_grid_and_model(sample_slide_path, sngp, sample_results) -> None:
    _, items = sample_results
    res = items[-1]
    assert isinstance(res, TileResults)
    with tileuq.open_slide(sample_slide_path) as slide:
        grid = tileuq.tile_grid(slide, tile_px=64, mpp=2.0)
        tiles = grid.read_batch(slide, np.arange(len(grid)))
    t = res.table
    assert len(t) == len(grid) > 10
    np.testing.assert_array_equal(t[["x", "y"]].to_numpy(), grid.coords)
    np.testing.assert_array_equal(t["row"], grid.rows)
    np.testing.assert_array_equal(t["col"], grid.cols)
    assert (t["size"] == grid.tile_size_level0).all() and (t["plane"] == 0).all()
    # the engine's numbers are the model's on the same tiles read one by one
    ref = sngp.predict(tiles)
    probs = t[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs, ref["probabilities"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(t["pred_index"], ref["predictions"].numpy())
    assert list(t["prediction"].astype(str)) == [CLASSES[i] for i in t["pred_index"]]
    for name in sngp.score_names:
        np.testing.assert_allclose(t[name], ref["scores"][name].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


def test_meta_records_provenance(sample_slide_path, sngp, sample_results) -> None:
    out, items = sample_results
    meta = TileResults.load(out).meta
    assert meta["status"] == "complete"
    with tileuq.open_slide(sample_slide_path) as slide:
        assert meta["slide"]["header_hash"] == slide.header_hash()
    assert meta["model"]["hash"] == sngp.model_hash and meta["model"]["method"] == "sngp"
    assert meta["model"]["classes"] == CLASSES and meta["model"]["tile_px"] == 64
    spec = meta["spec"]
    assert spec["tile_px"] == 64 and spec["mpp"] == 2.0 and spec["grid_shape"] == [11, 8]
    assert spec["tile_size_level0"] == round(64 * 2.0 / 0.499)
    assert meta["versions"]["torch"] and meta["device"]["type"] == "cpu"
    assert meta["timings"]["tiles_computed"] == len(items[-1])
    assert not (out / "parts").exists() and not (out / "fingerprint.json").exists()


def test_progress_then_result(sample_results) -> None:
    _, items = sample_results
    progress = [p for p in items if isinstance(p, Progress)]
    assert all(isinstance(p, Progress) for p in items[:-1])
    stages = [p.stage for p in progress]
    assert stages[0] == "open" and stages[-1] == "done" and "inference" in stages
    done = [p.done for p in progress if p.stage == "inference"]
    assert done == sorted(done) and done[-1] == len(items[-1])
    assert progress[-1].fraction == 1.0


def test_rerun_skips_and_second_folder_is_byte_identical(
    sample_slide_path, sngp, sample_results, tmp_path
) -> None:
    out, items = sample_results
    again = list(tileuq.iter_run_slide(sample_slide_path, sngp, out=out, **FAST))
    assert [p.stage for p in again if isinstance(p, Progress)][-1] == "skipped"
    pd.testing.assert_frame_equal(again[-1].table, items[-1].table)
    tileuq.run_slide(sample_slide_path, sngp, out=tmp_path / "b", **FAST)
    assert (tmp_path / "b/tiles.parquet").read_bytes() == (out / "tiles.parquet").read_bytes()


def test_defaults_come_from_the_model_manifest(sample_slide_path, sngp, sample_results) -> None:
    res = tileuq.run_slide(sample_slide_path, sngp, device="cpu", batch_size=8)  # no tile_px/mpp
    assert res.meta["spec"]["tile_px"] == 64 and res.meta["spec"]["mpp"] == 2.0
    pd.testing.assert_frame_equal(res.table, sample_results[1][-1].table)


def test_fast_and_plain_reading_give_the_same_table(sample_slide_path, sngp) -> None:
    fast = tileuq.run_slide(sample_slide_path, sngp, **FAST)
    plain = tileuq.run_slide(sample_slide_path, sngp, fast_read=False, **FAST)
    assert fast.meta["reader"]["handle"] == "tifffile" and fast.meta["reader"]["block_reads"]
    assert plain.meta["reader"]["handle"] == "slide"
    pd.testing.assert_frame_equal(fast.table, plain.table, check_exact=True)


def test_mc_dropout_is_reproducible(sample_slide_path) -> None:
    model = slim_model("mc_dropout", mc_samples=4, drop_rate=0.3)
    a = tileuq.run_slide(sample_slide_path, model, **FAST)
    b = tileuq.run_slide(sample_slide_path, model, **FAST)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert (a.table["mutual_information"] > 0).any(), "dropout must be active in predict"


def test_stack_runs_every_plane(sample_slide_path) -> None:
    with tileuq.open_slide(sample_slide_path) as slide:
        crop = slide.read_region((0, 0), 0, (1024, 1536))
    stack = np.stack([crop, crop[:, ::-1]])  # two real, different planes
    model = slim_model("deterministic")
    with tileuq.open_slide(stack, mpp=0.499) as s:
        res = tileuq.run_slide(s, model, min_tissue=0.2, **FAST)
        only1 = tileuq.run_slide(s, model, min_tissue=0.2, plane=1, **FAST)
        grid1 = tileuq.tile_grid(s, tile_px=64, mpp=2.0, min_tissue=0.2, plane=1)
    t = res.table
    assert set(t["plane"]) == {0, 1} and res.planes == [0, 1]
    assert res.grid("msp").shape == (2, *res.grid_shape)
    p1 = t[t.plane == 1].reset_index(drop=True)
    assert len(p1) == len(grid1) > 0
    np.testing.assert_array_equal(p1[["x", "y"]].to_numpy(), grid1.coords)
    pd.testing.assert_frame_equal(p1, only1.table, check_exact=False, atol=1e-5)
