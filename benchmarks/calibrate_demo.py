"""Calibrate the bundled demo model (``sample_data/demo_model``) on the calibration split.

The rule (see ``docs/models-demo.md``, "Calibration of the demo model"): the model's default
scores, ``entropy`` (ambiguous) behind an SNGP ``variance`` gate (unfamiliar, coverage 0.95),
with a **risk target of 0.20 at delta = 0.05** (Learn-then-Test): with probability >= 95 % over
the draw of the calibration tiles, at most 20 % of the accepted tiles exchangeable with them
are misclassified.  A risk target of 0.10 (or 0.15) cannot be certified with the 120
calibration tiles of this ~77 %-accurate model, and a coverage target of 0.9 accepts almost
every tile (see ``docs/evidence.md``).

The calibration tiles are the ``calibration`` part of ``benchmarks/splits/colorectal_split.json``
(24 per class, never used for training or early stopping), read as training read them.  The
calibration is written into ``sample_data/demo_model/model.json`` (``tileuq.uncertainty.
write_calibration``, atomically; the ``model.json.bak`` it leaves is removed, git keeps the
history).  Rerun after ``benchmarks/train_models.py --demo``, which copies an uncalibrated
manifest over the demo model.

Usage::

    .venv/bin/python benchmarks/calibrate_demo.py [--dry-run]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _evidence_data import REPO, SPLIT, id_sets

DEMO = REPO / "sample_data" / "demo_model"
RULE = ["entropy", "variance"]
TARGET_RISK, DELTA, GATE_COVERAGE = 0.20, 0.05, 0.95


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEMO)
    ap.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = ap.parse_args()
    import torch

    from tileuq.models import load_model
    from tileuq.uncertainty import calibrate, write_calibration

    torch.set_num_threads(2)
    model = load_model(args.model)
    sets = id_sets(model.tile_px, list(model.classes))
    cal_set, test = sets["calibration"], sets["test"]
    cal = calibrate(
        model,
        (cal_set.images, cal_set.labels),
        score=RULE,
        target_risk=TARGET_RISK,
        delta=DELTA,
        unfamiliar_coverage=GATE_COVERAGE,
    )
    cal.info.update(
        source=f"calibration split of {SPLIT.relative_to(REPO)} ({len(cal_set.labels)} tiles)",
        script="benchmarks/calibrate_demo.py",
    )
    print(cal.describe())
    out = model.predict(test.images)
    scores = {k: v.numpy().astype(np.float64) for k, v in out["scores"].items()}
    rejected, _ = cal.decide(scores)
    ok = out["predictions"].numpy() == test.labels
    acc = ~rejected
    print(
        f"test split ({len(ok)} tiles, not used here): coverage {acc.mean():.3f}, "
        f"selective risk {(~ok[acc]).mean():.3f} ({int((~ok[acc]).sum())}/{int(acc.sum())}) "
        f"vs target {TARGET_RISK}"
    )
    if args.dry_run:
        return 0
    path = write_calibration(args.model, cal)
    bak = path.with_name(path.name + ".bak")
    if bak.exists():
        bak.unlink()
    print(f"calibration written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
