"""DICOM WSI backend: wsidicom where it can read the instance(s), else pydicom.

A single file or a folder of instances is accepted.  With pydicom, ``VOLUME`` instances
(or instances without ``ImageType``) become the pyramid levels, largest first; ``LABEL`` and
``OVERVIEW`` instances the ``label`` and ``macro`` associated images.  Focal planes of
TILED_FULL/TILED_SPARSE instances become :attr:`Slide.planes`; only the first optical path is
read.

``mpp`` comes from ``SharedFunctionalGroupsSequence/PixelMeasuresSequence/PixelSpacing``
(mm).  Without it, ``ImagedVolumeWidth/Height`` divided by the total pixel matrix is used
only when x and y agree within 2 % (otherwise the values are placeholders and mpp is None).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.errors import SlideError
from tileuq.slide._dicom_frames import WSI_SOP_CLASS, DicomInstance, read_header
from tileuq.slide._openslide import LazyImages
from tileuq.slide._render import Renderer, make_renderer
from tileuq.slide.base import Slide

_RGB = Renderer("rgb")


def open_dicom(path: Path) -> Slide:
    """Open a DICOM WSI file or folder: wsidicom first, pydicom when wsidicom cannot."""
    try:
        return WsiDicomSlide(path)
    except SlideError as exc:
        first = exc
    try:
        with warnings.catch_warnings():  # over-long values etc. in real files are common
            warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
            return PydicomSlide(path)
    except SlideError as exc:
        raise SlideError(f"{exc} (wsidicom: {first})") from exc


def _image_type(ds: Any) -> str:
    it = ds.get("ImageType")
    return str(it[2]).upper() if it is not None and len(it) > 2 else "VOLUME"


class WsiDicomSlide(Slide):
    """DICOM WSI read with wsidicom (standard TILED_FULL/TILED_SPARSE instances)."""

    def __init__(self, path: Path) -> None:
        try:
            from wsidicom import WsiDicom
        except ImportError as exc:
            raise SlideError(f"{path}: wsidicom is not installed") from exc
        self.path = path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._wsi = WsiDicom.open(str(path))
            levels = list(self._wsi.levels)
        except Exception as exc:
            raise SlideError(
                f"{path}: wsidicom cannot read it ({type(exc).__name__}: {exc})"
            ) from exc
        self._levels = levels
        self.vendor = "dicom"
        self.level_dimensions = tuple((int(lv.size.width), int(lv.size.height)) for lv in levels)
        w0, h0 = self.level_dimensions[0]
        self.level_downsamples = tuple((w0 / w + h0 / h) / 2 for w, h in self.level_dimensions)
        self.level_tile_sizes = tuple(
            (int(lv.tile_size.width), int(lv.tile_size.height)) for lv in levels
        )
        self._z = list(levels[0].focal_planes) or [None]
        self.planes = len(self._z)
        mpp = self._wsi.mpp
        self.mpp = (float(mpp.width), float(mpp.height)) if mpp is not None else None
        self.properties = {"dicom.reader": "wsidicom", "dicom.focal-planes": str(self._z)}
        names = []
        if self._wsi.labels:
            names.append("label")
        if self._wsi.overviews:
            names.append("macro")
        self._assoc = LazyImages(names, self._load_associated)

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]:
        """Label and overview (as ``macro``) images, RGB uint8."""
        return self._assoc

    def _load_associated(self, name: str) -> np.ndarray:
        img = self._wsi.read_label() if name == "label" else self._wsi.read_overview()
        return _RGB(np.asarray(img.convert("RGB")))

    def _read_level(self, level: int, x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
        lv = self._levels[level]
        try:
            a = self._wsi.read_region((x, y), lv.level, (w, h), z=self._z[plane], as_array=True)
        except Exception as exc:
            raise SlideError(f"{self.path}: wsidicom failed to read level {level} ({exc})") from exc
        a = np.asarray(a)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.shape[2] == 4:
            return Renderer("rgba")(a)
        return np.ascontiguousarray(a[:, :, :3], dtype=np.uint8)

    def close(self) -> None:
        """Close the DICOM files."""
        self._wsi.close()


class PydicomSlide(Slide):
    """DICOM WSI read frame by frame with pydicom + imagecodecs (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        volumes: list[DicomInstance] = []
        assoc: dict[str, Path] = {}
        try:
            for f in files:
                if path.is_dir() and not _is_dicom(f):
                    continue
                ds = read_header(f)
                missing = [
                    k for k in ("Rows", "Columns", "SamplesPerPixel", "PixelData") if k not in ds
                ]
                if missing:
                    if path.is_dir():
                        continue
                    size = f.stat().st_size
                    raise SlideError(
                        f"{f}: incomplete DICOM data set ({size} bytes; missing "
                        f"{', '.join(missing)}): the file is truncated or not an image"
                    )
                if str(ds.get("SOPClassUID", "")) != WSI_SOP_CLASS and path.is_dir():
                    continue
                kind = _image_type(ds)
                if kind == "VOLUME":
                    volumes.append(DicomInstance(f, ds))
                elif kind in ("LABEL", "OVERVIEW") and kind not in assoc:
                    assoc["label" if kind == "LABEL" else "macro"] = f
        except SlideError:
            for inst in volumes:
                inst.close()
            raise
        if not volumes:
            raise SlideError(f"{path}: no DICOM whole-slide image (VOLUME) instance found")
        volumes.sort(key=lambda v: -v.width)
        levels: list[DicomInstance] = []
        for v in volumes:  # one instance per size (first optical path / focal set)
            if not levels or v.width < levels[-1].width:
                levels.append(v)
            else:
                v.close()
        self._levels = levels
        base = levels[0]
        self.vendor = "dicom"
        self.planes = base.planes
        self.level_dimensions = tuple((v.width, v.height) for v in levels)
        w0, h0 = self.level_dimensions[0]
        self.level_downsamples = tuple((w0 / w + h0 / h) / 2 for w, h in self.level_dimensions)
        self.level_tile_sizes = tuple((v.tile_w, v.tile_h) for v in levels)
        self.mpp = _mpp(base.ds, base.width, base.height)
        self.objective_power = _objective(base.ds)
        hint = "rgb" if base.spp >= 3 else "gray"
        self._renderer = make_renderer(base.dtype, base.spp, hint, self._sample)
        self.properties = {
            "dicom.reader": "pydicom",
            "dicom.transfer-syntax": base.syntax,
            "dicom.frame-order": base.frame_order,
            "dicom.sop-instance-uid": str(base.ds.get("SOPInstanceUID", "")),
            "tileuq.render": json.dumps(self._renderer.describe()),
        }
        self._assoc_files = assoc
        self._assoc = LazyImages(sorted(assoc), self._load_associated)

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]:
        """Label and overview (as ``macro``) instances of a folder, RGB uint8."""
        return self._assoc

    def _load_associated(self, name: str) -> np.ndarray:
        f = self._assoc_files[name]
        inst = DicomInstance(f, read_header(f))
        try:
            img = _assemble(inst, 0, 0, inst.width, inst.height, 0)
        finally:
            inst.close()
        return make_renderer(img.dtype, img.shape[2], "rgb" if inst.spp >= 3 else "gray", img)(img)

    def _sample(self) -> np.ndarray:
        inst = self._levels[-1]
        w, h = min(inst.width, 2048), min(inst.height, 2048)
        return _assemble(inst, 0, 0, w, h, 0).reshape(-1, inst.spp)

    def _read_level(self, level: int, x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
        return self._renderer(_assemble(self._levels[level], x, y, w, h, plane))

    def close(self) -> None:
        """Close the instance files."""
        for inst in self._levels:
            inst.close()


def _assemble(inst: DicomInstance, x: int, y: int, w: int, h: int, plane: int) -> np.ndarray:
    """Raw region of one instance from its frames (missing sparse frames are white)."""
    fill = np.iinfo(inst.dtype).max if inst.spp >= 3 else 0
    out = np.full((h, w, inst.spp), fill, dtype=inst.dtype)
    tw, th = inst.tile_w, inst.tile_h
    for r in range(y // th, math.ceil((y + h) / th)):
        for c in range(x // tw, math.ceil((x + w) / tw)):
            idx = inst._map.get((plane, r, c))
            if idx is None:
                continue
            tile = inst.decode(idx)
            ty, tx = r * th, c * tw
            y0, y1 = max(ty, y), min(ty + th, y + h)
            x0, x1 = max(tx, x), min(tx + tw, x + w)
            out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[
                y0 - ty : y1 - ty, x0 - tx : x1 - tx, : inst.spp
            ]
    return out


def _is_dicom(f: Path) -> bool:
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _mpp(ds: Any, width: int, height: int) -> tuple[float, float] | None:
    try:
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        row_mm, col_mm = float(spacing[0]), float(spacing[1])
        if row_mm > 0 and col_mm > 0:
            return (col_mm * 1000.0, row_mm * 1000.0)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        pass
    try:
        mx = float(ds.ImagedVolumeWidth) * 1000.0 / width
        my = float(ds.ImagedVolumeHeight) * 1000.0 / height
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None
    if mx > 0 and my > 0 and abs(mx - my) <= 0.02 * max(mx, my):
        return (mx, my)
    return None


def _objective(ds: Any) -> float | None:
    try:
        v = float(ds.OpticalPathSequence[0].ObjectiveLensPower)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return v if v > 0 else None
