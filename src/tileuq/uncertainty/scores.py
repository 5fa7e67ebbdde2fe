"""Per-tile uncertainty scores and the registry that describes them.

Every score in tileuq is oriented so that **larger = less trustworthy**: a tile is accepted when
``score <= threshold``.  Scores that are naturally "larger = more confident" (the maximum softmax
probability, the top-2 margin) are stored as ``1 - value``.

Each score has a *reason*, the kind of doubt it measures, used to label rejected tiles:

``"ambiguous"``
    The tile resembles the training data but lies between classes (aleatoric doubt): ``msp``,
    ``margin``, ``entropy``, ``expected_entropy``.
``"unfamiliar"``
    The tile is unlike the training data (epistemic doubt / distribution shift): ``variance``
    (SNGP), ``mutual_information`` (ensembles, MC dropout), the feature-space distances
    ``knn_euclidean``, ``knn_cosine``, ``mahalanobis``, and ``energy``.

``energy`` is filed under "unfamiliar": ``-T logsumexp(logits / T)`` measures the *total*
evidence the logits carry for any class (Liu et al., 2020, proposed it as an out-of-distribution
score), not the competition between classes — two large, equal logits give a *low* energy.  It is
not distance-aware, so it is a weaker "unfamiliar" signal than SNGP variance or a feature
distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Reason = Literal["ambiguous", "unfamiliar"]
REASONS: tuple[str, ...] = ("unfamiliar", "ambiguous")

__all__ = [
    "REASONS",
    "SCORES",
    "ScoreInfo",
    "energy",
    "entropy",
    "margin",
    "msp",
    "probability_scores",
    "reason_for",
    "score_info",
    "softmax",
]


@dataclass(frozen=True)
class ScoreInfo:
    """Description of one uncertainty score (all are larger = less trustworthy).

    Attributes
    ----------
    name
        Column name in a TileResults table and key in ``TileModel.predict()["scores"]``.
    reason
        ``"ambiguous"`` (between classes) or ``"unfamiliar"`` (unlike the training data).
    source
        What it is computed from: ``"probabilities"``, ``"logits"``, ``"model"`` (needs the
        model's own machinery: SNGP, ensemble or MC-dropout members) or ``"features"``
        (a distance fitted on reference features).
    low, high
        Range of the score (``high`` may be ``inf``; ``entropy`` is bounded by ``log C``).
    description
        One line for users.
    """

    name: str
    reason: Reason
    source: str
    low: float
    high: float
    description: str


SCORES: dict[str, ScoreInfo] = {
    s.name: s
    for s in (
        ScoreInfo("msp", "ambiguous", "probabilities", 0.0, 1.0,
                  "1 - maximum softmax probability"),
        ScoreInfo("margin", "ambiguous", "probabilities", 0.0, 1.0,
                  "1 - (top-1 minus top-2 probability)"),
        ScoreInfo("entropy", "ambiguous", "probabilities", 0.0, float("inf"),
                  "Shannon entropy of the predictive distribution (nats, <= log C)"),
        ScoreInfo("expected_entropy", "ambiguous", "model", 0.0, float("inf"),
                  "mean entropy of the ensemble / MC-dropout members (aleatoric part)"),
        ScoreInfo("energy", "unfamiliar", "logits", -float("inf"), float("inf"),
                  "-T logsumexp(logits / T): low total evidence for any class"),
        ScoreInfo("variance", "unfamiliar", "model", 0.0, float("inf"),
                  "SNGP predictive variance (distance-aware Gaussian-process head)"),
        ScoreInfo("mutual_information", "unfamiliar", "model", 0.0, float("inf"),
                  "disagreement between ensemble / MC-dropout members (epistemic part)"),
        ScoreInfo("knn_euclidean", "unfamiliar", "features", 0.0, float("inf"),
                  "Euclidean distance to the k-th nearest reference feature"),
        ScoreInfo("knn_cosine", "unfamiliar", "features", 0.0, 2.0,
                  "cosine distance (1 - cosine similarity) to the k-th nearest reference"),
        ScoreInfo("mahalanobis", "unfamiliar", "features", 0.0, float("inf"),
                  "class-conditional Mahalanobis distance, shared covariance (Lee et al. 2018)"),
    )
}  # fmt: skip


def score_info(name: str) -> ScoreInfo | None:
    """Return the registry entry for ``name`` (``None`` for a score tileuq does not know)."""
    return SCORES.get(name)


def reason_for(name: str, default: Reason = "ambiguous") -> Reason:
    """Return the reason (``"ambiguous"``/``"unfamiliar"``) a score stands for.

    Unknown score names get ``default``.
    """
    info = SCORES.get(name)
    return info.reason if info is not None else default


def _as_2d(x: ArrayLike, what: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{what}: expected an (N, C) array with C >= 2, got shape {arr.shape}")
    return arr


def softmax(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Numerically stable ``softmax(logits / temperature)`` along the last axis."""
    z = _as_2d(logits, "logits") / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


def msp(probabilities: ArrayLike) -> NDArray[np.float64]:
    """``1 - max_c p_c``; larger = less trustworthy (reason: ambiguous)."""
    p = _as_2d(probabilities, "probabilities")
    out: NDArray[np.float64] = 1.0 - p.max(axis=1)
    return out


def margin(probabilities: ArrayLike) -> NDArray[np.float64]:
    """``1 - (p_top1 - p_top2)``; larger = less trustworthy (reason: ambiguous)."""
    p = _as_2d(probabilities, "probabilities")
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    out: NDArray[np.float64] = 1.0 - (top2[:, 1] - top2[:, 0])
    return out


def entropy(probabilities: ArrayLike) -> NDArray[np.float64]:
    """Shannon entropy ``-sum p log p`` in nats; larger = less trustworthy (ambiguous)."""
    p = _as_2d(probabilities, "probabilities")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    out: NDArray[np.float64] = np.maximum(-terms.sum(axis=1), 0.0)
    return out


def energy(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Energy score ``-T logsumexp(logits / T)`` (Liu et al., 2020).

    Larger = less trustworthy (reason: unfamiliar): the logits carry little evidence for any
    class.  Needs the logits themselves; it cannot be recovered from probabilities.
    """
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    z = _as_2d(logits, "logits") / float(temperature)
    m = z.max(axis=1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
    out: NDArray[np.float64] = -float(temperature) * lse
    return out


def probability_scores(
    probabilities: ArrayLike | None = None,
    *,
    logits: ArrayLike | None = None,
    temperature: float = 1.0,
) -> dict[str, NDArray[np.float64]]:
    """Compute ``msp``, ``margin``, ``entropy`` (and ``energy`` when logits are given).

    Parameters
    ----------
    probabilities
        ``(N, C)`` class probabilities; computed as ``softmax(logits / temperature)`` when
        omitted.
    logits
        ``(N, C)`` logits (needed for ``energy``).
    temperature
        Temperature for the softmax and the energy score.

    Returns
    -------
    dict
        Score name -> ``(N,)`` array, all oriented larger = less trustworthy.
    """
    if probabilities is None:
        if logits is None:
            raise ValueError("probability_scores: give probabilities or logits")
        probabilities = softmax(logits, temperature)
    p = _as_2d(probabilities, "probabilities")
    out = {"msp": msp(p), "margin": margin(p), "entropy": entropy(p)}
    if logits is not None:
        out["energy"] = energy(logits, temperature)
    return out
