"""Plain images, folder stacks and numpy/dask arrays."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile
from PIL import Image

from slide_files import sample_pixels
from tileuq import SlideError, open_slide
from tileuq.slide._image import FolderStack, ImageSlide


@pytest.fixture(scope="module")
def img(sample_slide_path):
    return sample_pixels(sample_slide_path, size=(320, 240))


def test_rgba_png_is_composited_on_white(img, tmp_path):
    alpha = np.zeros(img.shape[:2], np.uint8)
    alpha[:, 100:200] = 128
    alpha[:, 200:] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([img, alpha])).save(path)
    with open_slide(path) as s:
        assert isinstance(s, ImageSlide) and s.vendor == "image"
        assert s.dimensions == (320, 240) and s.mpp is None
        out = s.read_region((0, 0), 0, (320, 240)).astype(int)
    assert (out[:, :100] == 255).all()  # transparent -> white
    np.testing.assert_array_equal(out[:, 200:], img[:, 200:])  # opaque -> unchanged
    half = img[:, 100:200].astype(float) * 128 / 255 + 255 * 127 / 255
    assert np.abs(out[:, 100:200] - half).max() <= 1


def test_grey_and_16bit_png(tmp_path, img):
    grey = img[..., 1]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with open_slide(tmp_path / "grey.png") as s:
        out = s.read_region((0, 0), 0, (320, 240))
        np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    deep = (grey.astype(np.uint16) * 200 + 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with open_slide(tmp_path / "deep.png") as s:
        out = s.read_region((0, 0), 0, (320, 240))[..., 0].astype(int)
    # windowed: dark stays dark, bright stays bright, and the full range is used
    assert out.min() == 0 and out.max() == 255
    assert np.corrcoef(out.ravel(), grey.ravel())[0, 1] > 0.99


def test_jpeg_and_palette_images(tmp_path, img):
    Image.fromarray(img).save(tmp_path / "x.jpg", quality=95)
    with open_slide(tmp_path / "x.jpg") as s:
        np.testing.assert_array_equal(
            s.read_region((0, 0), 0, (320, 240)), np.asarray(Image.open(tmp_path / "x.jpg"))
        )
    pal = Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    with open_slide(tmp_path / "pal.png") as s:
        out = s.read_region((0, 0), 0, (320, 240))
    index = np.asarray(pal)
    assert (out[index == 0] == 255).all()
    rgb = np.asarray(pal.convert("RGB"))
    np.testing.assert_array_equal(out[index != 0], rgb[index != 0])


def test_single_page_tiff_and_content_beats_extension(tmp_path, img):
    tifffile.imwrite(tmp_path / "plain.tif", img, photometric="rgb")
    Image.fromarray(img).save(tmp_path / "really_a_png.tif", format="PNG")
    for name in ("plain.tif", "really_a_png.tif"):
        with open_slide(tmp_path / name) as s:
            np.testing.assert_array_equal(s.read_region((5, 6), 0, (50, 40)), img[6:46, 5:55])


def test_folder_of_images_is_a_stack(tmp_path, img):
    folder = tmp_path / "stack"
    folder.mkdir()
    planes = [img, img[::-1].copy(), (255 - img)]
    for i, p in enumerate(planes):
        Image.fromarray(p).save(folder / f"z{i:02d}.png")
    (folder / "README.txt").write_text("not an image")
    with open_slide(folder) as s:
        assert isinstance(s, FolderStack) and s.vendor == "stack"
        assert s.planes == 3 and s.dimensions == (320, 240)
        assert [f.name for f in s.files] == ["z00.png", "z01.png", "z02.png"]
        for i, p in enumerate(planes):
            np.testing.assert_array_equal(s.read_region((0, 0), 0, (320, 240), plane=i), p)
        assert s.pyramid()[0].shape == (3, 240, 320, 3)
    Image.fromarray(img[:100]).save(folder / "z03.png")
    with pytest.raises(SlideError, match=r"z03\.png"):
        open_slide(folder)


@pytest.mark.parametrize(
    ("shape", "planes"),
    [((60, 80), 1), ((60, 80, 3), 1), ((60, 80, 4), 1), ((5, 60, 80), 5), ((5, 60, 80, 3), 5)],
)
def test_numpy_array_layouts(shape, planes):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    if shape[-1] == 4:
        arr[..., 3] = 255
    with open_slide(arr) as s:
        assert s.path is None and s.planes == planes and s.dimensions == (80, 60)
        last = s.read_region((10, 5), 0, (30, 20), plane=planes - 1)
    src = arr if planes > 1 else arr[None]
    src = src[planes - 1, 5:25, 10:40]
    expected = np.repeat(src[..., None], 3, 2) if src.ndim == 2 else src[..., :3]
    np.testing.assert_array_equal(last, expected)


def test_dask_array_stays_lazy_and_shares_one_window():
    calls = []

    def plane(i):
        calls.append(i)
        return np.full((64, 96), 1000 * (i + 1), np.uint16)

    import dask

    stack = da.stack(
        [da.from_delayed(dask.delayed(plane)(i), (64, 96), np.uint16) for i in range(6)]
    )
    with open_slide(stack, mpp=(0.5, 0.6)) as s:
        assert s.planes == 6 and s.mpp == (0.5, 0.6)
        opened_with = set(calls)
        values = [int(s.read_region((0, 0), 0, (4, 4), plane=p)[0, 0, 0]) for p in range(6)]
    assert len(opened_with) <= 4  # the window sample reads at most four planes
    assert values == sorted(values) and values[0] < values[-1]  # one window for all planes


def test_bad_arrays():
    with pytest.raises(SlideError, match="expected"):
        open_slide(np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(SlideError, match="empty"):
        open_slide(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(SlideError, match="dtype"):
        open_slide(np.array([["a", "b"], ["c", "d"]]))
