"""Bounded BatchNorm (DUE ``SpectralBatchNorm2d``); see :mod:`tileuq.models.spectral`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class SpectralBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose eval-mode Lipschitz constant is bounded (DUE ``SpectralBatchNorm2d``).

    ``gamma_eff = gamma / max(1, max_c |gamma_c| / sqrt(running_var_c + eps) / bound)`` with
    the factor computed without gradient.  State-dict keys are those of ``nn.BatchNorm2d``.
    """

    def __init__(self, num_features: int, bound: float = 0.95, **kw: Any) -> None:
        super().__init__(num_features, **kw)
        if bound <= 0:
            raise ValueError(f"batchnorm bound must be > 0, got {bound}")
        self.bound = float(bound)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, bound: float) -> SpectralBatchNorm2d:
        """Copy a BatchNorm2d (parameters, running statistics, settings) into a bounded one."""
        new = cls(
            bn.num_features,
            bound,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
            device=bn.weight.device if bn.weight is not None else None,
        )
        new.load_state_dict(bn.state_dict())
        new.train(bn.training)
        return new

    def lipschitz(self) -> float:
        """Eval-mode Lipschitz constant of the (bounded) layer."""
        lip = self._lip()
        return float("nan") if lip is None else float(lip / torch.clamp(lip / self.bound, min=1.0))

    def _lip(self) -> torch.Tensor | None:
        """``max_c |gamma_c| / sqrt(running_var_c + eps)`` (a device scalar, no gradient)."""
        if self.running_var is None:
            return None
        with torch.no_grad():
            scale = (self.running_var.float() + self.eps).rsqrt()
            if self.weight is not None:
                scale = self.weight.detach().float().abs() * scale
            return scale.max()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        self._check_input_dim(x)
        eaf = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            eaf = 1.0 / float(self.num_batches_tracked) if self.momentum is None else eaf
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        lip = self._lip()
        weight: torch.Tensor | None = self.weight
        if weight is not None and lip is not None:  # device tensors: no host sync
            weight = weight / torch.clamp(lip / self.bound, min=1.0).to(weight.dtype)
        use_stats = not self.training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if use_stats else None,
            self.running_var if use_stats else None,
            weight,
            self.bias,
            bn_training,
            eaf,
            self.eps,
        )

    def extra_repr(self) -> str:  # noqa: D102
        return super().extra_repr() + f", bound={self.bound}"
