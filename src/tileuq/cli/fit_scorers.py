"""``tileuq fit-scorers``: fit feature-distance scorers on training tiles, store them in a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

KINDS = ("mahalanobis", "knn_euclidean", "knn_cosine")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``fit-scorers`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "fit-scorers",
        help="fit feature-distance scores (Mahalanobis, k-NN) on the model's training tiles",
        description=(
            "Run the model on its labelled TRAINING tiles (one sub-folder per class; "
            "--split-file limits them to one part of a split file), fit feature-space "
            "distance scorers on the pooled features and store them in the model folder "
            "(scorers.safetensors, listed in model.json; previous files kept as .bak). "
            "From then on every run reports these scores (reason 'unfamiliar'). Never fit "
            "on calibration or test tiles. A calibration that uses a refitted score is "
            "dropped: run 'tileuq calibrate' afterwards."
        ),
    )
    p.add_argument("--model", required=True, help="model folder (or file, with --out)")
    p.add_argument("--tiles", type=Path, required=True, help="labelled training tile folder")
    p.add_argument("--split-file", type=Path, help="split JSON: use only one part of --tiles")
    p.add_argument("--split", default="train", help="part of --split-file to use (train)")
    p.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        help="scorer to fit (repeat for several; default: mahalanobis)",
    )
    p.add_argument("--k", type=int, default=10, help="k-NN neighbour rank (10)")
    p.add_argument("--batch-size", type=int, default=64, help="tiles per batch (64)")
    p.add_argument("--device", default="cpu", help="torch device (cpu)")
    p.add_argument("--skip-unreadable", action="store_true", help="skip unreadable images")
    p.add_argument(
        "--out", type=Path, help="save the model with its scorers here (folder or .zip) instead"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def run(args: argparse.Namespace) -> int:
    """Fit the scorers and write the model; return 0 on success."""
    from tileuq.cli._drain import drain
    from tileuq.errors import ModelError
    from tileuq.models import load_model
    from tileuq.models.feature_scorers import write_feature_scorers
    from tileuq.uncertainty import iter_fit_feature_scorers

    model = load_model(args.model)
    folder = Path(args.model)
    if args.out is None and not (folder / "model.json").is_file():
        raise ModelError(
            f"--model {args.model}: not a model folder; give --out to save the model elsewhere"
        )
    model.to(args.device)
    kinds = args.kind or ["mahalanobis"]
    drain(
        iter_fit_feature_scorers(
            model,
            args.tiles,
            kinds,
            split_file=args.split_file,
            split=args.split,
            k=args.k,
            batch_size=args.batch_size,
            on_error="skip" if args.skip_unreadable else "raise",
        ),
        quiet=args.quiet,
    )
    model.to("cpu")
    ref = model.feature_scorer_info[kinds[0]]
    print(
        f"fitted {', '.join(kinds)} on {ref['n_tiles']} tiles of {ref['source']}"
        + (f" (part {ref['split']!r} of {ref['split_file']})" if ref["split_file"] else "")
        + ("; they are the model's training data" if ref["matches_training_data"] else "")
    )
    print(f"model hash now {model.model_hash[:12]}; scores: {', '.join(model.score_names)}")
    if model.calibration is None:
        print("the model carries no calibration now: run 'tileuq calibrate' on calibration tiles")
    if args.out is not None:
        model.save(args.out)
        print(f"model written to {args.out}")
        return 0
    path = write_feature_scorers(folder, model)
    print(f"scorers written to {folder} (previous model.json kept as {path.name}.bak)")
    return 0
