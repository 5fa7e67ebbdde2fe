"""Where the widgets find models: the bundled demo model, a model folder/file, or a hub id.

Imports torch only when a model is actually loaded (inside :func:`load_model_source`).
"""

from __future__ import annotations

from typing import Any

from tileuq.bundled import DEMO, demo_model_path, resolve_model_source

__all__ = ["DEMO", "demo_model_path", "load_model_source", "resolve_model_source"]


def load_model_source(source: str) -> Any:
    """Load a model from ``"demo"``, a folder/file or ``hf://...`` (torch imported here)."""
    from tileuq.models import load_model

    return load_model(resolve_model_source(source))
