"""The four uncertainty methods as modules with one inference interface.

Each method module takes a **normalized** image batch ``(N, 3, H, W)`` (normalization is done
once by :class:`~tileuq.TileModel`) and offers:

- ``forward(x, member=None)``: raw training logits (what a loss is computed on);
- ``members``: the trainable networks (one, or K for an ensemble);
- ``infer(x, return_features)``: the inference dictionary (see
  :meth:`tileuq.TileModel.predict`), computed in eval semantics.

Methods
-------
``deterministic``
    One network; softmax of its logits.
``sngp``
    One spectrally normalized network whose ``fc`` is an :class:`~tileuq.models.SNGPHead`.
    ``logits`` are the mean-field logits (as the published SNGP quick inference),
    ``raw_logits`` the unadjusted ones, ``variance`` the GP predictive variance ``(N,)``.
``ensemble``
    :class:`~tileuq.models.ensemble.DeepEnsemble`; probabilities are the member mean.
``mc_dropout``
    One network with dropout; T stochastic passes at inference with dropout active **only in
    the dropout layers** (BatchNorm stays in eval).  When dropout sits only before the head
    (``block_drop_rate == 0``), the backbone runs once and the T passes reuse its features,
    which is exactly equivalent to T full passes.  Masks come from a generator seeded with
    ``mc_seed`` and the T masks are shared by all tiles (T sampled sub-networks, as in an
    ensemble), so a tile's prediction is reproducible and independent of its batch.  With
    dropout inside the blocks (``block_drop_rate > 0``) masks are drawn per tile from the
    seeded global generator, which makes predictions depend on the batch composition.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tileuq.models.backbones import ResNet
from tileuq.models.ensemble import DeepEnsemble
from tileuq.models.scores import member_outputs, single_outputs
from tileuq.models.sngp import SNGPHead


class _Single(nn.Module):
    """Shared plumbing of the single-network methods."""

    method = "deterministic"

    def __init__(self, net: ResNet, energy_temperature: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.energy_temperature = float(energy_temperature)

    @property
    def members(self) -> list[nn.Module]:
        """The trainable network(s)."""
        return [self.net]

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Raw logits ``(N, C)`` for training."""
        if member not in (None, 0):
            raise IndexError(f"{self.method} has a single member, got member={member}")
        return self.net(x)

    def infer(self, x: torch.Tensor, return_features: bool = False) -> dict[str, Any]:
        feats = self.net.forward_features(x)
        out = single_outputs(self.net.forward_head(feats), self.energy_temperature)
        if return_features:
            out["features"] = feats.float()
        return out


class DeterministicMethod(_Single):
    """The deterministic baseline: softmax of one network's logits."""

    method = "deterministic"


class SNGPMethod(_Single):
    """Spectral-normalized backbone + :class:`SNGPHead` (``net.fc``)."""

    method = "sngp"

    def __init__(self, net: ResNet, energy_temperature: float = 1.0) -> None:
        if not isinstance(net.fc, SNGPHead):
            raise TypeError("SNGPMethod needs a network whose fc is an SNGPHead")
        super().__init__(net, energy_temperature)

    @property
    def head(self) -> SNGPHead:
        """The GP output layer."""
        return self.net.fc  # type: ignore[return-value]

    def infer(self, x: torch.Tensor, return_features: bool = False) -> dict[str, Any]:  # noqa: D102
        feats = self.net.forward_features(x)
        raw, var = self.head.logits_and_variance(self.net.head_drop(feats))
        out = single_outputs(self.head.mean_field_logits(raw, var), self.energy_temperature)
        out["scores"]["variance"] = var
        out["variance"] = var
        out["raw_logits"] = raw.float()
        if return_features:
            out["features"] = feats.float()
        return out


class MCDropoutMethod(_Single):
    """MC dropout with ``mc_samples`` stochastic passes."""

    method = "mc_dropout"

    def __init__(
        self,
        net: ResNet,
        mc_samples: int = 20,
        mc_seed: int = 0,
        energy_temperature: float = 1.0,
    ) -> None:
        super().__init__(net, energy_temperature)
        if mc_samples < 1:
            raise ValueError(f"mc_samples must be >= 1, got {mc_samples}")
        if net.drop_rate <= 0 and net.block_drop_rate <= 0:
            raise ValueError("mc_dropout needs drop_rate > 0 or block_drop_rate > 0")
        self.mc_samples = int(mc_samples)
        self.mc_seed = int(mc_seed)

    def sample_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic features ``(N, D)`` and T sampled logits ``(T, N, C)``."""
        t, p = self.mc_samples, self.net.drop_rate
        if self.net.block_drop_rate <= 0:
            feats = self.net.forward_features(x)
            g = torch.Generator(device=feats.device).manual_seed(self.mc_seed)
            # T masks shared by every tile: T sampled sub-networks, so a tile's prediction does
            # not depend on which other tiles share its batch (or on the batch size)
            d = feats.shape[-1]
            keep = torch.rand((t, 1, d), generator=g, device=feats.device) >= p
            dropped = feats.unsqueeze(0) * keep.to(feats.dtype) / (1.0 - p)
            return feats, self.net.fc(dropped)
        # dropout inside the blocks: T full passes with only the dropout layers in train mode
        feats = self.net.forward_features(x)
        devices = [x.device] if x.device.type == "cuda" else []
        drops = [m for m in self.net.modules() if isinstance(m, nn.Dropout)]
        with torch.random.fork_rng(devices=devices, device_type=x.device.type):
            torch.manual_seed(self.mc_seed)
            for m in drops:
                m.train()
            try:
                logits = torch.stack([self.net(x) for _ in range(t)])
            finally:
                for m in drops:
                    m.eval()
        return feats, logits

    def infer(self, x: torch.Tensor, return_features: bool = False) -> dict[str, Any]:  # noqa: D102
        feats, logits = self.sample_logits(x)
        out = member_outputs(logits, self.energy_temperature)
        if return_features:
            out["features"] = feats.float()
        return out


class EnsembleMethod(nn.Module):
    """A :class:`DeepEnsemble` with the decomposition of its member probabilities."""

    method = "ensemble"

    def __init__(self, ensemble: DeepEnsemble, energy_temperature: float = 1.0) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.energy_temperature = float(energy_temperature)

    @property
    def members(self) -> list[nn.Module]:
        """The K member networks (train them one by one, with different seeds)."""
        return list(self.ensemble.members)

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Logits of one member ``(N, C)``, or of all ``(K, N, C)`` when ``member is None``."""
        return self.ensemble(x, member)

    def infer(self, x: torch.Tensor, return_features: bool = False) -> dict[str, Any]:  # noqa: D102
        feats, logits = self.ensemble.forward_members(x)
        out = member_outputs(logits, self.energy_temperature)
        if return_features:
            # members live in different feature spaces: concatenate them (N, K * D)
            out["features"] = feats.float().permute(1, 0, 2).reshape(feats.shape[1], -1)
        return out
