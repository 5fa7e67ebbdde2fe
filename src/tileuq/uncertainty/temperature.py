"""Temperature scaling (Guo et al., 2017): one scalar ``T`` fitted by minimising the NLL.

Calibrated probabilities are ``softmax(logits / T)``; ``argmax`` (the predicted class) does not
change.  Probabilities alone suffice: ``softmax(log p / T) = softmax(logits / T)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

from tileuq.errors import CalibrationError

__all__ = ["apply_temperature", "fit_temperature"]


def _log_softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    m = z.max(axis=1, keepdims=True)
    out: NDArray[np.float64] = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return out


def _logits_from(logits: ArrayLike | None, probabilities: ArrayLike | None) -> NDArray[np.float64]:
    if logits is not None:
        z = np.asarray(logits, dtype=np.float64)
    elif probabilities is not None:
        z = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, None))
    else:
        raise CalibrationError("temperature scaling needs logits or probabilities")
    if z.ndim != 2:
        raise CalibrationError(f"temperature scaling: expected (N, C) logits, got {z.shape}")
    return z


def fit_temperature(
    labels: ArrayLike,
    *,
    logits: ArrayLike | None = None,
    probabilities: ArrayLike | None = None,
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """Fit the temperature ``T`` minimising the mean negative log-likelihood.

    Parameters
    ----------
    labels
        True class index per tile.
    logits, probabilities
        ``(N, C)`` model outputs (one of the two).
    bounds
        Search interval for ``T`` (the NLL is convex in ``1 / T``; a bounded scalar search on
        ``log T`` finds the optimum to ~1e-6).

    Returns
    -------
    float
        The fitted temperature (> 1 softens over-confident probabilities).
    """
    z = _logits_from(logits, probabilities)
    y = np.asarray(labels).astype(np.int64).ravel()
    if y.size != z.shape[0]:
        raise CalibrationError(f"labels: expected {z.shape[0]} values, got {y.size}")
    if y.size == 0:
        raise CalibrationError("temperature scaling: empty calibration set")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise CalibrationError(f"labels: must lie in [0, {z.shape[1] - 1}]")
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        lp = _log_softmax(z / np.exp(log_t))
        return float(-lp[rows, y].mean())

    res = optimize.minimize_scalar(
        nll,
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(np.exp(res.x))


def apply_temperature(
    temperature: float,
    *,
    logits: ArrayLike | None = None,
    probabilities: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Return ``softmax(logits / T)`` (from logits, or from probabilities via their log)."""
    if not temperature > 0:
        raise CalibrationError(f"temperature: must be > 0, got {temperature}")
    z = _logits_from(logits, probabilities)
    out: NDArray[np.float64] = np.exp(_log_softmax(z / float(temperature)))
    return out
