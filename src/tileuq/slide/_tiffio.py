"""Low-level TIFF access with tifffile: validated opening and tile/strip-wise region reads.

Opening parses every IFD and checks that all tile/strip data lies inside the file, so a
truncated or corrupt TIFF fails here with a clear :class:`SlideError` before any C library
(OpenSlide, libtiff) sees it.  Region reads decode only the tiles or strips that intersect the
region, reading bytes under the file lock and decoding outside it (thread-safe).
"""

from __future__ import annotations

import logging
import math
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.errors import SlideError

# compression code -> (readable name, package that decodes it)
_CODECS: dict[int, tuple[str, str]] = {
    5: ("LZW", "imagecodecs"),
    6: ("old-style JPEG", "imagecodecs"),
    7: ("JPEG", "imagecodecs"),
    8: ("Deflate", "imagecodecs"),
    32946: ("Deflate", "imagecodecs"),
    33003: ("Aperio JPEG 2000 (YCbCr)", "imagecodecs"),
    33004: ("JPEG 2000", "imagecodecs"),
    33005: ("Aperio JPEG 2000 (RGB)", "imagecodecs"),
    34712: ("JPEG 2000", "imagecodecs"),
    34887: ("LERC", "imagecodecs"),
    34892: ("lossy JPEG", "imagecodecs"),
    34925: ("LZMA", "imagecodecs"),
    34933: ("PNG", "imagecodecs"),
    34934: ("JPEG XR", "imagecodecs"),
    22610: ("JPEG XR", "imagecodecs"),
    50000: ("Zstandard", "imagecodecs"),
    50001: ("WebP", "imagecodecs"),
    50002: ("JPEG XL", "imagecodecs"),
}


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _collect_tifffile_warnings() -> Iterator[list[str]]:
    log = logging.getLogger("tifffile")
    handler = _LogCollector()
    log.addHandler(handler)
    old = log.propagate
    log.propagate = False
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
        log.propagate = old


def compression_name(code: int) -> str:
    """Readable name of a TIFF compression code."""
    if code in _CODECS:
        return _CODECS[code][0]
    try:
        import tifffile

        return str(tifffile.COMPRESSION(code).name)
    except Exception:
        return f"compression {code}"


def open_tiff(path: Path) -> Any:
    """Open ``path`` with tifffile, parse all IFDs and validate the data offsets.

    Returns
    -------
    tifffile.TiffFile
        With a reentrant file lock set (safe for concurrent region reads).

    Raises
    ------
    SlideError
        Not a TIFF, truncated, or corrupt.
    """
    import tifffile

    with _collect_tifffile_warnings() as warnings:
        try:
            tif = tifffile.TiffFile(str(path))
        except tifffile.TiffFileError as exc:
            raise SlideError(f"{path}: not a readable TIFF file ({exc})") from exc
        except (OSError, ValueError, struct.error, IndexError, KeyError) as exc:
            raise SlideError(f"{path}: corrupt TIFF header ({exc})") from exc
        try:
            n_pages = len(tif.pages)
        except Exception as exc:
            tif.close()
            raise SlideError(f"{path}: corrupt TIFF directory ({exc})") from exc
    size = tif.filehandle.size
    bad = [m for m in warnings if "offset" in m.lower() or "truncat" in m.lower()]
    if n_pages == 0 or bad:
        tif.close()
        first = _first_ifd_offset(path)
        if first is not None and first >= size:
            detail = (
                f"the first image directory is at byte {first}, beyond the end of the file; "
                "the file is truncated"
            )
        elif any(int(n) >= size for m in bad for n in re.findall(r"\b\d+\b", m.split(">")[-1])):
            detail = (
                "an image directory or its data points beyond the end of the file; the file "
                f"is truncated ({'; '.join(m.split('>')[-1].strip() for m in bad)})"
            )
        else:
            detail = "; ".join(m.split(">")[-1].strip() for m in bad) or "no image directory"
        raise SlideError(f"{path}: truncated or corrupt TIFF ({size} bytes): {detail}")
    try:
        check_segments(tif, path)
    except SlideError:
        tif.close()
        raise
    tif.filehandle.set_lock(True)
    return tif


def _first_ifd_offset(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    order = "<" if head[:2] == b"II" else ">"
    if len(head) >= 8 and head[2:4] in (b"*\x00", b"\x00*"):
        return int(struct.unpack(order + "I", head[4:8])[0])
    if len(head) >= 16:
        return int(struct.unpack(order + "Q", head[8:16])[0])
    return None


def iter_all_pages(tif: Any) -> Iterator[Any]:
    """Every page of ``tif``: main IFDs and the pages of every series level (SubIFDs)."""
    seen: set[int] = set()
    for page in tif.pages:
        seen.add(page.offset)
        yield page
    for series in tif.series:
        for level in series.levels:
            for page in level.pages:
                if page is not None and page.offset not in seen:
                    seen.add(page.offset)
                    yield page


def check_segments(tif: Any, path: Path) -> None:
    """Raise :class:`SlideError` when any tile/strip of any page ends beyond the file."""
    size = tif.filehandle.size
    for page in iter_all_pages(tif):
        offs = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        if offs.size == 0:
            continue
        n = min(offs.size, counts.size)
        ends = (offs[:n] + counts[:n])[counts[:n] > 0]
        if ends.size and int(ends.max()) > size:
            missing = int((ends > size).sum())
            raise SlideError(
                f"{path}: truncated file: {missing} of {n} tiles/strips of image "
                f"{page.index} ({page.shape}) end beyond the end of the file "
                f"(needs {int(ends.max())} bytes, the file has {size})"
            )


def check_codec(page: Any, path: Path) -> None:
    """Raise :class:`SlideError` when the decoder for ``page``'s compression is missing."""
    import tifffile

    code = int(page.compression)
    if code == 1:
        return
    try:
        tifffile.TIFF.DECOMPRESSORS[code]
    except KeyError as exc:
        name, package = _CODECS.get(code, (compression_name(code), "imagecodecs"))
        raise SlideError(
            f"{path}: image data uses {name} compression (TIFF compression {code}), which "
            f"needs the {package!r} package with that codec: pip install {package} ({exc})"
        ) from exc


def segment_size(page: Any) -> tuple[int, int]:
    """Native ``(w, h)`` tile size; for striped pages full-width bands of >= 256 rows."""
    kf = page.keyframe
    if kf.is_tiled:
        return (int(kf.tilewidth), int(kf.tilelength))
    rps = max(1, min(int(kf.rowsperstrip or kf.imagelength), int(kf.imagelength)))
    return (int(kf.imagewidth), min(int(kf.imagelength), rps * math.ceil(256 / rps)))


def read_page_region(page: Any, x: int, y: int, w: int, h: int, path: Path) -> np.ndarray:
    """Decode the region ``(x, y, w, h)`` of ``page`` to ``(h, w, samples)`` (native dtype).

    Only tiles/strips intersecting the region are read.  Missing (sparse) tiles are filled
    with the page's ``nodata`` value.
    """
    kf = page.keyframe
    H, W = int(kf.imagelength), int(kf.imagewidth)
    spp = int(kf.samplesperpixel)
    nsep = spp if (kf.planarconfig == 2 and spp > 1) else 1
    if kf.is_tiled:
        th, tw = int(kf.tilelength), int(kf.tilewidth)
        nrow, ncol = math.ceil(H / th), math.ceil(W / tw)
        if kf.imagedepth > 1:
            raise SlideError(f"{path}: volumetric (3-D tiled) TIFF pages are not supported")
    else:
        th, tw = max(1, min(int(kf.rowsperstrip or H), H)), W
        nrow, ncol = math.ceil(H / th), 1
    rows = range(y // th, (y + h - 1) // th + 1)
    cols = range(x // tw, (x + w - 1) // tw + 1)
    indices = [s * nrow * ncol + r * ncol + c for s in range(nsep) for r in rows for c in cols]
    offsets, counts = page.dataoffsets, page.databytecounts
    out = np.full((h, w, spp), kf.nodata, dtype=kf.dtype)
    decode = kf.decode
    kwargs: dict[str, Any] = {"_fullsize": bool(kf.is_tiled)}
    if int(kf.compression) in (6, 7, 34892, 33007):
        kwargs["jpegtables"] = page.jpegtables
        kwargs["jpegheader"] = kf.jpegheader
    fh = page.parent.filehandle
    segments = fh.read_segments(
        [offsets[i] for i in indices],
        [counts[i] for i in indices],
        indices=indices,
        lock=fh.lock,
        sort=True,
        flat=True,
    )
    for data, index in segments:
        try:
            seg, (s, _d, sy, sx, _), _shape = decode(data, index, **kwargs)
        except Exception as exc:
            code = int(kf.compression)
            name, package = _CODECS.get(code, (compression_name(code), "imagecodecs"))
            raise SlideError(
                f"{path}: cannot decode {name} tile/strip {index} of image {page.index} "
                f"({type(exc).__name__}: {exc}); the file may be corrupt, or {package!r} "
                "lacks this codec"
            ) from exc
        if seg is None:
            continue
        seg = seg[0]  # depth 1: (rows, cols, contiguous samples)
        y0, x0 = max(sy, y), max(sx, x)
        y1, x1 = min(sy + seg.shape[0], y + h), min(sx + seg.shape[1], x + w)
        if y1 <= y0 or x1 <= x0:
            continue
        ns = seg.shape[2]
        out[y0 - y : y1 - y, x0 - x : x1 - x, s : s + ns] = seg[
            y0 - sy : y1 - sy, x0 - sx : x1 - sx
        ]
    return out
