"""Calibrate widget: choose a score and its threshold; watch the rejected regions change live.

The threshold is set by the slider (no guarantee), by a target coverage, or by a target risk
with failure probability δ.  Targets use :func:`tileuq.uncertainty.calibrate_scores` on
labelled calibration data — a labelled tile folder (predicted with the session's model) or the
reviewer's decisions — through :class:`tileuq.calibration_tool.ThresholdSession`; a coverage
target without labelled data uses the slide's own tiles and says so.

Live repaint: the per-tile grid indices are computed once (:class:`tileuq.layers.RejectionGrid`);
a slider move only recomputes the mask and sets ``layer.data``.  Plots, numbers, the shift
alarm and the flagged-tile queue follow after the slider rests (debounced).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    Slider,
)
from qtpy.QtCore import QTimer

from tileuq.napari._common import (
    CALIBRATION_FILE,
    Job,
    Session,
    as_path,
    first_choice,
    notify,
    session_layers,
    sessions_in,
    show_session,
    start_job,
    sync_mode,
)

if TYPE_CHECKING:
    import napari

    from tileuq.calibration_tool import ThresholdSession

MODES = {"slider": "manual", "target coverage": "coverage", "target risk": "risk"}
STEPS = 1000  # slider resolution over the score range
DEBOUNCE_MS = 150


class CalibrateWidget(Container):
    """Dock widget: thresholds, live rejected regions, plots, shift alarm, save."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.sync: bool | None = None
        self.job: Job | None = None
        self.tool: ThresholdSession | None = None
        self.session: Session | None = None
        self._painter: Any = None
        self._busy = False
        self.results = ComboBox(label="results", choices=self._session_choices, nullable=True)
        self.score = ComboBox(label="score", choices=self._score_choices)
        self.mode = ComboBox(label="set by", choices=list(MODES), value="slider")
        # an integer slider mapped onto [lo, hi]: exact for any score range (tiny or huge)
        self.slider = Slider(label="threshold", min=0, max=STEPS, value=STEPS // 2,
                             readout=False)  # fmt: skip
        self.value_label = Label(label="value", value="")
        self.value = 0.0
        self._range = (0.0, 1.0)
        self.target_coverage = FloatSpinBox(label="coverage ≥", min=0.5, max=0.999, step=0.01,
                                            value=0.9)  # fmt: skip
        self.target_risk = FloatSpinBox(label="risk ≤", min=0.005, max=0.5, step=0.005, value=0.1)
        self.delta = FloatSpinBox(label="δ", min=0.001, max=0.5, step=0.01, value=0.05)
        self.calibrate_button = PushButton(text="Calibrate to target")
        self.tiles = FileEdit(
            label="labelled tiles",
            mode=FileDialogMode.EXISTING_DIRECTORY,
            nullable=True,
            value=None,
        )
        self.load_tiles_button = PushButton(text="Load labelled tiles (predicts them)")
        self.decisions_button = PushButton(text="Use my review decisions")
        self.numbers = Label(label="result", value="")
        self.shift = Label(label="shift alarm", value="")
        self.save_path = FileEdit(
            label="save as", mode=FileDialogMode.OPTIONAL_FILE, nullable=True, filter="*.json"
        )
        self.save_button = PushButton(text="Save calibration")
        self.extend([
            self.results, self.score, self.mode, self.slider, self.value_label,
            self.target_coverage,
            self.target_risk, self.delta, self.calibrate_button, self.tiles,
            self.load_tiles_button, self.decisions_button, self.numbers, self.shift,
            self.save_path, self.save_button,
        ])  # fmt: skip
        for lab in (self.numbers, self.shift):
            lab.native.setWordWrap(True)
        from tileuq.napari._plots import ThresholdPlot

        self.plot = ThresholdPlot()
        self.native.setMaximumWidth(560)  # long paths must not squeeze the canvas
        self.native.layout().insertWidget(12, self.plot.canvas)
        self._timer = QTimer(self.native)  # dies with the widget: no update after close
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.settle)
        self.results.changed.connect(self._on_results)
        self.score.changed.connect(self._on_score)
        self.mode.changed.connect(self._on_mode)
        self.slider.changed.connect(self._on_slider)
        self.calibrate_button.changed.connect(self.calibrate_to_target)
        self.load_tiles_button.changed.connect(self.load_tiles)
        self.decisions_button.changed.connect(self.use_decisions)
        self.save_button.changed.connect(self.save)
        self.viewer.layers.events.inserted.connect(self._refresh_sessions)
        self.viewer.layers.events.removed.connect(self._refresh_sessions)
        self._on_mode()
        self._refresh_sessions()

    # ------------------------------------------------------------------ sessions
    def _session_choices(self, _: Any = None) -> list[tuple[str, str]]:
        return [(s.name, s.key) for s in sessions_in(self.viewer)]

    def _refresh_sessions(self, _: Any = None) -> None:
        before = self.results.value
        self.results.reset_choices()
        if self.results.value is None:
            self.results.value = first_choice(self.results)
        if self.results.value != before or (self.results.value and self.tool is None):
            self._on_results()

    def _score_choices(self, _: Any = None) -> list[str]:
        return self.tool.scores if self.tool is not None else []

    def _on_results(self, _: Any = None) -> None:
        from tileuq.calibration_tool import ThresholdSession
        from tileuq.napari._common import get_session

        self.session = get_session(self.results.value)
        if self.session is None:
            self.tool = None
            return
        self.tool = ThresholdSession(self.session.results, self.session.calibration)
        if self.session.folder is not None:
            self.save_path.value = self.session.folder / CALIBRATION_FILE
        self._busy = True
        self.score.reset_choices()
        cal = self.session.calibration
        if cal is not None and cal.score in self.tool.scores:
            self.score.value = cal.score
        self._busy = False
        self._on_score()

    def _on_score(self, _: Any = None) -> None:
        if self._busy or self.tool is None or self.score.value is None:
            return
        score = str(self.score.value)
        lo, hi = self.tool.score_range(score)
        t = self.tool.threshold_for(score)
        if t is None:  # a score no rule uses yet: start at the slide's 90th percentile
            import numpy as np

            s = self.tool.slide_scores(score)
            t = float(np.nanpercentile(s, 90)) if np.isfinite(s).any() else hi
            self.tool.calibrate(score, "manual", threshold=t, delta=float(self.delta.value))
        self._painter = None
        self._range = (lo, hi)
        self.set_threshold(t)
        self.settle()

    def _on_mode(self, _: Any = None) -> None:
        mode = MODES[self.mode.value]
        self.target_coverage.visible = mode == "coverage"
        self.target_risk.visible = mode == "risk"
        self.calibrate_button.visible = mode != "manual"

    # ------------------------------------------------------------------ the fast path
    def _on_slider(self, position: int) -> None:
        if self._busy:
            return
        lo, hi = self._range
        self.set_threshold(lo + (hi - lo) * int(position) / STEPS)

    def set_threshold(self, value: float) -> None:
        """Repaint the rejected regions for a threshold of the current score (cheap)."""
        if self._busy or self.tool is None or self.session is None:
            return
        value = float(value)
        self.value = value
        lo, hi = self._range
        if not lo <= value <= hi:
            self._range = (min(lo, value), max(hi, value))
            lo, hi = self._range
        self._busy = True
        self.slider.value = round((value - lo) / (hi - lo) * STEPS) if hi > lo else 0
        self._busy = False
        self.value_label.value = f"{value:.6g}"
        score = str(self.score.value)
        if self._painter is None or score not in self._painter.thresholds:
            self._make_painter(score, value)
        self._painter.paint({score: value})
        self.plot.move_threshold(value)
        self._timer.start()

    def _make_painter(self, score: str, value: float) -> None:
        from tileuq.napari._live_mask import LiveMask

        assert self.tool is not None and self.session is not None
        if self.tool.threshold_for(score) is None:
            self.tool.calibrate(score, "manual", threshold=value, delta=float(self.delta.value))
        assert self.tool.calibration is not None
        self._painter = LiveMask(self.viewer, self.session, self.tool.calibration.rules)

    # ------------------------------------------------------------------ slow path (debounced)
    def settle(self) -> None:
        """After the slider rests: adopt the threshold, redraw plots, numbers, queue."""
        self._timer.stop()
        if self.tool is None or self.session is None or self.score.value is None:
            return
        score = str(self.score.value)
        value = self.value
        if self.tool.threshold_for(score) != value:
            self.tool.calibrate(score, "manual", threshold=value, delta=float(self.delta.value))
        self._publish()

    def _publish(self) -> None:
        assert self.tool is not None and self.session is not None
        score = str(self.score.value)
        self.plot.draw(score, self.tool.histogram(score), self.tool.risk_coverage(score))
        self._show_numbers()
        self.session.set_calibration(self.tool.calibration)
        cal = self.tool.calibration
        if (
            self._painter is not None
            and cal is not None
            and set(self._painter.thresholds) == set(cal.thresholds)
        ):
            self._painter.thresholds.update(cal.thresholds)
            self._painter.finish()  # the live mask is already right: thumbnail only
            show_session(self.viewer, self.session, kinds=("flagged",))
        else:  # new rules: rebuild the rejected layer too
            self._painter = None
            show_session(self.viewer, self.session, kinds=("rejected", "flagged"))
        for layer in session_layers(self.viewer, self.session, "heatmap"):
            meta = layer.metadata["tileuq"]
            meta["threshold"] = self.tool.threshold_for(meta.get("score", ""))

    def _show_numbers(self) -> None:
        assert self.tool is not None
        self.numbers.value, self.shift.value = self.tool.summary_text()
        cal = self.tool.calibration  # the full statement stays one hover away
        self.numbers.tooltip = cal.describe() if cal is not None else ""

    # ------------------------------------------------------------------ targets and data
    def calibrate_to_target(self, _: Any = None) -> None:
        """Set the threshold by the target coverage or risk (with δ)."""
        if self.tool is None:
            return
        mode = MODES[self.mode.value]
        try:
            self.tool.calibrate(
                str(self.score.value),
                mode,
                target_coverage=float(self.target_coverage.value),
                target_risk=float(self.target_risk.value),
                delta=float(self.delta.value),
            )
        except Exception as exc:
            self.numbers.value = f"Cannot calibrate: {exc}"
            notify(str(exc), error=True)
            return
        self._painter = None
        t = self.tool.threshold_for(str(self.score.value))
        if t is not None:
            self.set_threshold(t)
        self._timer.stop()
        self._publish()

    def load_tiles(self, _: Any = None) -> Job | None:
        """Predict a labelled tile folder with the session's model (background thread)."""
        if self.tool is None or self.session is None or self.tiles.value is None:
            self.numbers.value = "Choose a labelled tile folder (one sub-folder per class)."
            return None
        from tileuq.calibration_tool import CalibrationData

        session, folder = self.session, as_path(self.tiles.value)

        def work() -> Any:
            yield "loading the model..."
            model = session.model()
            return (yield from CalibrationData.iter_from_folder(model, folder))

        self.numbers.value = f"Predicting the tiles of {folder}..."
        self.job = Job()
        start_job(
            work,
            sync=sync_mode(self),
            on_yield=lambda p: setattr(self.numbers, "value", f"calibration tiles: {p}"),
            on_return=self.set_data,
            on_error=lambda e: setattr(self.numbers, "value", f"Cannot load tiles: {e}"),
            on_finish=lambda cancelled: None,
            job=self.job,
        )
        return self.job

    def use_decisions(self, _: Any = None) -> None:
        """Use the reviewer's decisions (accept = right, relabel = wrong) as calibration data."""
        if self.session is None or self.session.folder is None:
            return
        from tileuq.calibration_tool import CalibrationData
        from tileuq.review import DecisionLog

        log = DecisionLog(self.session.folder)
        try:
            data = CalibrationData.from_decisions(self.session.results, log.load(), str(log.path))
        except Exception as exc:
            self.numbers.value = f"Cannot use the decisions: {exc}"
            return
        self.set_data(data)

    def set_data(self, data: Any) -> None:
        """Adopt labelled calibration data (plots and targets use it from now on)."""
        if self.tool is None:
            return
        self.tool.data = data
        self._on_score()

    def save(self, _: Any = None) -> Path | None:
        """Save the current calibration as JSON (atomically)."""
        if self.tool is None or self.tool.calibration is None:
            return None
        if self.save_path.value is None:
            self.numbers.value = "Choose where to save the calibration."
            return None
        path = self.tool.calibration.save(as_path(self.save_path.value))
        notify(f"Calibration saved to {path}")
        return path
