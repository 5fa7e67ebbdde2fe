"""Train the four uncertainty methods on the colorectal polyp tiles; optionally ship the demo.

Data: ``../shared/data/tiles/colorectal_polyp_flagy_5class`` (5 classes x 120 JPEG tiles,
224 px; licence unknown, so only weights and file *names* enter the repository).  A fixed,
seeded, stratified 60/20/20 split into train / calibration / test is written once to
``benchmarks/splits/colorectal_split.json`` (committed) and reused by the calibration and
evaluation work.  Every method is trained on the ``train`` part only (20% of it held out,
stratified, for early stopping) with the same backbone and recipe, saved under
``benchmarks/results/models/<method>/`` (git-ignored) and evaluated on validation, calibration
and test tiles.  ``--demo`` copies the SNGP model to ``sample_data/demo_model/``.

Usage::

    .venv/bin/python benchmarks/train_models.py                  # all four methods
    .venv/bin/python benchmarks/train_models.py --methods sngp --demo
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TILEUQ_SHARED_DATA", REPO.parent / "shared" / "data"))
TILES = SHARED / "tiles" / "colorectal_polyp_flagy_5class"
SPLIT = REPO / "benchmarks" / "splits" / "colorectal_split.json"
RESULTS = REPO / "benchmarks" / "results" / "models"
DEMO = REPO / "sample_data" / "demo_model"
METHODS = ("sngp", "deterministic", "mc_dropout", "ensemble")

CLASSES = ["AC", "H", "S", "T", "V"]
COLORS = ["#d62728", "#2ca02c", "#ff7f0e", "#1f77b4", "#9467bd"]
DESCRIPTIONS = {
    "AC": "adenocarcinoma",
    "H": "healthy colonic mucosa",
    "S": "serrated lesion",
    "T": "tubular adenoma",
    "V": "villous adenoma",
}
# Estimated, not recorded by the source (see docs/models-demo.md): nuclei of small
# lymphocytes span ~4-6 px and normal crypts ~85-95 px in the 224 px tiles, which puts the
# tiles at roughly 1.0 um/px (range ~0.7-1.4); resized to 112 px they are at ~2.0 um/px.
SOURCE_MPP = 1.0
RECIPE = {
    "backbone": "resnet_slim",
    "tile_px": 112,
    "epochs": 40,
    "patience": 10,
    "batch_size": 32,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "warmup_epochs": 1.0,
    "val_fraction": 0.2,
    "members": 5,
    "mc_samples": 20,
}
# SNGP: 512 random features keep the bundled model small (the precision is 512x512 float64;
# 288 training tiles give it rank <= 288 anyway).  BatchNorm is left unbounded, as in the
# uncertainty-baselines SNGP ResNets (convolutions keep the operator-norm bound 0.95): with
# the DUE-style BatchNorm bound at 0.95 the max-over-channels factor grew to 14-111x on this
# small set and the eval-mode features collapsed (every validation tile got the same
# prediction), even with precise BatchNorm statistics.
SNGP_KWARGS = {"num_inducing": 512, "sn_batchnorm_bound": False}


def make_or_read_split(seed: int) -> dict:
    from tileuq.models.data import scan_tile_folder
    from tileuq.models.splits import make_split, write_split

    folder = scan_tile_folder(TILES, CLASSES)
    if SPLIT.exists():
        split = json.loads(SPLIT.read_text())
        if split["data_hash"] != make_split(folder, split["fractions"], split["seed"])["data_hash"]:
            sys.exit(f"{TILES} changed since {SPLIT} was written (data hash differs)")
        return split
    split = make_split(
        folder,
        {"train": 0.6, "calibration": 0.2, "test": 0.2},
        seed,
        dataset="colorectal_polyp_flagy_5class",
        note=(
            "Flagy/Colorectal_Carcinoma_Classifier@b4c0188 images/training (600-tile sample in "
            "../shared/data); licence unknown: file names only, the tiles are not in this repo"
        ),
    )
    write_split(SPLIT, split)
    print(f"wrote {SPLIT}: { ({k: len(v) for k, v in split['splits'].items()}) }")
    return split


def evaluate(model, split: dict, tile_px: int) -> dict:
    from tileuq.models.data import read_image, scan_tile_folder
    from tileuq.models.training_io import classification_metrics, predict_probabilities

    folder = scan_tile_folder(TILES, CLASSES)
    out = {}
    for part in ("calibration", "test"):
        idx = folder.indices_of(split["splits"][part], part)
        imgs = np.stack([read_image(folder.path(int(i)), tile_px) for i in idx])
        t = time.perf_counter()
        probs = predict_probabilities(model, imgs, 128)
        dt = time.perf_counter() - t
        out[part] = {
            **classification_metrics(probs, folder.labels[idx]),
            "tiles_per_s": len(idx) / dt,
        }
    return out


def train_one(method: str, split: dict, args: argparse.Namespace) -> dict:
    from tileuq.models.training import iter_train

    out = RESULTS / method
    r = RECIPE
    kwargs = dict(
        method=method,
        backbone=r["backbone"],
        tile_px=r["tile_px"],
        mpp=SOURCE_MPP * 224 / r["tile_px"],
        classes=CLASSES,
        colors=COLORS,
        name=f"colorectal-{method}",
        epochs=args.epochs or r["epochs"],
        batch_size=r["batch_size"],
        lr=r["lr"],
        weight_decay=r["weight_decay"],
        schedule=r["schedule"],
        warmup_epochs=r["warmup_epochs"],
        patience=r["patience"],
        seed=args.seed,
        val_fraction=r["val_fraction"],
        split=SPLIT,
        train_subset="train",
        members=r["members"],
        mc_samples=r["mc_samples"],
        device="cpu",
        threads=args.threads,
        model_kwargs=SNGP_KWARGS if method == "sngp" else None,
    )
    t0 = time.perf_counter()
    gen = iter_train(TILES, out, **kwargs)
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if p.stage == "epoch":
            m = p.metrics
            print(
                f"  {method} m{p.member} ep{p.epoch:>2} loss {m['train_loss']:.3f} "
                f"acc {m['train_acc']:.3f} | val nll {m['val_nll']:.3f} acc {m['val_acc']:.3f} "
                f"ece {m['val_ece']:.3f} {'*' if m['best'] else ' '} ({m['seconds']:.0f}s)",
                flush=True,
            )
    seconds = time.perf_counter() - t0
    model = result.model
    model.training_info["class_descriptions"] = DESCRIPTIONS
    model.training_info["mpp_note"] = (
        f"estimated, not recorded by the source: the 224 px source tiles look like ~{SOURCE_MPP} "
        "um/px (nucleus and crypt sizes), so the 112 px model input is ~2 um/px; plausible range "
        "x0.7-1.4"
    )
    model.training_info["recipe_script"] = "benchmarks/train_models.py"
    model.save(out)  # manifest with the notes (same weights)
    ev = evaluate(model, split, r["tile_px"])
    res = {
        "method": method,
        "val": result.metrics["final"]["val"],
        **ev,
        "train_seconds": seconds,
        "epochs_run": [m["epochs_run"] for m in result.metrics["members"]],
        "best_epoch": [m["best_epoch"] for m in result.metrics["members"]],
        "model_bytes": sum(f.stat().st_size for f in out.iterdir() if f.name.startswith("model.")),
        "model_id": model.model_id,
    }
    (out / "evaluation.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def table(results: list[dict]) -> str:
    rows = [
        "| method | val acc | val NLL | val ECE | test acc | test NLL | test ECE | epochs "
        "| train time | size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        v, t = r["val"], r["test"]
        rows.append(
            f"| {r['method']} | {v['accuracy']:.3f} | {v['nll']:.3f} | {v['ece']:.3f} | "
            f"{t['accuracy']:.3f} | {t['nll']:.3f} | {t['ece']:.3f} | "
            f"{','.join(map(str, r['epochs_run']))} | {r['train_seconds'] / 60:.1f} min | "
            f"{r['model_bytes'] / 1e6:.1f} MB |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, help="override the recipe's maximum epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="retrain methods already trained")
    ap.add_argument("--demo", action="store_true", help="copy the SNGP model to sample_data")
    args = ap.parse_args()
    if not TILES.is_dir():
        sys.exit(f"tiles not found: {TILES} (set TILEUQ_SHARED_DATA)")
    torch.set_num_threads(args.threads)
    split = make_or_read_split(args.seed)
    results = []
    for method in args.methods:
        done = RESULTS / method / "evaluation.json"
        if done.exists() and not args.force:
            print(f"{method}: already trained ({done})")
            results.append(json.loads(done.read_text()))
            continue
        print(f"{method}: training", flush=True)
        results.append(train_one(method, split, args))
        print(json.dumps(results[-1], indent=1), flush=True)
    summary = RESULTS / "summary.json"
    summary.write_text(json.dumps({"recipe": RECIPE, "results": results}, indent=2) + "\n")
    print(table(results))
    if args.demo:
        src = RESULTS / "sngp"
        old = DEMO / "model.json"
        if old.exists() and json.loads(old.read_text()).get("calibration"):
            print("note: the demo's calibration is replaced; rerun benchmarks/calibrate_demo.py")
        DEMO.mkdir(parents=True, exist_ok=True)
        for name in (
            "model.json",
            "model.safetensors",
            "metrics.json",
            "training_split.json",
            "evaluation.json",
        ):
            shutil.copyfile(src / name, DEMO / name)
        print(f"demo model -> {DEMO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
