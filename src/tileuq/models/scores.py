"""Per-tile uncertainty scores from logits and member probabilities (torch, float32).

Every score is oriented **larger = less trustworthy** (a tile is accepted when
``score <= threshold``):

- ``msp``: ``1 - max_c p_c`` (one minus the maximum softmax probability);
- ``margin``: ``1 - (p_(1) - p_(2))`` (one minus the gap between the two largest probabilities);
- ``entropy``: predictive (total) entropy ``H[p] = -sum_c p_c log p_c`` in nats;
- ``energy``: ``-T * logsumexp(z / T)`` (Liu et al. 2020, energy-based OOD detection),
  temperature ``T = 1`` by default; lower energy means more in-distribution;
- for K members (ensembles, MC dropout passes), with ``p_bar = mean_k p_k`` (probabilities are
  averaged, never logits):
  ``expected_entropy = mean_k H[p_k]`` (aleatoric) and
  ``mutual_information = H[p_bar] - mean_k H[p_k] >= 0`` (epistemic; 0 for one member or when
  all members agree).  The energy of an ensemble is the mean of the member energies (each
  member's logits keep their own scale).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

BASE_SCORES = ("msp", "margin", "entropy", "energy")
ENSEMBLE_SCORES = ("mutual_information", "expected_entropy")


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy (nats) of probability vectors along ``dim``; ``0 log 0 = 0``."""
    return -torch.special.xlogy(p, p).sum(dim)


def msp_score(p: torch.Tensor) -> torch.Tensor:
    """``1 - max probability``."""
    return 1.0 - p.max(dim=-1).values


def margin_score(p: torch.Tensor) -> torch.Tensor:
    """``1 - (p1 - p2)`` with p1 >= p2 the two largest probabilities (1 for one class)."""
    if p.shape[-1] < 2:
        return torch.ones(p.shape[:-1], dtype=p.dtype, device=p.device)
    top2 = p.topk(2, dim=-1).values
    return 1.0 - (top2[..., 0] - top2[..., 1])


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``-T * logsumexp(z / T)`` along the last dimension."""
    return -temperature * torch.logsumexp(logits / temperature, dim=-1)


def decompose(member_probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Total / aleatoric / epistemic decomposition of member probabilities ``(K, N, C)``.

    Returns ``probabilities`` (N, C) = mean over members, ``entropy`` (total),
    ``expected_entropy`` (aleatoric) and ``mutual_information`` (epistemic, clamped at 0 to
    remove float round-off; it is exactly 0 for K = 1).
    """
    p_bar = member_probs.mean(dim=0)
    total = entropy(p_bar)
    expected = entropy(member_probs).mean(dim=0)
    mi = (total - expected).clamp_min(0.0)
    return {
        "probabilities": p_bar,
        "entropy": total,
        "expected_entropy": expected,
        "mutual_information": mi,
    }


def base_scores(
    probs: torch.Tensor, energy_logits: torch.Tensor, temperature: float = 1.0
) -> dict[str, torch.Tensor]:
    """``msp``, ``margin``, ``entropy`` of ``probs`` (N, C) and ``energy``.

    ``energy_logits`` is (N, C) or member logits (K, N, C); for members the energy is the
    mean of the member energies.
    """
    e = energy_score(energy_logits.float(), temperature)
    if e.dim() == 2:
        e = e.mean(dim=0)
    return {
        "msp": msp_score(probs),
        "margin": margin_score(probs),
        "entropy": entropy(probs),
        "energy": e,
    }


def single_outputs(logits: torch.Tensor, temperature: float = 1.0) -> dict[str, Any]:
    """Compute probabilities, predictions and scores of one network from its (N, C) logits."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return _single_outputs(logits.float(), temperature)


def _single_outputs(logits: torch.Tensor, temperature: float) -> dict[str, Any]:
    probs = F.softmax(logits, dim=-1)
    conf, pred = probs.max(dim=-1)
    return {
        "logits": logits,
        "probabilities": probs,
        "predictions": pred,
        "confidence": conf,
        "scores": base_scores(probs, logits, temperature),
    }


def member_outputs(member_logits: torch.Tensor, temperature: float = 1.0) -> dict[str, Any]:
    """Compute the outputs of K members from logits (K, N, C) (mean probability, decomposition).

    ``logits`` is returned as ``log(p_bar)``, so ``softmax(logits) == probabilities``.
    """
    with torch.autocast(device_type=member_logits.device.type, enabled=False):
        return _member_outputs(member_logits.float(), temperature)


def _member_outputs(member_logits: torch.Tensor, temperature: float) -> dict[str, Any]:
    member_probs = F.softmax(member_logits, dim=-1)
    dec = decompose(member_probs)
    probs = dec["probabilities"]
    conf, pred = probs.max(dim=-1)
    scores = base_scores(probs, member_logits, temperature)
    scores["entropy"] = dec["entropy"]
    scores["mutual_information"] = dec["mutual_information"]
    scores["expected_entropy"] = dec["expected_entropy"]
    log_p = torch.logsumexp(F.log_softmax(member_logits, dim=-1), dim=0) - torch.log(
        torch.tensor(float(member_logits.shape[0]), device=member_logits.device)
    )
    return {
        "logits": log_p,
        "probabilities": probs,
        "predictions": pred,
        "confidence": conf,
        "scores": scores,
    }
