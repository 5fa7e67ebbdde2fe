"""SNGP output layer: random Fourier features, a trainable linear layer, Laplace covariance.

Conventions chosen (``../shared/docs/sngp-reference.md``; tf-models = tensorflow/models
``RandomFeatureGaussianProcess`` as used by the SNGP tutorial):

- **Features** ``phi(h) = sqrt(2/M) cos(W LN(h) / lengthscale + b)``, ``b ~ U(0, 2pi)``,
  ``W`` orthogonal random features (``"orf"``, edward2/DUE/UB default; rows are orthogonal
  within blocks and scaled by chi(d) norms, so each row is marginally N(0, I)) or i.i.d.
  Gaussian (``"rff"``).  ``W`` and ``b`` are frozen buffers (unit scale; the lengthscale is
  applied at forward time), so ``phi(x) . phi(y) ~ exp(-||x - y||^2 / (2 lengthscale^2))``.
- **Input LayerNorm** (``normalize_input=True``, edward2/UB/DUE default) without affine
  parameters (edward2 JAX), so the lengthscale keeps its meaning.  After it a d-dimensional
  feature vector has norm sqrt(d); the default lengthscale is then ``sqrt(d) / 2``, which makes
  the kernel ``exp(-4 (1 - rho))`` for feature correlation rho (uncorrelated tiles: 0.02).
  Without LayerNorm the default lengthscale is 1 (SNGP tutorial).  Tune it on validation data.
- **Output layer** ``logits = beta phi`` (``nn.Linear``), no bias by default (tf-models and
  edward2 fix the output bias at 0); training uses these **raw logits**.
- **Laplace precision, Gaussian likelihood, class-shared** (what tf-models/edward2/UB release,
  not the paper's per-class logistic Laplace; UB #258, #288):
  ``P = ridge I + sum_i phi_i phi_i^T``, accumulated under ``no_grad`` from detached features,
  in float64, **only in training mode**.  ``momentum < 0`` (default) is the exact per-epoch sum
  (tf-models ``gp_cov_momentum=-1``): call :meth:`SNGPHead.reset_precision` at the start of
  every epoch.  Guards: with ``num_data`` set, more accumulated samples than ``num_data``
  raise (DUE's seen-data assert); without it, an update after the covariance was computed and
  no reset in between warns.  ``momentum`` in (0, 1) is the moving average
  ``P_acc <- m P_acc + (1 - m) Phi^T Phi / B`` (first batch copied in, as sngp_core), with the
  ridge added at inversion; its scale is ~1/N of the exact sum.
- **Covariance** ``Sigma = P^-1`` is computed once, lazily, after the last update (or by
  :meth:`SNGPHead.finalize`) and cached (non-persistent buffer, invalidated by any update,
  reset or state-dict load): Cholesky in float64 with growing jitter, ``pinv`` fallback.
- **Predictive variance** per sample from the diagonal only,
  ``var(x) = ridge * ((Phi Sigma) * Phi).sum(-1)`` (tf-models multiplies by the ridge: it is the
  GP posterior variance with unit prior and noise variance = ridge, so far from the data
  ``var -> ||phi||^2 ~ 1`` with ridge 1 and near n training points ``~ ridge / n``).
  ``scale_variance_by_ridge=False`` drops the factor (sngp_core).  Shape ``(N,)``.
- **Mean field** ``logits / sqrt(1 + lambda var)`` with ``lambda = mean_field_factor`` (pi/8,
  the probit approximation, as in the tutorial; UB uses up to 25; ``lambda < 0`` disables),
  applied at inference only, never in the loss.
- **Precision** of the head: features, precision and variance are computed in float32/float64
  with autocast disabled, whatever the caller's autocast; ``W``, ``b``, ``P`` and ``Sigma`` keep
  their dtypes through ``.to(dtype)`` / ``.half()``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tileuq.models._linalg import orthogonal_random_features, spd_inverse

# buffers whose dtype is fixed whatever .to(dtype) / .half() asks (device moves still apply)
_FIXED_DTYPES = {
    "rff_weight": torch.float32,
    "rff_bias": torch.float32,
    "precision_accum": torch.float64,
    "covariance": torch.float64,
}


class SNGPHead(nn.Module):
    """Random-feature Gaussian-process output layer (SNGP, Liu et al. 2020).

    Parameters
    ----------
    in_features
        Dimension ``d`` of the input feature vectors.
    num_classes
        Number of outputs.
    num_inducing
        Number of random Fourier features ``M``.
    ridge
        Prior precision ridge; far-from-data variance is ~1 with ``ridge=1``.
    lengthscale
        RBF lengthscale; ``None``: ``sqrt(d) / 2`` with ``normalize_input`` else 1.
    normalize_input
        Apply a LayerNorm (no affine) before the random features.
    mean_field_factor
        ``lambda`` of the mean-field adjustment (negative disables it).
    momentum
        ``< 0``: exact per-epoch precision (reset each epoch); in (0, 1): moving average.
    output_bias
        Trainable bias on the output layer.
    scale_variance_by_ridge
        Multiply the variance by ``ridge`` (tf-models convention).
    random_features
        ``"orf"`` (orthogonal) or ``"rff"`` (i.i.d. Gaussian).
    num_data
        Training-set size; enables the forgotten-reset assert.
    seed
        Seed of the random features (drawn from the global RNG when ``None``).
    """

    _no_spectral_norm = True
    rff_weight: torch.Tensor
    rff_bias: torch.Tensor
    precision_accum: torch.Tensor
    covariance: torch.Tensor
    seen: torch.Tensor
    num_updates: torch.Tensor

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_inducing: int = 1024,
        ridge: float = 1.0,
        lengthscale: float | None = None,
        normalize_input: bool = True,
        mean_field_factor: float = math.pi / 8,
        momentum: float = -1.0,
        *,
        output_bias: bool = False,
        scale_variance_by_ridge: bool = True,
        random_features: str = "orf",
        num_data: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1 or num_inducing < 1:
            raise ValueError("in_features, num_classes and num_inducing must be positive")
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        if not (momentum < 0 or 0 < momentum < 1):
            raise ValueError(f"momentum must be < 0 (exact) or in (0, 1), got {momentum}")
        if random_features not in ("orf", "rff"):
            raise ValueError(f"random_features must be 'orf' or 'rff', got {random_features!r}")
        if lengthscale is None:
            lengthscale = math.sqrt(in_features) / 2 if normalize_input else 1.0
        if not lengthscale > 0:
            raise ValueError(f"lengthscale must be > 0, got {lengthscale}")
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.num_inducing = int(num_inducing)
        self.ridge = float(ridge)
        self.lengthscale = float(lengthscale)
        self.normalize_input = bool(normalize_input)
        self.mean_field_factor = float(mean_field_factor)
        self.momentum = float(momentum)
        self.scale_variance_by_ridge = bool(scale_variance_by_ridge)
        self.random_features = random_features
        self.num_data = num_data

        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        g = torch.Generator().manual_seed(seed)
        if random_features == "orf":
            w = orthogonal_random_features(num_inducing, in_features, g)
        else:
            w = torch.randn(num_inducing, in_features, generator=g)
        self.register_buffer("rff_weight", w)
        self.register_buffer("rff_bias", 2 * math.pi * torch.rand(num_inducing, generator=g))
        self.input_norm: nn.Module = (
            nn.LayerNorm(in_features, elementwise_affine=False)
            if normalize_input
            else nn.Identity()
        )
        self.output = nn.Linear(num_inducing, num_classes, bias=output_bias)
        m = num_inducing
        self.register_buffer("precision_accum", torch.zeros(m, m, dtype=torch.float64))
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer("covariance", torch.empty(0, dtype=torch.float64), persistent=False)
        self._cov_valid = False
        self._cov_used = False  # covariance computed since the last reset (forgotten-reset guard)
        # host-side mirrors of ``seen`` / ``num_updates``: no device sync in the training loop
        self._n_seen = 0
        self._n_updates = 0

    # ------------------------------------------------------------------ dtype/device handling
    def _apply(self, fn: Any, recurse: bool = True) -> SNGPHead:
        before = {k: self._buffers[k] for k in _FIXED_DTYPES}
        super()._apply(fn, recurse)
        for k, dtype in _FIXED_DTYPES.items():
            new, old = self._buffers[k], before[k]
            if new is not None and old is not None and new.dtype != dtype:
                self._buffers[k] = old.to(device=new.device, dtype=dtype)
        return self

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        self._cov_valid = False
        self._cov_used = False
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._n_seen, self._n_updates = int(self.seen), int(self.num_updates)

    # ------------------------------------------------------------------ forward
    def random_features_of(self, features: torch.Tensor) -> torch.Tensor:
        """``phi(features)`` (N, M) in float32 (autocast disabled)."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            h = self.input_norm(features.float())
            proj = F.linear(h, self.rff_weight) / self.lengthscale + self.rff_bias
            return torch.cos(proj) * math.sqrt(2.0 / self.num_inducing)

    def _output(self, phi: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=phi.device.type, enabled=False):
            w = self.output.weight.float()
            b = None if self.output.bias is None else self.output.bias.float()
            return F.linear(phi, w, b)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw logits ``(N, C)``; in training mode also accumulates the precision."""
        phi = self.random_features_of(features)
        if self.training:
            self.update_precision(phi)
        return self._output(phi)

    @torch.no_grad()
    def update_precision(self, phi: torch.Tensor) -> None:
        """Add a batch of random features ``(B, M)`` to the precision accumulator."""
        phi = phi.detach().float()
        b = phi.shape[0]
        if b == 0:
            return
        if self._cov_used and self.momentum < 0:
            warnings.warn(
                "SNGPHead: precision updated after its covariance was computed without "
                "reset_precision(); call reset_precision() at the start of every epoch",
                RuntimeWarning,
                stacklevel=3,
            )
            self._cov_used = False
        with torch.autocast(device_type=phi.device.type, enabled=False):
            p64 = phi.to(torch.float64)
            batch = p64.t() @ p64
        if self.momentum < 0:
            self.precision_accum.add_(batch)
        elif self._n_updates == 0:
            self.precision_accum.copy_(batch / b)
        else:
            self.precision_accum.mul_(self.momentum).add_(batch, alpha=(1 - self.momentum) / b)
        self.seen.add_(b)
        self.num_updates.add_(1)
        self._n_seen += b
        self._n_updates += 1
        self._cov_valid = False
        if self.momentum < 0 and self.num_data is not None and self._n_seen > self.num_data:
            raise RuntimeError(
                f"SNGPHead accumulated {self._n_seen} samples but num_data={self.num_data}: "
                "reset_precision() was not called at the start of the epoch"
            )

    def reset_precision(self) -> None:
        """Zero the accumulator (call at the start of every training epoch)."""
        with torch.no_grad():
            self.precision_accum.zero_()
            self.seen.zero_()
            self.num_updates.zero_()
        self._n_seen = self._n_updates = 0
        self._cov_valid = False
        self._cov_used = False

    def precision(self) -> torch.Tensor:
        """Return the Laplace precision ``ridge I + accumulator`` (M, M), float64."""
        eye = torch.eye(self.num_inducing, dtype=torch.float64, device=self.precision_accum.device)
        return self.ridge * eye + self.precision_accum

    @torch.no_grad()
    def finalize(self) -> torch.Tensor:
        """Compute (or return the cached) covariance ``P^-1`` after the last update."""
        if not self._cov_valid or self.covariance.shape != self.precision_accum.shape:
            self.covariance = spd_inverse(self.precision())
            self._cov_valid = True
        self._cov_used = self._n_updates > 0
        return self.covariance

    # ------------------------------------------------------------------ inference
    def _variance_from_phi(self, phi: torch.Tensor) -> torch.Tensor:
        cov = self.finalize()
        with torch.no_grad(), torch.autocast(device_type=phi.device.type, enabled=False):
            p = phi.detach().to(torch.float64)
            var = ((p @ cov) * p).sum(-1).clamp_min(0.0)
            if self.scale_variance_by_ridge:
                var = var * self.ridge
            return var.float()

    def variance(self, features: torch.Tensor) -> torch.Tensor:
        """Per-sample predictive variance ``(N,)`` (eval mode only)."""
        if self.training:
            raise RuntimeError("SNGPHead.variance needs eval mode (call .eval() first)")
        return self._variance_from_phi(self.random_features_of(features))

    def logits_and_variance(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw logits ``(N, C)`` and variance ``(N,)`` from one feature map (eval mode)."""
        if self.training:
            raise RuntimeError("SNGPHead.logits_and_variance needs eval mode")
        phi = self.random_features_of(features)
        return self._output(phi), self._variance_from_phi(phi)

    def mean_field_logits(self, logits: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """``logits / sqrt(1 + lambda * variance)`` (inference only; identity if lambda < 0)."""
        if self.mean_field_factor < 0:
            return logits
        var = variance.reshape(-1, 1).to(logits.dtype)
        return logits / torch.sqrt(1.0 + self.mean_field_factor * var)

    def extra_repr(self) -> str:  # noqa: D102
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"num_inducing={self.num_inducing}, ridge={self.ridge}, "
            f"lengthscale={self.lengthscale:.4g}, momentum={self.momentum}, "
            f"mean_field_factor={self.mean_field_factor:.4g}"
        )
