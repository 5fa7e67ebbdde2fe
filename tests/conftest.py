"""Shared fixtures: the bundled sample slide and the team's real data in ``../shared/data``.

Tests that need ``../shared/data`` use the ``shared_data`` fixture, which skips with a visible
reason when the folder is absent (a user's clone).  Set ``TILEUQ_SHARED_DATA`` to point
elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SLIDE = REPO / "sample_data" / "CMU-1-Small-Region.svs"
SHARED_DATA = Path(os.environ.get("TILEUQ_SHARED_DATA", REPO.parent / "shared" / "data"))
ARTIFACTS = Path(os.environ.get("TILEUQ_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture(scope="session")
def sample_slide_path() -> Path:
    """The bundled, redistributable Aperio sample slide."""
    assert SAMPLE_SLIDE.exists(), f"bundled sample slide missing: {SAMPLE_SLIDE}"
    return SAMPLE_SLIDE


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real slides and tiles); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED_DATA} (set TILEUQ_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Folder for screenshots and other test artifacts worth keeping."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def export_data(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Sample slide run by a small SNGP model, calibrations, decisions (``_export_data.py``)."""
    from _export_data import build

    return build(str(tmp_path_factory.getbasetemp()))
