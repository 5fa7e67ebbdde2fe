"""Deep ensemble of K independently trained networks, run batched or looped.

The predictive distribution is the **mean of member probabilities** (never of logits;
sngp_core's ``DeepEnsemble.forward`` averages logits, a different predictor); see
:func:`tileuq.models.scores.member_outputs` for the entropy / expected entropy / mutual
information decomposition.

Two ways to run the members on one (already decoded and normalized) batch:

- ``"looped"``: a Python loop over the members;
- ``"batched"``: ``torch.func.stack_module_state`` + ``functional_call`` + ``vmap`` over the
  stacked weights (one call; conv batching becomes a grouped convolution).  After stacking,
  every member parameter and buffer is re-pointed to a view of the stacked tensors, so the
  weights are held once and in-place updates (optimizer steps, ``load_state_dict``) reach the
  stack; a member tensor replaced by another (new storage) triggers a re-stack.  Inference
  only (BatchNorm in eval).

``mode="auto"`` picks :data:`AUTO_MODE` for the device type, set from
``benchmarks/models.py`` (see the module docstring of :mod:`tileuq.models`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

# The faster mode per device type, from benchmarks/models.py.  CPU (2 shared cores, K=5,
# interleaved rounds): time / (5 x one network) was 1.09 looped vs 1.21 batched for ResNet-18
# at 224 px (batch 16) and 1.13 vs 1.31 for resnet_slim at 96 px (batch 64), so the loop is
# kept.  GPU: not measured here; the loop is kept too (the reference notes report only modest
# vmap gains); run the benchmark on a GPU and change "cuda" if batched wins there.
AUTO_MODE: dict[str, str] = {"cpu": "looped", "cuda": "looped"}
MODES = ("auto", "looped", "batched")


class _FeaturesAndLogits(nn.Module):
    """Adapter so ``functional_call`` can return features and logits in one call."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net.forward_features(x)  # type: ignore[operator]
        return f, self.net.forward_head(f)  # type: ignore[operator]


class DeepEnsemble(nn.Module):
    """K member networks with ``forward_features`` / ``forward_head`` (same architecture).

    Parameters
    ----------
    members
        The member networks.
    mode
        ``"auto"``, ``"looped"`` or ``"batched"``.
    """

    def __init__(self, members: Sequence[nn.Module], mode: str = "auto") -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        if mode not in MODES:
            raise ValueError(f"ensemble mode must be one of {MODES}, got {mode!r}")
        self.members = nn.ModuleList(members)
        self.mode = mode
        self._stack: tuple[tuple[Any, ...], dict[str, torch.Tensor], nn.Module] | None = None

    def __len__(self) -> int:
        return len(self.members)

    def resolved_mode(self, device: torch.device) -> str:
        """Return the mode used on ``device`` (``auto`` resolved)."""
        if self.mode != "auto":
            return self.mode
        return AUTO_MODE.get(device.type, "looped")

    def _key(self) -> tuple[Any, ...]:
        return tuple(
            (t.data_ptr(), t.shape, t.dtype, t.device)
            for m in self.members
            for t in (*m.parameters(), *m.buffers())
        )

    def _stacked(self) -> tuple[dict[str, torch.Tensor], nn.Module]:
        if self._stack is None or self._stack[0] != self._key():
            # stack outside inference mode (member tensors must stay usable for training)
            with torch.inference_mode(False), torch.no_grad():
                params, buffers = torch.func.stack_module_state(list(self.members))
                stacked = {k: v.detach() for k, v in {**params, **buffers}.items()}
                # members now share storage with the stack: in-place updates (optimizer steps,
                # load_state_dict, .data edits) reach both, and the weights are held once
                for k, m in enumerate(self.members):
                    for name, p in m.named_parameters():
                        p.data = stacked[name][k]
                    for name, _ in list(m.named_buffers()):
                        owner, _, leaf = name.rpartition(".")
                        m.get_submodule(owner)._buffers[leaf] = stacked[name][k]
            base = _FeaturesAndLogits(copy.deepcopy(self.members[0])).to("meta")
            state = {f"net.{k}": v for k, v in stacked.items()}
            self._stack = (self._key(), state, base)
        return self._stack[1], self._stack[2]

    def forward_members(
        self, x: torch.Tensor, mode: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(K, N, D)`` and logits ``(K, N, C)`` of every member on one batch."""
        mode = mode or self.resolved_mode(x.device)
        if mode == "batched" and not self.training:
            state, base = self._stacked()

            def one(s: dict[str, torch.Tensor], xx: torch.Tensor) -> Any:
                return torch.func.functional_call(base, s, (xx,))

            feats, logits = torch.func.vmap(one, in_dims=(0, None), randomness="different")(
                state, x
            )
            return feats, logits
        feats_l, logits_l = [], []
        for m in self.members:
            f = m.forward_features(x)  # type: ignore[operator]
            feats_l.append(f)
            logits_l.append(m.forward_head(f))  # type: ignore[operator]
        return torch.stack(feats_l), torch.stack(logits_l)

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Logits of one member ``(N, C)`` or of all members ``(K, N, C)`` (training path)."""
        if member is not None:
            return self.members[member](x)
        return torch.stack([m(x) for m in self.members])

    def _apply(self, fn: Any, recurse: bool = True) -> DeepEnsemble:
        self._stack = None
        super()._apply(fn, recurse)
        return self
