"""Applying a :class:`~tileuq.uncertainty.Calibration` to a results table."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tileuq.errors import CalibrationError

if TYPE_CHECKING:
    from tileuq.uncertainty.calibration import Calibration, Rule


def decide(rules: Sequence[Rule], scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rejected flags and reasons (``""``, ``"unfamiliar"``, ``"ambiguous"``) per tile."""
    available = list(scores.keys())
    missing = [r.score for r in rules if r.score not in available]
    if missing:
        raise CalibrationError(
            f"score column(s) {missing} missing from the results (have {available}); "
            f"the calibration was made for scores {[r.score for r in rules]}"
        )
    cols = [np.asarray(scores[r.score], dtype=np.float64) for r in rules]
    n = cols[0].shape[0]
    unfamiliar = np.zeros(n, dtype=bool)
    ambiguous = np.zeros(n, dtype=bool)
    for rule, s in zip(rules, cols, strict=True):
        rej = ~(s <= rule.threshold)  # NaN -> rejected
        if rule.reason == "unfamiliar":
            unfamiliar |= rej
        else:
            ambiguous |= rej
    rejected = unfamiliar | ambiguous
    reason = np.where(unfamiliar, "unfamiliar", np.where(ambiguous, "ambiguous", ""))
    return rejected, reason.astype(object)


def meta_model_hash(meta: dict[str, Any]) -> str | None:
    """Model hash recorded in a results ``meta`` (``run.json``) dictionary, if any."""
    model = meta.get("model")
    if isinstance(model, dict):
        h = model.get("hash") or model.get("model_hash")
        return str(h) if h else None
    h = meta.get("model_hash")
    return str(h) if h else None


def apply_calibration(cal: Calibration, results: Any, *, check_model: bool = True) -> Any:
    """Implement :meth:`Calibration.apply`."""
    table = getattr(results, "table", results)
    if not hasattr(table, "columns"):
        raise CalibrationError(
            f"results: expected a TileResults or a DataFrame, got {type(results).__name__}"
        )
    meta = getattr(results, "meta", None)
    if check_model and cal.model_hash and isinstance(meta, dict):
        other = meta_model_hash(meta)
        if other and other != cal.model_hash:
            raise CalibrationError(
                f"results were produced by model {other[:12]}, but the calibration was made "
                f"for model {cal.model_hash[:12]}; recalibrate, or pass check_model=False"
            )
    rejected, reason = decide(cal.rules, table)
    out = table.copy()
    out["rejected"] = rejected
    out["reason"] = reason
    if table is results:
        return out
    changes: dict[str, Any] = {"table": out}
    if isinstance(meta, dict):
        changes["meta"] = {**meta, "calibration": cal.summary()}
    if dataclasses.is_dataclass(results) and not isinstance(results, type):
        return dataclasses.replace(results, **changes)
    new = copy.copy(results)
    for k, v in changes.items():
        setattr(new, k, v)
    return new
