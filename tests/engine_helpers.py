"""Small real models and settings shared by the engine tests (kept light for a 2-core CPU)."""

from __future__ import annotations

from pathlib import Path

import tileuq

CLASSES = ["tumour", "stroma", "other"]
#: 64-px tiles at 2 µm/px: the sample slide gives ~30 tissue tiles on an 11 x 8 lattice
FAST = {"tile_px": 64, "mpp": 2.0, "device": "cpu", "batch_size": 8}


def slim_model(method: str = "sngp", **kw):
    """An untrained slim model (real TileModel from build_model) with 64-px, 2 µm tiles."""
    kw.setdefault("tile_px", 64)
    kw.setdefault("mpp", 2.0)
    return tileuq.build_model(method, backbone="resnet_slim", classes=CLASSES, **kw)


def saved_model(folder: Path, method: str = "sngp") -> Path:
    """Save a slim model into ``folder`` (for the CLI and Dask workers) and return it."""
    if not (folder / "model.json").exists():
        slim_model(method).save(folder)
    return folder
