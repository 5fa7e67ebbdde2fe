"""Bad input and faults: unreadable slides, mpp mismatch, no tissue, unwritable output,
out-of-memory, refused resume with other arguments (kill -9 is in test_engine_cli.py)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

import tileuq
from engine_helpers import FAST, slim_model
from tileuq.engine import TileResults
from tileuq.errors import ResultsError, TilingError


@pytest.fixture(scope="module")
def model():
    return slim_model("deterministic")


def test_unreadable_slide_is_reported_and_others_finish(sample_slide_path, model, tmp_path) -> None:
    bad = tmp_path / "broken.svs"
    bad.write_bytes(sample_slide_path.read_bytes()[:5000])  # truncated real SVS
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    outcomes = tileuq.run_slides([bad, sample_slide_path, text], model, tmp_path / "out", **FAST)
    assert [o.status for o in outcomes] == ["failed", "complete", "failed"]
    assert "SlideError" in outcomes[0].error and "broken.svs" in outcomes[0].error
    err = (tmp_path / "out" / "broken" / "error.txt").read_text()
    assert "broken.svs" in err and "Traceback" in err
    assert (tmp_path / "out" / "notes" / "error.txt").exists()
    good = TileResults.load(tmp_path / "out" / "CMU-1-Small-Region")
    assert len(good) == outcomes[1].n_tiles > 0
    assert (tmp_path / "out" / "CMU-1-Small-Region" / "overview.png").stat().st_size > 10_000


def test_mpp_mismatch_warns_with_the_numbers(sample_slide_path, model) -> None:
    with pytest.warns(UserWarning, match=r"tiles at 4 µm/px but the model was trained at 2 µm/px"):
        tileuq.run_slide(sample_slide_path, model, mpp=4.0, tile_px=64, device="cpu")


def test_tile_size_other_than_the_models_warns_and_runs(sample_slide_path, model) -> None:
    with pytest.warns(UserWarning, match="tiles of 96 px but the model was trained on 64 px"):
        res = tileuq.run_slide(sample_slide_path, model, tile_px=96, mpp=2.0, device="cpu")
    with tileuq.open_slide(sample_slide_path) as slide:
        assert len(res) == len(tileuq.tile_grid(slide, tile_px=96, mpp=2.0)) > 0


def test_slide_coarser_than_tiles_warns(sample_slide_path) -> None:
    fine = slim_model("deterministic", mpp=0.25)
    with tileuq.open_slide(sample_slide_path) as slide:
        crop = slide.read_region((700, 700), 0, (300, 300))
    with tileuq.open_slide(crop, mpp=0.499) as s, pytest.warns(UserWarning, match="upsampled"):
        tileuq.run_slide(s, fine, device="cpu", min_tissue=0)


def test_slide_without_mpp_needs_an_explicit_one(sample_slide_path, model) -> None:
    with tileuq.open_slide(sample_slide_path) as slide:
        crop = slide.read_region((600, 600), 0, (512, 512))
    with tileuq.open_slide(crop) as s:  # a plain array records no resolution
        assert s.mpp is None
        with pytest.raises(TilingError, match="does not record its resolution"):
            tileuq.run_slide(s, model, device="cpu")
        res = tileuq.run_slide(s, model, mpp=2.0, device="cpu", min_tissue=0)
    # the stated mpp is the image's own resolution: 64-px tiles read at level 0, not resized
    assert len(res) == 64 and res.meta["spec"]["tile_size_level0"] == 64


def test_no_tissue_gives_an_empty_table(sample_slide_path, model, tmp_path) -> None:
    with tileuq.open_slide(sample_slide_path) as slide:
        blank = slide.read_region((0, 0), 0, (600, 400))  # the slide's empty glass corner
    with tileuq.open_slide(blank, mpp=0.499) as s:
        res = tileuq.run_slide(s, model, out=tmp_path / "blank", **FAST)
    assert len(res) == 0 and list(res.table.columns)[:7] == [
        "x",
        "y",
        "size",
        "row",
        "col",
        "plane",
        "tissue",
    ]
    back = TileResults.load(tmp_path / "blank")
    assert len(back) == 0 and np.isnan(back.grid("msp")).all()
    from tileuq.engine.overview import draw_overview

    draw_overview(back, blank, tmp_path / "blank.png")  # draws the empty case too
    assert (tmp_path / "blank.png").exists()


def test_unwritable_output_fails_before_any_work(
    sample_slide_path, model, tmp_path, monkeypatch
) -> None:
    calls = []
    monkeypatch.setattr(model, "predict", lambda *a, **k: calls.append(1))
    import tileuq.slide

    monkeypatch.setattr(tileuq.slide, "open_slide", lambda *a, **k: calls.append(2))
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the output folder's parent should be
    with pytest.raises(ResultsError, match=r"output folder .*file/out is not writable"):
        list(tileuq.iter_run_slide(sample_slide_path, model, out=blocker / "out", **FAST))
    with pytest.raises(ResultsError, match="not writable"):
        tileuq.run_slides([sample_slide_path], model, blocker / "many", **FAST)
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(ResultsError, match="not writable"):
            list(tileuq.iter_run_slide(sample_slide_path, model, out=ro / "x", **FAST))
    with pytest.raises(tileuq.TileuqError, match="batch_size='many'"):
        list(tileuq.iter_run_slide(sample_slide_path, model, batch_size="many"))
    if not torch.cuda.is_available():
        with pytest.raises(tileuq.TileuqError, match="CUDA is not available"):
            list(tileuq.iter_run_slide(sample_slide_path, model, device="cuda"))
    assert calls == []


def test_out_of_memory_backs_off_and_finishes(sample_slide_path, model, monkeypatch) -> None:
    reference = tileuq.run_slide(sample_slide_path, model, tile_px=64, mpp=2.0, batch_size=8)
    real = type(model).predict
    sizes = []

    def predict(self, batch, **kw):
        sizes.append(len(batch))
        if len(batch) > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, batch, **kw)

    monkeypatch.setattr(type(model), "predict", predict)
    res = tileuq.run_slide(sample_slide_path, model, tile_px=64, mpp=2.0, batch_size="auto")
    assert sizes[:3] == [min(32, len(reference)), 16, 8] and max(sizes[3:]) <= 8
    assert res.meta["device"]["oom_backoffs"] == 2 and res.meta["device"]["final_micro_batch"] == 8
    # same micro-batches as batch_size=8, so the same numbers, no tile lost or doubled
    pd.testing.assert_frame_equal(res.table, reference.table, check_exact=True)
    with pytest.raises(MemoryError, match="out of memory running the model on 16 tiles"):
        tileuq.run_slide(sample_slide_path, model, tile_px=64, mpp=2.0, batch_size=16)


def test_resume_refuses_other_arguments(sample_slide_path, model, tmp_path) -> None:
    out = tmp_path / "run"
    tileuq.run_slide(sample_slide_path, model, out=out, **FAST)
    before = (out / "tiles.parquet").read_bytes()
    with (
        pytest.raises(ResultsError, match=r"other arguments .*tile_px: 64 -> 96"),
        pytest.warns(UserWarning, match="tiles of 96 px but the model was trained on 64 px"),
    ):
        tileuq.run_slide(sample_slide_path, model, out=out, **{**FAST, "tile_px": 96})
    other = slim_model("deterministic", seed=1)
    with pytest.raises(ResultsError, match=r"model\.hash"):
        tileuq.run_slide(sample_slide_path, other, out=out, **FAST)
    assert (out / "tiles.parquet").read_bytes() == before, "a refused run must not touch results"
    res = tileuq.run_slide(sample_slide_path, other, out=out, overwrite=True, **FAST)
    assert (
        TileResults.load(out).meta["model"]["hash"] == other.model_hash == res.meta["model"]["hash"]
    )


def test_partial_run_resumes_to_the_same_table(sample_slide_path, model, tmp_path) -> None:
    full = tileuq.run_slide(sample_slide_path, model, out=tmp_path / "full", **FAST)
    gen = tileuq.iter_run_slide(sample_slide_path, model, out=tmp_path / "part", **FAST)
    for p in gen:  # stop after two batches, as a closed GUI worker would
        if getattr(p, "stage", "") == "inference" and p.done >= 16:
            break
    gen.close()
    parts = sorted((tmp_path / "part" / "parts").iterdir())
    assert len(parts) == 2 and not (tmp_path / "part" / "run.json").exists()
    items = list(tileuq.iter_run_slide(sample_slide_path, model, out=tmp_path / "part", **FAST))
    assert items[-1].meta["timings"]["tiles_resumed"] == 16
    assert (tmp_path / "part/tiles.parquet").read_bytes() == (
        tmp_path / "full/tiles.parquet"
    ).read_bytes()
    assert len(full) == len(items[-1])
