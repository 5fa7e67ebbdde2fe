"""Results and slides as napari LayerDataTuples, built with numpy/dask only (no napari import).

Names are resolved lazily so that importing one layer builder stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tileuq._lazy import attach

_LAZY = {
    "slide_layer_data": "tileuq.layers.slide",
    "from_results": "tileuq.layers.results",
    "class_layer": "tileuq.layers.results",
    "heatmap_layer": "tileuq.layers.results",
    "LayerDataTuple": "tileuq.layers.results",
    "TileGeometry": "tileuq.layers.geometry",
    "RejectionGrid": "tileuq.layers.rejection",
    "rejected_layer": "tileuq.layers.rejection",
    "REASON_CODES": "tileuq.layers.rejection",
    "REASON_COLORS": "tileuq.layers.rejection",
    "flagged_layer": "tileuq.layers.review_layers",
    "decisions_layer": "tileuq.layers.review_layers",
    "outline_layer": "tileuq.layers.review_layers",
    "tile_outline": "tileuq.layers.review_layers",
}

__all__ = [
    "REASON_CODES",
    "REASON_COLORS",
    "LayerDataTuple",
    "RejectionGrid",
    "TileGeometry",
    "class_layer",
    "decisions_layer",
    "flagged_layer",
    "from_results",
    "heatmap_layer",
    "outline_layer",
    "rejected_layer",
    "slide_layer_data",
    "tile_outline",
]


__getattr__, __dir__ = attach(__name__, _LAZY, __all__)


if TYPE_CHECKING:  # pragma: no cover
    from tileuq.layers.geometry import TileGeometry
    from tileuq.layers.rejection import REASON_CODES, REASON_COLORS, RejectionGrid, rejected_layer
    from tileuq.layers.results import LayerDataTuple, class_layer, from_results, heatmap_layer
    from tileuq.layers.review_layers import (
        decisions_layer,
        flagged_layer,
        outline_layer,
        tile_outline,
    )
    from tileuq.layers.slide import slide_layer_data
