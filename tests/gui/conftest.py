"""Fixtures for the napari widget tests (run under Xvfb via pytest-xvfb).

``make_napari_viewer`` comes from napari's pytest plugin, registered by napari's ``pytest11``
entry point (``pytest_plugins`` may not be set in a non-root conftest).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Runs, sample copies and sessions go to a per-test cache; widgets run synchronously."""
    monkeypatch.setenv("TILEUQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TILEUQ_NAPARI_SYNC", "1")
    from tileuq.napari import _common

    monkeypatch.setattr(_common, "_SESSIONS", {})


@pytest.fixture(scope="session")
def model_source(tmp_path_factory) -> str:
    """The bundled demo model, or (until it lands) a slim untrained SNGP model saved to disk."""
    from tileuq.napari._models import DEMO, demo_model_path

    if demo_model_path() is not None:
        return DEMO
    import tileuq

    folder = tmp_path_factory.mktemp("model") / "slim"
    model = tileuq.build_model(
        method="sngp", backbone="resnet_slim", classes=["tumor", "stroma", "normal"],
        tile_px=64, mpp=2.0,
    )  # fmt: skip
    model.eval()
    model.save(folder)
    return str(folder)


@pytest.fixture(scope="session")
def demo_results_folder(tmp_path_factory, model_source) -> Path:
    """``sample_data/demo_results``, or results made now by the same script when absent."""
    shipped = REPO / "sample_data" / "demo_results"
    if (shipped / "run.json").is_file():
        return shipped
    import importlib.util

    spec = importlib.util.spec_from_file_location("mdr", REPO / "scripts/make_demo_results.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from tileuq.napari._models import resolve_model_source

    out = tmp_path_factory.mktemp("demo") / "demo_results"
    argv = ["--model", resolve_model_source(model_source), "--out", str(out), "--coverage", "0.7"]
    assert mod.main(argv) == 0
    return out


@pytest.fixture
def sample_results(demo_results_folder, monkeypatch):
    """Point the sample-data contribution at the demo results folder."""
    from tileuq.napari import _sample_results

    monkeypatch.setattr(_sample_results, "demo_results_path", lambda: demo_results_folder)
    return demo_results_folder
