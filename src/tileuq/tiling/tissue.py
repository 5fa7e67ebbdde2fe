"""Tissue detection on a low-resolution overview of a slide.

The mask is computed on a thumbnail (at most ``max_size`` pixels on its long side, read from
the coarsest pyramid level that is large enough), so it costs well under a second for any
slide.  Two regimes are detected automatically:

* **Bright-field** (H&E, IHC: light background).  Tissue is coloured and background is grey or
  white, so the HSV *saturation* channel separates them.  The threshold is Otsu's on the
  saturation, floored at ``min_saturation`` so that an empty, white slide does not produce
  tissue out of JPEG noise.  Pixels that are nearly black (scanner borders, out-of-focus
  debris with value < ``min_value``) are excluded.
* **Dark-field** (fluorescence: dark background).  Tissue is bright, so Otsu's threshold on
  the grey-level intensity is used.  The regime is chosen by the median intensity of the
  overview (dark-field when it is below 0.25).

Both masks are cleaned with small-object removal and small-hole filling (sizes in µm² when the
slide's mpp is known, else in overview pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tileuq.slide import Slide


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask with its own scale.

    Attributes
    ----------
    mask
        ``(rows, cols)`` boolean array, ``True`` on tissue.
    downsample
        ``(dx, dy)``: level-0 pixels per mask pixel along x and y.
    method
        ``"brightfield"`` or ``"darkfield"``.
    threshold
        The threshold that was applied (saturation or intensity in [0, 1]).
    """

    mask: np.ndarray
    downsample: tuple[float, float]
    method: str
    threshold: float
    _sat: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros((1, 1)))

    def __post_init__(self) -> None:
        # Summed-area table with a zero row/column in front: sat[i, j] = mask[:i, :j].sum().
        # int32 counts are exact up to 2**31 mask pixels, far beyond any mask here
        sat = np.zeros((self.mask.shape[0] + 1, self.mask.shape[1] + 1), dtype=np.int32)
        np.cumsum(self.mask, axis=0, dtype=np.int32, out=sat[1:, 1:])
        np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
        object.__setattr__(self, "_sat", sat)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the mask."""
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the whole slide covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def fraction(self, x: float, y: float, w: float, h: float) -> float:
        """Tissue fraction of the level-0 box ``(x, y, w, h)`` (outside the slide: background)."""
        return float(self.fractions(np.array([[x, y]], dtype=np.float64), w, h)[0])

    def fractions(self, xy: np.ndarray, w: float, h: float) -> np.ndarray:
        """Tissue fraction of many level-0 boxes of size ``(w, h)`` with top-left corners ``xy``.

        Exact for the piecewise-constant mask: the summed-area table is bilinear inside each
        mask pixel, so interpolating it at fractional box corners gives the area-weighted sum.
        """
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if w <= 0 or h <= 0:
            raise ValueError(f"box size must be positive, got {(w, h)}")
        dx, dy = self.downsample
        u0, v0 = xy[:, 0] / dx, xy[:, 1] / dy
        u1, v1 = (xy[:, 0] + w) / dx, (xy[:, 1] + h) / dy
        total = self._area(u1, v1) - self._area(u0, v1) - self._area(u1, v0) + self._area(u0, v0)
        return np.clip(total / ((w / dx) * (h / dy)), 0.0, 1.0)

    def _area(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Integral of the mask over ``[0, u] x [0, v]`` (mask-pixel units), clamped to the mask."""
        rows, cols = self.shape
        u = np.clip(u, 0.0, cols)
        v = np.clip(v, 0.0, rows)
        j0 = np.minimum(np.floor(u).astype(np.int64), cols - 1) if cols else np.zeros_like(u, int)
        i0 = np.minimum(np.floor(v).astype(np.int64), rows - 1) if rows else np.zeros_like(v, int)
        j0 = np.maximum(j0, 0)
        i0 = np.maximum(i0, 0)
        fu, fv = u - j0, v - i0
        s = self._sat
        return (
            s[i0, j0] * (1 - fu) * (1 - fv)
            + s[i0, j0 + 1] * fu * (1 - fv)
            + s[i0 + 1, j0] * (1 - fu) * fv
            + s[i0 + 1, j0 + 1] * fu * fv
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (without the mask pixels)."""
        return {
            "shape": list(self.shape),
            "downsample": list(self.downsample),
            "method": self.method,
            "threshold": self.threshold,
            "tissue_fraction": self.tissue_fraction,
        }


def tissue_mask(
    slide: Slide,
    *,
    plane: int = 0,
    max_size: int = 2048,
    min_size: int = 512,
    target_um: float = 8.0,
    min_saturation: float = 0.05,
    min_value: float = 0.15,
    min_object_um2: float = 5000.0,
    max_hole_um2: float = 2000.0,
) -> TissueMask:
    """Detect tissue on a low-resolution overview of ``slide``.

    Parameters
    ----------
    slide
        An open :class:`~tileuq.slide.Slide`.
    plane
        Plane of an image stack.
    max_size, min_size, target_um
        The overview has about ``target_um`` µm per pixel (fine enough for tiles of 50 µm and
        more), with its long side kept between ``min_size`` and ``max_size`` pixels (always
        ``max_size`` when the slide's mpp is unknown).
    min_saturation
        Floor on the bright-field saturation threshold (0–1).
    min_value
        Bright-field pixels darker than this (0–1) are not tissue.
    min_object_um2, max_hole_um2
        Tissue components smaller than this are removed and holes smaller than this are
        filled (µm²; converted to overview pixels with the slide's mpp, or taken as overview
        pixels ÷ 100 when the mpp is unknown).

    Returns
    -------
    TissueMask
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    long_side = max(slide.dimensions)
    size = max_size
    if slide.mpp is not None:
        size = int(np.clip(long_side * min(slide.mpp) / target_um, min_size, max_size))
    thumb = slide.thumbnail(size, plane=plane)
    th, tw = thumb.shape[:2]
    w0, h0 = slide.dimensions
    downsample = (w0 / tw, h0 / th)

    sat, val = _saturation_value(thumb)
    grey = thumb.sum(axis=2, dtype=np.uint16).astype(np.float32) / np.float32(765.0)
    if float(np.median(grey)) < 0.25:
        method = "darkfield"
        thr = _otsu(grey, threshold_otsu)
        mask = grey > thr
    else:
        method = "brightfield"
        thr = max(_otsu(sat, threshold_otsu), min_saturation)
        mask = (sat > thr) & (val > min_value)

    if slide.mpp is not None:
        px_area_um2 = downsample[0] * downsample[1] * slide.mpp[0] * slide.mpp[1]
        min_obj_px = int(min_object_um2 / px_area_um2)
        max_hole_px = int(max_hole_um2 / px_area_um2)
    else:
        min_obj_px = int(min_object_um2 / 100.0)
        max_hole_px = int(max_hole_um2 / 100.0)
    if min_obj_px > 1 and mask.any():
        mask = remove_small_objects(mask, max_size=min_obj_px)
    if max_hole_px > 1:
        mask = remove_small_holes(mask, max_size=max_hole_px)
    return TissueMask(mask=mask, downsample=downsample, method=method, threshold=float(thr))


def _saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value in [0, 1] of an RGB uint8 image (as skimage's rgb2hsv)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx = np.maximum(np.maximum(r, g), b).astype(np.float32)
    mn = np.minimum(np.minimum(r, g), b).astype(np.float32)
    sat = np.divide(mx - mn, mx, out=np.zeros_like(mx), where=mx > 0)
    return sat, mx / 255.0


def _otsu(channel: np.ndarray, threshold_otsu: Any) -> float:
    """Otsu's threshold, or +inf for a constant channel (nothing passes)."""
    if float(channel.max()) - float(channel.min()) < 1e-6:
        return float("inf")
    return float(threshold_otsu(channel))
