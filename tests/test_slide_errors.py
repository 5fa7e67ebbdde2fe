"""Every bad input raises SlideError naming the file and the reason (never a crash)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from tileuq import SlideError, TileuqError, open_slide


def _fails(path, *reasons):
    with pytest.raises(SlideError) as info:
        open_slide(path)
    msg = str(info.value)
    assert path.name in msg, msg
    for reason in reasons:
        assert reason in msg, msg
    assert isinstance(info.value, TileuqError)
    return msg


def test_empty_file(tmp_path):
    (tmp_path / "empty.svs").write_bytes(b"")
    _fails(tmp_path / "empty.svs", "empty", "0 bytes")


def test_truncated_svs_cut_in_half(sample_slide_path, tmp_path):
    data = sample_slide_path.read_bytes()
    (tmp_path / "half.svs").write_bytes(data[: len(data) // 2])
    _fails(tmp_path / "half.svs", "truncated", "beyond the end of the file")


def test_truncated_svs_missing_tile_data(sample_slide_path, tmp_path):
    """The directories survive but the tile data they point to does not."""
    data = sample_slide_path.read_bytes()
    (tmp_path / "cut.svs").write_bytes(data[: int(len(data) * 0.88)])
    _fails(tmp_path / "cut.svs", "truncated")


def test_random_bytes_named_svs(tmp_path):
    rng = np.random.default_rng(7)
    (tmp_path / "random.svs").write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    _fails(tmp_path / "random.svs", "not a recognised slide or image format", "Aperio SVS")


def test_text_file(tmp_path):
    (tmp_path / "notes.tif").write_text("patient 12, slide 3\nscanned at 40x\n" * 20)
    _fails(tmp_path / "notes.tif", "text file", "TIFF")


def test_directory_without_images(tmp_path):
    folder = tmp_path / "nothing_here"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.csv").write_text("x,y\n1,2\n")
    _fails(folder, "no DICOM files and no images", "2 file(s)")


def test_nonexistent_path(tmp_path):
    _fails(tmp_path / "missing.ndpi", "no such file")


def test_corrupt_png(tmp_path, sample_slide_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "broken.png").write_bytes(data[: len(data) // 2])
    _fails(tmp_path / "broken.png", "truncated")


def test_tiff_with_only_a_header(tmp_path):
    (tmp_path / "stub.tif").write_bytes(b"II*\x00\x08\x00\x00\x00")
    _fails(tmp_path / "stub.tif", "TIFF")


def test_16bit_tiff_and_rgba_png_and_no_mpp_all_open(tmp_path):
    """The inputs that look awkward but are valid must open, not fail."""
    tifffile.imwrite(tmp_path / "g16.tif", np.arange(60000, dtype=np.uint16).reshape(200, 300))
    Image.fromarray(np.zeros((20, 30, 4), np.uint8)).save(tmp_path / "clear.png")
    with open_slide(tmp_path / "g16.tif") as s:
        assert s.read_region((0, 0), 0, (300, 200)).dtype == np.uint8
        assert s.mpp is None
    with open_slide(tmp_path / "clear.png") as s:
        assert (s.read_region((0, 0), 0, (30, 20)) == 255).all()
        assert s.mpp is None and s.properties["tileuq.mpp-source"] == "unknown"


def test_bad_arguments(tmp_path):
    with pytest.raises(SlideError, match="backend="):
        open_slide("x.svs", backend="bioformats")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(SlideError, match=r"small\.png: backend='tifffile' cannot read"):
        open_slide(tmp_path / "small.png", backend="tifffile")
    with pytest.raises(SlideError, match="mpp="):
        open_slide("x.svs", mpp=-0.5)


def test_truncated_tiled_tiff_with_intact_directory(tmp_path):
    """tifffile writes the directory first: the cut removes only tile data."""
    rng = np.random.default_rng(0)
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), tile=(128, 128))
    data = full.read_bytes()
    (tmp_path / "tiles_cut.tif").write_bytes(data[: int(len(data) * 0.6)])
    _fails(tmp_path / "tiles_cut.tif", "truncated", "tiles/strips", "beyond the end of the file")
