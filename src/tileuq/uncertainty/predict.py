"""Run a model over a labelled tile set and collect what calibration and evaluation need."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tileuq.uncertainty.sources import TileSet, iter_image_batches

__all__ = ["Predictions", "Progress", "iter_predict_tiles"]


@dataclass(frozen=True)
class Progress:
    """Progress of a calibration or evaluation run (``str()`` gives one line)."""

    stage: str
    done: int = 0
    total: int = 0
    message: str = ""
    elapsed_s: float = 0.0

    @property
    def fraction(self) -> float:
        """``done / total`` (1.0 when there is nothing to do)."""
        return 1.0 if self.total == 0 else self.done / self.total

    def __str__(self) -> str:
        msg = f" ({self.message})" if self.message else ""
        return f"{self.stage} {self.done}/{self.total}{msg}"


@dataclass
class Predictions:
    """Model outputs on a tile set, as numpy arrays (rows = tiles that could be read)."""

    labels: NDArray[np.int64]
    logits: NDArray[np.float64]
    probabilities: NDArray[np.float64]
    predictions: NDArray[np.int64]
    scores: dict[str, NDArray[np.float64]]
    classes: list[str]
    index: NDArray[np.int64]
    features: NDArray[np.float32] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> NDArray[np.bool_]:
        """Whether each prediction matches the label."""
        out: NDArray[np.bool_] = self.predictions == self.labels
        return out

    def __len__(self) -> int:
        return int(self.labels.size)


def _np(x: Any) -> NDArray[Any]:
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").float().numpy() if x.is_floating_point() else x.cpu().numpy()
    return np.asarray(x)


def iter_predict_tiles(
    model: Any,
    tiles: TileSet,
    *,
    batch_size: int = 64,
    scorers: Mapping[str, Any] | None = None,
    return_features: bool = False,
    on_error: str = "raise",
) -> Generator[Progress, None, Predictions]:
    """Predict every tile of ``tiles``; yields :class:`Progress`, returns :class:`Predictions`.

    ``scorers`` maps a score name to a fitted feature scorer (``score(features)``); their
    scores are added to the model's own (and replace a model-carried score of the same name).
    """
    want_features = return_features or bool(scorers)
    n = len(tiles)
    t0 = time.perf_counter()
    parts: dict[str, list[NDArray[Any]]] = {}
    scores: dict[str, list[NDArray[Any]]] = {}
    done = 0
    yield Progress("predict", 0, n, tiles.source)
    for batch, idx in iter_image_batches(tiles, int(model.tile_px), batch_size, on_error=on_error):
        out = model.predict(batch, return_features=want_features)
        for key in ("logits", "probabilities", "predictions"):
            parts.setdefault(key, []).append(_np(out[key]))
        parts.setdefault("index", []).append(idx)
        for name, val in out["scores"].items():
            if scorers and name in scorers:
                continue
            scores.setdefault(name, []).append(_np(val).astype(np.float64).ravel())
        if want_features:
            feats = _np(out["features"]).astype(np.float32)
            parts.setdefault("features", []).append(feats)
            for name, scorer in (scorers or {}).items():
                scores.setdefault(name, []).append(np.asarray(scorer.score(feats), np.float64))
        done += len(idx)
        yield Progress("predict", done, n, tiles.source, time.perf_counter() - t0)
    if not parts:
        from tileuq.errors import CalibrationError

        raise CalibrationError(f"{tiles.source}: no tile could be read")
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    index = cat["index"].astype(np.int64)
    return Predictions(
        labels=tiles.labels[index],
        logits=cat["logits"].astype(np.float64),
        probabilities=cat["probabilities"].astype(np.float64),
        predictions=cat["predictions"].astype(np.int64),
        scores={k: np.concatenate(v) for k, v in scores.items()},
        classes=list(tiles.classes),
        index=index,
        features=cat.get("features"),
        info={"source": tiles.source, "skipped": n - int(index.size)},
    )
