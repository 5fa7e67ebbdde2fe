"""Run widget: run on the sample slide (synchronous and threaded), cancel, resume."""

from __future__ import annotations

import json

import pytest
from gui_helpers import grab, not_blank

pytestmark = pytest.mark.gui


@pytest.fixture
def run_widget(make_napari_viewer, sample_slide_path, model_source, tmp_path):
    from tileuq.napari.run_widget import MODEL_KINDS, RunWidget

    viewer = make_napari_viewer(show=True)
    viewer.open(str(sample_slide_path), plugin="tileuq")
    widget = RunWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Run model")
    assert widget.slide.value == "CMU-1-Small-Region.svs"  # picked up the slide layer
    if model_source != "demo":
        widget.model_kind.value = MODEL_KINDS[1]
        widget.model_path.value = model_source
    widget.out.value = tmp_path / "run"
    widget.device.value = "cpu"
    return viewer, widget


def _kinds(viewer):
    return {layer.metadata.get("tileuq", {}).get("kind") for layer in viewer.layers} - {None}


def test_run_adds_result_layers(run_widget, artifacts_dir):
    viewer, widget = run_widget
    widget.sync = True
    job = widget.start()
    assert job is not None and not job.cancelled
    assert "Done" in widget.status.value, widget.status.value
    assert {"classes", "heatmap", "flagged"} <= _kinds(viewer)
    out = widget.out.value
    assert (out / "tiles.parquet").is_file() and (out / "run.json").is_file()
    n = json.loads((out / "run.json").read_text())["summary"]["n_tiles"]
    assert len(widget.session.results) == n > 0
    # a second run replaces the layers instead of adding copies
    before = len(viewer.layers)
    widget.start()
    assert len(viewer.layers) == before
    assert not_blank(grab(widget, artifacts_dir / "widget_run.png"))


def test_cancel_keeps_batches_and_run_resumes(run_widget):
    viewer, widget = run_widget
    widget.sync = True
    widget.batch_size.value = 4
    seen = []
    original = widget._on_progress

    def cancel_after_first_batch(item):
        original(item)
        stage = getattr(item, "stage", None)
        seen.append(stage)
        if stage == "inference" and item.done >= 4:
            widget.cancel()

    widget._on_progress = cancel_after_first_batch
    widget.start()
    assert widget.job.cancelled
    assert "resume" in widget.status.value
    assert "classes" not in _kinds(viewer)  # nothing shown for a cancelled run
    out = widget.out.value
    assert not (out / "tiles.parquet").exists()
    assert widget.run_button.enabled and not widget.cancel_button.enabled

    widget._on_progress = original
    widget.start()
    assert "Done" in widget.status.value, widget.status.value
    meta = json.loads((out / "run.json").read_text())
    assert meta["timings"]["tiles_resumed"] >= 4
    assert meta["timings"]["tiles_resumed"] + meta["timings"]["tiles_computed"] == len(
        widget.session.results
    )
    assert "classes" in _kinds(viewer)


@pytest.mark.slow
def test_threaded_run_does_not_block_and_finishes(run_widget, qtbot):
    viewer, widget = run_widget
    widget.sync = False
    job = widget.start()
    assert job is not None and job.worker is not None
    assert not widget.run_button.enabled  # running in the background
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)
    assert "Done" in widget.status.value, widget.status.value
    assert "classes" in _kinds(viewer)


def test_bad_model_folder_is_reported(run_widget, tmp_path):
    from tileuq.napari.run_widget import MODEL_KINDS

    _, widget = run_widget
    widget.sync = True
    widget.model_kind.value = MODEL_KINDS[1]
    widget.model_path.value = tmp_path  # no model.json there
    widget.start()
    assert "failed" in widget.status.value.lower()
    assert widget.run_button.enabled
