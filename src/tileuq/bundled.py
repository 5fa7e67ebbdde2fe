"""Files bundled with tileuq: the sample slide, the demo model and its precomputed results.

A wheel carries them as ``tileuq/sample_data/``; an editable install or a source checkout
finds them in the repository's top-level ``sample_data/``.  This module imports nothing heavy.
"""

from __future__ import annotations

import os
from pathlib import Path

from tileuq.errors import ModelError

SAMPLE_SLIDE = "CMU-1-Small-Region.svs"
DEMO_MODEL = "demo_model"
DEMO_RESULTS = "demo_results"
DEMO = "demo"  # the model source name that means the bundled demo model

_PACKAGE = Path(__file__).resolve().parent


def bundled_path(name: str) -> Path | None:
    """Return the bundled file or folder ``sample_data/<name>``, or ``None`` when absent."""
    for candidate in (_PACKAGE / "sample_data" / name, _PACKAGE.parents[1] / "sample_data" / name):
        if candidate.exists():
            return candidate
    return None


def demo_model_path() -> Path | None:
    """Folder of the bundled demo model, or ``None`` when this installation lacks it."""
    path = bundled_path(DEMO_MODEL)
    return path if path is not None and (path / "model.json").is_file() else None


def resolve_model_source(source: str | os.PathLike[str]) -> str:
    """Map ``"demo"`` to the bundled demo model's folder; any other source is returned as is."""
    text = str(source).strip()
    if text != DEMO:
        return text
    path = demo_model_path()
    if path is None:
        raise ModelError(
            "model 'demo': the bundled demo model is missing from this installation; give a "
            "model folder, a .zip/.safetensors file or a hub id (hf://owner/repo/name)"
        )
    return str(path)
