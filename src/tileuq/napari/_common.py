"""Helpers the tileuq widgets share: sessions, layer replacement, running generators.

A *session* is one slide's results shown in the viewer (results folder, TileResults, current
Calibration, the model that made them).  Widgets find sessions through the ``source`` key the
result layers carry in ``metadata["tileuq"]``, so the Run, Calibrate and Review widgets work
on the same results without knowing each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psygnal import Signal

if TYPE_CHECKING:
    import napari

    from tileuq.engine.results import TileResults
    from tileuq.uncertainty import Calibration

SYNC_ENV = "TILEUQ_NAPARI_SYNC"
CALIBRATION_FILE = "calibration.json"
MODEL_FILE = "model_source.txt"


def sync_mode(widget: Any = None) -> bool:
    """Whether long jobs run in the GUI thread (tests).

    ``widget.sync`` when set, else ``$TILEUQ_NAPARI_SYNC``.
    """
    flag = getattr(widget, "sync", None)
    if flag is not None:
        return bool(flag)
    return os.environ.get(SYNC_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------- sessions
class Session:
    """One slide's results in the viewer (see the module docstring)."""

    changed = Signal(str)  # what changed: "calibration", "decisions", "results"

    def __init__(
        self,
        results: TileResults,
        folder: Path | None,
        calibration: Calibration | None = None,
        model_source: str | None = None,
        slide_layer: str | None = None,
    ) -> None:
        self.results = results
        self.folder = folder
        self.calibration = calibration
        self.model_source = model_source
        self.slide_layer = slide_layer
        self._model: Any = None

    @property
    def key(self) -> str:
        """Registry key (the results folder, else an in-memory id)."""
        return str(self.folder) if self.folder is not None else f"memory:{id(self.results)}"

    @property
    def name(self) -> str:
        """Display name (the slide's)."""
        return str(self.results.meta.get("slide", {}).get("name") or self.key)

    def set_calibration(self, calibration: Calibration | None) -> None:
        """Replace the calibration and tell the widgets."""
        self.calibration = calibration
        self.changed.emit("calibration")

    def model(self) -> Any:
        """Load (once) the model that made the results, from :attr:`model_source`."""
        if self._model is None:
            if not self.model_source:
                from tileuq.errors import ModelError

                raise ModelError(
                    f"{self.name}: which model made these results is unknown; run the slide "
                    "from the Run widget, or give the model"
                )
            from tileuq.napari._models import load_model_source

            self._model = load_model_source(self.model_source)
        return self._model


_SESSIONS: dict[str, Session] = {}


def register(session: Session) -> Session:
    """Remember ``session`` under its key (replacing an older one)."""
    _SESSIONS[session.key] = session
    return session


def get_session(key: str | None) -> Session | None:
    """Return the session registered under ``key`` (a results folder is loaded once)."""
    if not key:
        return None
    if key in _SESSIONS:
        return _SESSIONS[key]
    if key.startswith("memory:") or not Path(key).is_dir():
        return None
    return register(load_session(Path(key)))


def load_session(
    folder: Path, model_source: str | None = None, results: TileResults | None = None
) -> Session:
    """Read a results folder with its ``calibration.json`` and model note, when present.

    ``results`` (already in memory) saves reading the table again.
    """
    from tileuq.engine.results import TileResults

    if results is None:
        results = TileResults.load(folder)
    cal = None
    if (folder / CALIBRATION_FILE).is_file():
        from tileuq.uncertainty import Calibration

        cal = Calibration.load(folder / CALIBRATION_FILE)
    if model_source is None and (folder / MODEL_FILE).is_file():
        model_source = (folder / MODEL_FILE).read_text(encoding="utf-8").strip() or None
    return Session(results, folder, cal, model_source)


def sessions_in(viewer: napari.Viewer) -> list[Session]:
    """Sessions whose class-map layer is in the viewer (in layer order)."""
    out: list[Session] = []
    for layer in viewer.layers:
        meta = layer.metadata.get("tileuq", {}) if isinstance(layer.metadata, dict) else {}
        if meta.get("kind") == "classes":
            s = get_session(meta.get("source"))
            if s is not None and s not in out:
                out.append(s)
    return out


def session_layers(viewer: napari.Viewer, session: Session, kind: str | None = None) -> list:
    """Return the viewer's layers of ``session`` (optionally of one ``kind``)."""
    out = []
    for layer in viewer.layers:
        meta = layer.metadata.get("tileuq", {}) if isinstance(layer.metadata, dict) else {}
        if meta.get("source") == session.key and (kind is None or meta.get("kind") == kind):
            out.append(layer)
    return out


# ---------------------------------------------------------------------------- layers
def add_or_replace(viewer: napari.Viewer, tuples: Sequence[tuple[Any, dict, str]]) -> list:
    """Add LayerDataTuples; a layer of the same name is replaced where it stands."""
    from napari.layers import Layer

    out = []
    for data, kwargs, kind in tuples:
        name = kwargs.get("name")
        if kind == "points" and name in viewer.layers:
            old = viewer.layers[name]
            if old._type_string == "points" and _same_placement(old, kwargs):
                out.append(_update_points(old, data, kwargs))
                continue
        new = Layer.create(data, dict(kwargs), kind)
        if name is not None and name in viewer.layers:
            old = viewer.layers[name]
            index = viewer.layers.index(old)
            viewer.layers.remove(old)
            viewer.layers.insert(index, new)
        else:
            viewer.layers.append(new)
        out.append(new)
    return out


def _same_placement(layer: Any, kwargs: dict[str, Any]) -> bool:
    import numpy as np

    return bool(
        np.allclose(layer.scale, kwargs.get("scale", layer.scale))
        and np.allclose(layer.translate, kwargs.get("translate", layer.translate))
    )


def _update_points(layer: Any, data: Any, kwargs: dict[str, Any]) -> Any:
    """Update a points layer in place (10x cheaper than a new layer: no new GL visual)."""
    layer.data = data
    for key in ("features", "border_color", "face_color", "size", "symbol", "metadata"):
        if key in kwargs:
            setattr(layer, key, kwargs[key])
    return layer


def _placement(viewer: napari.Viewer, session: Session) -> tuple[Any, Any]:
    if session.slide_layer and session.slide_layer in viewer.layers:
        slide = viewer.layers[session.slide_layer]
        return tuple(slide.scale), tuple(slide.translate)
    return None, None


def show_layers_tuples(session: Session, *, order: str = "score") -> list[Any]:
    """Return the result LayerDataTuples of ``session`` (default slide placement)."""
    from tileuq.layers import from_results

    return from_results(session.results, session.calibration, order=order, source=session.key)


def show_session(
    viewer: napari.Viewer,
    session: Session,
    *,
    order: str = "score",
    kinds: Sequence[str] | None = None,
) -> list:
    """Add or replace the result layers of ``session`` (placed over its slide layer).

    ``kinds`` limits the update to some layers (e.g. ``("rejected", "flagged")`` after a
    threshold change); heatmaps are only rebuilt when asked for.
    """
    from tileuq.layers import from_results

    scale, translate = _placement(viewer, session)
    tuples = from_results(
        session.results,
        session.calibration,
        scores=None if kinds is None or "heatmap" in kinds else [],
        slide_scale=scale,
        slide_translate=translate,
        order=order,
        source=session.key,
    )
    if kinds is not None:
        tuples = [t for t in tuples if t[1]["metadata"]["tileuq"]["kind"] in kinds]
    return add_or_replace(viewer, tuples)


def slide_layers(viewer: napari.Viewer) -> list:
    """Image layers that show a slide (opened by the tileuq reader)."""
    return [
        layer
        for layer in viewer.layers
        if layer._type_string == "image" and isinstance(layer.metadata.get("slide"), dict)
    ]


# ---------------------------------------------------------------------------- long jobs
_CANCELLED = object()


@dataclass
class Job:
    """A running generator (in a ``thread_worker``, or in this thread in synchronous mode)."""

    worker: Any = None
    cancelled: bool = False
    gen: Generator[Any, Any, Any] | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Stop at the next yield; the generator is closed in its own thread."""
        self.cancelled = True


def _drive(job: Job, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Yield ``gen``'s items until it ends or ``job`` is cancelled; always close it."""
    try:
        while True:
            if job.cancelled:
                return _CANCELLED
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yield item
    finally:
        gen.close()  # runs the engine's finally blocks (closes the slide, keeps parts)


def start_job(
    make_gen: Callable[[], Generator[Any, Any, Any]],
    *,
    sync: bool,
    on_yield: Callable[[Any], None],
    on_return: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
    on_finish: Callable[[bool], None],
    job: Job | None = None,
) -> Job:
    """Run a generator in a napari ``thread_worker`` (or in this thread when ``sync``).

    Pass ``job`` (and keep it) to be able to cancel a synchronous run from a callback.

    ``on_return`` gets the generator's return value (not called when cancelled);
    ``on_finish(cancelled)`` is called last in every case.  A cancelled generator is closed,
    so its ``finally`` blocks run (the engine closes the slide and keeps finished batches).
    """
    job = Job() if job is None else job
    gen = _drive(job, make_gen())
    job.gen = gen

    def returned(value: Any) -> None:
        if value is not _CANCELLED:
            on_return(value)

    if sync:
        try:
            while True:
                try:
                    item = next(gen)
                except StopIteration as stop:
                    returned(stop.value)
                    break
                on_yield(item)
        except Exception as exc:
            on_error(exc)
        finally:
            on_finish(job.cancelled)
        return job

    from napari.qt.threading import thread_worker

    def work() -> Generator[Any, Any, Any]:
        return (yield from gen)

    worker = thread_worker(work, start_thread=False)()
    job.worker = worker
    worker.yielded.connect(on_yield)
    worker.returned.connect(returned)
    worker.errored.connect(on_error)
    worker.finished.connect(lambda: on_finish(job.cancelled))
    worker.start()
    return job


def as_path(value: Any) -> Path:
    """Return a FileEdit's value as one path (a FileEdit may hold a tuple of paths)."""
    if isinstance(value, tuple):
        value = value[0]
    return Path(value)


def first_choice(combo: Any) -> Any:
    """First non-``None`` choice of a magicgui ComboBox (``None`` when it has none)."""
    return next((c for c in combo.choices if c is not None), None)


def notify(message: str, *, error: bool = False) -> None:
    """Show a message in napari's notification area."""
    from napari.utils.notifications import show_error, show_info

    (show_error if error else show_info)(message)
