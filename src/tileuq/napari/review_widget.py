"""Review widget: walk the flagged tiles, decide each one, never lose a decision.

The queue (:func:`tileuq.review.review_queue`) holds the rejected tiles, most uncertain first
(or unfamiliar first, or a random sample of all tiles for an unbiased calibration set).  The
viewer jumps to each tile, zooms so that ``context`` × its extent is visible and outlines it.
Each decision is appended to ``decisions.jsonl`` beside the results at once (one write +
fsync, :class:`tileuq.review.DecisionLog`), painted on the *decisions* layer, and the widget
moves on to the next undecided tile.  Reopening the results reloads the decisions and resumes.

Keyboard shortcuts (bound on the viewer while this widget is open; they act when no layer is
selected, and the widget clears the selection as it jumps — a selected layer's own shortcuts
take precedence in napari):

====  =============================================
n     next tile
p     previous tile
a     accept the prediction
1–9   relabel as class 1–9 (order of the class list)
x     artefact (not tissue the model should judge)
u     unsure
====  =============================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
)

from tileuq.napari._common import (
    Session,
    add_or_replace,
    as_path,
    first_choice,
    get_session,
    notify,
    session_layers,
    sessions_in,
    show_session,
)
from tileuq.napari._navigation import bind_review_keys, jump_to_tile, show_outline, unbind_keys

if TYPE_CHECKING:
    import napari

ORDERS = ("score", "reason", "random")


class ReviewWidget(Container):
    """Dock widget: the flagged-tile queue and the reviewer's decisions."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session: Session | None = None
        self.log: Any = None
        self.queue: np.ndarray = np.empty(0, dtype=np.int64)
        self.position = 0
        self.current_row: int | None = None
        self.decided: set[int] = set()
        self._geometry: Any = None
        from tileuq.review import default_reviewer

        self.results = ComboBox(label="results", choices=self._session_choices, nullable=True)
        self.order = ComboBox(label="order", choices=list(ORDERS), value="score")
        self.reviewer = LineEdit(label="reviewer", value=default_reviewer())
        self.context = FloatSpinBox(label="context (× tile)", min=1.0, max=50.0, value=3.0)
        self.info = Label(value="")
        self.prev_button = PushButton(text="◀ previous (p)")
        self.next_button = PushButton(text="next (n) ▶")
        self.accept_button = PushButton(text="accept prediction (a)")
        self.correct_class = ComboBox(label="correct class", choices=self._class_choices)
        self.relabel_button = PushButton(text="relabel (1–9)")
        self.artefact_button = PushButton(text="artefact (x)")
        self.unsure_button = PushButton(text="unsure (u)")
        self.geojson = FileEdit(
            label="export to", mode=FileDialogMode.OPTIONAL_FILE, nullable=True, filter="*.geojson"
        )
        self.export_button = PushButton(text="Export decisions (QuPath GeoJSON)")
        self.recal_coverage = FloatSpinBox(label="recalibrate: coverage ≥", min=0.5, max=0.999,
                                           step=0.01, value=0.9)  # fmt: skip
        self.recal_button = PushButton(text="Recalibrate with my decisions")
        self.status = Label(value="")
        self.keys = Label(value="keys: n next · p previous · a accept · 1–9 class · x artefact"
                          " · u unsure (with no layer selected)")  # fmt: skip
        self.extend([
            self.results, self.order, self.reviewer, self.context, self.info, self.prev_button,
            self.next_button, self.accept_button, self.correct_class, self.relabel_button,
            self.artefact_button, self.unsure_button, self.geojson, self.export_button,
            self.recal_coverage, self.recal_button, self.status, self.keys,
        ])  # fmt: skip
        self.info.native.setWordWrap(True)
        self.status.native.setWordWrap(True)
        self.keys.native.setWordWrap(True)
        self.native.setMaximumWidth(560)
        self.results.changed.connect(self._on_results)
        self.order.changed.connect(self._rebuild_queue)
        self.prev_button.changed.connect(lambda: self.step(-1))
        self.next_button.changed.connect(lambda: self.step(1))
        self.accept_button.changed.connect(lambda: self.decide("accept"))
        self.relabel_button.changed.connect(
            lambda: self.decide("relabel", self.correct_class.value)
        )
        self.artefact_button.changed.connect(lambda: self.decide("artefact"))
        self.unsure_button.changed.connect(lambda: self.decide("unsure"))
        self.export_button.changed.connect(self.export)
        self.recal_button.changed.connect(self.recalibrate)
        self.viewer.layers.events.inserted.connect(self._refresh_sessions)
        self.viewer.layers.events.removed.connect(self._refresh_sessions)
        keys = bind_review_keys(self.viewer, self)
        self.native.destroyed.connect(lambda *_: unbind_keys(self.viewer, keys))
        self._refresh_sessions()

    # ------------------------------------------------------------------ sessions
    def _session_choices(self, _: Any = None) -> list[tuple[str, str]]:
        return [(s.name, s.key) for s in sessions_in(self.viewer)]

    def _refresh_sessions(self, _: Any = None) -> None:
        self.results.reset_choices()
        if self.results.value is None:
            self.results.value = first_choice(self.results)
        if self.results.value is not None and (
            self.session is None or self.session.key != self.results.value
        ):
            self._on_results()

    def _class_choices(self, _: Any = None) -> list[str]:
        return list(self.session.results.classes) if self.session is not None else []

    def _on_results(self, _: Any = None) -> None:
        from tileuq.layers import TileGeometry
        from tileuq.review import DecisionLog, decided_rows

        if self.session is not None:
            self.session.changed.disconnect(self._on_session_changed)
        self.session = get_session(self.results.value)
        if self.session is None:
            return
        self.session.changed.connect(self._on_session_changed)
        res = self.session.results
        classes = session_layers(self.viewer, self.session, "classes")
        self._geometry = (
            TileGeometry.from_dict(classes[0].metadata["tileuq"]["geometry"])
            if classes
            else TileGeometry.from_results(res)
        )
        self.correct_class.reset_choices()
        folder = self.session.folder
        if folder is not None:
            self.geojson.value = folder / "decisions.geojson"
        self.log = DecisionLog(folder) if folder is not None else None
        decisions = self.log.load() if self.log is not None else None
        self.decided = decided_rows(res.table, decisions) if decisions is not None else set()
        self._show_decisions(decisions)
        self._rebuild_queue()

    def _on_session_changed(self, what: str) -> None:
        if what == "calibration":  # keep the view where it is: the reviewer may be elsewhere
            self._rebuild_queue(jump=False)

    def _rebuild_queue(self, _: Any = None, *, jump: bool = True) -> None:
        from tileuq.review import next_undecided, primary_score, review_queue

        if self.session is None:
            return
        res, cal = self.session.results, self.session.calibration
        self.current_row = self.current
        rejected = reason = None
        if cal is not None:
            rejected, reason = cal.decide(res.table)
        self.queue = review_queue(
            res.table,
            score=primary_score(res, cal),
            rejected=rejected,
            reason=reason,
            order=str(self.order.value),
        )
        previous = self.current_row
        here = np.flatnonzero(self.queue == previous) if previous is not None else np.empty(0)
        if jump or not len(here):
            self.position = next_undecided(self.queue, self.decided, 0)
        else:  # the tile under review is still flagged: stay on it
            self.position = int(here[0])
        if jump:
            self.show_current()
        elif self.current is not None:
            self.info.value = self._describe(self.current, res.table.iloc[self.current])

    def _show_decisions(self, decisions: Any) -> None:
        from tileuq.layers import decisions_layer
        from tileuq.review import read_decisions_empty

        assert self.session is not None
        df = decisions if decisions is not None else read_decisions_empty()
        tup = decisions_layer(self.session.results.table, df, self._geometry,
                              metadata={"source": self.session.key})  # fmt: skip
        add_or_replace(self.viewer, [tup])

    # ------------------------------------------------------------------ navigation
    @property
    def current(self) -> int | None:
        """Table row of the tile under review (``None`` when the queue is empty)."""
        if len(self.queue) == 0:
            return None
        return int(self.queue[min(self.position, len(self.queue) - 1)])

    def step(self, direction: int) -> None:
        """Go to the next (``1``) or previous (``-1``) tile of the queue."""
        if len(self.queue):
            self.position = int(np.clip(self.position + direction, 0, len(self.queue) - 1))
        self.show_current()

    def show_current(self) -> None:
        """Jump, zoom and outline the current tile; describe it."""
        row = self.current
        if row is None or self.session is None:
            self.info.value = "No flagged tile to review."
            return
        t = self.session.results.table.iloc[row]
        x, y, plane = int(t["x"]), int(t["y"]), int(t["plane"])
        jump_to_tile(self.viewer, self._geometry, x, y, plane, float(self.context.value))
        show_outline(self.viewer, self._geometry, x, y, plane)
        self.viewer.layers.selection.clear()  # viewer shortcuts win over layer shortcuts
        self.info.value = self._describe(row, t)

    def _describe(self, row: int, t: Any) -> str:
        from tileuq.review import describe_tile

        assert self.session is not None
        n_done = sum(int(i) in self.decided for i in self.queue)
        state = "decided" if row in self.decided else "to decide"
        return (
            f"tile {self.position + 1} of {len(self.queue)} ({n_done} decided) — {state}\n"
            + describe_tile(self.session.results, row)
        )

    # ------------------------------------------------------------------ decisions
    def relabel_index(self, k: int) -> None:
        """Relabel the current tile as class number ``k`` (0-based)."""
        if self.session is not None and 0 <= k < len(self.session.results.classes):
            self.decide("relabel", self.session.results.classes[k])

    def decide(self, decision: str, label: str | None = None) -> dict[str, Any] | None:
        """Record a decision on the current tile, paint it, go to the next undecided tile."""
        from tileuq.review import DECISION_CODES, decision_for_tile, next_undecided

        row = self.current
        if row is None or self.session is None or self.log is None:
            return None
        try:
            rec = decision_for_tile(self.session.results, row, decision, label=label,
                                    reviewer=str(self.reviewer.value))  # fmt: skip
            rec = self.log.append(rec)
        except Exception as exc:
            self.status.value = f"Decision NOT saved: {exc}"
            notify(self.status.value, error=True)
            return None
        self.decided.add(row)
        layers = session_layers(self.viewer, self.session, "decisions")
        if layers:
            t = self.session.results.table.iloc[[row]]
            layers[0].data[self._geometry.cells(t)] = DECISION_CODES[rec["decision"]]
            layers[0].refresh()
        self.status.value = f"saved: {rec['decision']} {rec.get('label') or ''} → {self.log.path}"
        self.position = next_undecided(self.queue, self.decided, self.position + 1)
        self.show_current()
        return rec

    def export(self, _: Any = None) -> Path | None:
        """Write the decisions as QuPath GeoJSON (``tileuq.export``)."""
        if self.log is None or self.geojson.value is None or not self.log.path.exists():
            self.status.value = "Nothing to export yet (no decision, or no output path)."
            return None
        from tileuq.export import decisions_to_geojson, write_geojson

        assert self.session is not None
        collection = decisions_to_geojson(self.log.load(), self.session.results)
        path = write_geojson(collection, as_path(self.geojson.value))
        self.status.value = f"exported {len(collection['features'])} tiles to {path}"
        return path

    def recalibrate(self, _: Any = None) -> Any:
        """Calibrate on the decisions (``tileuq.uncertainty.calibrate``) and show the result.

        Decisions on flagged tiles describe the hardest tiles, not the slide: review in
        ``random`` order to build a set whose guarantee holds for the slide.
        """
        if self.session is None or self.log is None or not self.log.path.exists():
            self.status.value = "No decisions to calibrate with yet."
            return None
        from tileuq.uncertainty import calibrate

        try:
            cal = calibrate(None, (self.session.results, self.log.path),
                            target_coverage=float(self.recal_coverage.value))  # fmt: skip
        except Exception as exc:
            self.status.value = f"Cannot recalibrate: {exc}"
            return None
        self.session.set_calibration(cal)
        show_session(self.viewer, self.session, kinds=("rejected", "flagged"))
        self.status.value = f"recalibrated on your decisions: {cal.describe()}"
        return cal
