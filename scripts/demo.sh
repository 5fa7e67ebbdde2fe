#!/usr/bin/env bash
# Set up and run tileuq's main job on the bundled sample slide with the bundled demo model.
# Writes tileuq-out/CMU-1-Small-Region/{tiles.parquet,run.json,overview.png} and a report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/tileuq run sample_data/CMU-1-Small-Region.svs --model demo --out tileuq-out
.venv/bin/tileuq export tileuq-out/CMU-1-Small-Region --to report
echo "Open tileuq-out/CMU-1-Small-Region/overview.png and the report written above."
