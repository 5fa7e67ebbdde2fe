"""slide.pyramid(): lazy dask levels, one chunk per native tile, never a whole-level read."""

from __future__ import annotations

import threading

import dask
import numpy as np
import pytest

from slide_files import sample_pixels, write_tiled_pyramid
from tileuq import open_slide
from tileuq.slide._lazy import GENERATE_ABOVE


class ReadLog:
    """Wraps a slide's ``_read_level`` and records every (level, w, h) it is asked for."""

    def __init__(self, slide):
        self.calls: list[tuple[int, int, int]] = []
        self._lock = threading.Lock()
        inner = slide._read_level

        def logged(level, x, y, w, h, plane):
            with self._lock:
                self.calls.append((level, w, h))
            return inner(level, x, y, w, h, plane)

        slide._read_level = logged


@pytest.fixture(scope="module")
def j2k(sample_slide_path, tmp_path_factory):
    img = sample_pixels(sample_slide_path)
    path = tmp_path_factory.mktemp("pyr") / "j2k.tif"
    return write_tiled_pyramid(path, img, "jpeg2000", photometric="rgb", tile=128)


def _chunks(slide, level, arr):
    tw, th = slide.level_tile_sizes[level]
    w, h = slide.level_dimensions[level]
    ys, xs = arr.chunks[-3], arr.chunks[-2]
    assert sum(ys) == h and sum(xs) == w
    assert set(ys[:-1]) <= {th} and ys[-1] <= th
    assert set(xs[:-1]) <= {tw} and xs[-1] <= tw
    assert arr.chunks[-1] == (3,)


def test_sample_slide_chunks_are_native_tiles_and_slices_match(sample_slide_path):
    with open_slide(sample_slide_path) as s:
        (level0,) = s.pyramid()  # 2967 px: below the size that gets generated levels
        assert level0.shape == (2967, 2220, 3) and level0.dtype == np.uint8
        _chunks(s, 0, level0)
        assert level0.chunks[0][0] == 240
        log = ReadLog(s)
        part = level0[1000:1200, 500:700].compute()
        np.testing.assert_array_equal(part, s.read_region((500, 1000), 0, (200, 200)))
        assert log.calls == [(0, 240, 240)]  # exactly the one tile that holds the slice


def test_multilevel_tiff_pyramid(j2k):
    with open_slide(j2k) as s:
        levels = s.pyramid()
        assert [a.shape[:2] for a in levels] == [(768, 1024), (384, 512), (192, 256)]
        for k, arr in enumerate(levels):
            _chunks(s, k, arr)
        log = ReadLog(s)
        np.testing.assert_array_equal(
            levels[1][100:300, 120:380].compute(), s.read_region((240, 200), 1, (260, 200))
        )
        pyramid_reads = [c for c in log.calls if c[1] <= 128 and c[2] <= 128]
        assert len(pyramid_reads) == 3 * 3  # 3x3 tiles of 128 cover rows 100-299, cols 120-379


def test_no_level_is_read_whole_and_threads_agree(j2k):
    with open_slide(j2k) as s:
        log = ReadLog(s)
        level0 = s.pyramid()[0]
        with dask.config.set(scheduler="threads", num_workers=8):
            threaded = level0.compute()
        assert max(w * h for _, w, h in log.calls) <= 128 * 128  # tile by tile, in parallel
        assert len(log.calls) == 6 * 8
        np.testing.assert_array_equal(threaded, s.read_region((0, 0), 0, (1024, 768)))


@pytest.mark.shared
def test_dicom_pyramid_chunks(shared_data):
    with open_slide(shared_data / "slides" / "pathml_small_HE_wsi.dcm") as s:
        (level0,) = s.pyramid()
        _chunks(s, 0, level0)
        assert level0.chunks[0][:5] == (500,) * 5
        np.testing.assert_array_equal(
            level0[480:520, 990:1010].compute(), s.read_region((990, 480), 0, (20, 40))
        )


def test_stack_pyramid_has_plane_axis():
    stack = np.random.default_rng(0).integers(0, 256, (3, 700, 900, 3), dtype=np.uint8)
    with open_slide(stack) as s:
        (level0,) = s.pyramid()
        assert level0.shape == (3, 700, 900, 3)
        assert level0.chunks[0] == (1, 1, 1) and level0.chunks[1][0] == 512
        np.testing.assert_array_equal(
            level0[2, 600:700, 800:900].compute(), stack[2, 600:700, 800:900]
        )


def test_large_single_level_image_gets_lazy_generated_levels():
    h, w = 600, GENERATE_ABOVE + 904  # 5000 px wide, one level
    base = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    with open_slide(base) as s:
        assert s.level_count == 1
        levels = s.pyramid()
        assert [a.shape[:2] for a in levels] == [(600, 5000), (300, 2500), (150, 1250)]
        log = ReadLog(s)
        got = levels[2][10:20, 30:50].compute()
        assert log.calls and all(c[0] == 0 for c in log.calls)  # read from the native level
        assert max(c[1] for c in log.calls) <= 4 * 512  # one 512-chunk of level 2, not the level
    expected = base[: 150 * 4, : 1250 * 4].reshape(150, 4, 1250, 4, 3).mean((1, 3))
    assert np.abs(got.astype(int) - np.rint(expected[10:20, 30:50])).max() <= 1
