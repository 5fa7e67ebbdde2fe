"""End to end: the bundled demo model with its carried Mahalanobis scorer and calibration.

``benchmarks/evidence.py`` fits its distance scores itself, on cached features.  This part
loads ``sample_data/demo_model`` as a user would (``tileuq.load_model``), lets
``model.predict`` compute ``mahalanobis`` from the scorer stored in the model folder, applies
the calibration stored in ``model.json`` unchanged, and reports

* that the carried score equals a Mahalanobis scorer fitted here on the ``train`` features
  (same split, same weights), i.e. the model folder carries what the evidence measured;
* realized coverage / selective risk on the ``calibration`` and ``test`` splits;
* the fraction of each OOD set rejected, and rejected as "unfamiliar" (by the gate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from _evidence_data import EXTRA, FAR, GROUPS, NEAR, REPO, id_sets, ood_sets, predict_cached
from _evidence_report import md
from _evidence_stats import binom_ci

DEMO = REPO / "sample_data" / "demo_model"


def demo_end_to_end(cache: dict[Any, Any], cache_dir: Path) -> dict[str, Any] | None:
    """Run the checks above; ``None`` when the demo model carries no Mahalanobis scorer.

    ``cache`` maps ``(tile_px, field of view)`` to the tile sets (as in ``evidence.py``).
    """
    from tileuq.models import load_model
    from tileuq.uncertainty import Calibration, MahalanobisScorer

    model = load_model(DEMO)
    if "mahalanobis" not in model.feature_scorers or not model.calibration:
        return None
    fov = float(model.tile_px) * float(model.mpp or 2.0)
    key = (int(model.tile_px), fov)
    if key not in cache:
        cache[key] = {**id_sets(model.tile_px, list(model.classes)), **ood_sets(model.tile_px, fov)}
    data = cache[key]
    sets = {k: predict_cached(model, v, cache_dir, "demo") for k, v in data.items()}
    ref = MahalanobisScorer().fit(sets["train"]["features"], sets["train"]["labels"])
    rel = max(
        float(np.max(np.abs(d["scores"]["mahalanobis"] - ref.score(d["features"]))
                     / np.maximum(1.0, ref.score(d["features"]))))
        for d in sets.values()
    )  # fmt: skip
    cal = Calibration.from_dict(model.calibration)
    decided = {k: cal.decide(d["scores"]) for k, d in sets.items()}
    for g, members in GROUPS.items():
        decided[g] = tuple(np.concatenate([decided[m][i] for m in members]) for i in (0, 1))
        sets[g] = {"labels": np.concatenate([sets[m]["labels"] for m in members])}
    rows = {}
    for k in ["calibration", "test", *FAR, *NEAR, *EXTRA, "far_pooled", "near_pooled"]:
        rejected, reason = decided[k]
        n = int(rejected.size)
        row: dict[str, Any] = {
            "n": n,
            "rejected": float(rejected.mean()),
            "unfamiliar": float((reason == "unfamiliar").mean()),
            "ambiguous": float((reason == "ambiguous").mean()),
        }
        if k in ("calibration", "test"):
            ok = sets[k]["predictions"] == sets[k]["labels"]
            acc = ~rejected
            m, err = int(acc.sum()), int((~ok[acc]).sum())
            row.update(coverage=m / n, coverage_ci95=binom_ci(m, n), accepted=m, errors=err,
                       risk=err / m if m else 0.0, risk_ci95=binom_ci(err, m))  # fmt: skip
        rows[k] = row
    return {
        "model": str(DEMO.relative_to(REPO)),
        "model_hash": model.model_hash,
        "weights_hash": model.weights_hash,
        "score_names": list(model.score_names),
        "rules": [r.to_dict() for r in cal.rules],
        "target_risk": cal.target_risk,
        "scorer_reference": model.feature_scorer_info.get("mahalanobis", {}),
        "max_rel_diff_vs_refit": rel,
        "sets": rows,
    }


def demo_table(demo: dict[str, Any]) -> str:
    """Markdown table of :func:`demo_end_to_end`."""
    rules = ", ".join(
        f"{r['score']} <= {r['threshold']:.4g} ({r['reason']})" for r in demo["rules"]
    )
    head = (
        f"Rule carried by `{demo['model']}`: {rules}; target risk {demo['target_risk']}. "
        f"Carried `mahalanobis` vs a scorer refitted here on the train features: max relative "
        f"difference {demo['max_rel_diff_vs_refit']:.1e}.\n\n"
    )
    out = []
    for k, r in demo["sets"].items():
        cov = risk = ""
        if "coverage" in r:
            cov = f"{r['coverage']:.3f} [{r['coverage_ci95'][0]:.2f}, {r['coverage_ci95'][1]:.2f}]"
            risk = (f"{r['risk']:.3f} [{r['risk_ci95'][0]:.2f}, {r['risk_ci95'][1]:.2f}] "
                    f"({r['errors']}/{r['accepted']})")  # fmt: skip
        out.append([k, r["n"], cov, risk, f"{r['rejected']:.2f}", f"{r['unfamiliar']:.2f}",
                    f"{r['ambiguous']:.2f}"])  # fmt: skip
    header = ["set", "n", "coverage [95 % CI]", "selective risk [95 % CI] (err/acc)",
              "rejected", "as unfamiliar", "as ambiguous"]  # fmt: skip
    return head + md(header, out)
