"""Calibrate widget: coverage and risk targets, live mask repaint, plots, shift alarm, save."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gui_helpers import grab, not_blank

pytestmark = pytest.mark.gui


@pytest.fixture
def synthetic_session(make_napari_viewer, tmp_path):
    """A 5000-tile synthetic slide's results shown in a viewer, with labelled data."""
    from tileuq.calibration_tool import CalibrationData
    from tileuq.layers.synthetic import synthetic_results
    from tileuq.napari._common import load_session, register, show_session

    res = synthetic_results(5000, seed=11)
    folder = tmp_path / "results"
    res.save(folder)
    viewer = make_napari_viewer(show=True)
    session = register(load_session(folder))
    show_session(viewer, session)
    # labelled calibration tiles exchangeable with the slide: errors where entropy is high
    cal_res = synthetic_results(3000, seed=12)
    rng = np.random.default_rng(0)
    t = cal_res.table
    correct = rng.random(len(t)) > np.clip(t["entropy"].to_numpy() - 0.3, 0, 1)
    data = CalibrationData({s: t[s].to_numpy() for s in cal_res.score_names}, correct, "test")
    return viewer, session, data


def _rejected_codes(viewer, session):
    from tileuq.napari._common import session_layers

    (layer,) = session_layers(viewer, session, "rejected")
    t = session.results.table
    return np.asarray(layer.data)[t["row"].to_numpy(), t["col"].to_numpy()]


def _want(cal, table):
    _, reason = cal.decide(table)
    return np.select([reason == "unfamiliar", reason == "ambiguous"], [2, 1], 0)


def test_calibrate_by_coverage_and_risk_then_move_threshold(synthetic_session, artifacts_dir):
    from tileuq.napari.calibrate_widget import CalibrateWidget
    from tileuq.uncertainty import calibrate_scores

    viewer, session, data = synthetic_session
    widget = CalibrateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Calibrate")
    assert widget.results.value == session.key and widget.tool is not None
    widget.score.value = "entropy"
    widget.set_data(data)

    # target coverage, with the labelled data: the calibration module's threshold
    widget.mode.value = "target coverage"
    widget.target_coverage.value = 0.9
    widget.calibrate_to_target()
    want = calibrate_scores(data.scores["entropy"], data.correct, score_name="entropy",
                            target_coverage=0.9, delta=0.05)  # fmt: skip
    cal = session.calibration
    assert cal.threshold == pytest.approx(want.threshold)
    assert widget.value == pytest.approx(want.threshold)
    np.testing.assert_array_equal(
        _rejected_codes(viewer, session), _want(cal, session.results.table)
    )
    slide_cov = float((session.results.table["entropy"] <= cal.threshold).mean())
    assert f"{slide_cov:.1%}" in widget.numbers.value
    assert "shift" in widget.shift.value.lower()

    # target risk with delta
    widget.mode.value = "target risk"
    widget.target_risk.value = 0.1
    widget.delta.value = 0.05
    widget.calibrate_to_target()
    want = calibrate_scores(data.scores["entropy"], data.correct, score_name="entropy",
                            target_risk=0.1, delta=0.05)  # fmt: skip
    assert session.calibration.threshold == pytest.approx(want.threshold)
    assert session.calibration.risk_bound == pytest.approx(want.risk_bound)
    assert "bound" in widget.numbers.value

    # slider: the mask follows at once (before the debounced update)
    widget.mode.value = "slider"
    t2 = float(np.quantile(session.results.table["entropy"], 0.5))
    widget.set_threshold(t2)
    moved = dataclasses.replace(cal, rules=[dataclasses.replace(cal.rules[0], threshold=t2)])
    got = _rejected_codes(viewer, session)
    np.testing.assert_array_equal(got, _want(moved, session.results.table))
    assert 0.4 < (got > 0).mean() < 0.6
    # what is drawn follows too (the mask is written in place and only the view refreshed)
    for layer in viewer.layers:
        layer.visible = layer.metadata.get("tileuq", {}).get("kind") == "rejected"
    viewer.reset_view()
    shots = []
    for value in (-1e9, 1e9):  # everything rejected (ambiguous), nothing rejected
        widget.set_threshold(value)
        shots.append(viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int))
    painted = [(sh.max(axis=2) > 40).mean() for sh in shots]  # not the black background
    assert painted[0] > 0.2 and painted[1] < 0.01, painted
    widget.set_threshold(t2)
    widget.settle()
    assert session.calibration.method == "manual"
    assert session.calibration.threshold == pytest.approx(t2)
    # dragging the slider moves the threshold across the score range
    lo, hi = widget._range
    widget.slider.value = 250
    assert widget.value == pytest.approx(lo + (hi - lo) * 0.25)
    # the flagged queue follows the calibration
    from tileuq.napari._common import session_layers

    (flagged,) = session_layers(viewer, session, "flagged")
    assert len(flagged.data) == (got > 0).sum()

    assert not_blank(grab(widget, artifacts_dir / "widget_calibrate.png"))
    assert not_blank(widget.plot.image())

    # save: JSON that loads back to the same rule
    from tileuq.uncertainty import Calibration

    path = widget.save()
    assert path == session.folder / "calibration.json"
    assert Calibration.load(path).threshold == pytest.approx(session.calibration.threshold)


def test_risk_without_labelled_data_explains(synthetic_session):
    from tileuq.napari.calibrate_widget import CalibrateWidget

    viewer, session, _ = synthetic_session
    widget = CalibrateWidget(viewer)
    widget.mode.value = "target risk"
    widget.calibrate_to_target()
    assert "labelled" in widget.numbers.value
    # coverage without labels uses the slide itself, and says so
    widget.mode.value = "target coverage"
    widget.calibrate_to_target()
    assert "this slide" in session.calibration.guarantee


def test_calibrate_from_decisions_and_shift_alarm(make_napari_viewer, sample_results):
    from tileuq.napari._common import sessions_in
    from tileuq.napari.calibrate_widget import CalibrateWidget
    from tileuq.review import DecisionLog, decision_for_tile

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("tileuq", "cmu1_with_results")
    (session,) = sessions_in(viewer)
    log = DecisionLog(session.folder)
    for i in range(len(session.results.table)):
        log.append(decision_for_tile(session.results, i, "accept" if i % 5 else "unsure"))
    widget = CalibrateWidget(viewer)
    widget.use_decisions()
    assert widget.tool.data is not None
    assert len(widget.tool.data) == sum(1 for i in range(len(session.results.table)) if i % 5)
    # a saved calibration with reference scores gives a shift verdict
    assert widget.shift.value and "needs calibration data" not in widget.shift.value


def test_window_screenshot_with_calibrate_widget(make_napari_viewer, sample_results, artifacts_dir):
    """The picture for README/docs: sample slide, every result layer, the calibrate widget."""
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from tileuq.napari.calibrate_widget import CalibrateWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 860)
    viewer.open_sample("tileuq", "cmu1_with_results")
    widget = CalibrateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="tileuq: calibrate", area="right")
    QApplication.processEvents()
    viewer.layers.selection.clear()
    viewer.reset_view()
    QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(shot).save(artifacts_dir / "napari_sample_calibrate.png")
    assert not_blank(shot)
    assert "unlike the calibration data" in widget.shift.value  # skin slide, colorectal model


@pytest.mark.shared
@pytest.mark.slow
def test_load_labelled_tile_folder_with_the_session_model(
    make_napari_viewer, sample_results, shared_data, tmp_path
):
    """Calibration data from a labelled tile folder, predicted by the results' model."""
    import json

    from gui_helpers import REPO

    import tileuq
    from tileuq.napari._common import sessions_in
    from tileuq.napari.calibrate_widget import CalibrateWidget
    from tileuq.uncertainty import calibrate

    tiles = shared_data / "tiles" / "colorectal_polyp_flagy_5class"
    split = REPO / "benchmarks" / "splits" / "colorectal_split.json"
    if not tiles.is_dir() or not split.is_file():
        pytest.skip("the demo model's calibration tiles are not available")
    folder = tmp_path / "calibration_tiles"
    for rel in json.loads(split.read_text())["splits"]["calibration"]:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).symlink_to(tiles / rel)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("tileuq", "cmu1_with_results")
    (session,) = sessions_in(viewer)
    widget = CalibrateWidget(viewer)
    widget.tiles.value = folder
    widget.load_tiles()  # synchronous in tests
    assert widget.tool.data is not None and len(widget.tool.data) == 120
    widget.score.value = "entropy"
    widget.mode.value = "target risk"
    widget.target_risk.value = 0.2
    widget.calibrate_to_target()
    model = tileuq.load_model(REPO / "sample_data" / "demo_model")
    want = calibrate(model, folder, score="entropy", target_risk=0.2)
    assert session.calibration.threshold == pytest.approx(want.threshold)
    assert "risk" in widget.numbers.value
