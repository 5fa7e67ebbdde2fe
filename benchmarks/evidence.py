"""Evidence on real data: evaluation, calibrated coverage/risk and OOD detection per method.

For each trained model under ``benchmarks/results/models/<method>/`` (deterministic, sngp,
ensemble, mc_dropout; trained by ``benchmarks/train_models.py`` on the ``train`` part of the
fixed split ``benchmarks/splits/colorectal_split.json``):

1. the evaluate table on the ``test`` split (``tileuq.metrics.evaluate_predictions``);
2. rules calibrated on the ``calibration`` split (``tileuq.uncertainty.calibrate_scores``) for a
   coverage target of 0.9 and a risk target of 0.10, both at delta = 0.05, per score (and the
   model's default two-score rule), with the realized coverage and selective risk on ``test``;
   feature-distance scores (k-NN cosine / Euclidean, Mahalanobis) are fitted on the features
   of the ``train`` split;
3. OOD AUROC and FPR@95 per score against far-OOD crops and near-OOD tiles (sets described in
   ``benchmarks/_evidence_data.py``), per set and pooled, with bootstrap 95 % intervals;
4. 200 random re-splits of the pooled calibration + test tiles: how often the coverage and risk
   targets fail on the held-out half;
5. the bundled demo model end to end (``benchmarks/_evidence_demo.py``): its carried
   Mahalanobis scorer and calibration, as ``tileuq.load_model`` gives them.

Model outputs are cached under ``benchmarks/results/evidence/cache/`` so reruns take seconds.
Writes ``benchmarks/results/evidence.json``, ``benchmarks/results/evidence/tables.md`` and
plots under ``benchmarks/results/evidence/<method>/``; prints the tables.

Usage::

    .venv/bin/python benchmarks/evidence.py [--methods sngp ensemble] [--resplits 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _evidence_report as rep
import _evidence_stats as st
from _evidence_data import (
    EXTRA,
    FAR,
    GROUPS,
    NEAR,
    REPO,
    SPLIT,
    id_sets,
    ood_sets,
    predict_cached,
)
from _evidence_demo import demo_end_to_end, demo_table

MODELS = REPO / "benchmarks" / "results" / "models"
OUT_JSON = REPO / "benchmarks" / "results" / "evidence.json"
OUT_DIR = REPO / "benchmarks" / "results" / "evidence"
METHODS = ("deterministic", "sngp", "ensemble", "mc_dropout")
Q, ALPHA, DELTA = 0.9, 0.10, 0.05
#: a looser risk target, reported because 0.10 cannot be certified with 120 calibration tiles
ALPHA_LOOSE = 0.20


def to_predictions(d: dict[str, Any], classes: list[str], names: list[str]) -> Any:
    """Cached arrays -> ``tileuq.uncertainty.predict.Predictions`` (only ``names`` scores)."""
    from tileuq.uncertainty.predict import Predictions

    return Predictions(
        labels=d["labels"],
        logits=d["logits"],
        probabilities=d["probabilities"],
        predictions=d["predictions"],
        scores={k: d["scores"][k] for k in names},
        classes=classes,
        index=np.arange(d["labels"].size),
        features=d["features"],
    )


def pooled(sets: dict[str, dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Concatenate sets (scores, predictions, labels, features)."""
    parts = [sets[n] for n in names]
    out: dict[str, Any] = {
        k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "scores"
    }
    out["scores"] = {k: np.concatenate([p["scores"][k] for p in parts]) for k in parts[0]["scores"]}
    return out


def run_method(method: str, args: argparse.Namespace, cache: dict[Any, Any]) -> dict[str, Any]:
    """Everything for one trained model."""
    from tileuq.metrics.evaluate import evaluate_predictions
    from tileuq.models import load_model

    t0 = time.perf_counter()
    model = load_model(MODELS / method)
    model.eval()
    classes = list(model.classes)
    fov = float(model.tile_px) * float(model.mpp or 2.0)
    key = (int(model.tile_px), fov)
    if key not in cache:
        cache[key] = {**id_sets(model.tile_px, classes), **ood_sets(model.tile_px, fov)}
    data = cache[key]
    sets = {k: predict_cached(model, v, OUT_DIR / "cache", method) for k, v in data.items()}
    t_pred = time.perf_counter() - t0
    fit = st.add_distance_scores(sets, "train")
    for g, members in GROUPS.items():
        sets[g] = pooled(sets, members)
    scores = st.relevant_scores(method, list(sets["test"]["scores"]))
    ood_names = [*FAR, *NEAR, *GROUPS, *EXTRA]
    preds = {k: to_predictions(sets[k], classes, scores) for k in ["test", *ood_names]}
    ev = evaluate_predictions(preds["test"], {k: preds[k] for k in ood_names})

    rules: list[list[str]] = [[s] for s in scores]
    rules.append(["entropy", st.unfamiliar_score(method)])
    ood = {k: sets[k] for k in ood_names}
    calib = {
        "coverage": [
            st.calibrate_and_test(sets["calibration"], sets["test"], ood, r,
                                  target_coverage=Q, delta=DELTA)
            for r in rules
        ],
        "risk": [
            st.calibrate_and_test(sets["calibration"], sets["test"], ood, r,
                                  target_risk=ALPHA, delta=DELTA)
            for r in rules
        ],
        "risk_loose": [
            st.calibrate_and_test(sets["calibration"], sets["test"], ood, r,
                                  target_risk=ALPHA_LOOSE, delta=DELTA)
            for r in rules
        ],
    }  # fmt: skip
    rng = np.random.default_rng(0)
    ood_res = {
        s: {
            k: st.ood_metrics(sets["test"]["scores"][s], sets[k]["scores"][s], rng, args.boot)
            for k in ood_names
        }
        for s in scores
    }
    resplit = None
    if args.resplits:
        pool = pooled(sets, ["calibration", "test"])
        rs_rules = [[s] for s in scores] + [["entropy", st.unfamiliar_score(method)]]
        resplit = st.resplit_check(pool, rs_rules, n_resplits=args.resplits, q=Q,
                                   alphas=(ALPHA, ALPHA_LOOSE), delta=DELTA)  # fmt: skip
    per_tile = per_tile_view(sets, calib, classes, data, ["near_nct_crc", "near_pcam"])
    plots = make_plots(method, sets, scores, calib) if not args.no_plots else []
    return {
        "model": str((MODELS / method).relative_to(REPO)),
        "model_id": model.model_id,
        "model_hash": model.model_hash,
        "tile_px": model.tile_px,
        "mpp": model.mpp,
        "field_of_view_um": fov,
        "distance_fit": fit,
        "scores": scores,
        "evaluate": ev,
        "calibration": calib,
        "ood": ood_res,
        "resplit": resplit,
        "per_tile": per_tile,
        "plots": plots,
        "seconds": {"predict": t_pred, "total": time.perf_counter() - t0},
    }


def per_tile_view(
    sets: dict[str, Any],
    calib: dict[str, Any],
    classes: list[str],
    data: dict[str, Any],
    names: list[str],
) -> dict[str, Any]:
    """Prediction and which coverage-0.9 rule rejects each tile of small OOD sets."""
    out = {}
    for name in names:
        d = sets[name]
        rej = {}
        for c in calib["coverage"]:
            if c["ok"] and len(c["rule"]) == 1:
                s = c["rule"][0]
                rej[s] = (d["scores"][s] > c["thresholds"][s]).tolist()
        out[name] = {
            "names": data[name].names,
            "prediction": [classes[i] for i in d["predictions"]],
            "confidence": d["probabilities"].max(axis=1).tolist(),
            "rejected_by": rej,
        }
    return out


def make_plots(
    method: str, sets: dict[str, Any], scores: list[str], calib: dict[str, Any]
) -> list[str]:
    """Reliability, risk–coverage and ID-vs-OOD histograms per score."""
    from tileuq.metrics import plot_reliability, plot_risk_coverage, plot_score_histograms

    out = OUT_DIR / method
    t = sets["test"]
    ok = t["predictions"] == t["labels"]
    files = [
        plot_reliability(t["probabilities"], t["labels"], out / "reliability.png", title=method),
        plot_risk_coverage(
            {s: (t["scores"][s], ok) for s in scores if s in ("msp", "entropy", "margin",
                                                               "variance", "mutual_information",
                                                               "knn_cosine", "mahalanobis")},
            out / "risk_coverage.png",
            target_risk=ALPHA,
            title=f"{method} (test split)",
        ),
    ]  # fmt: skip
    thr = {c["rule"][0]: c["thresholds"][c["rule"][0]] for c in calib["coverage"]
           if c["ok"] and len(c["rule"]) == 1}  # fmt: skip
    for s in scores:
        files.append(
            plot_score_histograms(
                t["scores"][s],
                {k: sets[k]["scores"][s] for k in ("far_pooled", "near_pooled")},
                out / f"hist_{s}.png",
                score=s,
                threshold=thr.get(s),
            )
        )
    return [str(Path(p).relative_to(REPO)) for p in files]


def tables(res: dict[str, Any]) -> str:
    """All tables as markdown."""
    parts = [
        "## Evaluate table (test split)\n\n" + rep.evaluate_table(res),
        "## AURC per score (test split)\n\n" + rep.aurc_table(res),
        f"## Coverage target {Q} (delta {DELTA}) calibrated on the calibration split\n\n"
        + rep.calibration_table(res, "coverage"),
        f"## Risk target {ALPHA} (delta {DELTA}) calibrated on the calibration split\n\n"
        + rep.calibration_table(res, "risk"),
        f"## Risk target {ALPHA_LOOSE} (delta {DELTA}) calibrated on the calibration split\n\n"
        + rep.calibration_table(res, "risk_loose"),
        "## OOD summary (pooled sets)\n\n" + rep.ood_summary_table(res),
    ]
    for m in res["methods"]:
        parts.append(f"## OOD AUROC [95 % bootstrap CI]: {m}\n\n" + rep.ood_table(res, m))
        parts.append(f"## FPR@95 [95 % bootstrap CI]: {m}\n\n" + rep.ood_table(res, m, "fpr95"))
        parts.append(f"## NCT-CRC tiles: {m}\n\n" + rep.nct_table(res, m))
    if res.get("demo"):
        parts.append("## Demo model end to end\n\n" + demo_table(res["demo"]))
    if any(r.get("resplit") for r in res["methods"].values()):
        parts.append("## Random re-split check: coverage\n\n" + rep.resplit_table(res))
        for a in (ALPHA, ALPHA_LOOSE):
            parts.append(f"## Random re-split check: risk {a}\n\n" + rep.resplit_risk_table(res, a))
    return "\n\n".join(parts) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (1000)")
    ap.add_argument("--resplits", type=int, default=200, help="random re-splits (200; 0: skip)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo model's end-to-end part")
    ap.add_argument(
        "--tables-only", action="store_true", help="reprint the tables from the JSON, run nothing"
    )
    args = ap.parse_args()
    if args.tables_only:
        import json

        text = tables(json.loads(OUT_JSON.read_text()))
        (OUT_DIR / "tables.md").write_text(text)
        print(text)
        return 0
    import torch

    from tileuq._io import write_json

    torch.set_num_threads(args.threads)
    res: dict[str, Any] = {
        "split": str(SPLIT.relative_to(REPO)),
        "targets": {"coverage": Q, "risk": ALPHA, "risk_loose": ALPHA_LOOSE, "delta": DELTA},
        "methods": {},
        "missing": [],
    }
    cache: dict[Any, Any] = {}
    for method in args.methods:
        if not (MODELS / method / "model.safetensors").exists():
            print(f"{method}: no trained model under {MODELS / method} (still training?)")
            res["missing"].append(method)
            continue
        print(f"{method}: evaluating", flush=True)
        res["methods"][method] = run_method(method, args, cache)
    if not args.no_demo:
        print("demo model: end to end", flush=True)
        res["demo"] = demo_end_to_end(cache, OUT_DIR / "cache")
    if cache:
        data = next(iter(cache.values()))
        res["sets"] = {k: {"n": len(v.labels), "note": v.note} for k, v in data.items()}
    write_json(OUT_JSON, res)
    text = tables(res) if res["methods"] else "no model found\n"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "tables.md").write_text(text)
    print(text)
    print(f"wrote {OUT_JSON.relative_to(REPO)} and {(OUT_DIR / 'tables.md').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
