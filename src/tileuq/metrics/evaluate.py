"""Evaluate models on a labelled tile folder and OOD folders (``tileuq evaluate``)."""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tileuq.metrics.classification import accuracy, auroc_ovr, brier, ece, nll
from tileuq.metrics.ood import fpr_at_tpr, ood_auroc
from tileuq.metrics.selective import aurc, excess_aurc, selective_risk
from tileuq.uncertainty.predict import Predictions, Progress, iter_predict_tiles
from tileuq.uncertainty.sources import tile_folder, unlabelled_folder

__all__ = ["evaluate_predictions", "format_tables", "iter_evaluate"]


def evaluate_predictions(
    preds: Predictions,
    ood: Mapping[str, Predictions] | None = None,
    *,
    n_bins: int = 15,
    calibration: Any = None,
) -> dict[str, Any]:
    """All metrics of one model on a labelled set (and OOD sets), as a JSON-ready dict.

    Keys: ``n``, ``accuracy``, ``auroc`` (macro one-vs-rest), ``nll``, ``brier``, ``ece``
    (15 equal-width bins), ``ece_adaptive`` (equal-mass bins) and ``scores``: per score
    ``aurc``, ``e_aurc``, ``risk_at_coverage`` (0.8 / 0.9 / 0.95) and ``ood``: per OOD set
    ``auroc`` and ``fpr95``.  With a ``calibration``: ``calibrated`` (realized coverage and
    risk of its rule on this set).
    """
    p, y, ok = preds.probabilities, preds.labels, preds.correct
    out: dict[str, Any] = {
        "n": len(preds),
        "accuracy": accuracy(p, y),
        "auroc": auroc_ovr(p, y),
        "nll": nll(p, y),
        "brier": brier(p, y),
        "ece": ece(p, y, n_bins),
        "ece_adaptive": ece(p, y, n_bins, strategy="quantile"),
        "scores": {},
    }
    for name, s in preds.scores.items():
        entry: dict[str, Any] = {
            "aurc": aurc(s, ok),
            "e_aurc": excess_aurc(s, ok),
            "risk_at_coverage": {str(c): selective_risk(s, ok, c) for c in (0.8, 0.9, 0.95)},
            "ood": {},
        }
        for set_name, o in (ood or {}).items():
            if name in o.scores:
                entry["ood"][set_name] = {
                    "auroc": ood_auroc(s, o.scores[name]),
                    "fpr95": fpr_at_tpr(s, o.scores[name]),
                    "n": len(o),
                }
        out["scores"][name] = entry
    if calibration is not None:
        rejected, _ = calibration.decide(preds.scores)
        acc = ~rejected
        out["calibrated"] = {
            "rules": {r.score: r.threshold for r in calibration.rules},
            "target": calibration.target,
            "delta": calibration.delta,
            "coverage": float(acc.mean()),
            "risk": float((~ok[acc]).mean()) if acc.any() else 0.0,
            "ood_rejected": {
                k: float(calibration.decide(o.scores)[0].mean()) for k, o in (ood or {}).items()
            },
        }
    return out


def iter_evaluate(
    model: Any,
    tiles: str | os.PathLike[str],
    *,
    ood: Sequence[str | os.PathLike[str]] = (),
    batch_size: int = 64,
    out_dir: str | os.PathLike[str] | None = None,
    label: str | None = None,
    scorers: Mapping[str, Any] | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """Evaluate ``model``; yields progress, returns :func:`evaluate_predictions`' dict.

    With ``out_dir``, writes ``<label>_reliability.png``, ``<label>_risk_coverage.png`` and
    ``<label>_hist_<score>.png`` per score (when OOD sets are given).
    """
    from tileuq.uncertainty.calibration import Calibration

    label = label or str(getattr(model, "model_id", "model"))
    ts = tile_folder(tiles, list(model.classes))
    preds: Predictions = yield from iter_predict_tiles(
        model, ts, batch_size=batch_size, scorers=scorers
    )
    ood_preds: dict[str, Predictions] = {}
    for folder in ood:
        name = Path(folder).name
        o = yield from iter_predict_tiles(
            model, unlabelled_folder(folder), batch_size=batch_size, scorers=scorers
        )
        ood_preds[name] = o
    manifest_cal = getattr(model, "calibration", None)
    cal = Calibration.from_dict(manifest_cal) if isinstance(manifest_cal, dict) else None
    if cal is not None and any(r.score not in preds.scores for r in cal.rules):
        cal = None
    result = evaluate_predictions(preds, ood_preds, calibration=cal)
    result.update(model=label, method=getattr(model, "method", ""), tiles=str(tiles))
    if out_dir is not None:
        from tileuq.metrics.plots import (
            plot_reliability,
            plot_risk_coverage,
            plot_score_histograms,
        )

        out = Path(out_dir)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
        files = [
            plot_reliability(
                preds.probabilities, preds.labels, out / f"{safe}_reliability.png", title=label
            )
        ]
        op = None
        if cal is not None:
            op = (result["calibrated"]["coverage"], result["calibrated"]["risk"])
        files.append(
            plot_risk_coverage(
                {k: (v, preds.correct) for k, v in preds.scores.items()},
                out / f"{safe}_risk_coverage.png",
                operating_point=op,
                target_risk=cal.target_risk if cal is not None else None,
                title=label,
            )
        )
        if ood_preds:
            for k, v in preds.scores.items():
                files.append(
                    plot_score_histograms(
                        v,
                        {n: o.scores[k] for n, o in ood_preds.items() if k in o.scores},
                        out / f"{safe}_hist_{k}.png",
                        score=k,
                        threshold=cal.thresholds.get(k) if cal is not None else None,
                    )
                )
        result["plots"] = [str(f) for f in files]
    return result


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, sep, *body])


def format_tables(results: Sequence[Mapping[str, Any]]) -> str:
    """Format the model table (method, Acc, AUROC, NLL, Brier, ECE) and the per-score table."""
    rows = [
        [
            str(r.get("model", "")),
            str(r.get("method", "")),
            _fmt(r["accuracy"]),
            _fmt(r["auroc"]),
            _fmt(r["nll"]),
            _fmt(r["brier"]),
            _fmt(r["ece"]),
        ]
        for r in results
    ]
    text = _table(["model", "method", "Acc", "AUROC", "NLL", "Brier", "ECE"], rows)
    ood_names = sorted({o for r in results for s in r["scores"].values() for o in s["ood"]})
    srows = []
    for r in results:
        for name, s in r["scores"].items():
            srows.append(
                [str(r.get("model", "")), name, _fmt(s["aurc"]), _fmt(s["e_aurc"])]
                + [_fmt(s["ood"].get(o, {}).get("auroc")) for o in ood_names]
                + [_fmt(s["ood"].get(o, {}).get("fpr95")) for o in ood_names]
            )
    header = (
        ["model", "score", "AURC", "E-AURC"]
        + [f"OOD AUROC {o}" for o in ood_names]
        + [f"FPR95 {o}" for o in ood_names]
    )
    text += "\n\n" + _table(header, srows)
    cal_rows = [
        [
            str(r.get("model", "")),
            ", ".join(f"{k}<={v:.4g}" for k, v in c["rules"].items()),
            str(c["target"]),
            _fmt(c["coverage"], 3),
            _fmt(c["risk"], 3),
        ]
        for r in results
        if (c := r.get("calibrated"))
    ]
    if cal_rows:
        text += "\n\n" + _table(
            ["model", "calibrated rule", "target", "coverage", "risk"], cal_rows
        )
    return text
