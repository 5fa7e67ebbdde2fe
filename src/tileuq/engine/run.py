"""Run a model over every tissue tile of a slide: :func:`iter_run_slide` / :func:`run_slide`.

The pipeline: tissue mask and tile grid → reader threads decode batches ahead of the model
(bounded prefetch) → :class:`~tileuq.engine.batch.Predictor` → one part file per finished
batch (when ``out`` is given) → merge in tile order → :class:`TileResults`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq.engine.batch import Predictor, parse_batch_size, resolve_device
from tileuq.engine.meta import (
    check_mpp,
    device_info,
    fingerprint,
    geometry,
    model_info,
    quick_fingerprint,
    spec_info,
    tissue_area_mm2,
    versions,
)
from tileuq.engine.progress import Progress
from tileuq.engine.reader import TileReader, default_reader_threads, plan_batches
from tileuq.engine.results import TileResults, build_table
from tileuq.engine.resume import RunFolder, check_writable
from tileuq.engine.source import BAND_ROWS, TileSource, processing_order
from tileuq.errors import TilingError

if TYPE_CHECKING:
    import torch

    from tileuq.models import TileModel
    from tileuq.slide import Slide
    from tileuq.tiling import TileGrid


def run_slide(slide: Any, model: TileModel, **kwargs: Any) -> TileResults:
    """Run ``model`` on every tissue tile of ``slide``; see :func:`iter_run_slide`.

    Returns
    -------
    TileResults
    """
    result = None
    for item in iter_run_slide(slide, model, **kwargs):
        if isinstance(item, TileResults):
            result = item
    assert result is not None
    return result


def iter_run_slide(
    slide: Any,
    model: TileModel,
    *,
    tile_px: int | None = None,
    mpp: float | None = None,
    tile_um: float | None = None,
    overlap: int = 0,
    min_tissue: float = 0.5,
    plane: int | None = None,
    batch_size: int | str = "auto",
    device: str | torch.device = "auto",
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    prefetch: int = 2,
    amp: bool | str = "auto",
    compile: bool = False,
    threads: int | None = None,
    seed: int = 0,
    include_partial: bool = False,
    slide_mpp: float | None = None,
    fast_read: bool = True,
) -> Generator[Progress | TileResults, None, TileResults]:
    """Run ``model`` on a slide, yielding :class:`Progress` and finally the :class:`TileResults`.

    Parameters
    ----------
    slide
        A path (opened with :func:`tileuq.open_slide`), an array, or an open
        :class:`~tileuq.slide.Slide` (left open).
    model
        A :class:`~tileuq.models.TileModel` (moved to ``device``, put in eval mode).
    tile_px, mpp, tile_um
        Tile size in pixels and resolution; default to the model's ``tile_px`` and ``mpp``.
        A slide that does not record its mpp needs an explicit ``mpp=`` (its µm per pixel).
    overlap, min_tissue, include_partial
        Tiling (see :func:`tileuq.tile_grid`).
    plane
        Plane of a stack to run; ``None`` runs every plane (the table's ``plane`` column).
    batch_size
        Tiles per model call, or ``"auto"`` (halved on out-of-memory until the slide finishes).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    out
        Per-slide output folder: batches are saved as they finish, a rerun with the same
        arguments resumes, and ``tiles.parquet`` + ``run.json`` are written at the end.
        Finished results with the same arguments are loaded instead of recomputed.
    overwrite
        Replace results of a run with other arguments in ``out`` (else :class:`ResultsError`).
    workers, prefetch
        Reader threads and batches read ahead.
    amp, compile
        CUDA autocast (``"auto"``, ``"bf16"``, ``"fp16"``, ``False``) and ``torch.compile``.
    threads
        ``torch.set_num_threads`` for the CPU (process-wide); ``None`` leaves it.
    seed
        Base seed of the per-batch random state (stochastic methods are reproducible).
    slide_mpp
        When ``slide`` is a path: its µm per pixel, overriding the file's (or giving a missing
        one), as ``open_slide(path, mpp=...)``.
    fast_read
        Read neighbouring tiles as blocks and TIFFs through tifffile when that gives the same
        pixels (see :mod:`tileuq.engine.source`); ``False``: one ``read_region`` per tile.

    Yields
    ------
    Progress or TileResults
        Progress objects, then the results as the last item (also the generator's return value).
    """
    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    folder = RunFolder(out) if out is not None else None
    if folder is not None:
        check_writable(folder.folder)  # before any work
    dev = resolve_device(device)  # bad device / batch size: fail before any work too
    parse_batch_size(batch_size)
    owned = False
    source: TileSource | None = None
    if not _is_slide(slide):
        from tileuq.slide import open_slide

        slide = open_slide(slide, mpp=slide_mpp)
        owned = True
    try:
        name = slide.name
        yield Progress(name, "open", elapsed_s=time.perf_counter() - t_start)
        tile_px = int(tile_px if tile_px is not None else model.tile_px)
        if mpp is None and tile_um is None:
            if slide.mpp is None:
                raise TilingError(
                    f"{name}: the slide does not record its resolution (mpp); give it with "
                    "slide_mpp= / open_slide(path, mpp=...) (--slide-mpp), or pass mpp= (--mpp)"
                )
            mpp = getattr(model, "mpp", None)
        planes = list(range(slide.planes)) if plane is None else [int(plane)]
        slide_hash = slide.header_hash()
        request = {
            "tile_px": tile_px,
            "mpp": mpp,
            "tile_um": tile_um,
            "overlap": overlap,
            "min_tissue": min_tissue,
            "planes": planes,
            "include_partial": include_partial,
        }
        quick = quick_fingerprint(slide_hash, model, request)
        if folder is not None and not overwrite and folder.complete_with(quick):
            res = TileResults.load(folder.folder)
            yield Progress(
                name, "skipped", len(res), len(res), elapsed_s=time.perf_counter() - t_start
            )
            yield res
            return res
        grids = []
        for p in planes:
            yield Progress(name, "tissue", plane=p, elapsed_s=time.perf_counter() - t_start)
            grids.append(
                _grid(slide, tile_px, mpp, tile_um, overlap, min_tissue, p, include_partial)
            )
        t_tissue = time.perf_counter() - t_start
        check_mpp(slide, model, grids[0].mpp, tile_px)
        spec = spec_info(grids, planes)
        fp = fingerprint(quick, spec, grids, f"bands-{BAND_ROWS}")
        n_total = spec["n_tiles"]
        offsets = np.cumsum([0] + [len(g) for g in grids])
        keys = _output_keys(model)

        state = "new"
        if folder is not None:
            state = folder.prepare(fp, overwrite=overwrite)
            if state == "complete":
                res = TileResults.load(folder.folder)
                yield Progress(
                    name, "skipped", n_total, n_total, elapsed_s=time.perf_counter() - t_start
                )
                yield res
                return res
            if state == "resume":
                folder.discard_bad_parts(keys)
        done_ranges = folder.done_ranges() if folder is not None else []

        if threads is not None and dev.type == "cpu":
            import torch

            torch.set_num_threads(int(threads))
        predictor = Predictor(
            model, dev, batch_size=batch_size, amp=amp, compile=compile, seed=seed
        )
        # batches are ranges of positions in the blocked processing order
        order = processing_order(grids)
        batches = [
            (a, b, order[a:b])
            for a, b, _ in plan_batches(offsets, predictor.batch_size, done_ranges)
        ]
        n_resumed = n_total - sum(b[1] - b[0] for b in batches)
        memory: list[tuple[int, dict[str, np.ndarray]]] = []
        source = TileSource(slide, grids, fast=fast_read)
        reader = TileReader(
            lambda: source.read,
            batches,
            (tile_px, tile_px),
            threads=workers or default_reader_threads(),
            prefetch=prefetch,
            allocate=_ring_allocator(predictor, prefetch, tile_px),
            split=1,  # one thread per batch: larger blocks, fewer native tiles decoded twice
        )
        done = n_resumed
        t_inf = time.perf_counter()
        model_s = read_s = write_s = 0.0
        yield Progress(name, "inference", done, n_total, elapsed_s=time.perf_counter() - t_start)
        for batch in reader:
            t0 = time.perf_counter()
            outputs = predictor(
                batch.buffer if batch.buffer is not None else batch.tiles, batch.start
            )
            t1 = time.perf_counter()
            model_s += t1 - t0
            read_s += batch.read_s
            if folder is not None:
                folder.write_part(batch.start, batch.stop, outputs)
            else:
                memory.append((batch.start, outputs))
            write_s += time.perf_counter() - t1
            done += batch.stop - batch.start
            elapsed = time.perf_counter() - t_inf
            rate = (done - n_resumed) / elapsed if elapsed > 0 else 0.0
            yield Progress(
                name,
                "inference",
                done,
                n_total,
                rate,
                time.perf_counter() - t_start,
                plane=planes[int(np.searchsorted(offsets, batch.start, "right")) - 1],
            )
        source.close()  # also on errors, in ``finally``
        t_inf = time.perf_counter() - t_inf
        yield Progress(name, "merge", done, n_total, elapsed_s=time.perf_counter() - t_start)
        if folder is not None:
            arrays = folder.read_parts(n_total, keys)
        else:
            memory.sort(key=lambda item: item[0])
            arrays = {
                k: np.concatenate([o[k] for _, o in memory]) if memory else _empty(k, model)
                for k in keys
            }
        arrays = {k: _unpermute(v, order) for k, v in arrays.items()}
        table = build_table(
            geometry(grids, planes),
            arrays["probabilities"].reshape(n_total, len(model.classes)),
            arrays["pred_index"],
            arrays["confidence"],
            {s: arrays[f"score_{s}"] for s in model.score_names},
            list(model.classes),
            list(model.score_names),
        )
        computed = n_total - n_resumed
        meta = {
            "status": "complete",
            "slide": {**slide.describe(), "header_hash": slide_hash},
            "model": model_info(model),
            "spec": spec,
            "summary": {"n_tiles": n_total, "tissue_area_mm2": tissue_area_mm2(grids)},
            "tissue_masks": [g.mask.to_dict() if g.mask is not None else None for g in grids],
            "versions": versions(),
            "device": device_info(dev, predictor, reader.threads, compile),
            "reader": source.describe(),
            "timings": {
                "started": started,
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "total_s": round(time.perf_counter() - t_start, 3),
                "tissue_s": round(t_tissue, 3),
                "inference_s": round(t_inf, 3),
                "model_s": round(model_s, 3),
                "read_s_threads": round(read_s, 3),
                "write_parts_s": round(write_s, 3),
                "tiles_computed": computed,
                "tiles_resumed": n_resumed,
                "tiles_per_s": round(computed / t_inf, 2) if t_inf > 0 and computed else None,
            },
            "fingerprint": fp,
        }
        results = TileResults(table, meta)
        if folder is not None:
            results.save(folder.folder)
            folder.finish()
        yield Progress(name, "done", n_total, n_total, elapsed_s=time.perf_counter() - t_start)
        yield results
        return results
    finally:
        if source is not None:
            source.close()
        if owned:
            slide.close()


def _is_slide(obj: Any) -> bool:
    from tileuq.slide.base import Slide

    return isinstance(obj, Slide)


def _grid(
    slide: Slide,
    tile_px: int,
    mpp: float | None,
    tile_um: float | None,
    overlap: int,
    min_tissue: float,
    plane: int,
    include_partial: bool,
) -> TileGrid:
    from tileuq.tiling import tile_grid

    return tile_grid(
        slide,
        tile_px=tile_px,
        mpp=mpp,
        tile_um=tile_um,
        overlap=overlap,
        min_tissue=min_tissue,
        plane=plane,
        include_partial=include_partial,
    )


def _output_keys(model: TileModel) -> list[str]:
    return ["probabilities", "pred_index", "confidence", *[f"score_{s}" for s in model.score_names]]


def _empty(key: str, model: TileModel) -> np.ndarray:
    if key == "probabilities":
        return np.empty((0, len(model.classes)), np.float32)
    return np.empty((0,), np.int64 if key == "pred_index" else np.float32)


def _unpermute(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Put values given in processing order back into tile order."""
    out = np.empty_like(values)
    out[order] = values
    return out


def _ring_allocator(
    predictor: Predictor, prefetch: int, tile_px: int
) -> Callable[[int], tuple[Any, np.ndarray]]:
    """Reuse ``prefetch + 2`` batch buffers (pinned on CUDA) instead of allocating each batch."""
    ring: list[tuple[Any, np.ndarray]] = []
    counter = iter(range(1 << 62))
    size = predictor.batch_size

    def allocate(n: int) -> tuple[Any, np.ndarray]:
        k = next(counter) % (prefetch + 2)
        if len(ring) <= k:
            ring.append(predictor.allocate(size, tile_px))
        buf, view = ring[k]
        return (buf[:n] if buf is not None else None), view[:n]

    return allocate
