"""``tileuq evaluate``: accuracy, calibration, selective and OOD metrics of one or more models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate",
        help="evaluate models on labelled tiles (and OOD tiles): table, plots and JSON",
        description=(
            "Print method, Acc, AUROC (macro one-vs-rest), NLL, Brier and ECE per model, then "
            "AURC and OOD AUROC / FPR at 95 %% TPR per score; write evaluation.json and PNG "
            "plots (reliability diagram, risk-coverage curve, score histograms) to --out."
        ),
    )
    p.add_argument("--model", action="append", required=True, help="model (repeatable)")
    p.add_argument("--tiles", type=Path, required=True, help="labelled tile folder")
    p.add_argument("--ood", type=Path, action="append", default=[], help="OOD tile folder")
    p.add_argument(
        "--out", type=Path, default=Path("tileuq-evaluate"), help="output folder (tileuq-evaluate)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="tiles per batch (64)")
    p.add_argument("--device", default="cpu", help="torch device (cpu)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def run(args: argparse.Namespace) -> int:
    """Evaluate every model; print the tables and write the JSON and plots."""
    from tileuq import __version__
    from tileuq._io import write_json
    from tileuq.cli._drain import drain
    from tileuq.metrics.evaluate import format_tables, iter_evaluate
    from tileuq.models import load_model

    results = []
    for i, source in enumerate(args.model):
        model = load_model(source)
        model.to(args.device)
        label = f"{i + 1}:{model.model_id}" if len(args.model) > 1 else model.model_id
        res = drain(
            iter_evaluate(
                model,
                args.tiles,
                ood=args.ood,
                batch_size=args.batch_size,
                out_dir=args.out,
                label=label,
            ),
            quiet=args.quiet,
        )
        res["source"] = str(source)
        results.append(res)
    print(format_tables(results))
    write_json(args.out / "evaluation.json", {"tileuq": __version__, "models": results})
    n_plots = sum(len(r.get("plots", [])) for r in results)
    print(f"\nwrote {args.out / 'evaluation.json'} and {n_plots} plots")
    return 0
