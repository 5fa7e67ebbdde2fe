"""Feature-space distance scores fitted on reference tiles (reason: ``"unfamiliar"``).

Both scorers take the pooled backbone features of :meth:`TileModel.predict(...,
return_features=True) <tileuq.models.TileModel.predict>` and return one score per tile, larger
= farther from the reference (training) data = less trustworthy:

* :class:`KNNScorer`: distance to the ``k``-th nearest reference feature, Euclidean
  (``knn_euclidean``) or cosine (``knn_cosine``: ``1 - cos``, i.e. on L2-normalised features as
  in Sun et al., 2022).  Exact and batched (plain BLAS matrix products), no index structure.
* :class:`MahalanobisScorer`: ``min_c (x - mu_c)^T Sigma^-1 (x - mu_c)``, class-conditional
  Gaussians with one shared covariance (Lee et al., 2018), with Ledoit–Wolf shrinkage toward
  a scaled identity so the covariance stays invertible with few tiles per feature.

Both save to ``.npz`` (loaded with ``allow_pickle=False``: no code runs on load), and
``state()`` / :func:`scorer_from_state` give their parameters and arrays, which is how a model
folder stores them (``scorers.safetensors``, see :mod:`tileuq.models.feature_scorers`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tileuq._io import atomic_path
from tileuq.errors import CalibrationError

__all__ = ["KNNScorer", "MahalanobisScorer", "load_scorer", "scorer_from_state"]

_BLOCK = 1 << 24  # distance-matrix entries per block (64 MiB of float32)


def _features(x: ArrayLike, what: str, dim: int | None = None) -> NDArray[np.float32]:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise CalibrationError(f"{what}: expected an (N, D) feature array, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise CalibrationError(f"{what}: expected {dim} features per tile, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise CalibrationError(f"{what}: contains NaN or infinite values")
    return arr


def _save(path: str | os.PathLike[str], meta: dict[str, Any], **arrays: np.ndarray) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise CalibrationError(f"{path}: scorer files must end in .npz")
    with atomic_path(path) as tmp:
        payload: dict[str, Any] = {"__meta__": np.array(json.dumps(meta)), **arrays}
        np.savez(tmp, **payload)
    return path


def _load(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{path}: cannot read scorer file ({exc})") from exc
    if "__meta__" not in arrays:
        raise CalibrationError(f"{path}: not a tileuq scorer file")
    meta = json.loads(str(arrays.pop("__meta__")))
    if not isinstance(meta, dict):
        raise CalibrationError(f"{path}: not a tileuq scorer file")
    return meta, arrays


def _array(arrays: dict[str, np.ndarray], key: str, where: str, ndim: int) -> np.ndarray:
    arr = arrays.get(key)
    if arr is None:
        raise CalibrationError(f"{where}: the array {key!r} is missing")
    arr = np.asarray(arr)
    if arr.ndim != ndim or arr.dtype.kind != "f" or not np.isfinite(arr).all():
        raise CalibrationError(
            f"{where}: {key!r} must be a finite float array with {ndim} dimensions "
            f"(got {arr.dtype}, shape {arr.shape})"
        )
    return arr


class KNNScorer:
    """Distance to the ``k``-th nearest reference feature.

    Parameters
    ----------
    k
        Neighbour rank (1 = nearest).  Scoring the reference tiles themselves counts each tile
        as its own nearest neighbour (distance 0).
    metric
        ``"euclidean"`` or ``"cosine"`` (``1 - cosine similarity``, in [0, 2]).
    """

    def __init__(self, k: int = 10, metric: str = "euclidean") -> None:
        if metric not in ("euclidean", "cosine"):
            raise CalibrationError(f"metric: expected 'euclidean' or 'cosine', got {metric!r}")
        if k < 1:
            raise CalibrationError(f"k: must be >= 1, got {k}")
        self.k = int(k)
        self.metric = metric
        self.reference: NDArray[np.float32] | None = None

    @property
    def name(self) -> str:
        """Score name: ``knn_euclidean`` or ``knn_cosine``."""
        return f"knn_{self.metric}"

    def _prep(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        if self.metric == "cosine":
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            out: NDArray[np.float32] = x / np.maximum(norm, 1e-12)
            return out
        return x

    def fit(self, features: ArrayLike, labels: ArrayLike | None = None) -> KNNScorer:
        """Store the reference features (``labels`` are ignored)."""
        ref = _features(features, "features")
        if ref.shape[0] < self.k:
            raise CalibrationError(
                f"features: {ref.shape[0]} reference tile(s), fewer than k={self.k}"
            )
        self.reference = np.ascontiguousarray(self._prep(ref))
        return self

    def score(self, features: ArrayLike) -> NDArray[np.float64]:
        """Distance of each tile to its ``k``-th nearest reference feature."""
        if self.reference is None:
            raise CalibrationError(f"{self.name}: call fit() before score()")
        ref = self.reference
        q = self._prep(_features(features, "features", ref.shape[1]))
        out = np.empty(q.shape[0], dtype=np.float64)
        rows = max(1, _BLOCK // max(ref.shape[0], 1))
        ref_sq = (ref.astype(np.float64) ** 2).sum(axis=1) if self.metric == "euclidean" else None
        for i in range(0, q.shape[0], rows):
            block = q[i : i + rows]
            prod = (block @ ref.T).astype(np.float64)
            if self.metric == "cosine":
                d = 1.0 - prod
            else:
                assert ref_sq is not None
                qsq = (block.astype(np.float64) ** 2).sum(axis=1)
                d = np.maximum(qsq[:, None] + ref_sq[None, :] - 2.0 * prod, 0.0)
            kth = np.partition(d, self.k - 1, axis=1)[:, self.k - 1]
            out[i : i + rows] = np.sqrt(kth) if self.metric == "euclidean" else kth
        return np.maximum(out, 0.0)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Parameters (JSON-safe) and arrays of the fitted scorer, for saving."""
        if self.reference is None:
            raise CalibrationError(f"{self.name}: nothing to save, call fit() first")
        return {"kind": "knn", "k": self.k, "metric": self.metric}, {"reference": self.reference}

    @classmethod
    def from_state(
        cls, params: dict[str, Any], arrays: dict[str, np.ndarray], where: str = "k-NN scorer"
    ) -> KNNScorer:
        """Rebuild a scorer from :meth:`state` (arrays are validated)."""
        try:
            obj = cls(k=int(params["k"]), metric=str(params["metric"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{where}: invalid k-NN parameters ({exc})") from None
        obj.reference = _array(arrays, "reference", where, ndim=2).astype(np.float32)
        if obj.reference.shape[0] < obj.k:
            raise CalibrationError(f"{where}: fewer reference features than k={obj.k}")
        return obj

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted scorer to an ``.npz`` file, atomically."""
        meta, arrays = self.state()
        return _save(path, meta, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KNNScorer:
        """Read a scorer written by :meth:`save`."""
        meta, arrays = _load(path)
        if meta.get("kind") != "knn":
            raise CalibrationError(f"{path}: not a k-NN scorer (kind {meta.get('kind')!r})")
        return cls.from_state(meta, arrays, str(path))


def ledoit_wolf(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """Ledoit–Wolf (2004) shrunk covariance of centred data ``x`` (N, D) and the intensity."""
    n, d = x.shape
    s = x.T @ x / n
    mu = float(np.trace(s)) / d
    delta2 = float(((s - mu * np.eye(d)) ** 2).sum()) / d
    sq = (x**2).sum(axis=1)
    # sum_i ||x_i x_i^T - S||_F^2 = sum_i (|x_i|^4 - 2 x_i^T S x_i) + n ||S||_F^2
    quad = ((x @ s) * x).sum(axis=1)
    beta_bar2 = float((sq**2 - 2.0 * quad).sum() + n * (s**2).sum()) / (n**2 * d)
    beta2 = min(max(beta_bar2, 0.0), delta2)
    shrink = beta2 / delta2 if delta2 > 0 else 1.0
    return shrink * mu * np.eye(d) + (1.0 - shrink) * s, shrink


class MahalanobisScorer:
    """Class-conditional Mahalanobis distance with a shared, shrunk covariance.

    The score of a tile with features ``x`` is ``min_c (x - mu_c)^T Sigma^-1 (x - mu_c)``
    (squared distance to the closest class mean; Lee et al., 2018, without input
    pre-processing).

    Parameters
    ----------
    shrinkage
        ``"ledoit-wolf"`` (default) or a fixed intensity in [0, 1] toward ``tr(S)/D * I``.
    """

    name = "mahalanobis"

    def __init__(self, shrinkage: str | float = "ledoit-wolf") -> None:
        if not (shrinkage == "ledoit-wolf" or 0.0 <= float(shrinkage) <= 1.0):
            raise CalibrationError(f"shrinkage: 'ledoit-wolf' or in [0, 1], got {shrinkage!r}")
        self.shrinkage = shrinkage
        self.means: NDArray[np.float64] | None = None
        self.precision: NDArray[np.float64] | None = None
        self.classes: NDArray[Any] | None = None
        self.shrinkage_used: float | None = None

    def fit(self, features: ArrayLike, labels: ArrayLike) -> MahalanobisScorer:
        """Fit class means and the shared covariance on reference features and labels."""
        x = _features(features, "features").astype(np.float64)
        y = np.asarray(labels).ravel()
        if y.size != x.shape[0]:
            raise CalibrationError(f"labels: expected {x.shape[0]} values, got {y.size}")
        classes, inv = np.unique(y, return_inverse=True)
        if x.shape[0] <= classes.size:
            raise CalibrationError(
                f"features: {x.shape[0]} tile(s) for {classes.size} classes; need more"
            )
        means = np.stack([x[inv == c].mean(axis=0) for c in range(classes.size)])
        centred = x - means[inv]
        if self.shrinkage == "ledoit-wolf":
            cov, used = ledoit_wolf(centred)
        else:
            used = float(self.shrinkage)
            s = centred.T @ centred / x.shape[0]
            cov = used * float(np.trace(s)) / s.shape[0] * np.eye(s.shape[0]) + (1 - used) * s
        w, v = np.linalg.eigh(cov)
        w = np.maximum(w, w.max() * 1e-10 if w.max() > 0 else 1e-12)
        self.precision = (v / w) @ v.T
        self.means, self.classes, self.shrinkage_used = means, classes, float(used)
        return self

    def score(self, features: ArrayLike) -> NDArray[np.float64]:
        """Squared Mahalanobis distance to the closest class mean."""
        if self.means is None or self.precision is None:
            raise CalibrationError("mahalanobis: call fit() before score()")
        x = _features(features, "features", self.means.shape[1]).astype(np.float64)
        xp = x @ self.precision
        quad = (xp * x).sum(axis=1)
        const = ((self.means @ self.precision) * self.means).sum(axis=1)
        d = quad[:, None] - 2.0 * (xp @ self.means.T) + const[None, :]
        out: NDArray[np.float64] = np.maximum(d.min(axis=1), 0.0)
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Parameters (JSON-safe) and arrays of the fitted scorer, for saving."""
        if self.means is None or self.precision is None or self.classes is None:
            raise CalibrationError("mahalanobis: nothing to save, call fit() first")
        meta = {
            "kind": "mahalanobis",
            "shrinkage": self.shrinkage,
            "shrinkage_used": self.shrinkage_used,
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes],
        }
        return meta, {"means": self.means, "precision": self.precision}

    @classmethod
    def from_state(
        cls, params: dict[str, Any], arrays: dict[str, np.ndarray], where: str = "scorer"
    ) -> MahalanobisScorer:
        """Rebuild a scorer from :meth:`state` (arrays are validated)."""
        try:
            obj = cls(shrinkage=params["shrinkage"])
            classes = list(params["classes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{where}: invalid Mahalanobis parameters ({exc})") from None
        means = _array(arrays, "means", where, ndim=2).astype(np.float64)
        prec = _array(arrays, "precision", where, ndim=2).astype(np.float64)
        d = means.shape[1]
        if prec.shape != (d, d) or len(classes) != means.shape[0]:
            raise CalibrationError(
                f"{where}: inconsistent Mahalanobis arrays (means {means.shape}, precision "
                f"{prec.shape}, {len(classes)} classes)"
            )
        obj.means, obj.precision, obj.classes = means, prec, np.asarray(classes)
        used = params.get("shrinkage_used")
        obj.shrinkage_used = None if used is None else float(used)
        return obj

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted scorer to an ``.npz`` file, atomically."""
        meta, arrays = self.state()
        return _save(path, meta, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MahalanobisScorer:
        """Read a scorer written by :meth:`save`."""
        meta, arrays = _load(path)
        if meta.get("kind") != "mahalanobis":
            raise CalibrationError(f"{path}: not a Mahalanobis scorer (kind {meta.get('kind')!r})")
        return cls.from_state(meta, arrays, str(path))


def scorer_from_state(
    params: dict[str, Any], arrays: dict[str, np.ndarray], where: str = "scorer"
) -> KNNScorer | MahalanobisScorer:
    """Rebuild either kind of scorer from its ``state()`` (``params["kind"]`` decides)."""
    kind = params.get("kind")
    if kind == "knn":
        return KNNScorer.from_state(params, arrays, where)
    if kind == "mahalanobis":
        return MahalanobisScorer.from_state(params, arrays, where)
    raise CalibrationError(f"{where}: unknown scorer kind {kind!r} (expected knn or mahalanobis)")


def load_scorer(path: str | os.PathLike[str]) -> KNNScorer | MahalanobisScorer:
    """Load either kind of scorer from its ``.npz`` file."""
    meta, arrays = _load(path)
    return scorer_from_state(meta, arrays, str(path))
