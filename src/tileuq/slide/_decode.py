"""Decode whole plain images (PNG, JPEG, BMP, GIF, WebP, JPEG 2000, small TIFF) to raw arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tileuq.errors import SlideError

# Pillow modes converted before use: palette and exotic colour spaces to RGB(A), bilevel to L
_CONVERT = {
    "1": "L",
    "P": "RGBA",
    "PA": "RGBA",
    "RGBa": "RGBA",
    "La": "LA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
    "RGBX": "RGB",
}


def image_size(path: Path) -> tuple[int, int]:
    """``(w, h)`` of an image without decoding its pixels."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() in (".tif", ".tiff") or _is_tiff(path):
        import tifffile

        try:
            with tifffile.TiffFile(str(path)) as tif:
                page = tif.pages.first
                return int(page.imagewidth), int(page.imagelength)
        except Exception as exc:
            raise SlideError(f"{path}: not a readable TIFF ({exc})") from exc
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        h, w = _imagecodecs_decode(path, exc).shape[:2]
        return (int(w), int(h))


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def decode_image(path: Path) -> np.ndarray:
    """Decode ``path`` whole to a raw ``(h, w, c)`` array (native dtype, c in 1..4).

    Palette images become RGBA (keeping transparency), bilevel become ``uint8`` grey, CMYK
    and other colour spaces RGB; 16-bit and float images keep their dtype (windowed later).
    Only the first frame of an animation is used.
    """
    from PIL import Image, UnidentifiedImageError

    if _is_tiff(path):
        import tifffile

        try:
            arr = tifffile.imread(str(path), key=0)
        except Exception as exc:
            raise SlideError(f"{path}: cannot decode the TIFF image ({exc})") from exc
        return _as_hwc(arr, path)
    try:
        with Image.open(path) as src:
            src.seek(0)
            img: Image.Image = src
            mode = img.mode
            if mode == "P" and "transparency" not in img.info:
                img = img.convert("RGB")
            elif mode in _CONVERT:
                img = img.convert(_CONVERT[mode])
            arr = np.asarray(img)
    except Image.DecompressionBombError as exc:
        raise SlideError(
            f"{path}: the image is too large to decode as a plain image ({exc}); convert it "
            "to a tiled pyramidal TIFF"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        arr = _imagecodecs_decode(path, exc)
    return _as_hwc(arr, path)


def _imagecodecs_decode(path: Path, first: Exception) -> np.ndarray:
    """Second chance for formats Pillow lacks (e.g. JPEG 2000 without OpenJPEG)."""
    try:
        import imagecodecs

        return np.asarray(imagecodecs.imread(str(path)))
    except Exception as exc:
        truncated = "truncated" in str(first).lower() or "truncated" in str(exc).lower()
        reason = "the image data is truncated" if truncated else "cannot decode the image"
        raise SlideError(f"{path}: {reason} ({first})") from exc


def _as_hwc(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim == 3 and arr.shape[2] <= 4:
        return arr
    if arr.ndim == 3 and arr.shape[0] <= 4:  # planar samples
        return np.moveaxis(arr, 0, 2)
    raise SlideError(f"{path}: unsupported image shape {arr.shape} for a plain image")
