"""tileuq: uncertainty-aware tile classification of whole-slide images.

The package namespace is lazy: ``import tileuq`` is cheap (napari imports it to read the plugin
manifest) and torch is imported only when a model-related name is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tileuq._lazy import attach

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # errors
    "TileuqError": "tileuq.errors",
    "SlideError": "tileuq.errors",
    "TilingError": "tileuq.errors",
    "ModelError": "tileuq.errors",
    "CalibrationError": "tileuq.errors",
    "ResultsError": "tileuq.errors",
    # slides and tiles
    "open_slide": "tileuq.slide",
    "Slide": "tileuq.slide",
    "tissue_mask": "tileuq.tiling",
    "TissueMask": "tileuq.tiling",
    "TileSpec": "tileuq.tiling",
    "tile_grid": "tileuq.tiling",
    "TileGrid": "tileuq.tiling",
    # models
    "build_model": "tileuq.models",
    "load_model": "tileuq.models",
    "TileModel": "tileuq.models",
    "train": "tileuq.models.training",
    # engine
    "run_slide": "tileuq.engine",
    "iter_run_slide": "tileuq.engine",
    "run_slides": "tileuq.engine",
    "TileResults": "tileuq.engine.results",
    # calibration
    "calibrate": "tileuq.uncertainty",
    "Calibration": "tileuq.uncertainty",
    "shift_test": "tileuq.uncertainty",
}

__all__ = [
    "Calibration",
    "CalibrationError",
    "ModelError",
    "ResultsError",
    "Slide",
    "SlideError",
    "TileGrid",
    "TileModel",
    "TileResults",
    "TileSpec",
    "TileuqError",
    "TilingError",
    "TissueMask",
    "__version__",
    "build_model",
    "calibrate",
    "iter_run_slide",
    "load_model",
    "open_slide",
    "run_slide",
    "run_slides",
    "shift_test",
    "tile_grid",
    "tissue_mask",
    "train",
]


__getattr__, __dir__ = attach(__name__, _LAZY, __all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from tileuq.engine import iter_run_slide, run_slide, run_slides
    from tileuq.engine.results import TileResults
    from tileuq.errors import (
        CalibrationError,
        ModelError,
        ResultsError,
        SlideError,
        TileuqError,
        TilingError,
    )
    from tileuq.models import TileModel, build_model, load_model
    from tileuq.models.training import train
    from tileuq.slide import Slide, open_slide
    from tileuq.tiling import TileGrid, TileSpec, TissueMask, tile_grid, tissue_mask
    from tileuq.uncertainty import Calibration, calibrate, shift_test
