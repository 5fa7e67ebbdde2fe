"""Package hygiene: a cheap namespace, and a core that never imports the GUI stack."""

from __future__ import annotations

import subprocess
import sys

import tileuq

CORE = [
    "tileuq.slide",
    "tileuq.tiling",
    "tileuq.models",
    "tileuq.uncertainty",
    "tileuq.metrics",
    "tileuq.engine",
    "tileuq.export",
    "tileuq.layers",
    "tileuq.review",
    "tileuq.cli",
]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_public_names_resolve():
    assert set(tileuq.__all__) - {"__version__"} == set(tileuq._LAZY)
    for name in tileuq._LAZY:
        assert getattr(tileuq, name) is not None


def test_import_tileuq_is_cheap():
    mods = _modules_after("import tileuq")
    assert "torch" not in mods and "napari" not in mods and "dask" not in mods


def test_core_does_not_import_gui():
    mods = _modules_after("\n".join(f"import {m}" for m in CORE))
    gui = {
        m
        for m in mods
        if m.split(".")[0] in {"napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "magicgui"}
    }
    assert not gui, sorted(gui)[:10]


def test_cli_help_does_not_import_torch():
    mods = _modules_after("import tileuq.cli as c\nc.build_parser()")
    assert "torch" not in mods
