"""Fit the demo model's Mahalanobis scorer and calibrate it (``sample_data/demo_model``).

1. **Feature distance.**  A Mahalanobis scorer (class means + shared Ledoit–Wolf covariance of
   the pooled backbone features; ``tileuq.uncertainty.fit_feature_scorers``) is fitted on the
   360 tiles of the ``train`` part of ``benchmarks/splits/colorectal_split.json`` — the tiles
   the model was trained on (290) and early-stopped on (70), never calibration or test tiles —
   and stored in the model folder (``scorers.safetensors``, listed in ``model.json``).  From then
   on ``tileuq run --model demo`` reports a ``mahalanobis`` column (reason "unfamiliar").  On this
   model it is the only score that detects far-OOD images (``docs/evidence.md``: AUROC 0.98
   far-OOD vs 0.48 for the SNGP variance); k-NN adds nothing here (0.95 / 0.45), so only
   Mahalanobis is fitted.
2. **Rule** (see ``docs/models-demo.md``, "Calibration of the demo model"): ``entropy``
   (ambiguous) carries a **risk target of 0.20 at delta = 0.05** (Learn-then-Test) behind a
   ``mahalanobis`` gate (unfamiliar) calibrated for coverage 0.95: with probability >= 95 %
   over the draw of the calibration tiles, at most 20 % of the accepted tiles exchangeable with
   them are misclassified.  A risk target of 0.10 (or 0.15) cannot be certified with the 120
   calibration tiles of this ~77 %-accurate model, and a coverage target of 0.9 accepts almost
   every tile (see ``docs/evidence.md``).

The calibration tiles are the ``calibration`` part of the split (24 per class, never used for
training or early stopping), read as training read them.  Scorer and calibration are written
into ``sample_data/demo_model/`` (``write_feature_scorers`` and ``write_calibration``,
atomically; the ``.bak`` files they leave are removed, git keeps the history).  The realized
coverage and risk on the ``test`` part are printed.  Rerun after
``benchmarks/train_models.py --demo``, which copies a manifest without scorer or calibration
over the demo model.

Usage::

    .venv/bin/python benchmarks/calibrate_demo.py [--dry-run]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _evidence_data import ID_TILES, REPO, SPLIT, id_sets

DEMO = REPO / "sample_data" / "demo_model"
KINDS = ("mahalanobis",)
RULE = ["entropy", "mahalanobis"]
TARGET_RISK, DELTA, GATE_COVERAGE = 0.20, 0.05, 0.95


def _realized(cal, model, data, label: str) -> dict:
    out = model.predict(data.images)
    scores = {k: v.numpy().astype(np.float64) for k, v in out["scores"].items()}
    rejected, reason = cal.decide(scores)
    ok = out["predictions"].numpy() == data.labels
    acc = ~rejected
    err = int((~ok[acc]).sum())
    res = {
        "n": int(ok.size),
        "coverage": float(acc.mean()),
        "risk": float(err / max(int(acc.sum()), 1)),
        "errors": err,
        "accepted": int(acc.sum()),
        "unfamiliar": int((reason == "unfamiliar").sum()),
        "ambiguous": int((reason == "ambiguous").sum()),
        "accuracy": float(ok.mean()),
    }
    print(
        f"{label} ({res['n']} tiles): coverage {res['coverage']:.3f}, selective risk "
        f"{res['risk']:.3f} ({err}/{res['accepted']}) vs target {TARGET_RISK}; rejected "
        f"{res['unfamiliar']} unfamiliar, {res['ambiguous']} ambiguous"
    )
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEMO)
    ap.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = ap.parse_args()
    import torch

    from tileuq.models import load_model
    from tileuq.models.feature_scorers import write_feature_scorers
    from tileuq.uncertainty import calibrate, fit_feature_scorers, write_calibration

    torch.set_num_threads(2)
    model = load_model(args.model)
    model.feature_scorers.clear()  # refit from scratch
    fit_feature_scorers(model, ID_TILES, KINDS, split_file=SPLIT, split="train")
    ref = model.feature_scorer_info["mahalanobis"]
    print(
        f"mahalanobis fitted on {ref['n_tiles']} tiles (part 'train'); same files as the "
        f"model's training data: {ref['matches_training_data']}; shrinkage "
        f"{model.feature_scorers['mahalanobis'].shrinkage_used:.3f}"
    )
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
    _realized(cal, model, test, "test split (not used here)")
    if args.dry_run:
        return 0
    path = write_feature_scorers(args.model, model)
    path = write_calibration(args.model, cal)
    for bak in (path.with_name(path.name + ".bak"), args.model / "scorers.safetensors.bak"):
        if bak.exists():
            bak.unlink()
    print(f"scorer and calibration written to {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
