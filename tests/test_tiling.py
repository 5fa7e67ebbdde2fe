"""Tissue detection and tile grids, on the bundled sample slide and on in-memory images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tileuq.errors import TilingError
from tileuq.slide import open_slide
from tileuq.tiling import TileSpec, tile_grid, tissue_mask

W, H, MPP = 2220, 2967, 0.499  # the sample slide (OpenSlide test data CMU-1-Small-Region)


@pytest.fixture(scope="module")
def slide(sample_slide_path):
    with open_slide(sample_slide_path) as s:
        yield s


@pytest.fixture(scope="module")
def mask(slide):
    return tissue_mask(slide)


def expected_count(length: int, size: int, stride: int) -> int:
    return (length - size) // stride + 1


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("mpp", [0.5, 1.0])
def test_lattice_counts_and_positions_on_sample(slide, mask, mpp):
    grid = tile_grid(slide, tile_px=224, mpp=mpp, min_tissue=0.0, mask=mask)
    size0 = round(224 * mpp / MPP)
    assert grid.tile_size_level0 == size0 == grid.stride_level0
    n_rows, n_cols = expected_count(H, size0, size0), expected_count(W, size0, size0)
    assert grid.grid_shape == (n_rows, n_cols)
    assert len(grid) == n_rows * n_cols  # min_tissue=0 keeps every tile
    # row-major order, positions on the lattice
    np.testing.assert_array_equal(grid.coords[:, 0], grid.cols * size0)
    np.testing.assert_array_equal(grid.coords[:, 1], grid.rows * size0)
    assert grid.level == 0 and grid.read_size == size0
    # every tile lies inside the slide
    assert (grid.coords >= 0).all()
    assert (grid.coords[:, 0] + size0 <= W).all() and (grid.coords[:, 1] + size0 <= H).all()


def test_sample_counts_by_hand(slide, mask):
    # 0.5 µm/px: 224 level-0 px per tile -> 9 x 13; 1 µm/px: 449 px -> 4 x 6
    assert tile_grid(slide, tile_px=224, mpp=0.5, min_tissue=0, mask=mask).grid_shape == (13, 9)
    assert tile_grid(slide, tile_px=224, mpp=1.0, min_tissue=0, mask=mask).grid_shape == (6, 4)


def test_tile_um_is_mpp_times_tile_px(slide, mask):
    a = tile_grid(slide, tile_px=224, tile_um=224.0, min_tissue=0, mask=mask)
    b = tile_grid(slide, tile_px=224, mpp=1.0, min_tissue=0, mask=mask)
    assert a.mpp == pytest.approx(1.0)
    np.testing.assert_array_equal(a.coords, b.coords)


def test_overlap_halves_the_stride(slide, mask):
    grid = tile_grid(slide, tile_px=224, mpp=0.5, overlap=112, min_tissue=0, mask=mask)
    stride = round(112 * 0.5 / MPP)
    assert grid.stride_level0 == stride and grid.tile_size_level0 == 224
    assert grid.grid_shape == (expected_count(H, 224, stride), expected_count(W, 224, stride))
    # neighbours overlap by half a tile
    row0 = grid.coords[grid.rows == 0]
    assert np.all(np.diff(row0[:, 0]) == stride)


def test_edges_dropped_by_default_and_padded_when_partial(slide, mask):
    full = tile_grid(slide, tile_px=224, mpp=0.5, min_tissue=0, mask=mask)
    part = tile_grid(slide, tile_px=224, mpp=0.5, min_tissue=0, include_partial=True, mask=mask)
    assert part.grid_shape == (math.ceil((H - 224) / 224) + 1, math.ceil((W - 224) / 224) + 1)
    # the partial lattice reaches the slide's right and bottom edges
    assert part.coords[:, 0].max() + 224 >= W and part.coords[:, 1].max() + 224 >= H
    assert full.coords[:, 0].max() + 224 <= W
    # an edge tile is padded white outside the slide
    i = int(np.argmax(part.coords[:, 0] + 1000 * part.coords[:, 1]))  # bottom-right tile
    tile = part.read_tile(slide, i)
    x, y = part.coords[i]
    assert tile.shape == (224, 224, 3)
    assert (tile[H - y :, :] == 255).all() and (tile[:, W - x :] == 255).all()


def test_read_tile_matches_region_at_native_resolution(slide, mask):
    grid = tile_grid(slide, tile_px=224, mpp=None, min_tissue=0.5, mask=mask)
    assert grid.mpp == pytest.approx(MPP) and grid.tile_size_level0 == 224
    for i in (0, len(grid) // 2, len(grid) - 1):
        x, y = grid.coords[i]
        np.testing.assert_array_equal(
            grid.read_tile(slide, i), slide.read_region((int(x), int(y)), 0, (224, 224))
        )


def test_resized_tiles_at_one_micron(slide, mask):
    grid = tile_grid(slide, tile_px=224, mpp=1.0, min_tissue=0.5, mask=mask)
    batch = grid.read_batch(slide, np.arange(len(grid)))
    assert batch.shape == (len(grid), 224, 224, 3) and batch.dtype == np.uint8
    # the resized tile is an antialiased copy of the 449 px region: compare block means
    x, y = grid.coords[0]
    region = slide.read_region((int(x), int(y)), 0, (448, 448)).astype(float)
    coarse = region.reshape(56, 8, 56, 8, 3).mean((1, 3))
    small = batch[0].astype(float).reshape(56, 4, 56, 4, 3).mean((1, 3))
    assert np.abs(coarse - small).mean() < 6.0


# ----------------------------------------------------------------------------- tissue


def test_tissue_mask_on_sample(slide, mask):
    assert mask.method == "brightfield"
    # the section covers roughly a third of this crop (see the thumbnail)
    assert 0.2 < mask.tissue_fraction < 0.5
    # top-left corner is glass, the centre of the section is tissue
    assert mask.fraction(0, 0, 300, 300) < 0.05
    assert mask.fraction(1000, 2000, 224, 224) > 0.95


def test_tissue_fraction_matches_brute_force(slide, mask):
    grid = tile_grid(slide, tile_px=224, mpp=0.5, min_tissue=0, mask=mask)
    dx, dy = mask.downsample
    for i in range(0, len(grid), 7):
        x, y = grid.coords[i]
        s = grid.tile_size_level0
        # brute force: supersample the box on a fine raster and look up mask pixels
        us = np.linspace(x, x + s, 64, endpoint=False) + s / 128
        vs = np.linspace(y, y + s, 64, endpoint=False) + s / 128
        jj = np.clip((us / dx).astype(int), 0, mask.shape[1] - 1)
        ii = np.clip((vs / dy).astype(int), 0, mask.shape[0] - 1)
        brute = mask.mask[np.ix_(ii, jj)].mean()
        assert grid.tissue[i] == pytest.approx(brute, abs=0.03)


def test_min_tissue_filters(slide, mask):
    all_tiles = tile_grid(slide, tile_px=224, mpp=0.5, min_tissue=0, mask=mask)
    kept = tile_grid(slide, tile_px=224, mpp=0.5, min_tissue=0.5, mask=mask)
    assert 0 < len(kept) < len(all_tiles)
    assert (kept.tissue >= 0.5).all()
    assert len(kept) == int((all_tiles.tissue >= 0.5).sum())
    idx = kept.index_grid()
    assert idx.shape == kept.grid_shape and (idx >= 0).sum() == len(kept)
    assert (idx[kept.rows, kept.cols] == np.arange(len(kept))).all()


def test_blank_image_has_no_tissue():
    white = np.full((600, 800, 3), 245, np.uint8)
    white += np.random.default_rng(0).integers(0, 6, white.shape, dtype=np.uint8)  # noise
    with open_slide(white, mpp=0.5) as s:
        m = tissue_mask(s)
        assert m.tissue_fraction == 0.0
        assert len(tile_grid(s, tile_px=64, mpp=0.5, mask=m)) == 0


def test_darkfield_image_detects_bright_tissue():
    img = np.full((512, 512, 3), 10, np.uint8)
    img[100:300, 150:400] = (40, 200, 60)  # bright fluorescent region
    with open_slide(img, mpp=1.0) as s:
        m = tissue_mask(s)
        assert m.method == "darkfield"
        assert m.fraction(150, 100, 250, 200) > 0.95
        assert m.fraction(0, 0, 100, 100) == 0.0


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile_px": 0}, "tile_px must be positive"),
        ({"tile_px": -5}, "tile_px must be positive"),
        ({"tile_px": 224.0}, "tile_px must be an integer"),
        ({"tile_px": 224, "overlap": 224}, "overlap must be in"),
        ({"tile_px": 224, "overlap": -1}, "overlap must be in"),
        ({"tile_px": 224, "mpp": 0.0}, "mpp must be a positive"),
        ({"tile_px": 224, "mpp": float("nan")}, "mpp must be a positive"),
        ({"tile_px": 224, "mpp": 0.5, "tile_um": 100.0}, "either mpp or tile_um"),
        ({"tile_px": 224, "min_tissue": 1.5}, "min_tissue must be in"),
    ],
)
def test_spec_rejects_nonsense(kwargs, message):
    with pytest.raises(TilingError, match=message):
        TileSpec(**kwargs)


def test_slide_without_mpp_needs_explicit_mpp():
    img = np.full((300, 400, 3), 200, np.uint8)
    with open_slide(img) as s:
        assert s.mpp is None
        with pytest.raises(TilingError, match="no mpp"):
            tile_grid(s, tile_px=64, min_tissue=0)
        grid = tile_grid(s, tile_px=64, mpp=0.25, min_tissue=0)
        # the given mpp is taken as the image's own resolution: native 64 px tiles
        assert grid.tile_size_level0 == 64 and grid.grid_shape == (4, 6)


def test_grid_summary_is_json(slide, mask):
    grid = tile_grid(slide, tile_px=224, mpp=0.5, mask=mask)
    d = json.loads(json.dumps(grid.to_dict()))
    assert d["n_tiles"] == len(grid) and d["grid_shape"] == list(grid.grid_shape)
    assert grid.tissue_area_um2 == pytest.approx(grid.tissue.sum() * (224 * MPP) ** 2)


def test_pyramid_level_choice_never_upsamples():
    # a 4-level in-memory pyramid is built for large arrays; at 4x the target level must be
    # the 4x one (or finer), read at the right size
    img = np.random.default_rng(1).integers(0, 255, (4096, 4096, 3), dtype=np.uint8)
    with open_slide(img, mpp=0.25) as s:
        grid = tile_grid(s, tile_px=128, mpp=1.0, min_tissue=0)
        ds = s.level_downsamples[grid.level]
        assert ds <= 4.0 + 1e-6
        assert grid.read_size == round(512 / ds)
        assert grid.read_tile(s, 0).shape == (128, 128, 3)
