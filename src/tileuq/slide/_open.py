""":func:`open_slide`: choose a backend from the content of a file, folder or array."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.errors import SlideError
from tileuq.slide._detect import describe_head, openslide_vendor, sniff
from tileuq.slide.base import Slide

BACKENDS = ("openslide", "tifffile", "dicom", "image")
PLAIN_KINDS = ("png", "jpeg", "bmp", "gif", "webp", "jp2", "j2k")
# OpenSlide vendors whose TIFF files OpenSlide reads better than a generic TIFF reader
OPENSLIDE_TIFF_VENDORS = {"aperio", "hamamatsu", "leica", "ventana", "philips"}
# compressions libtiff decodes inside openslide-bin (generic-tiff)
OPENSLIDE_GENERIC_CODECS = {1, 5, 7, 8, 32773, 32946, 50000, 50001}
# non-TIFF formats OpenSlide recognises (MRXS is a JPEG, VMS a text file, VMU/SVSLIDE binary)
OPENSLIDE_OTHER_VENDORS = {"mirax", "hamamatsu", "sakura"}
_EXPECTED = {
    ".svs": "an Aperio SVS (TIFF)",
    ".ndpi": "a Hamamatsu NDPI (TIFF)",
    ".scn": "a Leica SCN (TIFF)",
    ".bif": "a Ventana BIF (TIFF)",
    ".tif": "a TIFF",
    ".tiff": "a TIFF",
    ".qptiff": "a QPTIFF (TIFF)",
    ".dcm": "a DICOM file",
    ".png": "a PNG image",
    ".jpg": "a JPEG image",
    ".jpeg": "a JPEG image",
}


def open_slide(
    source: str | os.PathLike[str] | Any,
    *,
    mpp: float | tuple[float, float] | None = None,
    backend: str | None = None,
) -> Slide:
    """Open a whole-slide image, plain image, image stack, DICOM folder or array.

    The backend is chosen from the **content** (magic bytes, TIFF flags, DICOM preamble,
    ``openslide.OpenSlide.detect_format``), not from the file extension:

    * OpenSlide: Aperio SVS (JPEG, JPEG 2000), Hamamatsu NDPI/VMS/VMU, MIRAX, Leica SCN,
      Ventana BIF, Philips TIFF, Sakura SVSLIDE, and tiled 8-bit RGB TIFFs in a codec
      libtiff decodes;
    * tifffile: OME-TIFF, QPTIFF, SubIFD or series pyramids, 16-bit/float/multichannel,
      JPEG 2000 or other imagecodecs-only tiles, plain single-page and multi-page TIFFs
      (pages of one shape become planes of a stack);
    * DICOM WSI: wsidicom when it can read the instance(s), else pydicom;
    * plain images (PNG, JPEG, BMP, GIF, WebP, JPEG 2000) with Pillow/imagecodecs, a folder
      of images (a stack, one plane per file, sorted by name), and numpy/dask arrays
      shaped ``(h, w)``, ``(h, w, c)`` with ``c`` in 1..4, ``(planes, h, w)`` or
      ``(planes, h, w, c)``.

    Every file is validated first (TIFF structure and tile offsets), so a truncated or corrupt
    file raises :class:`~tileuq.errors.SlideError` naming the file and the reason instead of
    crashing a C library.

    Parameters
    ----------
    source
        Path to a file or folder, or an array.
    mpp
        Micrometres per level-0 pixel, ``x`` and ``y`` or one value for both.  When given it
        **wins over** the file's own value (use it to correct a wrong header or to give one
        that is missing); ``properties["tileuq.mpp-source"]`` records ``"argument"`` or
        ``"file"``.
    backend
        Force one of ``"openslide"``, ``"tifffile"``, ``"dicom"``, ``"image"`` (mainly for
        tests and comparisons).  Default: chosen by content.

    Returns
    -------
    Slide
        Use it as a context manager or call :meth:`Slide.close`.

    Raises
    ------
    SlideError
        The source does not exist, is empty, truncated, corrupt, not an image, or uses a
        compression whose decoder is not installed (the message names the package).
    """
    override = _check_mpp(mpp)
    if backend is not None and backend not in BACKENDS:
        raise SlideError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if _is_array(source):
        from tileuq.slide._array import ArraySlide

        slide: Slide = ArraySlide(source)
    else:
        path = Path(os.fspath(source)).expanduser()
        slide = _open_path(path, backend)
    props = dict(slide.properties)
    props["tileuq.mpp-source"] = "file" if slide.mpp is not None else "unknown"
    if override is not None:
        slide.mpp = override
        props["tileuq.mpp-source"] = "argument"
    slide.properties = props
    return slide


def _is_array(source: Any) -> bool:
    if isinstance(source, np.ndarray):
        return True
    return type(source).__module__.startswith("dask") and hasattr(source, "compute")


def _check_mpp(mpp: float | tuple[float, float] | None) -> tuple[float, float] | None:
    if mpp is None:
        return None
    try:
        pair = (float(mpp), float(mpp)) if np.isscalar(mpp) else tuple(float(v) for v in mpp)  # type: ignore[union-attr, arg-type]
    except (TypeError, ValueError) as exc:
        raise SlideError(f"mpp={mpp!r}: expected a number or an (x, y) pair of numbers") from exc
    if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
        raise SlideError(f"mpp={mpp!r}: expected positive finite micrometres per pixel")
    return (pair[0], pair[1])


def _open_path(path: Path, backend: str | None) -> Slide:
    if not path.exists():
        raise SlideError(f"{path}: no such file or folder")
    if path.is_dir():
        return _open_dir(path, backend)
    kind = sniff(path)
    if backend is not None:
        return _forced(path, kind, backend)
    if kind == "tiff":
        return _open_tiff(path, backend)
    if kind == "dicom":
        from tileuq.slide._dicom import open_dicom

        return open_dicom(path)
    if kind in PLAIN_KINDS:
        if kind == "jpeg" and openslide_vendor(path) == "mirax":
            return _openslide(path)
        from tileuq.slide._image import ImageSlide

        return ImageSlide(path)
    if openslide_vendor(path) in OPENSLIDE_OTHER_VENDORS:
        return _openslide(path)
    expected = _EXPECTED.get(path.suffix.lower())
    hint = f"; the name suggests {expected}, but the content is not" if expected else ""
    if kind == "text":
        raise SlideError(f"{path}: not an image or slide: it is a text file{hint}")
    raise SlideError(
        f"{path}: not a recognised slide or image format (starts with bytes "
        f"{describe_head(path)}){hint}"
    )


def _forced(path: Path, kind: str, backend: str) -> Slide:
    """Open with the backend the caller named, if it can read this kind of file."""
    if backend == "openslide":
        if kind == "tiff":
            _tiff_validated(path).close()
        return _openslide(path)
    if backend == "tifffile" and kind == "tiff":
        return _open_tiff(path, backend)
    if backend == "dicom" and kind == "dicom":
        from tileuq.slide._dicom import open_dicom

        return open_dicom(path)
    if backend == "image" and (kind in PLAIN_KINDS or kind == "tiff"):
        from tileuq.slide._image import ImageSlide

        return ImageSlide(path)
    raise SlideError(f"{path}: backend={backend!r} cannot read this file (its content is {kind})")


def _openslide(path: Path) -> Slide:
    from tileuq.slide._openslide import OpenSlideSlide

    return OpenSlideSlide(path)


def _tiff_validated(path: Path) -> Any:
    from tileuq.slide._tiffio import open_tiff

    return open_tiff(path)


def _open_tiff(path: Path, backend: str | None) -> Slide:
    tif = _tiff_validated(path)
    try:
        use_openslide = backend != "tifffile" and prefers_openslide(tif, path)
    except Exception:
        tif.close()
        raise
    if use_openslide:
        tif.close()
        return _openslide(path)
    from tileuq.slide._tiff import TiffSlide

    return TiffSlide(path, tif)


def prefers_openslide(tif: Any, path: Path) -> bool:
    """Whether OpenSlide should read this (already validated) TIFF rather than tifffile."""
    if tif.is_ome or tif.is_qpi:
        return False
    vendor = openslide_vendor(path)
    if vendor in OPENSLIDE_TIFF_VENDORS:
        return True
    if vendor != "generic-tiff":
        return False
    page = tif.pages[0]
    return bool(
        page.is_tiled
        and int(page.photometric) in (2, 6)  # RGB, YCbCr
        and int(page.bitspersample) == 8
        and int(page.compression) in OPENSLIDE_GENERIC_CODECS
        and not page.subifds
        and sum(p.shape == page.shape for p in tif.pages) == 1  # a stack goes to tifffile
    )


def _open_dir(path: Path, backend: str | None) -> Slide:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    kinds = {}
    for f in files:
        try:
            kinds[f] = sniff(f)
        except SlideError:
            continue
    if backend in ("openslide", "tifffile"):
        raise SlideError(f"{path}: backend={backend!r} cannot read a folder")
    if backend in (None, "dicom") and any(k == "dicom" for k in kinds.values()):
        from tileuq.slide._dicom import open_dicom

        return open_dicom(path)
    images = [f for f, k in kinds.items() if k in PLAIN_KINDS or k == "tiff"]
    if not images:
        raise SlideError(
            f"{path}: the folder contains no DICOM files and no images "
            f"({len(files)} file(s) looked at)"
        )
    from tileuq.slide._image import FolderStack

    return FolderStack(path, images)
