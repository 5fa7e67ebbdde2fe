"""``tileuq train``: train a tile model on a class-per-subfolder tile folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

METHOD_CHOICES = ("sngp", "ensemble", "mc_dropout", "deterministic")
_LABELS = {
    "precise_bn": "BatchNorm statistics",
    "final_pass": "SNGP precision",
    "evaluate": "validation",
    "save": "saving",
}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "train",
        help="train a tile model (SNGP, ensemble, MC dropout, deterministic) on labelled tiles",
        description=(
            "Train a model on a folder with one sub-folder of tile images per class and write "
            "<out>/model.safetensors, model.json (with training provenance), metrics.json "
            "(per-epoch loss, accuracy, NLL, ECE) and training_split.json.  Load the result "
            "with tileuq.load_model(<out>) or use it with 'tileuq run --model <out>'."
        ),
    )
    p.add_argument("--tiles", type=Path, required=True, help="folder of <class>/<image> tiles")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    m = p.add_argument_group("model")
    m.add_argument("--method", choices=METHOD_CHOICES, default="sngp", help="method (sngp)")
    m.add_argument("--backbone", default="resnet18", help="resnet18/34/50 or resnet_slim")
    m.add_argument("--tile-px", type=int, default=224, help="model input side in pixels (224)")
    m.add_argument("--mpp", type=float, help="resolution of the tiles at --tile-px, µm/px")
    m.add_argument("--classes", nargs="+", help="class folder names in label order (sorted)")
    m.add_argument("--colors", nargs="+", help="one #rrggbb colour per class")
    m.add_argument("--name", help="model name")
    m.add_argument("--members", type=int, default=5, help="ensemble members K (5)")
    m.add_argument("--mc-samples", type=int, default=20, help="MC-dropout passes T (20)")
    m.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra build_model hyperparameter, e.g. --set drop_rate=0.3 (JSON values)",
    )
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=30, help="maximum epochs per member (30)")
    t.add_argument("--batch-size", type=int, default=32, help="batch size (32)")
    t.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (1e-3)")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (1e-4)")
    t.add_argument("--schedule", choices=("cosine", "plateau"), default="cosine", help="(cosine)")
    t.add_argument("--patience", type=int, default=8, help="early-stopping patience, 0: off (8)")
    t.add_argument("--seed", type=int, default=0, help="seed of everything (0)")
    t.add_argument("--val-fraction", type=float, default=0.2, help="validation fraction (0.2)")
    t.add_argument("--split", type=Path, help="split file: train on one part, validate on another")
    t.add_argument("--split-train", default="train", help="split part to train on (train)")
    t.add_argument("--split-val", help="split part to validate on (default: --val-fraction)")
    t.add_argument("--no-augment", action="store_true", help="no augmentation")
    t.add_argument(
        "--skip-unreadable", action="store_true", help="skip unreadable images (default: error)"
    )
    t.add_argument(
        "--no-final-pass",
        action="store_true",
        help="SNGP: keep the best epoch's precision instead of rebuilding it on the final weights",
    )
    c = p.add_argument_group("compute")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (auto)")
    c.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _extra(pairs: list[str]) -> dict[str, Any]:
    from tileuq.errors import ModelError

    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ModelError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Train, printing one line per epoch; return 0."""
    from tqdm import tqdm

    from tileuq.models.training import iter_train

    gen = iter_train(
        args.tiles,
        args.out,
        method=args.method,
        backbone=args.backbone,
        tile_px=args.tile_px,
        mpp=args.mpp,
        classes=args.classes,
        colors=args.colors,
        name=args.name,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        patience=args.patience or None,
        seed=args.seed,
        val_fraction=args.val_fraction,
        split=args.split,
        train_subset=args.split_train,
        val_subset=args.split_val,
        members=args.members,
        mc_samples=args.mc_samples,
        augmentation=not args.no_augment,
        sngp_final_pass=not args.no_final_pass,
        device=args.device,
        threads=args.threads,
        on_error="skip" if args.skip_unreadable else "raise",
        model_kwargs=_extra(args.set),
    )
    bar = tqdm(total=0, unit="batch", disable=args.no_progress, dynamic_ncols=True)
    key: tuple[str, int, int] | None = None
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            k = (p.stage, p.member, p.epoch)
            if k != key and p.stage in ("load", "train"):
                key = k
                who = f"member {p.member + 1}/{p.members} " if p.members > 1 else ""
                label = "decoding tiles" if p.stage == "load" else f"{who}epoch {p.epoch}"
                bar.reset(total=p.total)
                bar.set_description(label)
            if p.stage in ("load", "train"):
                bar.n = p.done
                if p.loss is not None:
                    bar.set_postfix(loss=f"{p.loss:.4f}", refresh=False)
                bar.refresh()
            elif p.stage == "epoch" and p.metrics is not None:
                r = p.metrics
                mark = " *" if r["best"] else ""
                bar.write(
                    f"{'member ' + str(p.member + 1) + ' ' if p.members > 1 else ''}"
                    f"epoch {p.epoch}: train loss {r['train_loss']:.4f} acc {r['train_acc']:.3f}"
                    f" | val NLL {r['val_nll']:.4f} acc {r['val_acc']:.3f} "
                    f"ECE {r['val_ece']:.3f}{mark}"
                )
            elif p.stage in ("precise_bn", "final_pass", "evaluate", "save"):
                key = None
                bar.reset(total=1)
                bar.set_postfix_str("", refresh=False)
                bar.set_description(_LABELS[p.stage])
    finally:
        bar.close()
    val = result.metrics["final"]["val"]
    print(
        f"{result.model.model_id}: validation accuracy {val['accuracy']:.3f}, NLL "
        f"{val['nll']:.4f}, ECE {val['ece']:.3f} ({val['n']} tiles) -> {args.out}"
    )
    return 0
