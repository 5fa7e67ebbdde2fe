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
        factor, lip = self._factor_and_lip()
        return lip / factor

    def _factor_and_lip(self) -> tuple[float, float]:
        with torch.no_grad():
            gamma = self.weight.detach().float() if self.weight is not None else None
            rv = self.running_var
            if rv is None:
                return 1.0, float("nan")
            scale = (rv.float() + self.eps).rsqrt()
            lip = float((gamma.abs() * scale).max() if gamma is not None else scale.max())
        return max(1.0, lip / self.bound), lip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        self._check_input_dim(x)
        eaf = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            eaf = 1.0 / float(self.num_batches_tracked) if self.momentum is None else eaf
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        factor, _ = self._factor_and_lip()
        weight = self.weight if (self.weight is None or factor == 1.0) else self.weight / factor
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
