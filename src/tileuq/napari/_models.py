"""Where the widgets find models: the bundled demo model, a model folder/file, or a hub id.

Imports torch only when a model is actually loaded (inside :func:`load_model_source`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEMO = "demo"
DEMO_FOLDER = "demo_model"


def demo_model_path() -> Path | None:
    """Folder of the bundled demo model (wheel: ``tileuq/sample_data``; checkout: top level)."""
    try:  # the models package may expose it (preferred when it exists)
        from tileuq.models import demo_model_path as finder  # type: ignore[attr-defined]

        found = finder()
        return Path(found) if found else None
    except (ImportError, AttributeError):
        pass
    except Exception:  # the finder says it is missing
        return None
    here = Path(__file__).resolve().parents[1]  # the tileuq package
    for candidate in (
        here / "sample_data" / DEMO_FOLDER,
        here.parents[1] / "sample_data" / DEMO_FOLDER,
    ):
        if (candidate / "model.json").is_file():
            return candidate
    return None


def resolve_model_source(source: str) -> str:
    """Turn ``"demo"`` into the demo model's folder; other sources are returned as given."""
    source = str(source).strip()
    if source in ("", DEMO):
        path = demo_model_path()
        if path is None:
            from tileuq.errors import ModelError

            raise ModelError(
                "the bundled demo model is missing from this installation; choose a model "
                "folder or a hub id (hf://owner/repo/name)"
            )
        return str(path)
    return source


def load_model_source(source: str) -> Any:
    """Load a model from ``"demo"``, a folder/file or ``hf://...`` (torch imported here)."""
    from tileuq.models import load_model

    return load_model(resolve_model_source(source))
