#!/usr/bin/env bash
# Set up, lint, type-check, validate the napari manifest and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/ruff format --check src tests benchmarks scripts
.venv/bin/mypy
.venv/bin/npe2 validate tileuq --imports
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet  # docs (site/ is git-ignored)
# pytest-xvfb starts a virtual X display for the napari tests
.venv/bin/python -m pytest "$@"
