"""Atomic writes: all or nothing, readable like a normal file."""

from __future__ import annotations

import os
import stat

import pytest

from tileuq._io import atomic_path, atomic_write, write_json


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # temp file cleaned up
    with atomic_write(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new"


def test_atomic_path_keeps_suffix_and_cleans_up(tmp_path):
    target = tmp_path / "a" / "img.png"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == target.parent
        tmp.write_bytes(b"x")
        raise ValueError
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_written_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
        with atomic_path(tmp_path / "y.bin") as tmp:
            tmp.write_bytes(b"1")
    finally:
        os.umask(old)
    for name in ("x.json", "y.bin"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))
