"""DICOM WSI: the real pathml instance (pydicom path) and conformant instances (wsidicom)."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from slide_files import pathml_frames, write_standard_dicom
from tileuq import SlideError, open_slide
from tileuq.slide._dicom import PydicomSlide, WsiDicomSlide

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def dcm(shared_data):
    return shared_data / "slides" / "pathml_small_HE_wsi.dcm"


@pytest.fixture(scope="module")
def mosaic(dcm):
    """The pathml image assembled independently: pydicom frames, column-major, cropped."""
    ds, frames = pathml_frames(dcm)
    assert (int(ds.Columns), int(ds.Rows), len(frames)) == (500, 500, 42)
    full = np.zeros((3000, 3500, 3), np.uint8)
    for i, f in enumerate(frames):
        c, r = divmod(i, 6)  # 6 tile rows per column
        full[r * 500 : (r + 1) * 500, c * 500 : (c + 1) * 500] = imagecodecs.jpeg8_decode(f)
    return full[:2638, :3236]


@pytest.fixture(scope="module")
def standard(dcm, tmp_path_factory):
    return write_standard_dicom(dcm, tmp_path_factory.mktemp("dicom"))


def test_pathml_file_geometry_and_pixels(dcm, mosaic):
    with open_slide(dcm) as s:
        assert isinstance(s, PydicomSlide)  # wsidicom cannot read it (no ImageType etc.)
        assert s.vendor == "dicom"
        assert s.dimensions == (3236, 2638)  # TotalPixelMatrixColumns x Rows
        assert s.level_count == 1 and s.level_tile_sizes == ((500, 500),)
        assert s.planes == 1
        # ImagedVolumeWidth/Height are both 15 mm: 4.64 vs 5.69 µm/px, not a real pixel size
        assert s.mpp is None
        assert s.properties["dicom.frame-order"] == "column-major"
        rng = np.random.default_rng(1)
        for _ in range(8):
            x, y = int(rng.integers(0, 3000)), int(rng.integers(0, 2400))
            np.testing.assert_array_equal(
                s.read_region((x, y), 0, (300, 250)), mosaic[y : y + 250, x : x + 300]
            )
        edge = s.read_region((3100, 2500), 0, (300, 300))
        np.testing.assert_array_equal(edge[:138, :136], mosaic[2500:, 3100:])
        assert (edge[138:] == 255).all() and (edge[:, 136:] == 255).all()


def test_column_major_is_the_continuous_order(mosaic):
    """The geometry claim itself: frame edges continue in column-major order (not row-major)."""
    seams = np.abs(np.diff(mosaic.astype(np.float32), axis=1))[:, 499::500].mean()
    inside = np.abs(np.diff(mosaic.astype(np.float32), axis=1))[:, 250::500].mean()
    assert seams < 2 * inside


def test_mpp_override_for_dicom_without_pixel_spacing(dcm):
    with open_slide(dcm, mpp=0.5) as s:
        assert s.mpp == (0.5, 0.5)


def test_wsidicom_reads_conformant_folder(standard, mosaic):
    with open_slide(standard) as s:
        assert isinstance(s, WsiDicomSlide)
        assert s.level_dimensions == ((3236, 2638), (1618, 1319))
        assert s.level_downsamples == pytest.approx((1.0, 2.0))
        assert s.level_tile_sizes == ((500, 500), (500, 500))
        assert s.mpp == pytest.approx((0.5, 0.5))
        np.testing.assert_array_equal(s.read_region((0, 0), 0, (3236, 2638)), mosaic)
        lvl1 = s.read_region((0, 0), 1, (1618, 1319)).astype(int)
        ref = mosaic[:2638, :3236].reshape(1319, 2, 1618, 2, 3).mean((1, 3))
        assert np.abs(lvl1 - ref).mean() < 3  # JPEG re-encode tolerance


def test_pydicom_and_wsidicom_agree_on_folder_and_file(standard):
    with open_slide(standard) as w, PydicomSlide(standard) as p:
        assert p.level_dimensions == w.level_dimensions
        assert p.mpp == pytest.approx(w.mpp) and p.objective_power == 20
        assert p.properties["dicom.frame-order"] == "row-major"
        for level, loc, size in ((0, (450, 480), (700, 600)), (1, (0, 0), (1618, 1319))):
            np.testing.assert_array_equal(
                p.read_region(loc, level, size), w.read_region(loc, level, size)
            )
    with open_slide(standard / "level0.dcm") as single:
        assert single.level_count == 1 and single.dimensions == (3236, 2638)


def test_truncated_dicom(dcm, tmp_path):
    bad = tmp_path / "half.dcm"
    bad.write_bytes(dcm.read_bytes()[: dcm.stat().st_size // 2])
    with pytest.raises(SlideError, match=r"half\.dcm.*truncated"):
        open_slide(bad)
