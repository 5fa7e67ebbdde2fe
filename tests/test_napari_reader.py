"""The napari reader and sample-data contributions, in a real viewer under Xvfb."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from PIL import Image

from tileuq.layers import slide_layer_data
from tileuq.napari import napari_get_reader
from tileuq.napari._reader import SUFFIXES
from tileuq.slide import open_slide


def test_get_reader_accepts_slide_files_and_folders(sample_slide_path, tmp_path):
    assert callable(napari_get_reader(str(sample_slide_path)))
    assert callable(napari_get_reader([str(sample_slide_path), str(sample_slide_path)]))
    assert napari_get_reader(str(tmp_path)) is None  # an empty folder is not ours
    (tmp_path / "z0.png").write_bytes(b"")
    assert callable(napari_get_reader(str(tmp_path)))  # folders: DICOM or image stacks
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader([str(sample_slide_path), "x.csv"]) is None


def test_manifest_patterns_match_reader_suffixes():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("tileuq")
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories
    assert {p.lstrip("*") for p in reader.filename_patterns} == SUFFIXES
    assert "cmu1_small_region" in [s.key for s in manifest.contributions.sample_data]


def test_layer_data_tuple_for_slide(sample_slide_path):
    (data, kwargs, kind) = napari_get_reader(str(sample_slide_path))(str(sample_slide_path))[0]
    assert kind == "image"
    assert kwargs["rgb"] and kwargs["multiscale"]
    assert kwargs["scale"] == pytest.approx((0.499, 0.499))
    assert kwargs["units"] == ("µm", "µm")
    assert kwargs["metadata"]["path"] == str(sample_slide_path)
    assert kwargs["metadata"]["slide"]["dimensions"] == [2220, 2967]
    assert isinstance(data[0], da.Array) and data[0].shape == (2967, 2220, 3)


def test_layer_data_for_stack_has_plane_axis():
    stack = np.random.default_rng(0).integers(0, 255, (4, 64, 80, 3), dtype=np.uint8)
    ((data, kwargs, _),) = slide_layer_data(open_slide(stack, mpp=2.0))
    assert data[0].shape == (4, 64, 80, 3)
    assert kwargs["scale"] == (1.0, 2.0, 2.0)
    assert kwargs["axis_labels"] == ("plane", "y", "x")
    np.testing.assert_array_equal(data[0][2].compute(), stack[2])


def test_layer_without_mpp_uses_pixels():
    ((_, kwargs, _),) = slide_layer_data(open_slide(np.zeros((32, 32, 3), np.uint8)))
    assert kwargs["scale"] == (1.0, 1.0) and kwargs["units"] == ("pixel", "pixel")


@pytest.mark.gui
def test_viewer_opens_sample_slide_through_plugin(
    make_napari_viewer, sample_slide_path, artifacts_dir
):
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(sample_slide_path), plugin="tileuq")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.multiscale and layer.rgb
    assert tuple(layer.scale) == pytest.approx((0.499, 0.499))
    assert layer.metadata["slide"]["vendor"] == "aperio"
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    Image.fromarray(shot).save(artifacts_dir / "napari_sample_slide.png")
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 20  # a picture, not a flat canvas
    # the tissue is pink/purple: many pixels far from both black background and white
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    assert (saturation > 40).mean() > 0.05


@pytest.mark.gui
def test_viewer_sample_data_contribution(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("tileuq", "cmu1_small_region")
    assert viewer.layers[0].name == "CMU-1-Small-Region"
    assert viewer.layers[0].multiscale
