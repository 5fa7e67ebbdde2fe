"""A :class:`~tileuq.slide.Slide` as a napari LayerDataTuple (numpy/dask only, no napari)."""

from __future__ import annotations

from typing import Any

from tileuq.slide.base import Slide

LayerDataTuple = tuple[Any, dict[str, Any], str]


def slide_layer_data(slide: Slide, *, name: str | None = None) -> list[LayerDataTuple]:
    """Return the image layer that shows ``slide`` in napari.

    The layer is a multiscale RGB image whose data is :meth:`Slide.pyramid` (lazy dask
    levels, one chunk per native tile).  ``scale`` is in µm per level-0 pixel when the
    slide's mpp is known (``units`` µm), else 1 (``units`` pixel).  Image stacks
    (``slide.planes > 1``) get a leading plane axis, which napari shows as a slider.

    Parameters
    ----------
    slide
        An open slide; it must stay open while the layer is shown.
    name
        Layer name (default: the file name).

    Returns
    -------
    list
        ``[(data, kwargs, "image")]``; ``kwargs["metadata"]`` holds ``"slide"``
        (:meth:`Slide.describe`) and ``"path"``.
    """
    data = slide.pyramid()
    if slide.mpp is not None:
        sy, sx, unit = float(slide.mpp[1]), float(slide.mpp[0]), "µm"
    else:
        sy, sx, unit = 1.0, 1.0, "pixel"
    scale: tuple[float, ...] = (sy, sx)
    units: tuple[str, ...] = (unit, unit)
    labels: tuple[str, ...] = ("y", "x")
    if slide.planes > 1:
        scale, units, labels = (1.0, *scale), ("pixel", *units), ("plane", *labels)
    kwargs: dict[str, Any] = {
        "name": name or slide.name,
        "rgb": True,
        "multiscale": True,
        "scale": scale,
        "units": units,
        "axis_labels": labels,
        "contrast_limits": (0, 255),  # uint8 RGB: napari need not compute a level
        "metadata": {
            "slide": slide.describe(),
            "path": str(slide.path) if slide.path is not None else None,
        },
    }
    return [(data, kwargs, "image")]
