"""The bundled Aperio sample slide through the OpenSlide backend, checked against openslide."""

from __future__ import annotations

import numpy as np
import openslide
import pytest
from PIL import Image

from tileuq import SlideError, open_slide


def _reference(osr: openslide.OpenSlide, loc, level, size) -> np.ndarray:
    """openslide-python's read_region composited on white with Pillow (independent path)."""
    rgba = osr.read_region(loc, level, size)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))


@pytest.fixture(scope="module")
def slide(sample_slide_path):
    with open_slide(sample_slide_path) as s:
        yield s


def test_geometry_and_metadata(slide, sample_slide_path):
    assert slide.path == sample_slide_path
    assert slide.vendor == "aperio"
    assert slide.dimensions == (2220, 2967)
    assert slide.level_count == 1
    assert slide.level_dimensions == ((2220, 2967),)
    assert slide.level_downsamples == (1.0,)
    assert slide.level_tile_sizes == ((240, 240),)
    assert slide.mpp == pytest.approx((0.499, 0.499), abs=1e-4)
    assert slide.objective_power == 20
    assert slide.planes == 1
    assert slide.properties["tileuq.mpp-source"] == "file"
    d = slide.describe()
    assert d["dimensions"] == [2220, 2967] and d["backend"] == "OpenSlideSlide"
    assert len(slide.header_hash()) == 64


def test_associated_images(slide):
    assoc = slide.associated_images
    assert set(assoc) == {"label", "macro", "thumbnail"}
    for name, (w, h) in {
        "label": (387, 463),
        "macro": (1280, 431),
        "thumbnail": (574, 768),
    }.items():
        img = assoc[name]
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        assert img.std() > 5  # real picture, not a blank


def test_read_region_matches_openslide_pixel_exact(slide, sample_slide_path):
    rng = np.random.default_rng(0)
    w0, h0 = slide.dimensions
    osr = openslide.OpenSlide(str(sample_slide_path))
    regions = []
    for _ in range(14):  # inside
        w, h = (int(v) for v in rng.integers(1, 400, 2))
        regions.append(((int(rng.integers(0, w0 - w)), int(rng.integers(0, h0 - h))), (w, h)))
    regions += [  # running off every edge and corner, and wholly outside
        ((-50, -30), (200, 120)),
        ((w0 - 100, 500), (300, 64)),
        ((700, h0 - 20), (64, 100)),
        ((w0 - 10, h0 - 10), (50, 50)),
        ((-300, h0 - 5), (400, 40)),
        ((w0 + 10, h0 + 10), (32, 32)),
    ]
    for loc, size in regions:
        ours = slide.read_region(loc, 0, size)
        ref = _reference(osr, loc, 0, size)
        assert ours.shape == (size[1], size[0], 3) and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, ref, err_msg=f"region {loc} {size}")
    osr.close()
    # off-slide parts are white and on-slide parts are not
    edge = slide.read_region((-50, -30), 0, (200, 120))
    assert (edge[:30] == 255).all() and (edge[:, :50] == 255).all()
    assert edge[30:, 50:].std() > 1


def test_thumbnail_and_best_level(slide):
    th = slide.thumbnail(256)
    assert th.shape == (256, round(2220 * 256 / 2967), 3)
    assert slide.get_best_level_for_downsample(8.0) == 0


def test_bad_region_arguments(slide):
    with pytest.raises(SlideError, match="level 1 does not exist"):
        slide.read_region((0, 0), 1, (10, 10))
    with pytest.raises(SlideError, match="plane 1 does not exist"):
        slide.read_region((0, 0), 0, (10, 10), plane=1)
    with pytest.raises(SlideError, match="non-negative"):
        slide.read_region((0, 0), 0, (-1, 10))
    assert slide.read_region((0, 0), 0, (0, 5)).shape == (5, 0, 3)


def test_mpp_override_wins(sample_slide_path):
    with open_slide(sample_slide_path, mpp=0.25) as s:
        assert s.mpp == (0.25, 0.25)
        assert s.properties["tileuq.mpp-source"] == "argument"
    with open_slide(sample_slide_path, mpp=(0.3, 0.4)) as s:
        assert s.mpp == (0.3, 0.4)
    for bad in (0, -1.0, float("nan"), "x", (1.0,)):
        with pytest.raises(SlideError, match="mpp="):
            open_slide(sample_slide_path, mpp=bad)


def test_closed_slide_raises_slide_error(sample_slide_path):
    s = open_slide(sample_slide_path)
    s.close()
    s.close()  # twice is fine
    with pytest.raises(SlideError, match=r"CMU-1-Small-Region\.svs"):
        s.read_region((0, 0), 0, (10, 10))
