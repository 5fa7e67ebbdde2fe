"""Results and slides as napari LayerDataTuples, built with numpy/dask only (no napari import)."""

from tileuq.layers.slide import slide_layer_data

__all__ = ["slide_layer_data"]
