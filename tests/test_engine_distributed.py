"""run_slides on a Dask LocalCluster of 2 worker processes: same bytes as a local run."""

from __future__ import annotations

import shutil

import pytest

import tileuq
from engine_helpers import saved_model

pytest.importorskip("distributed")
KW = {"tile_px": 64, "mpp": 2.0, "batch_size": 8, "device": "cpu"}


@pytest.mark.slow
def test_local_cluster_matches_local_run_byte_for_byte(sample_slide_path, tmp_path) -> None:
    from distributed import Client, LocalCluster

    model_dir = saved_model(tmp_path / "model")
    second = tmp_path / "slides" / "CMU-1-Small-Region.svs"  # same name, other folder
    second.parent.mkdir()
    shutil.copy(sample_slide_path, second)
    bad = tmp_path / "slides" / "bad.svs"
    bad.write_bytes(b"\x00" * 100)
    slides = [sample_slide_path, second, bad]

    local = tileuq.run_slides(slides, str(model_dir), tmp_path / "local", overview=False, **KW)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = tileuq.run_slides(
            slides, str(model_dir), tmp_path / "dask", client=client, overview=False, **KW
        )
        # workers keep the model: one load per worker process, whatever the number of slides
        loads = client.run(
            lambda: __import__("tileuq.engine.distributed").engine.distributed._MODEL_LOADS
        )
        # a loaded model object is saved beside the outputs and loaded by the workers
        as_object = tileuq.run_slides(
            slides[:1], tileuq.load_model(model_dir), tmp_path / "obj", client=client,
            overview=False, **KW,
        )  # fmt: skip
    assert (
        [o.status for o in remote]
        == [o.status for o in local]
        == ["complete", "complete", "failed"]
    )
    assert 1 <= sum(loads.values()) <= 2, loads  # 3 slides, 2 workers
    names = [o.folder.rsplit("/", 1)[-1] for o in remote]
    assert names[0] == "CMU-1-Small-Region" and names[1].startswith("CMU-1-Small-Region-")
    for o_local, o_remote in zip(local[:2], remote[:2], strict=True):
        a = (tmp_path / "local" / o_local.folder.rsplit("/", 1)[-1] / "tiles.parquet").read_bytes()
        b = (tmp_path / "dask" / o_remote.folder.rsplit("/", 1)[-1] / "tiles.parquet").read_bytes()
        assert a == b
    assert as_object[0].status == "complete"
    assert (tmp_path / "obj" / "CMU-1-Small-Region" / "tiles.parquet").read_bytes() == (
        tmp_path / "local" / "CMU-1-Small-Region" / "tiles.parquet"
    ).read_bytes()
    assert "bad.svs" in (tmp_path / "dask" / "bad" / "error.txt").read_text()
