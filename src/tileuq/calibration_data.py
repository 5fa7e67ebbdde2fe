"""Labelled calibration data for interactive thresholds: scores and correctness per tile.

Built from a labelled tile folder (the model predicts each tile) or from a reviewer's decisions
(accept = the prediction was right, relabel = it was wrong; artefact and unsure are left out,
as in :func:`tileuq.uncertainty.calibrate` with ``(results, decisions)``).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tileuq.errors import CalibrationError
from tileuq.review import match_decisions

__all__ = ["CalibrationData"]


@dataclass
class CalibrationData:
    """Labelled calibration tiles: one score array per score name and correctness.

    Attributes
    ----------
    scores
        ``{score name: (N,) float}``.
    correct
        ``(N,)`` bool: the model's prediction was right.
    source
        Where the tiles came from (folder or decisions file), for provenance.
    info
        Extra provenance (class counts, decisions counts, ...).
    """

    scores: dict[str, np.ndarray]
    correct: np.ndarray
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.correct.size)

    @classmethod
    def from_decisions(cls, results: Any, decisions: Any, source: str = "") -> CalibrationData:
        """Reviewer decisions as calibration data (accept = right, relabel = wrong).

        Artefact and unsure decisions are left out, as in
        :func:`tileuq.uncertainty.calibrate` with ``(results, decisions)``.
        """
        table = results.table
        dec = decisions[decisions["decision"].isin(["accept", "relabel"])]
        rows = match_decisions(table, dec)
        keep = rows >= 0
        if not keep.any():
            raise CalibrationError(f"{source or 'decisions'}: no accepted or relabelled tiles")
        dec, rows = dec[keep], rows[keep]
        correct = (
            dec["label"].astype(str).to_numpy() == table["prediction"].astype(str).to_numpy()[rows]
        )
        scores = {s: table[s].to_numpy(np.float64)[rows] for s in results.score_names}
        counts = {str(k): int(v) for k, v in dec["decision"].value_counts().items()}
        return cls(scores, correct, source or "decisions", {"decisions": counts})

    @classmethod
    def iter_from_folder(
        cls, model: Any, folder: Any, batch_size: int = 64
    ) -> Generator[Any, None, CalibrationData]:
        """Predict a labelled tile folder (one sub-folder per class); yields progress."""
        from tileuq.uncertainty.predict import iter_predict_tiles
        from tileuq.uncertainty.sources import tile_folder

        tiles = tile_folder(folder, list(model.classes))
        preds = yield from iter_predict_tiles(model, tiles, batch_size=batch_size)
        counts = np.bincount(preds.labels, minlength=len(preds.classes))
        info = {"class_counts": {c: int(k) for c, k in zip(preds.classes, counts, strict=True)}}
        return cls(dict(preds.scores), preds.correct, str(folder), info)
