"""One DICOM WSI instance read with pydicom: frame index, frame geometry and frame decoding.

Frames are located once (the Basic Offset Table, or one fragment per frame) and then read
with one seek each, so nothing but the frames a region touches is ever read.
"""

from __future__ import annotations

import math
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.errors import SlideError

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
JPEG_LOSSLESS = {"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
JPEG_LS = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
JPEG_2000 = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"} | {
    f"1.2.840.10008.1.2.4.{n}" for n in (201, 202, 203)
}
JPEG_XL = {f"1.2.840.10008.1.2.4.{n}" for n in (110, 111, 112)}
_ITEM, _SEQ_END = 0xE000FFFE, 0xE0DDFFFE


def read_header(path: Path) -> Any:
    """Read a DICOM file's data set without its pixel data (deferred)."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # over-long values in real files are common
            return pydicom.dcmread(str(path), defer_size=1024)
    except Exception as exc:
        raise SlideError(
            f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})"
        ) from exc


class DicomInstance:
    """Geometry and frames of one VL Whole Slide Microscopy instance (TILED_FULL or SPARSE).

    For TILED_FULL, frames are row-major as the standard says.  A file that does not state
    ``DimensionOrganizationType`` and has no per-frame positions is checked both ways: the
    order whose neighbouring frames continue each other across their shared edge wins
    (some writers store such files column-major); ``frame_order`` records the result.
    """

    def __init__(self, path: Path, ds: Any) -> None:
        self.path = path
        self.ds = ds
        self.syntax = str(ds.file_meta.TransferSyntaxUID)
        self.tile_w, self.tile_h = int(ds.Columns), int(ds.Rows)
        self.width = int(ds.get("TotalPixelMatrixColumns", self.tile_w))
        self.height = int(ds.get("TotalPixelMatrixRows", self.tile_h))
        self.n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        self.spp = int(ds.SamplesPerPixel)
        self.photometric = str(ds.get("PhotometricInterpretation", "RGB"))
        self.cols = math.ceil(self.width / self.tile_w)
        self.rows = math.ceil(self.height / self.tile_h)
        bits = int(ds.get("BitsAllocated", 8))
        if bits not in (8, 16):
            raise SlideError(f"{path}: {bits}-bit DICOM pixel data is not supported")
        self.dtype: np.dtype[Any] = np.dtype(f"uint{bits}")
        self._lock = threading.Lock()
        self._fh = open(path, "rb")
        self._parts = self._index_frames()
        self.planes, self.frame_order, self._map = self._frame_map()

    # ------------------------------------------------------------------ frame index
    def _index_frames(self) -> list[list[tuple[int, int]]]:
        """``(file offset, length)`` of the fragment(s) of every frame."""
        elem = self.ds.get_item(0x7FE00010, keep_deferred=True)
        if elem is None or getattr(elem, "value_tell", None) is None:
            raise SlideError(f"{self.path}: the DICOM file has no pixel data")
        start = int(elem.value_tell)
        size = self.path.stat().st_size
        if self.syntax in NATIVE:
            n = self.tile_w * self.tile_h * self.spp * self.dtype.itemsize
            frames = [[(start + i * n, n)] for i in range(self.n_frames)]
        else:
            frames = self._encapsulated(start, size)
        end = max((o + n for parts in frames for o, n in parts), default=0)
        if len(frames) < self.n_frames or end > size:
            raise SlideError(
                f"{self.path}: truncated DICOM file: {self.n_frames} frames expected, the pixel "
                f"data needs {end} bytes and the file has {size}"
            )
        return frames

    def _encapsulated(self, pos: int, size: int) -> list[list[tuple[int, int]]]:
        fh = self._fh
        items: list[tuple[int, int]] = []
        ended = False
        while pos + 8 <= size:
            fh.seek(pos)
            tag, length = struct.unpack("<II", fh.read(8))
            if tag != _ITEM:
                ended = tag == _SEQ_END
                break
            items.append((pos + 8, length))
            pos += 8 + length
        if not ended:
            raise SlideError(
                f"{self.path}: truncated DICOM file: the encapsulated pixel data stops at byte "
                f"{min(pos, size)} of {size} without its end marker ({len(items)} items read, "
                f"{self.n_frames} frames expected)"
            )
        if not items:
            raise SlideError(f"{self.path}: no encapsulated frames found in the pixel data")
        (bot_pos, bot_len), fragments = items[0], items[1:]
        if len(fragments) == self.n_frames:
            return [[f] for f in fragments]
        if self.n_frames == 1:
            return [fragments]
        if bot_len >= 4 * self.n_frames and fragments:
            fh.seek(bot_pos)
            offsets = struct.unpack(f"<{self.n_frames}I", fh.read(4 * self.n_frames))
            first = fragments[0][0] - 8
            starts = [first + o for o in offsets]
            stops = [*starts[1:], pos]
            return [
                [(p, n) for p, n in fragments if s <= p - 8 < e]
                for s, e in zip(starts, stops, strict=True)
            ]
        raise SlideError(
            f"{self.path}: {len(fragments)} fragments for {self.n_frames} frames and no offset "
            "table: cannot locate the frames"
        )

    def _frame_map(self) -> tuple[int, str, dict[tuple[int, int, int], int]]:
        ds = self.ds
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        org = str(ds.get("DimensionOrganizationType", ""))
        if org == "TILED_SPARSE" or (per_frame and not org):
            return self._sparse_map(per_frame)
        planes = int(ds.get("TotalPixelMatrixFocalPlanes", 1) or 1)
        per_plane = self.rows * self.cols
        planes = max(1, min(planes, self.n_frames // max(per_plane, 1)))
        order = "row-major"
        if not org and self.rows > 1 and self.cols > 1:
            order = self._infer_order()
        mapping = {}
        for z in range(planes):
            for r in range(self.rows):
                for c in range(self.cols):
                    i = r * self.cols + c if order == "row-major" else c * self.rows + r
                    mapping[(z, r, c)] = z * per_plane + i
        return planes, order, mapping

    def _sparse_map(self, per_frame: Any) -> tuple[int, str, dict[tuple[int, int, int], int]]:
        zs: list[float] = []
        pos = []
        for i, item in enumerate(per_frame or []):
            try:
                p = item.PlanePositionSlideSequence[0]
                col = int(p.ColumnPositionInTotalImagePixelMatrix) - 1
                row = int(p.RowPositionInTotalImagePixelMatrix) - 1
                z = float(p.get("ZOffsetInSlideCoordinateSystem", 0.0) or 0.0)
            except (AttributeError, IndexError, TypeError, ValueError) as exc:
                raise SlideError(f"{self.path}: frame {i} has no valid plane position") from exc
            pos.append((z, row // self.tile_h, col // self.tile_w, i))
            zs.append(z)
        zlist = sorted(set(zs))
        mapping = {(zlist.index(z), r, c): i for z, r, c, i in pos}
        return max(1, len(zlist)), "sparse", mapping

    def _infer_order(self) -> str:
        """Row- or column-major: the one whose neighbouring frames share continuous edges."""
        scores = {"row-major": [], "column-major": []}  # type: dict[str, list[float]]
        for i in range(min(self.n_frames - 1, 12)):
            a, b = self.decode(i), self.decode(i + 1)
            if (i + 1) % self.cols:  # row-major: b is right of a
                scores["row-major"].append(_edge(a[:, -1], b[:, 0]))
            if (i + 1) % self.rows:  # column-major: b is below a
                scores["column-major"].append(_edge(a[-1], b[0]))
        row = float(np.median(scores["row-major"])) if scores["row-major"] else math.inf
        col = float(np.median(scores["column-major"])) if scores["column-major"] else math.inf
        return "column-major" if col < 0.5 * row else "row-major"

    # ------------------------------------------------------------------ frames
    def frame_bytes(self, index: int) -> bytes:
        """Return the encoded bytes of frame ``index``."""
        parts = self._parts[index]
        with self._lock:
            out = b""
            for pos, n in parts:
                self._fh.seek(pos)
                out += self._fh.read(n)
        return out

    def decode(self, index: int) -> np.ndarray:
        """Decode frame ``index`` to ``(tile_h, tile_w, spp)`` (RGB for colour JPEGs)."""
        data = self.frame_bytes(index)
        try:
            arr = _decode(data, self)
        except SlideError:
            raise
        except Exception as exc:
            raise SlideError(
                f"{self.path}: cannot decode frame {index} ({_syntax_name(self.syntax)}: "
                f"{type(exc).__name__}: {exc}); the file may be corrupt, or 'imagecodecs' "
                "lacks this codec"
            ) from exc
        arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
        if arr.shape[:2] != (self.tile_h, self.tile_w):
            out = np.zeros((self.tile_h, self.tile_w, arr.shape[2]), arr.dtype)
            h, w = min(arr.shape[0], self.tile_h), min(arr.shape[1], self.tile_w)
            out[:h, :w] = arr[:h, :w]
            arr = out
        if self.photometric == "MONOCHROME1":
            arr = np.iinfo(arr.dtype).max - arr
        return arr

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


def _edge(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _syntax_name(uid: str) -> str:
    for name, group in (
        ("JPEG", JPEG | JPEG_LOSSLESS),
        ("JPEG-LS", JPEG_LS),
        ("JPEG 2000", JPEG_2000),
        ("JPEG XL", JPEG_XL),
    ):
        if uid in group:
            return f"{name} transfer syntax {uid}"
    return f"transfer syntax {uid}"


def _decode(data: bytes, inst: DicomInstance) -> np.ndarray:
    syntax = inst.syntax
    if syntax in NATIVE:
        return np.frombuffer(data, dtype=inst.dtype).reshape(inst.tile_h, inst.tile_w, inst.spp)
    try:
        import imagecodecs
    except ImportError as exc:
        raise SlideError(
            f"{inst.path}: decoding {_syntax_name(syntax)} needs the 'imagecodecs' package: "
            "pip install imagecodecs"
        ) from exc
    if syntax in JPEG:
        if inst.photometric == "RGB" and b"JFIF" not in data[:64] and b"Adobe" not in data[:256]:
            return np.asarray(imagecodecs.jpeg8_decode(data, colorspace="RGB", outcolorspace="RGB"))
        return np.asarray(imagecodecs.jpeg8_decode(data))
    if syntax in JPEG_LOSSLESS:
        return np.asarray(imagecodecs.ljpeg_decode(data))
    if syntax in JPEG_LS:
        return np.asarray(imagecodecs.jpegls_decode(data))
    if syntax in JPEG_2000:
        return np.asarray(imagecodecs.jpeg2k_decode(data))
    if syntax in JPEG_XL:
        return np.asarray(imagecodecs.jpegxl_decode(data))
    raise SlideError(
        f"{inst.path}: {_syntax_name(syntax)} is not supported by tileuq's DICOM reader "
        "(supported: native, JPEG, JPEG lossless, JPEG-LS, JPEG 2000/HTJ2K, JPEG XL)"
    )
