"""Real results for the export tests: the sample slide run by a small SNGP model, once.

``run_slides`` runs the bundled sample slide and a broken file into a batch folder (so the
batch report sees a complete and a failed slide); a second slide folder is a copy of the first
under another name.  Calibrations are fitted on the slide's own scores: one exchangeable with
the slide (no shift expected) and one fitted on its least uncertain half (a shift).
The ``export_data`` fixture (``conftest.py``) calls :func:`build` once per session.
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "CMU-1-Small-Region.svs"
CLASSES = ["tumour", "stroma", "background"]
COLORS = ["#d62728", "#e377c2", "#bcbd22"]


@dataclass(frozen=True)
class ExportData:
    """Paths of the shared export test data."""

    batch: Path  # run_slides output: CMU-1-Small-Region/, CMU-copy/, broken/ (failed)
    results: Path  # batch / "CMU-1-Small-Region"
    calibration: Path  # exchangeable calibration (variance + entropy rules)
    shifted: Path  # calibration on the slide's least uncertain half: the alarm fires
    decisions: Path  # a reviewer decisions file for some tiles


@functools.cache
def build(base: str) -> ExportData:
    import tileuq
    from tileuq.models import build_model
    from tileuq.uncertainty.decisions import decision_record, write_decisions
    from tileuq.uncertainty.fit import calibrate_scores

    root = Path(base) / "export-data"
    root.mkdir(parents=True, exist_ok=True)
    model = build_model(
        "sngp", backbone="resnet_slim", classes=CLASSES, colors=COLORS, tile_px=32, mpp=2.0
    )
    broken = root / "broken.svs"
    broken.write_bytes(b"not a slide")
    batch = root / "batch"
    outcomes = tileuq.run_slides([SAMPLE, broken], model, batch, device="cpu", overview=False)
    assert [o.status for o in outcomes] == ["complete", "failed"], outcomes
    results_dir = batch / "CMU-1-Small-Region"
    copy = batch / "CMU-copy"
    shutil.copytree(results_dir, copy)
    meta = json.loads((copy / "run.json").read_text())
    meta["slide"]["name"] = "CMU-copy.svs"
    (copy / "run.json").write_text(json.dumps(meta))

    res = tileuq.TileResults.load(results_dir)
    t = res.table
    scores = {"variance": t["variance"].to_numpy(), "entropy": t["entropy"].to_numpy()}
    info = {"model_hash": res.meta["model"]["hash"], "model_id": res.meta["model"]["id"]}
    cal = calibrate_scores(scores, target_coverage=0.8, delta=0.1, classes=CLASSES, **info)
    cal_path = cal.save(root / "calibration.json")
    low = t["variance"].to_numpy() <= np.median(t["variance"].to_numpy())
    shifted = calibrate_scores(
        {k: v[low] for k, v in scores.items()}, target_coverage=0.9, delta=0.1, **info
    )
    shifted_path = shifted.save(root / "shifted.json")

    # decisions on three horizontally adjacent tiles plus one two rows away
    where = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(t["row"], t["col"], strict=True))}
    r0, c0 = next(
        k for k in sorted(where) if (k[0], k[1] + 1) in where and (k[0], k[1] + 2) in where
    )
    far = next(i for k, i in sorted(where.items()) if k[0] >= r0 + 2)
    picks = [t.iloc[where[(r0, c0 + k)]] for k in range(3)] + [t.iloc[far]]
    answers = [("accept", None), ("relabel", "tumour"), ("relabel", "tumour"), ("artefact", None)]
    records = []
    for tile, (decision, label) in zip(picks, answers, strict=True):
        records.append(
            decision_record(
                x=int(tile["x"]),
                y=int(tile["y"]),
                plane=int(tile["plane"]),
                size=int(tile["size"]),
                prediction=str(tile["prediction"]),
                decision=decision,
                label=label,
                reviewer="tester",
            )
        )
    decisions = write_decisions(results_dir / "decisions.jsonl", records)
    return ExportData(batch, results_dir, cal_path, shifted_path, decisions)
