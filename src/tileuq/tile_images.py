"""Decoding tile image files for training, calibration and evaluation (no torch).

The one rule for tile files everywhere in tileuq: any image Pillow reads (and TIFFs tifffile
reads) becomes ``(H, W, 3)`` uint8 RGB with transparency composited on white and other bit
depths scaled to 8 bits; a tile is then centre-cropped to a square and resized to the model's
``tile_px`` (bilinear, antialiased).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["IMAGE_SUFFIXES", "decode_rgb", "fit_square", "read_image"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"})


def _to_uint8(arr: NDArray[Any]) -> NDArray[np.uint8]:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        top = float(np.iinfo(arr.dtype).max) if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
    a = arr.astype(np.float64)
    hi = float(np.nanmax(a)) if a.size else 1.0
    scale = 255.0 if hi <= 1.0 else 255.0 / hi
    return np.clip(np.nan_to_num(a) * scale, 0, 255).round().astype(np.uint8)


def _on_white(rgb: NDArray[np.uint8], alpha: NDArray[np.uint8]) -> NDArray[np.uint8]:
    a = alpha.astype(np.float32)[..., None] / 255.0
    out = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _rgb_from_array(arr: NDArray[Any]) -> NDArray[np.uint8]:
    """(H, W[, C]) array of any dtype -> (H, W, 3) uint8, alpha composited on white."""
    if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"unsupported image shape {arr.shape}")
    a8 = _to_uint8(arr)
    c = a8.shape[-1]
    if c == 1:
        return np.repeat(a8, 3, axis=-1)
    if c == 2:
        return _on_white(np.repeat(a8[..., :1], 3, axis=-1), a8[..., 1])
    if c == 3:
        return a8
    return _on_white(a8[..., :3], a8[..., 3])


def decode_rgb(path: str | os.PathLike[str]) -> NDArray[np.uint8]:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB (transparency composited on white).

    Raises ``OSError``/``ValueError`` when the file cannot be decoded.
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as src:
            src.load()
            im: Image.Image = src
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            if im.mode in ("RGBA", "LA", "RGBa", "La"):
                rgba = np.asarray(im.convert("RGBA"))
                return _on_white(rgba[..., :3], rgba[..., 3])
            if im.mode in ("RGB", "L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
                return np.asarray(im.convert("RGB"))
            return _rgb_from_array(np.asarray(im))  # I;16, I, F: scale to 8 bits
    except (OSError, ValueError, SyntaxError) as exc:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise OSError(str(exc) or type(exc).__name__) from None
        pil_error = exc
    try:
        import tifffile

        return _rgb_from_array(np.asarray(tifffile.imread(path, key=0)))
    except Exception as exc:  # any decoder failure means "unreadable"
        raise OSError(f"{pil_error}; tifffile: {exc}") from None


def fit_square(rgb: NDArray[np.uint8], tile_px: int) -> NDArray[np.uint8]:
    """Centre-crop an RGB image to a square and resize it to ``tile_px`` (bilinear, antialiased)."""
    h, w = rgb.shape[:2]
    if h != w:
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        rgb = rgb[y0 : y0 + s, x0 : x0 + s]
    if rgb.shape[0] != tile_px:
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(rgb)).resize(
            (tile_px, tile_px), Image.Resampling.BILINEAR
        )
        rgb = np.asarray(img, dtype=np.uint8)
    return rgb if rgb.flags.writeable and rgb.flags.c_contiguous else np.array(rgb, order="C")


def read_image(path: str | os.PathLike[str], tile_px: int) -> NDArray[np.uint8]:
    """Read one tile as ``(tile_px, tile_px, 3)`` uint8 RGB (see the module rules)."""
    return fit_square(decode_rgb(path), tile_px)
