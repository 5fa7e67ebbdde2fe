"""Power-iteration parametrizations behind :func:`tileuq.models.spectral_norm`.

See :mod:`tileuq.models.spectral` for the conventions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

_WARMUP = 15


def _normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x / x.norm().clamp_min(eps)


def _no_autocast(t: torch.Tensor) -> Any:
    return torch.autocast(device_type=t.device.type, enabled=False)


def _version_key(t: torch.Tensor) -> tuple[int, int]:
    # inference tensors have no version counter (and cannot change outside inference mode)
    return (t.data_ptr(), -1 if torch.is_inference(t) else t._version)


class BoundedSpectralNorm(nn.Module):
    """Parametrization ``W -> W / max(1, sigma_hat / bound)`` (base class)."""

    def __init__(self, bound: float, n_power_iterations: int, eps: float) -> None:
        super().__init__()
        if bound <= 0:
            raise ValueError(f"spectral norm bound must be > 0, got {bound}")
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.bound = float(bound)
        self.n_power_iterations = int(n_power_iterations)
        self.eps = float(eps)
        self._cache: tuple[tuple[Any, ...], torch.Tensor, bool, torch.Tensor | None] | None = None

    # subclasses: _ready(), _init_state(w), _iterate(w, n), _sigma(w) (all float32, no grad)
    def _ready(self) -> bool:
        raise NotImplementedError

    def _init_state(self, w: torch.Tensor) -> None:
        raise NotImplementedError

    def _iterate(self, w: torch.Tensor, n: int) -> None:
        raise NotImplementedError

    def _sigma(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _state(self) -> tuple[torch.Tensor, ...]:
        return tuple(b for b in self.buffers())

    def sigma(self, weight: torch.Tensor) -> float:
        """Return sigma_hat, the operator-norm estimate of ``weight`` (no iteration)."""
        with torch.no_grad(), _no_autocast(weight):
            w = weight.detach().float()
            if not self._ready():
                self._init_state(w)
            return float(self._sigma(w))

    def _scale(self, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # max(1, sigma_hat / bound) as a device tensor (no host sync), no gradient
        return torch.clamp(self._sigma(w) / self.bound, min=1.0).to(dtype)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.training and self._ready():
            # eval: no iteration; the scale (and, without autograd, the rescaled weight) is
            # cached until the weight or the power-iteration state changes
            key = (
                _version_key(weight),
                weight.device,
                weight.dtype,
                *(_version_key(b) for b in self._state()),
            )
            if self._cache is None or self._cache[0] != key:
                # a normal (non-inference) tensor, so an eval forward with autograd can use it
                with torch.inference_mode(False), torch.no_grad(), _no_autocast(weight):
                    scale = self._scale(weight.detach().float(), weight.dtype)
                self._cache = (key, scale, bool(scale == 1.0), None)
            _, scale, is_one, cached = self._cache
            if is_one:
                return weight
            if torch.is_grad_enabled():
                return weight / scale
            if cached is None:
                cached = weight / scale
                self._cache = (key, scale, is_one, cached)
            return cached
        with torch.no_grad(), _no_autocast(weight):
            w = weight.detach().float()
            if not self._ready():
                self._init_state(w)
            if self.training:
                self._iterate(w, self.n_power_iterations)
            self._cache = None
            scale = self._scale(w, weight.dtype)
        return weight / scale

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        # u/v may not exist yet (conv state is created on first forward): adopt stored shapes.
        for name, buf in list(self._buffers.items()):
            incoming = state_dict.get(prefix + name)
            if buf is not None and incoming is not None and incoming.shape != buf.shape:
                self._buffers[name] = torch.empty(
                    incoming.shape, dtype=buf.dtype, device=buf.device
                )
        self._cache = None
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:  # noqa: D102
        return f"bound={self.bound}, n_power_iterations={self.n_power_iterations}"


class MatrixSpectralNorm(BoundedSpectralNorm):
    """Bounded spectral norm of ``W.reshape(out, -1)`` (Linear, 1x1 Conv2d)."""

    _u: torch.Tensor
    _v: torch.Tensor

    def __init__(
        self, weight: torch.Tensor, bound: float, n_power_iterations: int = 1, eps: float = 1e-12
    ) -> None:
        super().__init__(bound, n_power_iterations, eps)
        rows, cols = weight.shape[0], weight[0].numel()
        self.register_buffer("_u", torch.empty(rows, device=weight.device))
        self.register_buffer("_v", torch.empty(cols, device=weight.device))
        with torch.no_grad():
            self._init_state(weight.detach().float())

    def _ready(self) -> bool:
        return True

    def _init_state(self, w: torch.Tensor) -> None:
        g = torch.Generator(device="cpu").manual_seed(0)
        self._u = _normalize(torch.randn(self._u.shape, generator=g), self.eps).to(w.device)
        self._v = _normalize(torch.randn(self._v.shape, generator=g), self.eps).to(w.device)
        self._iterate(w, _WARMUP)

    def _iterate(self, w: torch.Tensor, n: int) -> None:
        m = w.reshape(w.shape[0], -1)
        u, v = self._u.float(), self._v.float()
        for _ in range(n):
            v = _normalize(m.t() @ u, self.eps)
            u = _normalize(m @ v, self.eps)
        # assign (not copy_): state created under inference_mode must stay usable in training
        self._u, self._v = u, v

    def _sigma(self, w: torch.Tensor) -> torch.Tensor:
        m = w.reshape(w.shape[0], -1)
        return torch.dot(self._u.float(), m @ self._v.float())


class ConvSpectralNorm(BoundedSpectralNorm):
    """Bounded operator norm of a Conv2d, by power iteration with conv2d / conv_transpose2d."""

    _u: torch.Tensor
    _v: torch.Tensor

    def __init__(
        self, conv: nn.Conv2d, bound: float, n_power_iterations: int = 1, eps: float = 1e-12
    ) -> None:
        super().__init__(bound, n_power_iterations, eps)
        if conv.padding_mode != "zeros":
            raise ValueError("operator-norm spectral normalization needs padding_mode='zeros'")
        if isinstance(conv.padding, str):
            raise ValueError("operator-norm spectral normalization needs numeric conv padding")
        self.stride = tuple(conv.stride)
        self.padding = tuple(conv.padding)
        self.dilation = tuple(conv.dilation)
        self.groups = conv.groups
        self.kernel_size = tuple(conv.kernel_size)
        dev = conv.weight.device
        self.register_buffer("_u", torch.empty(0, device=dev))
        self.register_buffer("_v", torch.empty(0, device=dev))
        self.pending_hw: tuple[int, int] | None = None

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """Input spatial size the state refers to (None before the first forward)."""
        return tuple(self._v.shape[-2:]) if self._v.dim() == 4 else None  # type: ignore[return-value]

    def _ready(self) -> bool:
        return self._v.dim() == 4 and (self.pending_hw is None or self.pending_hw == self.input_hw)

    def _out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return tuple(  # type: ignore[return-value]
            (hw[i] + 2 * self.padding[i] - self.dilation[i] * (self.kernel_size[i] - 1) - 1)
            // self.stride[i]
            + 1
            for i in range(2)
        )

    def _init_state(self, w: torch.Tensor) -> None:
        hw = self.pending_hw or self.input_hw
        if hw is None:
            raise RuntimeError("conv spectral norm: input size unknown (run a forward first)")
        ho, wo = self._out_hw(hw)
        g = torch.Generator(device="cpu").manual_seed(0)
        v = torch.randn(1, w.shape[1] * self.groups, *hw, generator=g)
        u = torch.randn(1, w.shape[0], ho, wo, generator=g)
        self._v = _normalize(v, self.eps).to(w.device)
        self._u = _normalize(u, self.eps).to(w.device)
        self.pending_hw = None
        self._iterate(w, _WARMUP)

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def _conv_t(self, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        hw = self._v.shape[-2:]
        full = [
            (y.shape[-2 + i] - 1) * self.stride[i]
            - 2 * self.padding[i]
            + self.dilation[i] * (self.kernel_size[i] - 1)
            + 1
            for i in range(2)
        ]
        out_pad = tuple(hw[i] - full[i] for i in range(2))
        return F.conv_transpose2d(
            y, w, None, self.stride, self.padding, out_pad, self.groups, self.dilation
        )

    def _iterate(self, w: torch.Tensor, n: int) -> None:
        u, v = self._u.float(), self._v.float()
        for _ in range(n):
            v = _normalize(self._conv_t(u, w), self.eps)
            u = _normalize(self._conv(v, w), self.eps)
        # assign (not copy_): state created under inference_mode must stay usable in training
        self._u, self._v = u, v

    def _sigma(self, w: torch.Tensor) -> torch.Tensor:
        return (self._u.float() * self._conv(self._v.float(), w)).sum()


def conv_input_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook: record the conv input size the operator-norm state needs."""
    x = args[0]
    sn: ConvSpectralNorm = module.parametrizations["weight"][0]  # type: ignore[index,assignment]
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    if sn.input_hw is None or (module.training and sn.input_hw != hw):
        sn.pending_hw = hw
