#!/usr/bin/env bash
# Set up and run tileuq's main job on the bundled sample slide; outputs go to ./tileuq-out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/tileuq tile sample_data/CMU-1-Small-Region.svs --mpp 0.5 --tile-px 224 --out tileuq-out
