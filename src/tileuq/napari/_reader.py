"""npe2 reader contribution: open slides, images, stacks and DICOM folders as layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tileuq.layers.slide import LayerDataTuple, slide_layer_data

# kept in step with the filename_patterns of the reader in napari.yaml
SUFFIXES = {
    ".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide",
    ".qptiff", ".dcm", ".png", ".jpg", ".jpeg",
}  # fmt: skip

PathOrPaths = str | Sequence[str]


def _accepts(path: str) -> bool:
    p = Path(path)
    if p.is_dir():  # a DICOM folder or an image stack: look at the names only (cheap)
        names = [f for _, f in zip(range(200), p.iterdir(), strict=False)]
        return any(f.suffix.lower() in SUFFIXES or f.suffix == "" for f in names)
    return p.suffix.lower() in SUFFIXES


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerDataTuple]] | None:
    """Return :func:`read_slides` when tileuq can read ``path`` (a file, folder or list).

    Files are recognised by extension here (cheap, no file is opened); :func:`read_slides`
    then chooses the backend by content.
    """
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(_accepts(str(p)) for p in paths):
        return None
    return read_slides


def read_slides(path: PathOrPaths) -> list[LayerDataTuple]:
    """Open every path with :func:`tileuq.open_slide`; one multiscale RGB layer each.

    Raises
    ------
    tileuq.errors.SlideError
        A file cannot be read (napari shows the message, which names the file and reason).
    """
    from tileuq.slide import open_slide

    paths = [path] if isinstance(path, str) else list(path)
    layers: list[Any] = []
    for p in paths:
        layers.extend(slide_layer_data(open_slide(p)))
    return layers
