"""napari hooks (reader, sample data) and widgets: the only part of tileuq importing napari/Qt."""

from tileuq.napari._reader import napari_get_reader
from tileuq.napari._sample_data import sample_slide

__all__ = ["napari_get_reader", "sample_slide"]
