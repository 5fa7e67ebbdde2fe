"""Moving through tiles: camera centre and zoom, the tile outline, the review shortcuts."""

from __future__ import annotations

from typing import Any

from tileuq.napari._common import add_or_replace

OUTLINE = "current tile"


def camera(viewer: Any) -> Any:
    """Return the camera (``viewer.scene.camera`` since napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def canvas_size(viewer: Any) -> tuple[int, int]:
    """Return the canvas ``(height, width)`` in screen pixels."""
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None) or getattr(viewer, "_canvas_size", None) or (600, 800)
    return int(size[0]), int(size[1])


def jump_to_tile(
    viewer: Any, geometry: Any, x: int, y: int, plane: int = 0, context: float = 3.0
) -> None:
    """Centre the view on a tile and zoom so that ``context`` x its extent fits the canvas."""
    y0, x0, y1, x1 = geometry.tile_box_world(float(x), float(y))
    if geometry.stacked:
        viewer.dims.set_point(0, int(plane))
    cam = camera(viewer)
    cam.center = ((y0 + y1) / 2, (x0 + x1) / 2)
    cam.zoom = min(canvas_size(viewer)) / (max(y1 - y0, x1 - x0) * float(context))


def show_outline(viewer: Any, geometry: Any, x: int, y: int, plane: int = 0) -> None:
    """Draw (or move) the rectangle around the tile under review."""
    from tileuq.layers import outline_layer, tile_outline

    box = tile_outline(geometry, x, y, plane)
    layers = [layer for layer in viewer.layers if layer.name == OUTLINE]
    if layers:
        layers[0].data = [box]
    else:
        add_or_replace(viewer, [outline_layer(geometry, [box], name=OUTLINE)])


def bind_review_keys(viewer: Any, review: Any) -> list[str]:
    """Bind the review shortcuts on the viewer (see :mod:`tileuq.napari.review_widget`)."""
    keys: dict[str, Any] = {
        "n": lambda v: review.step(1),
        "p": lambda v: review.step(-1),
        "a": lambda v: review.decide("accept"),
        "x": lambda v: review.decide("artefact"),
        "u": lambda v: review.decide("unsure"),
    }
    for k in range(1, 10):
        keys[str(k)] = lambda v, k=k: review.relabel_index(k - 1)
    for key, func in keys.items():
        viewer.bind_key(key, func, overwrite=True)
    return list(keys)


def unbind_keys(viewer: Any, keys: list[str]) -> None:
    """Remove viewer shortcuts bound by :func:`bind_review_keys`."""
    from napari.utils.key_bindings import coerce_keybinding

    for key in keys:
        viewer.keymap.pop(coerce_keybinding(key), None)
