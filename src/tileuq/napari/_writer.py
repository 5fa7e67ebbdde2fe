"""npe2 writer contribution: result layers (labels, points, shapes) → QuPath GeoJSON."""

from __future__ import annotations

from typing import Any

from tileuq.layers.geojson import layers_to_geojson


def write_geojson(path: str, layer_data: list[tuple[Any, dict[str, Any], str]]) -> list[str]:
    """Write the given layers as one QuPath GeoJSON FeatureCollection (atomically).

    See :mod:`tileuq.layers.geojson` for how each layer kind is converted.
    """
    from tileuq.export.geojson import write_geojson as write

    return [str(write(layers_to_geojson(layer_data), path))]
