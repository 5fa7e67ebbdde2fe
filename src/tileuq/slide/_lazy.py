"""Lazy dask pyramids built from a slide's region reader.

Every chunk of every level is one call of the slide's ``_read_level`` for exactly that chunk,
so computing a slice reads only the native tiles it touches and no level is ever read whole.
Reads may run in dask's threads at the same time; each backend's ``_read_level`` is
thread-safe.

When the file's coarsest level is still larger than :data:`GENERATE_ABOVE` pixels on a side
(plain images, single-level TIFFs), :func:`slide_pyramid` appends *generated* levels, each
half the size of the previous one (2x2 area mean, odd last row/column dropped), chunked
:data:`GENERATED_CHUNK` pixels square, computed chunk by chunk from the coarsest native level.
They exist only in ``pyramid()`` (for display); ``Slide.level_count`` reports the file's own
levels.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import dask.array as da

    from tileuq.slide.base import Slide

GENERATE_ABOVE = 4096
GENERATE_UNTIL = 2048
GENERATED_CHUNK = 512

Reader = Callable[[int, int, int, int, int], np.ndarray]  # (x, y, w, h, plane) -> (h, w, 3)


def _axis_chunks(n: int, step: int) -> tuple[int, ...]:
    step = max(1, int(step))
    return tuple(min(step, n - s) for s in range(0, n, step)) or (0,)


def level_array(
    read: Reader,
    size: tuple[int, int],
    tile: tuple[int, int],
    planes: int | None,
    name: str,
) -> da.Array:
    """Return a lazy ``(h, w, 3)`` (or ``(planes, h, w, 3)``) uint8 array, one read per chunk."""
    import dask.array as da

    w, h = size
    tw, th = tile
    chunks: tuple[tuple[int, ...], ...] = (_axis_chunks(h, th), _axis_chunks(w, tw), (3,))
    if planes is not None:
        chunks = ((1,) * planes, *chunks)

    def block(block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        loc = block_info[None]["array-location"]
        if planes is None:
            (y0, y1), (x0, x1) = loc[0], loc[1]
            return read(x0, y0, x1 - x0, y1 - y0, 0)
        (p0, _), (y0, y1), (x0, x1) = loc[0], loc[1], loc[2]
        return read(x0, y0, x1 - x0, y1 - y0, p0)[None]

    return da.map_blocks(
        block,
        name=name,
        chunks=chunks,
        dtype=np.uint8,
        meta=np.empty((0,) * len(chunks), dtype=np.uint8),
    )


def _downsampled_reader(slide: Slide, level: int, factor: int) -> Reader:
    """Read a generated level ``factor`` times coarser than native ``level`` (area mean)."""

    def read(x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
        f = factor
        src = slide._read_level(level, x * f, y * f, w * f, h * f, plane)
        s = src.reshape(h, f, w, f, 3).astype(np.uint32).sum(axis=(1, 3))
        return ((s + (f * f) // 2) // (f * f)).astype(np.uint8)

    return read


def slide_pyramid(slide: Slide) -> list[da.Array]:
    """Build the lazy pyramid of ``slide`` (native levels, then generated ones if needed)."""
    token = uuid.uuid4().hex[:12]
    stack = slide.planes if slide.planes > 1 else None
    levels = []
    for lv in range(slide.level_count):

        def read(x: int, y: int, w: int, h: int, p: int, lv: int = lv) -> np.ndarray:
            return slide._read_level(lv, x, y, w, h, p)

        levels.append(
            level_array(
                read,
                slide.level_dimensions[lv],
                slide.level_tile_sizes[lv],
                stack,
                f"tileuq-{slide.name}-{token}-L{lv}",
            )
        )
    last = slide.level_count - 1
    w, h = slide.level_dimensions[last]
    factor = 1
    while max(w // factor, h // factor) > GENERATE_ABOVE or (
        factor > 1 and max(w // factor, h // factor) > GENERATE_UNTIL
    ):
        factor *= 2
        gw, gh = w // factor, h // factor
        if min(gw, gh) < 1:
            break
        levels.append(
            level_array(
                _downsampled_reader(slide, last, factor),
                (gw, gh),
                (GENERATED_CHUNK, GENERATED_CHUNK),
                stack,
                f"tileuq-{slide.name}-{token}-G{factor}",
            )
        )
    return levels
