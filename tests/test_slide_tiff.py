"""TIFF flavours: pyramids written from the sample slide's pixels, stacks, 16-bit, QPTIFF."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from slide_files import sample_pixels, write_ome_subifds, write_tiled_pyramid
from tileuq import SlideError, open_slide
from tileuq.slide._openslide import OpenSlideSlide
from tileuq.slide._render import WINDOW_PERCENTILES
from tileuq.slide._tiff import TiffSlide


@pytest.fixture(scope="module")
def img(sample_slide_path):
    return sample_pixels(sample_slide_path)  # (768, 1024, 3) real H&E


def _close(a: np.ndarray, b: np.ndarray, mean: float, p99: float) -> None:
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.mean() < mean and np.percentile(d, 99) < p99, (d.mean(), np.percentile(d, 99))


def test_jpeg_pyramid_is_read_by_openslide_generic_tiff(img, tmp_path):
    path = write_tiled_pyramid(
        tmp_path / "jpeg.tif",
        img,
        "jpeg",
        mpp=0.5,
        photometric="rgb",
        compressionargs={"level": 90},
    )
    with open_slide(path) as s:
        assert isinstance(s, OpenSlideSlide) and s.vendor == "generic-tiff"
        assert s.level_dimensions == ((1024, 768), (512, 384), (256, 192))
        assert s.level_downsamples == pytest.approx((1, 2, 4))
        assert s.level_tile_sizes == ((128, 128),) * 3
        assert s.mpp == pytest.approx((0.5, 0.5))
        with tifffile.TiffFile(path) as tif:  # the same JPEG tiles decoded by imagecodecs
            decoded = [page.asarray() for page in tif.pages]
        for k in range(3):
            lw, lh = s.level_dimensions[k]
            ours = s.read_region((0, 0), k, (lw, lh))
            assert np.abs(ours.astype(int) - decoded[k]).max() <= 1
            _close(ours, img[:: 2**k, :: 2**k], mean=9, p99=45)  # JPEG with 4:2:0 chroma


def test_jpeg2000_pyramid_is_read_by_tifffile(img, tmp_path):
    path = write_tiled_pyramid(
        tmp_path / "j2k.tif",
        img,
        "jpeg2000",
        photometric="rgb",
        tile=256,
        compressionargs={"level": 80},
    )
    assert tifffile.TiffFile(path).pages[0].compression == 34712
    with open_slide(path) as s:
        assert isinstance(s, TiffSlide)  # libtiff inside OpenSlide cannot decode 34712
        assert s.level_dimensions == ((1024, 768), (512, 384), (256, 192))
        assert s.level_tile_sizes == ((256, 256),) * 3
        assert s.mpp is None  # no resolution tags: the slide opens with mpp unknown
        for k in range(3):
            lw, lh = s.level_dimensions[k]
            _close(s.read_region((0, 0), k, (lw, lh)), img[:: 2**k, :: 2**k], mean=1.5, p99=8)
        # a region crossing tile borders and the slide edge, at level 1
        r = s.read_region((900, 600), 1, (200, 150))
        _close(r[:84, :62], img[::2, ::2][300:, 450:], mean=1.5, p99=8)
        assert (r[84:] == 255).all() and (r[:, 62:] == 255).all()
    with open_slide(path, mpp=0.5) as s:
        assert s.mpp == (0.5, 0.5) and s.properties["tileuq.mpp-source"] == "argument"


@pytest.mark.parametrize(
    ("size", "unit", "mpp"), [(0.25, "µm", 0.25), (250.0, "nm", 0.25), (0.0005, "mm", 0.5)]
)
def test_ome_tiff_subifd_pyramid(img, tmp_path, size, unit, mpp):
    path = write_ome_subifds(tmp_path / "x.ome.tif", img, size=size, unit=unit)
    tif = tifffile.TiffFile(path)
    assert tif.is_ome and len(tif.pages) == 1 and len(tif.series[0].levels) == 3  # SubIFDs
    tif.close()
    with open_slide(path) as s:
        assert isinstance(s, TiffSlide) and s.vendor == "ome-tiff"
        assert s.level_dimensions == ((1024, 768), (512, 384), (256, 192))
        assert s.level_downsamples == pytest.approx((1, 2, 4))
        assert s.mpp == pytest.approx((mpp, mpp))
        np.testing.assert_array_equal(s.read_region((0, 0), 0, (1024, 768)), img)  # lossless
        np.testing.assert_array_equal(
            s.read_region((64, 32), 2, (100, 90)), img[::4, ::4][8:98, 16:116]
        )


def test_series_pyramid_of_16bit_grey(tmp_path):
    """A main-IFD pyramid OpenSlide cannot read (16-bit grey): levels from tifffile series."""
    base = (np.add.outer(np.arange(600), np.arange(800)) * 40).astype(np.uint16)
    path = write_tiled_pyramid(tmp_path / "g16pyr.tif", base, "zlib", photometric="minisblack")
    with open_slide(path) as s:
        assert isinstance(s, TiffSlide)
        assert s.level_dimensions == ((800, 600), (400, 300), (200, 150))
        r = s.read_region((0, 0), 1, (400, 300))
        assert (r[..., 0] == r[..., 1]).all() and (r[..., 1] == r[..., 2]).all()
        assert r[0, 0, 0] == 0 and r[-1, -1, 0] == 255  # windowed by robust percentiles
        assert (np.diff(r[0, :, 0].astype(int)) >= 0).all()  # monotone ramp stays monotone


def test_16bit_grayscale_tiff_opens_with_documented_window(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(20000, 3000, (300, 400)).clip(0, 65535).astype(np.uint16)
    path = tmp_path / "gray16.tif"
    tifffile.imwrite(path, data)
    with open_slide(path) as s:
        assert s.dimensions == (400, 300) and s.planes == 1
        out = s.read_region((0, 0), 0, (400, 300))
        render = json.loads(s.properties["tileuq.render"])
        assert render["mode"] == "gray"
    lo, hi = np.percentile(data, WINDOW_PERCENTILES)
    expected = np.clip(np.rint((data - lo) * 255.0 / (hi - lo)), 0, 255)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1
    assert (out[..., 0] == out[..., 2]).all()


def test_multipage_tiff_is_a_stack_of_planes(img, tmp_path):
    pages = np.stack([img, img[::-1], 255 - img])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, pages, photometric="rgb", tile=(256, 256))
    with open_slide(path) as s:
        assert isinstance(s, TiffSlide) and s.planes == 3
        assert s.level_tile_sizes == ((256, 256),)
        for p in range(3):
            np.testing.assert_array_equal(
                s.read_region((10, 20), 0, (300, 200), plane=p), pages[p, 20:220, 10:310]
            )
        with pytest.raises(SlideError, match="plane 3 does not exist"):
            s.read_region((0, 0), 0, (4, 4), plane=3)
        (level0,) = s.pyramid()
        assert level0.shape == (3, 768, 1024, 3)
        np.testing.assert_array_equal(
            level0[1, 100:200, 300:400].compute(), pages[1, 100:200, 300:400]
        )


def test_svs_through_tifffile_matches_openslide(sample_slide_path):
    with open_slide(sample_slide_path, backend="tifffile") as t, open_slide(sample_slide_path) as o:
        assert isinstance(t, TiffSlide) and t.vendor == "aperio"
        assert t.dimensions == o.dimensions and t.mpp == pytest.approx(o.mpp)
        assert set(t.associated_images) == {"label", "macro", "thumbnail"}
        a, b = t.read_region((300, 700), 0, (500, 400)), o.read_region((300, 700), 0, (500, 400))
        assert np.abs(a.astype(int) - b).max() <= 1


def test_missing_codec_names_compression_and_package(img, tmp_path, monkeypatch):
    path = write_tiled_pyramid(
        tmp_path / "needs_codec.tif", img, "jpeg2000", levels=1, photometric="rgb"
    )
    codec_table = type(tifffile.TIFF.DECOMPRESSORS)
    original = codec_table.__getitem__

    def without_j2k(self, key):
        if key == 34712:
            raise KeyError("<COMPRESSION.JPEG2000: 34712> requires the 'imagecodecs' package")
        return original(self, key)

    monkeypatch.setattr(codec_table, "__getitem__", without_j2k)
    with pytest.raises(SlideError, match=r"needs_codec\.tif.*JPEG 2000.*34712.*imagecodecs"):
        open_slide(path)


@pytest.mark.shared
def test_qptiff_multichannel_fluorescence(shared_data):
    path = shared_data / "slides" / "pathml_small_vectra_mIF.qptiff"
    with open_slide(path) as s:
        assert isinstance(s, TiffSlide) and s.vendor == "qptiff"
        assert s.dimensions == (1920, 1440) and s.level_count == 1 and s.planes == 1
        # XResolution 213260/2^32-1 per cm -> 0.4965 µm/px (the XML says a nominal 0.5)
        assert s.mpp == pytest.approx((0.49654, 0.49654), abs=1e-4)
        assert s.objective_power == 20
        assert json.loads(s.properties["tileuq.channels"]) == ["DAPI", "FITC", "Cy3"]
        render = json.loads(s.properties["tileuq.render"])
        assert render["mode"] == "composite"
        assert render["colors"] == ["#0000ff", "#00ff00", "#ffff00"]  # the file's <Color>s
        assoc = s.associated_images
        assert {k: assoc[k].shape for k in assoc} == {
            "thumbnail": (360, 480, 3),
            "macro": (398, 201, 3),
            "label": (120, 199, 3),
        }
        out = s.read_region((0, 0), 0, (1920, 1440)).astype(float)
    # independent composite: each channel windowed by its own percentiles, times its colour
    channels = tifffile.imread(path, series=0).astype(float)
    colors = np.array([[0, 0, 255], [0, 255, 0], [255, 255, 0]], float) / 255
    expected = np.zeros_like(out)
    for ch, col in zip(channels, colors, strict=True):
        lo, hi = np.percentile(ch, WINDOW_PERCENTILES)
        expected += np.clip(np.rint((ch - lo) * 255 / (hi - lo)), 0, 255)[..., None] * col
    assert np.abs(out - np.clip(np.rint(expected), 0, 255)).max() <= 1


def test_ome_multichannel_fluorescence_pyramid(tmp_path):
    """CYX uint16 OME-TIFF with SubIFDs: channels composited in the OME Channel colours."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 50, (3, 512, 640)).astype(np.uint16)
    data[0, 100:200, 100:200] += 4000  # a bright DAPI square, GFP square, Cy5 stripe
    data[1, 300:400, 300:400] += 3000
    data[2, 50:80, 500:600] += 2000
    blue, green, magenta = 0x0000FFFF, 0x00FF00FF, 0xFF00FFFF - (1 << 32)  # OME signed RGBA
    path = tmp_path / "fluo.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        meta = {
            "axes": "CYX",
            "Channel": {"Name": ["DAPI", "GFP", "Cy5"], "Color": [blue, green, magenta]},
            "PhysicalSizeX": 0.65,
            "PhysicalSizeY": 0.65,
        }
        tw.write(data, subifds=1, tile=(128, 128), photometric="minisblack", metadata=meta)
        tw.write(data[:, ::2, ::2], subfiletype=1, tile=(128, 128), photometric="minisblack")
    with open_slide(path) as s:
        assert s.level_dimensions == ((640, 512), (320, 256)) and s.planes == 1
        assert s.mpp == pytest.approx((0.65, 0.65))
        assert json.loads(s.properties["tileuq.channels"]) == ["DAPI", "GFP", "Cy5"]
        assert json.loads(s.properties["tileuq.render"])["colors"] == [
            "#0000ff",
            "#00ff00",
            "#ff00ff",
        ]
        for level, k in ((0, 1), (1, 2)):
            img = s.read_region((0, 0), level, s.level_dimensions[level])
            for (y, x), colour in {
                (150, 150): (0, 0, 255),
                (350, 350): (0, 255, 0),
                (64, 550): (255, 0, 255),
            }.items():
                # the channel's colour at full strength, plus a few grey levels of noise
                assert np.abs(img[y // k, x // k].astype(int) - colour).max() < 10
            assert img[250 // k, 20 // k].max() < 10  # dark background stays dark
