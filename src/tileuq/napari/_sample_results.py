"""Sample data: the sample slide with the demo model's results precomputed (every layer).

The results ship in ``sample_data/demo_results`` (``tiles.parquet`` + ``run.json`` +
``calibration.json``; made by ``scripts/make_demo_results.py``).  They are copied to the user
cache first so that review decisions are written there, not into the installation.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tileuq.bundled import DEMO_RESULTS, bundled_path
from tileuq.napari._common import MODEL_FILE


def demo_results_path() -> Path:
    """Folder of the bundled demo results (wheel: ``tileuq/sample_data``; checkout: top level)."""
    from tileuq.errors import ResultsError

    path = bundled_path(DEMO_RESULTS)
    if path is None or not (path / "run.json").is_file():
        raise ResultsError("the demo results are missing from this installation")
    return path


def _working_copy(src: Path) -> Path:
    from tileuq.napari.run_widget import cache_dir

    dst = cache_dir() / "samples" / DEMO_RESULTS
    fresh = (dst / "run.json").is_file() and (dst / "run.json").read_bytes() == (
        src / "run.json"
    ).read_bytes()
    if not fresh:
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for name in ("tiles.parquet", "run.json", "calibration.json"):
            if (src / name).is_file():
                shutil.copy2(src / name, dst / name)
                (dst / name).chmod(0o644)
        (dst / MODEL_FILE).write_text("demo\n", encoding="utf-8")
    return dst


def sample_slide_with_results() -> list[Any]:
    """Open the sample slide with class map, heatmaps, rejected regions, flagged tiles."""
    from tileuq.layers import slide_layer_data
    from tileuq.napari._common import load_session, register, show_layers_tuples
    from tileuq.slide import open_slide, sample_slide_path

    folder = _working_copy(demo_results_path())
    session = register(load_session(folder))
    name = "CMU-1-Small-Region"
    session.slide_layer = name
    slide = slide_layer_data(open_slide(sample_slide_path()), name=name)
    return [*slide, *show_layers_tuples(session)]
