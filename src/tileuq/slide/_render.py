"""Rules that turn raw pixel data (any dtype, any channel count) into RGB ``uint8``.

Every backend reads *raw* regions ``(h, w, n)`` in the file's own dtype and passes them
through one :class:`Renderer`, fixed when the slide is opened, so that every region, level
and plane of a slide is rendered with the same rule:

``rgb``
    3 channels of photometric RGB/YCbCr.  ``uint8`` is passed through unchanged; any other
    dtype is windowed with **one** window shared by the three channels (keeps colour balance).
``rgba``
    RGB plus alpha: composited on white, ``out = (rgb * a + 255 * (255 - a)) / 255`` rounded.
    Alpha is scaled by its dtype's range (it is a coverage mask, not an intensity).
``gray``
    1 channel, repeated to RGB.  ``uint8`` unchanged, ``bool`` to 0/255, anything else
    (16-bit, 32-bit, float) windowed.
``gray_alpha``
    Grey plus alpha, composited on white as for ``rgba``.
``composite``
    Multichannel data that is not RGB (fluorescence, QPTIFF, OME channels): the first
    :data:`MAX_CHANNELS` channels are each windowed **separately** (always, even ``uint8``),
    multiplied by the channel's colour and added, clipped to 255 (an additive false-colour
    composite on black, the usual display of fluorescence).  Colours come from the file
    (QPTIFF ``<Color>``, OME ``Channel/@Color``) and otherwise from :data:`PALETTE`
    (red, green, blue, cyan, magenta, yellow, orange, white), so three uncoloured channels
    are shown as plain RGB.

Windowing maps the robust percentiles ``WINDOW_PERCENTILES`` = 0.5 % and 99.9 % of a
sample of the data linearly to 0 and 255 (clipping outside).  The sample is taken once, at
open, from the coarsest pyramid level (evenly spread windows when that level is large) of up
to four evenly spaced planes, so all levels and planes share one window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Sample = np.ndarray | Callable[[], np.ndarray] | None
Mode = Literal["rgb", "rgba", "gray", "gray_alpha", "composite"]

MAX_CHANNELS = 8
WINDOW_PERCENTILES = (0.5, 99.9)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (0, 255, 255),
    (255, 0, 255),
    (255, 255, 0),
    (255, 128, 0),
    (255, 255, 255),
)


@dataclass(frozen=True)
class Renderer:
    """A fixed raw → RGB ``uint8`` rule (see the module docstring)."""

    mode: Mode
    windows: tuple[tuple[float, float], ...] | None = None  # per rendered channel; None = identity
    colors: tuple[tuple[int, int, int], ...] = ()  # composite only
    alpha_max: float = 255.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Render ``raw`` ``(h, w[, n])`` to ``(h, w, 3)`` ``uint8``."""
        if raw.ndim == 2:
            raw = raw[:, :, None]
        if self.mode == "composite":
            return self._composite(raw)
        if self.mode in ("rgb", "rgba"):
            rgb = self._scale(raw[:, :, :3], shared=True)
            if self.mode == "rgba":
                return _over_white(rgb, raw[:, :, 3], self.alpha_max)
            return rgb
        gray = self._scale(raw[:, :, :1], shared=True)
        rgb = np.repeat(gray, 3, axis=2)
        if self.mode == "gray_alpha":
            return _over_white(rgb, raw[:, :, 1], self.alpha_max)
        return rgb

    def _scale(self, a: np.ndarray, *, shared: bool) -> np.ndarray:
        if a.dtype == np.bool_:
            return np.where(a, np.uint8(255), np.uint8(0))
        if self.windows is None:
            return np.ascontiguousarray(a, dtype=np.uint8)
        lo, hi = self.windows[0]
        return _window(a, lo, hi)

    def _composite(self, raw: np.ndarray) -> np.ndarray:
        assert self.windows is not None
        acc = np.zeros((*raw.shape[:2], 3), dtype=np.float32)
        for c, ((lo, hi), color) in enumerate(zip(self.windows, self.colors, strict=True)):
            if c >= raw.shape[2]:
                break
            v = _window(raw[:, :, c], lo, hi).astype(np.float32)
            acc += v[:, :, None] * (np.asarray(color, np.float32) / 255.0)
        return np.clip(np.rint(acc), 0, 255).astype(np.uint8)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (stored in the slide's properties)."""
        return {
            "mode": self.mode,
            "windows": [list(w) for w in self.windows] if self.windows is not None else None,
            "colors": ["#{:02x}{:02x}{:02x}".format(*c) for c in self.colors],
        }


def _window(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = 255.0 / max(hi - lo, 1e-12)
    out = (a.astype(np.float32) - np.float32(lo)) * np.float32(scale)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _over_white(rgb: np.ndarray, alpha: np.ndarray, alpha_max: float) -> np.ndarray:
    """Composite ``rgb`` (uint8) with coverage ``alpha`` on white, rounding to nearest."""
    if alpha.dtype == np.uint8 and alpha_max == 255.0 and int(alpha.min(initial=255)) == 255:
        return np.ascontiguousarray(rgb)  # fully opaque (the usual case): nothing to blend
    if alpha_max != 255.0 or alpha.dtype != np.uint8:
        a = np.clip(np.rint(alpha.astype(np.float64) * (255.0 / alpha_max)), 0, 255)
        a = a.astype(np.uint16)
    else:
        a = alpha.astype(np.uint16)
    a = a[:, :, None]
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _dtype_max(dtype: np.dtype) -> float:
    if dtype == np.bool_:
        return 1.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def robust_window(values: np.ndarray) -> tuple[float, float]:
    """Return the ``WINDOW_PERCENTILES`` of ``values`` (finite values only) as ``(lo, hi)``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(p) for p in np.percentile(v, WINDOW_PERCENTILES))
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


def choose_mode(n_channels: int, hint: str | None) -> Mode:
    """Pick the rendering mode from the channel count and a layout hint.

    ``hint`` is ``"rgb"`` (photometric RGB/YCbCr, 3 or 4 samples), ``"gray"`` (min-is-black
    with an optional alpha sample), ``"channels"`` (separate channels/fluorescence) or ``None``
    (guess: 1 → gray, 2 → gray_alpha, 3 → rgb, 4 → rgba, more → composite).
    """
    if hint == "channels" and n_channels > 1:
        return "composite"
    if hint == "rgb" and n_channels >= 3:
        return "rgba" if n_channels >= 4 else "rgb"
    if hint == "gray" and n_channels <= 2:
        return "gray_alpha" if n_channels == 2 else "gray"
    if hint is None and n_channels <= 4:
        return ("gray", "gray_alpha", "rgb", "rgba")[n_channels - 1]
    return "composite" if n_channels > 1 else "gray"


def make_renderer(
    dtype: np.dtype | type,
    n_channels: int,
    hint: str | None,
    sample: Sample,
    colors: Sequence[tuple[int, int, int] | None] | None = None,
) -> Renderer:
    """Build the :class:`Renderer` for data of ``dtype`` with ``n_channels`` channels.

    Parameters
    ----------
    dtype
        Raw data type.
    n_channels
        Number of raw channels (last axis of raw regions).
    hint
        Layout hint, see :func:`choose_mode`.
    sample
        ``(..., n_channels)`` sample of the data for the robust windows, or a function
        returning one; only used when a window is needed (not for ``uint8`` RGB/grey).
    colors
        Per-channel colours from the file (``None`` entries fall back to :data:`PALETTE`).
    """
    dt = np.dtype(dtype)
    mode = choose_mode(n_channels, hint)
    alpha_max = _dtype_max(dt)
    if mode == "composite":
        n = min(n_channels, MAX_CHANNELS)
        pal = [
            (colors[c] if colors is not None and c < len(colors) and colors[c] else None)
            or PALETTE[c % len(PALETTE)]
            for c in range(n)
        ]
        flat = _flat(sample, n_channels)
        wins = tuple(
            robust_window(flat[:, c]) if flat is not None else (0.0, alpha_max) for c in range(n)
        )
        return Renderer("composite", wins, tuple(tuple(int(v) for v in c) for c in pal), alpha_max)  # type: ignore[misc]
    if dt == np.uint8 or dt == np.bool_:
        return Renderer(mode, None, (), alpha_max)
    flat = _flat(sample, n_channels)
    k = 3 if mode in ("rgb", "rgba") else 1
    win = robust_window(flat[:, :k]) if flat is not None else (0.0, alpha_max)
    return Renderer(mode, (win,), (), alpha_max)


def _flat(sample: Sample, n_channels: int) -> np.ndarray | None:
    if callable(sample):
        sample = sample()
    if sample is None or sample.size == 0:
        return None
    return np.asarray(sample).reshape(-1, n_channels)


def parse_color(value: Any) -> tuple[int, int, int] | None:
    """Parse ``"r,g,b"`` (QPTIFF) or a signed 32-bit RGBA integer (OME) into ``(r, g, b)``.

    Black is treated as "no colour" (it would hide the channel).
    """
    try:
        if isinstance(value, str) and "," in value:
            r, g, b = (int(float(v)) for v in value.split(",")[:3])
        else:
            v = int(value) & 0xFFFFFFFF
            r, g, b = (v >> 24) & 255, (v >> 16) & 255, (v >> 8) & 255
    except (TypeError, ValueError):
        return None
    rgb = (max(0, min(r, 255)), max(0, min(g, 255)), max(0, min(b, 255)))
    return rgb if any(rgb) else None
