"""Bounded spectral normalization (SNGP, Liu et al. 2020) for Linear, Conv2d and BatchNorm.

Conventions chosen (see ``../shared/docs/sngp-reference.md`` §4 and §7):

- **Bounded, not exact.**  ``W_eff = W / max(1, sigma_hat / bound)``: a layer is rescaled only
  when its estimated spectral norm exceeds ``bound`` (edward2 ``norm_multiplier``, default
  0.95).  The torch built-ins divide by sigma unconditionally (sigma = 1 exactly, small weights
  scaled *up*); we do not.
- **Stop-gradient through sigma_hat** (edward2 JAX: ``w / stop_gradient(max(sigma/c, 1))``).
  sigma_hat is computed under ``no_grad``; the gradient of ``W_eff`` w.r.t. ``W`` is the plain
  rescaling.
- **Power-iteration state persists.**  ``u`` and ``v`` are buffers of the parametrization
  (``<layer>.parametrizations.weight.0._u`` / ``._v``), saved with the weights.  In training
  mode ``n_power_iterations`` steps run per forward; in eval mode **no iteration runs**:
  ``sigma_hat = <u, A v>`` from the stored vectors (and is cached until the weight or the
  vectors change), so eval never mutates state.  The one exception is a layer that has no
  state yet (a conv never run): its vectors are initialised with a warm-up of
  ``_WARMUP`` iterations on first use, in either mode.
- **Operator norm for k x k convolutions.**  For kernels larger than 1x1 the power iteration
  runs on the real convolution operator (``conv2d`` forward, ``conv_transpose2d`` adjoint with
  the output padding that restores the input size), as edward2 ``SpectralNormalizationConv2D``
  and DUE ``spectral_norm_conv``.  The reshaped-kernel norm used by the torch built-ins does
  not bound the operator (measured 1.55x for a 3x3 conv).  The operator depends on the input
  spatial size, which is inferred on the first forward (a forward pre-hook); ``u`` has the
  output shape ``(1, C_out, H_out, W_out)`` and ``v`` the input shape ``(1, C_in, H, W)``.
  When a training forward sees a new input size the vectors are re-initialised for it; in eval
  the stored (training-size) vectors are used whatever the input size, so the bound refers to
  the training tile size.  Only ``padding_mode="zeros"`` is supported in operator mode.
- **Implementation**: a ``torch.nn.utils.parametrize`` parametrization of ``weight`` (the raw
  weight is ``<layer>.parametrizations.weight.original``).  As with torch's own
  parametrizations, reading ``layer.weight`` computes the normalized weight, and in training
  mode each read runs the power iteration: read parameters, not ``.weight``, in code that is
  not a forward pass.
- **1x1 convolutions and Linear** use the reshaped-kernel norm ``||W.reshape(C_out, -1)||_2``,
  which is exact for Linear and for 1x1 convs (a strided 1x1 conv subsamples first, which has
  norm 1, so the bound still holds).
- **BatchNorm** is replaced by :class:`SpectralBatchNorm2d` (DUE ``SpectralBatchNorm2d``): its
  eval-mode Lipschitz constant ``max_c |gamma_c| / sqrt(running_var_c + eps)`` is bounded the
  same way, by dividing gamma by ``max(1, lipschitz / bound)`` (stop-gradient as above).  In
  training mode BN uses batch statistics; the bound refers to the inference operator.  Pass
  ``batchnorm_bound=False`` to leave BN unbounded (as sngp_core does; this voids the bound).

Why the bound matters: with residual blocks ``x + f(x)`` and ``Lip(f) <= c < 1`` the block is
bi-Lipschitz (lower bound ``1 - c``), which is what makes the feature distance meaningful.
Layers outside residual branches (stem, downsample projections) only contract.  The
guarantee weakens for large bounds (uncertainty-baselines uses 6 on WRN for accuracy).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn
from torch.nn.utils import parametrize

from tileuq.models.spectral_bn import SpectralBatchNorm2d
from tileuq.models.spectral_param import (
    BoundedSpectralNorm,
    ConvSpectralNorm,
    MatrixSpectralNorm,
    conv_input_hook,
)

__all__ = ["SpectralBatchNorm2d", "spectral_layers", "spectral_norm"]


def _wrap_layer(layer: nn.Module, bound: float, n_iter: int, eps: float, conv_mode: str) -> None:
    if parametrize.is_parametrized(layer, "weight"):
        return
    if isinstance(layer, nn.Conv2d) and conv_mode == "operator" and layer.weight[0, 0].numel() > 1:
        sn: nn.Module = ConvSpectralNorm(layer, bound, n_iter, eps)
        parametrize.register_parametrization(layer, "weight", sn, unsafe=True)
        layer.register_forward_pre_hook(conv_input_hook)
    else:
        sn = MatrixSpectralNorm(layer.weight, bound, n_iter, eps)  # type: ignore[arg-type]
        parametrize.register_parametrization(layer, "weight", sn, unsafe=True)


def spectral_norm(
    module: nn.Module,
    bound: float = 0.95,
    n_power_iterations: int = 1,
    *,
    eps: float = 1e-12,
    batchnorm_bound: float | bool | None = None,
    conv_mode: str = "operator",
) -> nn.Module:
    """Apply bounded spectral normalization recursively; return the (wrapped) module.

    Parameters
    ----------
    module
        A Linear, Conv2d or BatchNorm2d, or any module containing them.  Submodules whose
        class sets ``_no_spectral_norm = True`` (e.g. :class:`~tileuq.models.SNGPHead`) are
        skipped; already-normalized layers are left as they are.
    bound
        Largest allowed spectral norm ``c``: weights are divided by ``max(1, sigma_hat / c)``.
    n_power_iterations
        Power-iteration steps per training forward.
    eps
        Norm floor in the power iteration.
    batchnorm_bound
        Bound for BatchNorm2d layers (replaced by :class:`SpectralBatchNorm2d`); ``None``
        uses ``bound``, ``False`` leaves BatchNorm unbounded.
    conv_mode
        ``"operator"`` (default): true operator norm for k x k convs; ``"reshape"``: the
        reshaped-kernel norm for every conv (faster, but not a bound for k > 1).

    Returns
    -------
    nn.Module
        ``module`` itself (modified in place), or its replacement when ``module`` is a
        BatchNorm2d.
    """
    if conv_mode not in ("operator", "reshape"):
        raise ValueError(f"conv_mode must be 'operator' or 'reshape', got {conv_mode!r}")
    bn_bound: float | None
    if batchnorm_bound is None or batchnorm_bound is True:
        bn_bound = bound
    elif batchnorm_bound is False:
        bn_bound = None
    else:
        bn_bound = float(batchnorm_bound)

    def convert(m: nn.Module) -> nn.Module:
        if getattr(type(m), "_no_spectral_norm", False):
            return m
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            _wrap_layer(m, bound, n_power_iterations, eps, conv_mode)
            return m
        if type(m) is nn.BatchNorm2d:
            return m if bn_bound is None else SpectralBatchNorm2d.from_batchnorm(m, bn_bound)
        for name, child in list(m.named_children()):
            new = convert(child)
            if new is not child:
                setattr(m, name, new)
        return m

    return convert(module)


def spectral_layers(module: nn.Module) -> Iterator[tuple[str, nn.Module, BoundedSpectralNorm]]:
    """Yield ``(name, layer, parametrization)`` for every spectrally normalized layer."""
    for name, m in module.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            for p in m.parametrizations["weight"]:
                if isinstance(p, BoundedSpectralNorm):
                    yield name, m, p
