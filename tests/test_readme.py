"""The README's Python example runs as written (on the bundled slide and demo model)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(monkeypatch, capsys):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no Python example"
    monkeypatch.chdir(REPO)  # the example opens sample_data/... relative to the clone
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # our own README
    out = capsys.readouterr().out
    assert "(2220, 2967)" in out
    decided = namespace["decided"].table
    assert len(decided) == len(namespace["results"]) > 0
    assert decided["rejected"].all(), "the skin sample is out of domain: every tile is flagged"
    assert set(decided["reason"]) <= {"ambiguous", "unfamiliar"}
