"""Reader pool: tiles read, decoded and resized in threads, ahead of the model, in order.

OpenSlide and tifffile/imagecodecs release the GIL while they decode, so a few threads keep
the model fed.  A bounded number of batches is in flight at any time (``prefetch``), so memory
stays flat however large the slide is.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: ``read_batch(indices) -> (len(indices), H, W, 3) uint8``
ReadBatch = Callable[[np.ndarray], np.ndarray]


@dataclass
class Batch:
    """A batch of decoded tiles.

    Attributes
    ----------
    start, stop
        Tile-index range ``[start, stop)`` of the batch (positions in the caller's tile list).
    indices
        The tile indices read (``len = stop - start`` unless the caller skipped tiles).
    tiles
        ``(B, H, W, 3)`` uint8 (a view of ``buffer`` when buffers are provided).
    read_s
        Seconds spent reading by all threads together for this batch.
    """

    start: int
    stop: int
    indices: np.ndarray
    tiles: np.ndarray
    read_s: float = 0.0
    buffer: Any = None


def default_reader_threads() -> int:
    """Reader threads for this machine: one per core, at least 2, at most 8."""
    return max(2, min(8, os.cpu_count() or 2))


class TileReader:
    """Read batches of tiles in a thread pool, yielding them in order.

    Parameters
    ----------
    make_reader
        Called once in each reader thread; returns that thread's ``read_batch(indices)``
        (so each thread can hold its own file handle).  Optionally returns a
        ``(read_batch, close)`` pair; ``close`` is called when the pool shuts down.
    batches
        ``(start, stop, indices)`` for each batch, in the order they are to be yielded.
    tile_shape
        ``(H, W)`` of one tile.
    threads
        Reader threads.
    prefetch
        Batches read ahead of the consumer (bounds memory: about
        ``(prefetch + 1) * batch bytes``).
    allocate
        ``allocate(n) -> (buffer, ndarray view (n, H, W, 3))``: where a batch is decoded
        into (e.g. pinned memory for CUDA).  Default: a fresh numpy array.
    split
        Pieces each batch is cut into so several threads share one batch (lower latency).
    """

    def __init__(
        self,
        make_reader: Callable[[], ReadBatch | tuple[ReadBatch, Callable[[], None]]],
        batches: Sequence[tuple[int, int, np.ndarray]],
        tile_shape: tuple[int, int],
        *,
        threads: int | None = None,
        prefetch: int = 2,
        allocate: Callable[[int], tuple[Any, np.ndarray]] | None = None,
        split: int | None = None,
    ) -> None:
        self._make_reader = make_reader
        self._batches = list(batches)
        self._tile_shape = tuple(tile_shape)
        self.threads = max(1, threads or default_reader_threads())
        self.prefetch = max(1, prefetch)
        self._split = max(1, split if split is not None else self.threads)
        self._allocate = allocate or self._numpy_buffer
        self._local = threading.local()
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _numpy_buffer(self, n: int) -> tuple[Any, np.ndarray]:
        arr = np.empty((n, *self._tile_shape, 3), dtype=np.uint8)
        return None, arr

    def _reader(self) -> ReadBatch:
        fn = getattr(self._local, "fn", None)
        if fn is None:
            made = self._make_reader()
            if isinstance(made, tuple):
                fn, close = made
                with self._lock:
                    self._closers.append(close)
            else:
                fn = made
            self._local.fn = fn
        return fn

    def _read_piece(self, indices: np.ndarray, out: np.ndarray) -> float:
        import time

        t0 = time.perf_counter()
        tiles = self._reader()(indices)
        if tiles.shape != out.shape:
            raise ValueError(f"reader returned {tiles.shape}, expected {out.shape}")
        out[...] = tiles
        return time.perf_counter() - t0

    def _submit(self, pool: ThreadPoolExecutor, item: tuple[int, int, np.ndarray]) -> tuple:
        start, stop, indices = item
        indices = np.asarray(indices, dtype=np.int64)
        buffer, view = self._allocate(len(indices))
        n = len(indices)
        pieces = min(self._split, max(1, n))
        bounds = np.linspace(0, n, pieces + 1).astype(int)
        futs = [
            pool.submit(self._read_piece, indices[a:b], view[a:b])
            for a, b in itertools.pairwise(bounds)
            if b > a
        ]
        return start, stop, indices, buffer, view, futs

    def __iter__(self) -> Iterator[Batch]:
        """Yield :class:`Batch` objects in order; reading runs ``prefetch`` batches ahead."""
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tileuq-reader")
        self._pool = pool
        pending: deque[tuple] = deque()
        todo = iter(self._batches)
        try:
            for item in todo:
                pending.append(self._submit(pool, item))
                if len(pending) >= self.prefetch:
                    break
            while pending:
                start, stop, indices, buffer, view, futs = pending.popleft()
                read_s = sum(_result(f) for f in futs)
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(self._submit(pool, nxt))
                yield Batch(start, stop, indices, view, read_s, buffer)
        finally:
            for *_, futs in pending:
                for f in futs:
                    f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self.close()

    def close(self) -> None:
        """Close the per-thread readers (file handles)."""
        with self._lock:
            closers, self._closers = self._closers, []
        for close in closers:
            with contextlib.suppress(Exception):
                close()


def _result(fut: Future) -> float:
    return float(fut.result())


def plan_batches(
    offsets: np.ndarray, batch_size: int, done: list[tuple[int, int]]
) -> list[tuple[int, int, np.ndarray]]:
    """Batches ``[start, stop)`` cut at fixed multiples of ``batch_size`` within each plane.

    Fixed cut points make a resumed run see the same batches as an uninterrupted one (so the
    numbers agree bit for bit); tiles already in part files are left out.
    """
    todo = np.ones(int(offsets[-1]), dtype=bool)
    for a, b in done:
        todo[a:b] = False
    out = []
    for lo, hi in itertools.pairwise(offsets):
        for a in range(int(lo), int(hi), batch_size):
            b = min(a + batch_size, int(hi))
            idx = np.flatnonzero(todo[a:b]) + a
            # a resumed batch is split where finished tiles interrupt it
            for run in np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1):
                if len(run):
                    out.append((int(run[0]), int(run[-1]) + 1, run))
    return out
