"""Screenshot helpers for the GUI tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def not_blank(image: np.ndarray, min_std: float = 8.0) -> bool:
    """A screenshot with content: not one flat colour."""
    rgb = np.asarray(image)[..., :3].astype(float)
    return bool(rgb.std() > min_std and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20)


def grab(widget, path: Path) -> np.ndarray:
    """Save a Qt widget's picture to ``path`` and return it as an RGBA array."""
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    native = getattr(widget, "native", widget)
    pix = native.grab()
    assert pix.save(str(path)), f"could not save {path}"
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGBA"))


def copy_artifact(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
