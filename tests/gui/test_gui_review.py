"""Review widget: keyboard review of three tiles, jump/zoom/outline, durable decisions, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gui_helpers import grab, not_blank

pytestmark = pytest.mark.gui


def _press(viewer, key):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, getattr(Qt.Key, f"Key_{key.upper()}"))
    QApplication.processEvents()


@pytest.fixture
def review(make_napari_viewer, sample_results):
    from tileuq.napari._common import sessions_in
    from tileuq.napari.review_widget import ReviewWidget

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("tileuq", "cmu1_with_results")
    (session,) = sessions_in(viewer)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Review")
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    widget.show_current()  # docking resized the canvas: zoom again
    return viewer, widget, session


def test_queue_matches_flagged_layer_and_jumps_to_tile(review):
    from tileuq.napari._common import session_layers

    viewer, widget, session = review
    (flagged,) = session_layers(viewer, session, "flagged")
    assert len(widget.queue) == len(flagged.data) > 0
    np.testing.assert_array_equal(widget.queue, flagged.features["tile"].to_numpy())
    row = widget.current
    t = session.results.table.iloc[row]
    slide = viewer.layers["CMU-1-Small-Region"]
    centre = slide.data_to_world((t["y"] + (t["size"] - 1) / 2, t["x"] + (t["size"] - 1) / 2))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    np.testing.assert_allclose(camera.center[-2:], centre, atol=1e-6)
    # zoom: 3 x the tile's extent fits the smaller canvas side
    extent = t["size"] * slide.scale[-1] * 3
    size = viewer.canvas.size if hasattr(viewer, "canvas") else viewer._canvas_size
    assert camera.zoom == pytest.approx(min(size) / extent)
    outline = viewer.layers["current tile"]
    box = outline.data[0]
    world = np.array([outline.data_to_world(v) for v in box])
    y0, x0, y1, x1 = (
        *slide.data_to_world((t["y"] - 0.5, t["x"] - 0.5)),
        *slide.data_to_world((t["y"] + t["size"] - 0.5, t["x"] + t["size"] - 0.5)),
    )
    np.testing.assert_allclose(world.min(0), (y0, x0), atol=1e-6)
    np.testing.assert_allclose(world.max(0), (y1, x1), atol=1e-6)


def test_review_three_tiles_by_keyboard_and_survive_a_crash(
    review, make_napari_viewer, artifacts_dir
):
    from tileuq.napari._common import session_layers
    from tileuq.review import DECISION_CODES

    viewer, widget, session = review
    if len(widget.queue) < 4:
        widget.order.value = "random"  # every tile, when few are flagged
    q = [int(i) for i in widget.queue[:4]]
    assert widget.current == q[0]
    _press(viewer, "a")  # accept the first
    assert widget.current == q[1]
    _press(viewer, "n")  # skip the second
    assert widget.current == q[2]
    _press(viewer, "2")  # relabel the third as class 2
    _press(viewer, "x")  # artefact on the fourth
    _press(viewer, "p")
    _press(viewer, "p")
    assert widget.current == q[2]
    log_path = session.folder / "decisions.jsonl"
    # "crash": read what is on disk now, with the widget and viewer still open (no cleanup)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert lines[0]["decision"] == "accept"
    assert len(lines) == 3
    table = session.results.table
    assert (lines[0]["x"], lines[0]["y"]) == (
        int(table["x"].iloc[q[0]]),
        int(table["y"].iloc[q[0]]),
    )
    second_class = session.results.classes[1]
    pred3 = str(table["prediction"].iloc[q[2]])
    assert lines[1]["decision"] == ("accept" if pred3 == second_class else "relabel")
    assert lines[1]["label"] == second_class
    assert lines[2]["decision"] == "artefact"
    (dec_layer,) = session_layers(viewer, session, "decisions")
    r, c = int(table["row"].iloc[q[0]]), int(table["col"].iloc[q[0]])
    assert dec_layer.data[r, c] == DECISION_CODES["accept"]
    assert not_blank(grab(widget, artifacts_dir / "widget_review.png"))
    shot = viewer.screenshot(canvas_only=True, flash=False)
    from PIL import Image

    Image.fromarray(shot).save(artifacts_dir / "napari_review_tile.png")
    assert not_blank(shot)

    # reopen in a fresh viewer (as after a crash): decisions load and the queue resumes
    from tileuq.napari import _common
    from tileuq.napari.review_widget import ReviewWidget

    _common._SESSIONS.clear()
    viewer2 = make_napari_viewer(show=True)
    viewer2.open_sample("tileuq", "cmu1_with_results")
    widget2 = ReviewWidget(viewer2)
    widget2.order.value = widget.order.value
    assert widget2.decided == {q[0], q[2], q[3]}
    assert widget2.current == q[1]  # the first undecided tile
    (dec2,) = session_layers(viewer2, _common.sessions_in(viewer2)[0], "decisions")
    assert (dec2.data > 0).sum() == 3


def test_export_geojson_and_recalibrate_with_decisions(review, tmp_path):
    _, widget, session = review
    widget.order.value = "random"  # an unbiased sample of the slide's tiles
    n = len(widget.queue)
    for _ in range(n):
        widget.decide("accept")
    widget.geojson.value = tmp_path / "decisions.geojson"
    path = widget.export()
    fc = json.loads(path.read_text())
    assert len(fc["features"]) == n
    assert {f["properties"]["classification"]["name"] for f in fc["features"]} <= set(
        session.results.classes
    )
    cal = widget.recalibrate()
    if "too small" in widget.status.value:  # the sample slide has few tiles
        assert cal is None and "needs at least" in widget.status.value
        assert session.calibration is not None  # the previous calibration stays
    else:
        assert cal is not None and session.calibration is cal and cal.n == n
        assert "recalibrated" in widget.status.value


def test_recalibrate_with_enough_random_decisions(make_napari_viewer, tmp_path):
    from tileuq.layers.synthetic import synthetic_results
    from tileuq.napari._common import load_session, register, session_layers, show_session
    from tileuq.napari.review_widget import ReviewWidget
    from tileuq.uncertainty import calibrate

    res = synthetic_results(3000, seed=5)
    res.save(tmp_path / "r")
    viewer = make_napari_viewer(show=True)
    session = register(load_session(tmp_path / "r"))
    show_session(viewer, session)
    widget = ReviewWidget(viewer)
    widget.order.value = "random"
    assert len(widget.queue) == 3000  # no calibration yet: a random sample of every tile
    for i in range(150):
        row = widget.current
        if res.table["entropy"].iloc[row] > 0.9 and i % 2:
            wrong = next(c for c in res.classes if c != res.table["prediction"].iloc[row])
            widget.decide("relabel", wrong)
        else:
            widget.decide("accept")
    cal = widget.recalibrate()
    assert cal is not None and session.calibration is cal and cal.n == 150
    want = calibrate(None, (res, session.folder / "decisions.jsonl"), target_coverage=0.9)
    assert cal.thresholds == want.thresholds
    (rejected,) = session_layers(viewer, session, "rejected")
    applied = cal.apply(res).table
    assert (rejected.data > 0).sum() == applied["rejected"].sum()
    # in score order the queue now holds the newly rejected tiles
    widget.order.value = "score"
    assert len(widget.queue) == applied["rejected"].sum() > 0
