"""Many slides: :func:`iter_run_slides` / :func:`run_slides`, locally or on Dask distributed.

Each slide gets its own output folder (named after the slide file, deduplicated) under
``out_dir``.  A slide that fails is reported (``error.txt`` in its folder) and the others go
on; complete slides are skipped and partial ones resume (see :mod:`tileuq.engine.resume`).

With a Dask ``client`` each slide is one task.  Workers load the model once and keep it in a
per-process cache keyed by the model source and hash; CUDA runs ask for the ``GPU`` worker
resource.  Tables are byte-for-byte those of a local run (same batches, same seeds).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import traceback
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tileuq._generators import result_of
from tileuq._io import atomic_write
from tileuq.bundled import resolve_model_source
from tileuq.engine.progress import Progress, SlideOutcome
from tileuq.engine.resume import ERROR_FILE, OVERVIEW_FILE, check_writable

if TYPE_CHECKING:
    from tileuq.engine.results import TileResults
    from tileuq.models import TileModel

_MODEL_CACHE: dict[str, Any] = {}
_MODEL_LOADS = 0  # models loaded by this process (workers: should stay at 1)
_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr")


def slide_folder_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Output folder name of each slide: the file name without extension, deduplicated.

    A later slide whose name is already taken gets ``-<8 hex of its absolute path>`` appended,
    so the names do not depend on which other slides are in the run.
    """
    seen: set[str] = set()
    out = []
    for p in paths:
        path = Path(p)
        name = path.name
        low = name.lower()
        suffix = next((s for s in _SUFFIXES if low.endswith(s)), path.suffix)
        stem = name[: len(name) - len(suffix)] if suffix and not path.is_dir() else name
        stem = re.sub(r"[^\w.+-]+", "_", stem).strip("._") or "slide"
        if stem.lower() in seen:
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
            stem = f"{stem}-{digest}"
        seen.add(stem.lower())
        out.append(stem)
    return out


def load_cached_model(source: str) -> TileModel:
    """Load a model once per process (worker) and keep it, keyed by source and file state."""
    from tileuq.models import load_model

    path = Path(source)
    stamp = ""
    if path.exists():
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        stamp = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    key = f"{source}|{stamp}"
    model = _MODEL_CACHE.get(key)
    if model is None:
        global _MODEL_LOADS
        model = load_model(source)
        _MODEL_LOADS += 1
        _MODEL_CACHE.clear()  # one model per worker process at a time
        _MODEL_CACHE[key] = model
    return model


def run_one(
    source: str,
    model: TileModel | str,
    folder: str,
    kwargs: dict[str, Any],
    overview: bool = True,
) -> Generator[Progress, None, SlideOutcome]:
    """Run one slide into ``folder``; never raises for a bad slide (returns a failed outcome)."""
    from tileuq.engine.run import iter_run_slide

    t0 = time.perf_counter()
    out = Path(folder)
    (out / ERROR_FILE).unlink(missing_ok=True)
    try:
        tile_model = load_cached_model(model) if isinstance(model, str) else model
        results = None
        skipped = False
        for item in iter_run_slide(source, tile_model, out=out, **kwargs):
            if isinstance(item, Progress):
                skipped = skipped or item.stage == "skipped"
                yield item
            else:
                results = item
        assert results is not None
        if overview and (skipped is False or not (out / OVERVIEW_FILE).exists()):
            write_overview(source, results, out / OVERVIEW_FILE)
        return outcome_of(source, folder, results, "skipped" if skipped else "complete", t0)
    except Exception as exc:  # one bad slide must not stop the others
        msg = f"{type(exc).__name__}: {exc}"
        with atomic_write(out / ERROR_FILE, "w") as f:
            f.write(f"{source}\n{msg}\n\n{traceback.format_exc()}")
        return SlideOutcome(source, folder, "failed", seconds=time.perf_counter() - t0, error=msg)


def write_overview(source: str, results: TileResults, path: Path) -> None:
    """Draw ``overview.png`` (thumbnail + classes + uncertainty) for a finished slide."""
    from tileuq.engine.overview import draw_overview
    from tileuq.slide import open_slide

    with open_slide(source) as slide:
        thumb = slide.thumbnail(768, plane=results.planes[0])
    draw_overview(results, thumb, path)


def outcome_of(
    source: str, folder: str, results: TileResults, status: str, t0: float
) -> SlideOutcome:
    """Summarise a finished slide (tiles, tissue area, flagged fraction)."""
    from tileuq.engine.flagging import flagged_fraction

    summary = results.meta.get("summary", {})
    return SlideOutcome(
        source,
        folder,
        status,
        n_tiles=len(results),
        tissue_area_mm2=summary.get("tissue_area_mm2"),
        flagged=flagged_fraction(results),
        seconds=time.perf_counter() - t0,
    )


def _task(source: str, model: Any, folder: str, kwargs: dict[str, Any], overview: bool) -> dict:
    """Dask task: run one slide on a worker and return its outcome as a dict."""
    outcome: SlideOutcome = result_of(run_one(source, model, folder, kwargs, overview))
    return outcome.__dict__


def iter_run_slides(
    paths: Iterable[str | os.PathLike[str]],
    model: TileModel | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    client: Any = None,
    overview: bool = True,
    **kwargs: Any,
) -> Generator[Progress | SlideOutcome | list[SlideOutcome], None, list[SlideOutcome]]:
    """Run a model on many slides, yielding progress, one outcome per slide, then all outcomes.

    Parameters
    ----------
    paths
        Slide files or folders.
    model
        A :class:`~tileuq.models.TileModel`, or a model source for :func:`tileuq.load_model`
        (folder, file, ``hf://...``, or ``"demo"``).
    out_dir
        Parent of the per-slide folders (see :func:`slide_folder_names`).
    client
        A ``distributed.Client``: one task per slide on its workers.  ``None``: run here, one
        slide after the other.
    overview
        Write ``overview.png`` (classes and uncertainty over a thumbnail) per slide.
    **kwargs
        Passed to :func:`tileuq.iter_run_slide` (``tile_px``, ``mpp``, ``batch_size``,
        ``device``, ``overwrite``, ...).

    Yields
    ------
    Progress, SlideOutcome or list of SlideOutcome
        Progress of the slide being run (local runs only), a :class:`SlideOutcome` when a slide
        finishes, and finally the list of outcomes in input order (also the return value).
    """
    sources = [str(p) for p in paths]
    out_dir = Path(out_dir)
    check_writable(out_dir)  # before any work
    folders = [str(out_dir / n) for n in slide_folder_names(sources)]
    model_ref: Any = model
    if not _is_model(model):
        model_ref = resolve_model_source(model)  # type: ignore[arg-type]
    outcomes: list[SlideOutcome | None] = [None] * len(sources)
    if client is None:
        if isinstance(model_ref, str):
            model_ref = load_cached_model(model_ref)
        for i, (src, folder) in enumerate(zip(sources, folders, strict=True)):
            outcome = yield from run_one(src, model_ref, folder, kwargs, overview)
            outcomes[i] = outcome
            yield outcome
    else:
        yield from _dask_run(client, sources, folders, model_ref, kwargs, overview, outcomes)
    final = [o for o in outcomes if o is not None]
    yield final
    return final


def _dask_run(
    client: Any,
    sources: list[str],
    folders: list[str],
    model_ref: Any,
    kwargs: dict[str, Any],
    overview: bool,
    outcomes: list[SlideOutcome | None],
) -> Generator[SlideOutcome, None, None]:
    from distributed import as_completed

    if _is_model(model_ref):
        # parametrized (spectral-norm) modules do not pickle: hand workers a saved copy in
        # the output folder, which they must be able to read anyway
        saved = Path(folders[0]).parent / f".model-{model_ref.model_hash[:16]}"
        if not (saved / "model.json").exists():
            model_ref.save(saved)
        model_ref = str(saved)
    device = str(kwargs.get("device", "auto"))
    resources = {"GPU": 1} if device.startswith("cuda") else None
    futures = {}
    for i, (src, folder) in enumerate(zip(sources, folders, strict=True)):
        fut = client.submit(
            _task,
            src,
            model_ref,
            folder,
            kwargs,
            overview,
            key=f"tileuq-slide-{i}-{Path(folder).name}",
            resources=resources,
            pure=False,
        )
        futures[fut] = i
    t0 = time.perf_counter()
    for fut in as_completed(list(futures)):
        i = futures[fut]
        try:
            outcome = SlideOutcome(**fut.result())
        except Exception as exc:  # worker died (KilledWorker), cancelled, ...
            msg = f"{type(exc).__name__}: {exc}"
            with atomic_write(Path(folders[i]) / ERROR_FILE, "w") as f:
                f.write(f"{sources[i]}\n{msg}\n")
            outcome = SlideOutcome(
                sources[i], folders[i], "failed", seconds=time.perf_counter() - t0, error=msg
            )
        outcomes[i] = outcome
        yield outcome


def run_slides(
    paths: Iterable[str | os.PathLike[str]],
    model: TileModel | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    client: Any = None,
    **kwargs: Any,
) -> list[SlideOutcome]:
    """Run a model on many slides; see :func:`iter_run_slides`.  Returns one outcome per slide."""
    result: list[SlideOutcome] = []
    for item in iter_run_slides(paths, model, out_dir, client=client, **kwargs):
        if isinstance(item, list):
            result = item
    return result


def _is_model(obj: Any) -> bool:
    return hasattr(obj, "predict") and hasattr(obj, "classes")
