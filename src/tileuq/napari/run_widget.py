"""Run widget: a model over a slide, in a background thread, with progress, cancel and resume.

The engine's generator (:func:`tileuq.engine.iter_run_slide`) runs in a napari
``thread_worker``; its progress drives a napari progress bar.  Every finished batch is saved in
the per-slide output folder, so **Cancel** keeps the work done and **Run** again resumes.
When the run ends the result layers (:func:`tileuq.layers.from_results`) are added or
replaced over the slide.  Torch and the model code are imported only when a run starts.

Synchronous mode for tests: ``widget.sync = True`` or ``TILEUQ_NAPARI_SYNC=1``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)

from tileuq.napari._common import (
    MODEL_FILE,
    Job,
    Session,
    as_path,
    first_choice,
    load_session,
    notify,
    register,
    show_session,
    slide_layers,
    start_job,
    sync_mode,
)
from tileuq.napari._models import DEMO

if TYPE_CHECKING:
    import napari

MODEL_KINDS = ("bundled demo model", "model folder or file", "hub id (hf://...)")
DEVICES = ("auto", "cpu", "cuda", "mps")


def cache_dir() -> Path:
    """Tileuq's cache folder: ``$TILEUQ_CACHE``, else ``$XDG_CACHE_HOME/tileuq``."""
    if os.environ.get("TILEUQ_CACHE"):
        return Path(os.environ["TILEUQ_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tileuq"


def default_output(slide_path: Path, model_source: str) -> Path:
    """Per-slide, per-model output folder in the cache (a rerun finds and resumes it)."""
    digest = hashlib.sha1(str(slide_path.resolve()).encode()).hexdigest()[:8]
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model_source.rstrip("/")).name or model_source)
    mdigest = hashlib.sha1(model_source.encode()).hexdigest()[:6]
    return cache_dir() / "runs" / f"{slide_path.stem}-{digest}" / f"{tag}-{mdigest}"


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs (built in the GUI thread, used in the worker)."""

    slide_path: Path
    slide_layer: str | None
    model_source: str
    out: Path
    tile_px: int | None
    mpp: float | None
    device: str
    batch_size: int | str
    overwrite: bool


class RunWidget(Container):
    """Dock widget: run a model on a slide (see the module docstring)."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.sync: bool | None = None  # None: follow $TILEUQ_NAPARI_SYNC
        self.job: Job | None = None
        self.session: Session | None = None
        self._pbar: Any = None
        self._done = 0
        self.slide = ComboBox(label="slide layer", choices=self._slide_choices, nullable=True)
        self.slide_file = FileEdit(
            label="or slide file", mode=FileDialogMode.EXISTING_FILE, nullable=True, value=None
        )
        self.model_kind = ComboBox(label="model", choices=list(MODEL_KINDS), value=MODEL_KINDS[0])
        self.model_path = FileEdit(
            label="model folder", mode=FileDialogMode.EXISTING_DIRECTORY, nullable=True, value=None
        )
        self.hub_id = LineEdit(label="hub id", value="hf://")
        self.tile_px = SpinBox(label="tile px (0: model's)", min=0, max=8192, value=0)
        self.mpp = FloatSpinBox(label="µm/px (0: model's)", min=0.0, max=64.0, step=0.05, value=0.0)
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.batch_size = SpinBox(label="batch (0: auto)", min=0, max=8192, value=0)
        self.out = FileEdit(
            label="output folder", mode=FileDialogMode.EXISTING_DIRECTORY, nullable=True, value=None
        )
        self.overwrite = CheckBox(text="replace results made with other settings", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.open_button = PushButton(text="Show results of the output folder")
        self.status = Label(value="Pick a slide layer and a model, then Run.")
        self.extend([
            self.slide, self.slide_file, self.model_kind, self.model_path, self.hub_id,
            self.tile_px, self.mpp, self.device, self.batch_size, self.out, self.overwrite,
            self.run_button, self.cancel_button, self.open_button, self.status,
        ])  # fmt: skip
        self.status.native.setWordWrap(True)
        self.native.setMaximumWidth(560)
        self.model_kind.changed.connect(self._on_model_kind)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.open_button.changed.connect(self.open_results)
        self.viewer.layers.events.inserted.connect(self._refresh_slides)
        self.viewer.layers.events.removed.connect(self._refresh_slides)
        self._on_model_kind()
        self._refresh_slides()

    # ------------------------------------------------------------------ choices
    def _slide_choices(self, _: Any = None) -> list[str]:
        return [layer.name for layer in slide_layers(self.viewer)]

    def _refresh_slides(self, _: Any = None) -> None:
        self.slide.reset_choices()
        if self.slide.value is None:
            self.slide.value = first_choice(self.slide)

    def _on_model_kind(self, _: Any = None) -> None:
        kind = MODEL_KINDS.index(self.model_kind.value)
        self.model_path.visible = kind == 1
        self.hub_id.visible = kind == 2

    # ------------------------------------------------------------------ request
    def model_source(self) -> str:
        """``"demo"``, a model path or a hub id, from the model fields."""
        kind = MODEL_KINDS.index(self.model_kind.value)
        if kind == 0:
            return DEMO
        if kind == 1:
            if self.model_path.value is None:
                raise ValueError("model folder: choose the folder (or file) of a tileuq model")
            return str(self.model_path.value)
        hub = str(self.hub_id.value).strip()
        if not hub.startswith("hf://") or len(hub) <= 5:
            raise ValueError(f"hub id: expected hf://owner/repo/name, got {hub!r}")
        return hub

    def request(self) -> RunRequest:
        """Read the fields into a :class:`RunRequest` (raises ``ValueError`` with the field)."""
        layer_name = None
        if self.slide_file.value is not None:
            path = as_path(self.slide_file.value)
        elif self.slide.value is not None:
            layer = self.viewer.layers[self.slide.value]
            layer_name = layer.name
            p = layer.metadata.get("path")
            if not p:
                raise ValueError(f"slide layer {layer.name!r}: not opened from a file")
            path = Path(p)
        else:
            raise ValueError("slide: open a slide (File > Open) or choose a slide file")
        source = self.model_source()
        out = (
            as_path(self.out.value) if self.out.value is not None else default_output(path, source)
        )
        return RunRequest(
            slide_path=path,
            slide_layer=layer_name,
            model_source=source,
            out=out,
            tile_px=int(self.tile_px.value) or None,
            mpp=float(self.mpp.value) or None,
            device=str(self.device.value),
            batch_size=int(self.batch_size.value) or "auto",
            overwrite=bool(self.overwrite.value),
        )

    # ------------------------------------------------------------------ running
    def start(self, _: Any = None) -> Job | None:
        """Start a run (or resume a cancelled one); returns the job."""
        if not self.run_button.enabled:  # a run is going on
            return self.job
        try:
            req = self.request()
        except ValueError as exc:
            self._set_status(str(exc), error=True)
            return None
        from napari.utils import progress

        self._pbar = progress(total=0, desc=f"tileuq: {req.slide_path.name}")
        self._done = 0
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self._set_status(f"Starting on {req.slide_path.name}; results in {req.out}")
        self.job = Job()
        start_job(
            lambda: _work(req),
            sync=sync_mode(self),
            on_yield=self._on_progress,
            on_return=self._on_done,
            on_error=self._on_error,
            on_finish=self._on_finish,
            job=self.job,
        )
        return self.job

    def cancel(self, _: Any = None) -> None:
        """Stop after the current batch; finished batches stay in the output folder."""
        if self.job is not None:
            self.job.cancel()
            self._set_status("Cancelling after the current batch...")

    def _on_progress(self, item: Any) -> None:
        from tileuq.engine.progress import Progress

        if isinstance(item, str):
            self._set_status(item)
            return
        if not isinstance(item, Progress):
            return
        if self._pbar is not None:
            if item.total and self._pbar.total != item.total:
                self._pbar.total = item.total
            if item.done > self._done:
                self._pbar.update(item.done - self._done)
                self._done = item.done
            self._pbar.set_description(f"tileuq {item.stage}")
        self._set_status(str(item))

    def _on_done(self, value: Any) -> None:
        results, req = value
        session = register(load_session(req.out, req.model_source, results))
        session.slide_layer = req.slide_layer
        if session.calibration is None:
            session.calibration = _manifest_calibration(results)
        self.session = session
        show_session(self.viewer, session)
        self.viewer.layers.selection.clear()
        self._set_status(f"Done: {len(results)} tiles of {req.slide_path.name} in {req.out}")

    def _on_error(self, exc: BaseException) -> None:
        self._set_status(f"Run failed: {exc}", error=True)

    def _on_finish(self, cancelled: bool) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if cancelled:
            self._set_status(
                f"Cancelled after {self._done} tiles; they are kept: press Run to resume."
            )

    def open_results(self, _: Any = None) -> Session | None:
        """Show the results already in the output folder (e.g. from ``tileuq run``)."""
        try:
            req = self.request()
            session = register(load_session(req.out, req.model_source))
        except Exception as exc:
            self._set_status(f"Cannot show results: {exc}", error=True)
            return None
        session.slide_layer = req.slide_layer
        self.session = session
        show_session(self.viewer, session)
        self._set_status(f"Showing {len(session.results)} tiles from {req.out}")
        return session

    def _set_status(self, text: str, *, error: bool = False) -> None:
        self.status.value = text
        if error:
            notify(text, error=True)


def _manifest_calibration(results: Any) -> Any:
    cal = results.meta.get("model", {}).get("calibration")
    if not cal:
        return None
    from tileuq.uncertainty import Calibration

    try:
        return Calibration.from_dict(cal)
    except Exception:  # an older or foreign calibration record: show results without it
        return None


def _work(req: RunRequest) -> Any:
    """Run the job (in the worker thread): load the model, run the engine, note the model."""
    yield f"Loading model {req.model_source}..."
    from tileuq.engine import iter_run_slide
    from tileuq.napari._models import load_model_source

    model = load_model_source(req.model_source)
    results = yield from iter_run_slide(
        req.slide_path,
        model,
        tile_px=req.tile_px,
        mpp=req.mpp,
        device=req.device,
        batch_size=req.batch_size,
        out=req.out,
        overwrite=req.overwrite,
    )
    from tileuq._io import atomic_write

    with atomic_write(req.out / MODEL_FILE, "w") as f:
        f.write(req.model_source + "\n")
    return results, req
