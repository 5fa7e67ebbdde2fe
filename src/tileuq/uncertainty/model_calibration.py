"""``tileuq.calibrate``: calibrate a model's rejection rule on a labelled tile set.

Three kinds of calibration set:

* a folder with one sub-folder of tile images per class (``tiles/tumor/*.png``, ...);
* arrays ``(images, labels)``: uint8 ``(N, H, W, 3)`` and class indices or names;
* a reviewer's decisions on one slide: ``(results, decisions_path)``, where ``results`` is the
  slide's TileResults (its score columns are used) and the decisions file follows
  :mod:`tileuq.uncertainty.decisions`.  Accepted tiles count as correct, relabelled tiles as
  errors; artefacts and "unsure" are left out.  No model is run (``model`` may be ``None``).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tileuq._generators import result_of
from tileuq.errors import CalibrationError
from tileuq.uncertainty.calibration import Calibration
from tileuq.uncertainty.fit import calibrate_scores
from tileuq.uncertainty.predict import Predictions, Progress, iter_predict_tiles
from tileuq.uncertainty.sources import TileSet, tile_arrays, tile_folder

__all__ = ["calibrate", "default_scores", "iter_calibrate"]


def default_scores(score_names: Sequence[str]) -> list[str]:
    """Default rules for a model: ``entropy`` plus its best "unfamiliar" score.

    A feature distance the model carries comes first (``mahalanobis``, then
    ``knn_euclidean``, ``knn_cosine``: on real data the only reliable far-OOD detectors, see
    ``docs/evidence.md``), else the method's own: SNGP gets ``["entropy", "variance"]``,
    ensembles and MC dropout ``["entropy", "mutual_information"]``, a deterministic model
    without feature scorers ``["entropy"]``.
    """
    from tileuq.uncertainty.scores import SCORES

    names = list(score_names)
    first: list[str] = [k for k in ("entropy", "msp", "margin", "expected_entropy") if k in names]
    first = first or [k for k in names if k in SCORES]
    if not first:
        raise CalibrationError(f"no known uncertainty score among {names}")
    out = first[:1]
    for cand in ("mahalanobis", "knn_euclidean", "knn_cosine", "variance", "mutual_information"):
        if cand in names:
            out.append(cand)
            break
    return out


def _is_results(obj: Any) -> bool:
    return hasattr(obj, "table") or hasattr(obj, "columns")


def iter_calibrate(
    model: Any,
    source: str | os.PathLike[str] | tuple[Any, Any],
    *,
    score: str | Sequence[str] | None = None,
    target_coverage: float | None = None,
    target_risk: float | None = None,
    delta: float = 0.05,
    batch_size: int = 64,
    temperature_scaling: bool = False,
    scorers: Mapping[str, Any] | None = None,
    on_error: str = "raise",
    **kwargs: Any,
) -> Generator[Progress, None, Calibration]:
    """Calibrate like :func:`calibrate`, yielding progress; returns the Calibration."""
    if isinstance(source, tuple) and len(source) == 2 and _is_results(source[0]):
        yield Progress("decisions", 0, 1)
        cal = _from_decisions(
            model, source[0], source[1], score, target_coverage, target_risk, delta, kwargs
        )
        yield Progress("done", 1, 1)
        return cal
    if model is None:
        raise CalibrationError("model: needed to calibrate on tiles (only decisions need none)")
    classes = list(model.classes)
    if isinstance(source, tuple):
        if len(source) != 2:
            raise CalibrationError("source: expected (images, labels) or (results, decisions)")
        tiles: TileSet = tile_arrays(source[0], source[1], classes)
    else:
        tiles = tile_folder(source, classes)
    preds: Predictions = yield from iter_predict_tiles(
        model, tiles, batch_size=batch_size, scorers=scorers, on_error=on_error
    )
    names = _score_names(score, list(preds.scores), default_scores(model.score_names))
    temperature = None
    if temperature_scaling:
        from tileuq.uncertainty.temperature import fit_temperature

        temperature = fit_temperature(preds.labels, logits=preds.logits)
    counts = np.bincount(preds.labels, minlength=len(classes))
    info = {
        "source": str(source) if not isinstance(source, tuple) else "arrays",
        "class_counts": {c: int(k) for c, k in zip(classes, counts, strict=True)},
        "skipped_unreadable": preds.info.get("skipped", 0),
        "accuracy": float(preds.correct.mean()),
    }
    yield Progress("calibrate", len(preds), len(preds))
    return calibrate_scores(
        {k: preds.scores[k] for k in names},
        preds.correct,
        target_coverage=target_coverage,
        target_risk=target_risk,
        delta=delta,
        model_hash=getattr(model, "model_hash", None),
        model_id=getattr(model, "model_id", None),
        classes=classes,
        temperature=temperature,
        info=info,
        **kwargs,
    )


def calibrate(
    model: Any,
    source: str | os.PathLike[str] | tuple[Any, Any],
    *,
    score: str | Sequence[str] | None = None,
    target_coverage: float | None = None,
    target_risk: float | None = None,
    delta: float = 0.05,
    batch_size: int = 64,
    temperature_scaling: bool = False,
    scorers: Mapping[str, Any] | None = None,
    on_error: str = "raise",
    **kwargs: Any,
) -> Calibration:
    """Calibrate a model's rejection rule with a finite-sample guarantee.

    Parameters
    ----------
    model
        A :class:`~tileuq.TileModel` (``None`` for a decisions-based calibration).
    source
        A labelled tile folder (one sub-folder per class), ``(images, labels)``, or
        ``(results, decisions_path)``; see the module docstring.
    score
        Score name(s) to calibrate.  Default: :func:`default_scores` (``entropy`` plus the
        model's "unfamiliar" score: a carried ``mahalanobis`` / k-NN distance, else SNGP
        ``variance``, ensemble/MC-dropout ``mutual_information``), so rejected tiles get a
        meaningful reason.
    target_coverage, target_risk, delta
        The target and its failure probability (exactly one target); see
        :func:`~tileuq.uncertainty.calibrate_scores` for the guarantees.
    batch_size
        Tiles per ``model.predict`` call.
    temperature_scaling
        Also fit a temperature on the calibration logits (stored in the Calibration; the
        rules use the scores as the model reports them).
    scorers
        Extra feature-space scorers ``{name: fitted KNNScorer/MahalanobisScorer}``.
    on_error
        Unreadable images: ``"raise"`` (default; the error names them) or ``"skip"``.
    **kwargs
        Passed to :func:`~tileuq.uncertainty.calibrate_scores` (``guarantee``, ``method``,
        ``split``, ``unfamiliar_coverage``).

    Returns
    -------
    Calibration
    """
    gen = iter_calibrate(
        model,
        source,
        score=score,
        target_coverage=target_coverage,
        target_risk=target_risk,
        delta=delta,
        batch_size=batch_size,
        temperature_scaling=temperature_scaling,
        scorers=scorers,
        on_error=on_error,
        **kwargs,
    )
    return result_of(gen)


def _score_names(
    score: str | Sequence[str] | None, have: list[str], default: list[str]
) -> list[str]:
    names = default if score is None else [score] if isinstance(score, str) else list(score)
    missing = [k for k in names if k not in have]
    if missing:
        raise CalibrationError(f"score {missing} not available; the model gives {have}")
    return names


def _from_decisions(
    model: Any,
    results: Any,
    decisions_path: Any,
    score: str | Sequence[str] | None,
    target_coverage: float | None,
    target_risk: float | None,
    delta: float,
    kwargs: dict[str, Any],
) -> Calibration:
    from tileuq.uncertainty._apply import meta_model_hash
    from tileuq.uncertainty.decisions import read_decisions

    table = getattr(results, "table", results)
    meta = getattr(results, "meta", {}) or {}
    model_meta = meta.get("model", {}) if isinstance(meta, dict) else {}
    classes = list(getattr(model, "classes", None) or model_meta.get("classes") or [])
    result_hash = meta_model_hash(meta) if isinstance(meta, dict) else None
    model_hash = getattr(model, "model_hash", None) or result_hash
    if model is not None and result_hash and model_hash != result_hash:
        raise CalibrationError(
            f"the results were produced by model {result_hash[:12]}, not by the model given "
            f"({str(model_hash)[:12]})"
        )
    dec = read_decisions(decisions_path)
    dec = dec[dec["decision"].isin(["accept", "relabel"])]
    if dec.empty:
        raise CalibrationError(f"{decisions_path}: no accepted or relabelled tiles to use")
    if classes:
        unknown = sorted({str(v) for v in dec["label"]} - set(classes))
        if unknown:
            raise CalibrationError(
                f"{decisions_path}: label(s) {unknown} are not classes of the model "
                f"(model classes: {classes})"
            )
    key = ["x", "y", "plane"]
    merged = dec.merge(table.reset_index(drop=True), on=key, how="left", indicator=True,
                       suffixes=("_decision", ""))  # fmt: skip
    lost = merged[merged["_merge"] != "both"]
    if len(lost):
        shown = ", ".join(f"({r.x}, {r.y}, plane {r.plane})" for r in lost.head(5).itertuples())
        raise CalibrationError(
            f"{decisions_path}: {len(lost)} reviewed tile(s) not found in the results, e.g. "
            f"{shown}; were the decisions made on another run?"
        )
    cols = [str(c) for c in table.columns]
    names = _score_names(score, cols, default_scores(cols))
    correct = (merged["label"].astype(str) == merged["prediction_decision"].astype(str)).to_numpy()
    info = {
        "source": str(Path(decisions_path)),
        "decisions": {k: int(v) for k, v in dec["decision"].value_counts().items()},
        "slide": (meta.get("slide") or {}).get("path") if isinstance(meta, dict) else None,
    }
    return calibrate_scores(
        {k: merged[k].to_numpy(dtype=np.float64) for k in names},
        correct,
        target_coverage=target_coverage,
        target_risk=target_risk,
        delta=delta,
        model_hash=model_hash,
        model_id=getattr(model, "model_id", None) or model_meta.get("id"),
        classes=classes or None,
        info=info,
        **kwargs,
    )
