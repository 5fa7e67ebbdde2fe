"""Small slide files written by the tests from real pixels (the sample slide, the DICOM file)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tifffile


def sample_pixels(sample_slide_path: Path, size=(1024, 768), at=(600, 1200)) -> np.ndarray:
    """A real H&E region of the bundled slide, read with openslide-python (RGB uint8)."""
    import openslide

    with openslide.OpenSlide(str(sample_slide_path)) as osr:
        return np.asarray(osr.read_region(at, 0, size).convert("RGB"))


def write_tiled_pyramid(
    path: Path, img: np.ndarray, compression, *, levels=3, tile=128, mpp=None, **kw
) -> Path:
    """Main-IFD pyramid, each level ``img[::2**k, ::2**k]``, level 1+ flagged reduced."""
    extra = {}
    if mpp is not None:
        extra = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tw:
        for k in range(levels):
            tw.write(
                img[:: 2**k, :: 2**k],
                tile=(tile, tile),
                compression=compression,
                subfiletype=0 if k == 0 else 1,
                **extra,
                **kw,
            )
    return path


def write_ome_subifds(path: Path, img: np.ndarray, *, size=0.25, unit="µm", levels=3) -> Path:
    """OME-TIFF with the reduced levels in SubIFDs (lossless zlib)."""
    opts = {"tile": (128, 128), "compression": "zlib"}
    photometric = "rgb" if img.ndim == 3 else "minisblack"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            img,
            subifds=levels - 1,
            photometric=photometric,
            metadata={
                "axes": "YXS" if img.ndim == 3 else "YX",
                "PhysicalSizeX": size,
                "PhysicalSizeXUnit": unit,
                "PhysicalSizeY": size,
                "PhysicalSizeYUnit": unit,
            },
            **opts,
        )
        for k in range(1, levels):
            tw.write(img[:: 2**k, :: 2**k], subfiletype=1, photometric=photometric, **opts)
    return path


def pathml_frames(dcm: Path) -> tuple[object, list[bytes]]:
    """The data set and encoded frames of the pathml DICOM file (as stored, column-major)."""
    import pydicom
    from pydicom.encaps import generate_frames

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(str(dcm))
    n = int(ds.NumberOfFrames)
    return ds, list(generate_frames(ds.PixelData, number_of_frames=n))


def write_standard_dicom(src: Path, folder: Path, *, with_level1=True) -> Path:
    """See :func:`_write_standard_dicom` (pydicom's value-length warnings silenced)."""
    with warnings.catch_warnings():  # the source's UIDs/names are longer than DICOM allows
        warnings.simplefilter("ignore")
        return _write_standard_dicom(src, folder, with_level1=with_level1)


def _write_standard_dicom(src: Path, folder: Path, *, with_level1=True) -> Path:
    """Rewrite the pathml file as conformant DICOM WSI instances that wsidicom reads.

    Level 0: the same JPEG frames reordered row-major (TILED_FULL), YBR_FULL_422 (the frames
    carry JFIF), 0.5 µm pixel spacing, an optical path.  Level 1 (optional): the level-0
    image decoded, 2x2-averaged and re-encoded as JPEG frames of the same size.
    """
    import imagecodecs
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.encaps import encapsulate
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    ds, frames = pathml_frames(src)
    rows, cols = 6, 7  # 2638 / 500 and 3236 / 500, rounded up
    folder.mkdir(parents=True, exist_ok=True)

    def seq(**attrs):
        item = Dataset()
        for k, v in attrs.items():
            setattr(item, k, v)
        return Sequence([item])

    def finish(d, frames_, width, height, spacing_mm, name):
        d.PixelData = encapsulate(frames_)
        d.NumberOfFrames = len(frames_)
        d.TotalPixelMatrixColumns, d.TotalPixelMatrixRows = width, height
        d.ImageType = ["DERIVED" if "1" in name else "ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        d.DimensionOrganizationType = "TILED_FULL"
        d.TotalPixelMatrixFocalPlanes = 1
        d.NumberOfOpticalPaths = 1
        d.PhotometricInterpretation = "YBR_FULL_422"
        pm = seq(PixelSpacing=[spacing_mm, spacing_mm], SliceThickness=0.001)
        d.SharedFunctionalGroupsSequence = seq(PixelMeasuresSequence=pm)
        illum = seq(
            CodeValue="111744", CodingSchemeDesignator="DCM", CodeMeaning="Brightfield illumination"
        )
        color = seq(
            CodeValue="414298005", CodingSchemeDesignator="SCT", CodeMeaning="Full Spectrum"
        )
        d.OpticalPathSequence = seq(
            OpticalPathIdentifier="1",
            IlluminationTypeCodeSequence=illum,
            IlluminationColorCodeSequence=color,
            ObjectiveLensPower=20,
        )
        d.ImagedVolumeWidth, d.ImagedVolumeHeight = width * spacing_mm, height * spacing_mm
        d.SOPInstanceUID = generate_uid()
        d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
        out = folder / name
        d.save_as(out, enforce_file_format=True)
        return out

    ds.FrameOfReferenceUID = generate_uid()
    ds.ContainerIdentifier = "SLIDE1"
    level0 = [frames[c * rows + r] for r in range(rows) for c in range(cols)]
    finish(ds, level0, 3236, 2638, 0.0005, "level0.dcm")
    if with_level1:
        full = np.zeros((rows * 500, cols * 500, 3), np.uint8)
        for i, f in enumerate(level0):
            r, c = divmod(i, cols)
            full[r * 500 : (r + 1) * 500, c * 500 : (c + 1) * 500] = imagecodecs.jpeg8_decode(f)
        w1, h1 = 3236 // 2, 2638 // 2
        half = (
            full[: h1 * 2, : w1 * 2].reshape(h1, 2, w1, 2, 3).mean((1, 3)).round().astype(np.uint8)
        )
        r1, c1 = -(-h1 // 500), -(-w1 // 500)
        pad = np.full((r1 * 500, c1 * 500, 3), 255, np.uint8)
        pad[:h1, :w1] = half
        tiles = [
            imagecodecs.jpeg8_encode(
                pad[r * 500 : (r + 1) * 500, c * 500 : (c + 1) * 500], level=95
            )
            for r in range(r1)
            for c in range(c1)
        ]
        d1 = pydicom.dcmread(folder / "level0.dcm")
        finish(d1, tiles, w1, h1, 0.001, "level1.dcm")
    return folder
