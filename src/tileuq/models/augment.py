"""Training augmentations for H&E tiles, in plain torch (batched, seeded, on any device).

One call turns a uint8 batch ``(N, H, W, 3)`` into a float batch ``(N, 3, H, W)`` in [0, 1]
(the input :class:`~tileuq.TileModel` accepts), with per-tile random parameters drawn from a
``torch.Generator`` so a seed fixes every augmentation:

- **Geometry** (one ``grid_sample``): the 8 symmetries of the square (horizontal flip x 90°
  rotations: tissue has no orientation) combined with a mild random resized crop (area
  fraction ``crop_scale``, aspect ratio ``crop_ratio``; the crop is resized back to the tile
  size, so the apparent resolution changes by at most ``1/sqrt(min scale)``, ~12% by
  default).  Without a crop the symmetries are exact pixel permutations.
- **Stain jitter in HED space** (Tellez et al. 2018, "HED-light"): optical density
  ``-ln(rgb)`` is unmixed with the Ruifrok-Johnston H&E-DAB matrix (as
  ``skimage.color.rgb2hed``), each stain's concentration is scaled by ``U(1 - hed_sigma,
  1 + hed_sigma)`` and shifted by ``U(-hed_bias, hed_bias)``, and the result is mixed back.
- **Brightness and contrast** (multiplicative, ``U(1 - b, 1 + b)`` and around the tile mean).

Output size always equals the input size: the operator-mode spectral normalization of SNGP
convolutions is tied to the training tile size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional as F

# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB), as skimage.color
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
_RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)
_OD_FLOOR = 1.0 / 255.0


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (all mild by default; see the module docstring).

    Attributes
    ----------
    flips, rot90
        Random horizontal flip and random multiple of 90° (with both: all 8 symmetries).
    crop_scale
        Range of the crop's area fraction; ``(1.0, 1.0)`` disables the crop.
    crop_ratio
        Range of the crop's aspect ratio (width / height).
    hed_sigma, hed_bias
        Stain concentration scale and shift ranges (0 disables).
    brightness, contrast
        Relative ranges (0 disables).
    """

    flips: bool = True
    rot90: bool = True
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.0 / 0.9)
    hed_sigma: float = 0.05
    hed_bias: float = 0.02
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0.05 <= lo <= hi <= 1.0:
            raise ValueError(
                f"crop_scale must satisfy 0.05 <= lo <= hi <= 1, got {self.crop_scale}"
            )
        rlo, rhi = self.crop_ratio
        if not 0 < rlo <= rhi:
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}")
        for name in ("hed_sigma", "hed_bias", "brightness", "contrast"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        d = asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        d["crop_ratio"] = list(self.crop_ratio)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise ``TypeError``)."""
        kw = dict(d)
        for k in ("crop_scale", "crop_ratio"):
            if k in kw:
                kw[k] = tuple(float(v) for v in kw[k])
        return cls(**kw)


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 3, H, W)`` in [0, 1] (no augmentation)."""
    return batch.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def _uniform(
    n: int, lo: float, hi: float, g: torch.Generator, device: torch.device
) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device).to(device)


def _geometry(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    k = (
        torch.randint(0, 4, (n,), generator=g, device=g.device).to(dev)
        if cfg.rot90
        else torch.zeros(n, dtype=torch.long, device=dev)
    )
    flip = (
        torch.rand(n, generator=g, device=g.device).to(dev) < 0.5
        if cfg.flips
        else torch.zeros(n, dtype=torch.bool, device=dev)
    )
    crop = cfg.crop_scale != (1.0, 1.0)
    scale = _uniform(n, *cfg.crop_scale, g, dev) if crop else torch.ones(n, device=dev)
    logr = _uniform(n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), g, dev)
    ratio = torch.exp(logr) if crop else torch.ones(n, device=dev)
    sw = torch.sqrt(scale * ratio).clamp(max=1.0)
    sh = torch.sqrt(scale / ratio).clamp(max=1.0)
    cx = (1.0 - sw) * _uniform(n, -1.0, 1.0, g, dev)
    cy = (1.0 - sh) * _uniform(n, -1.0, 1.0, g, dev)
    if not crop and not cfg.flips and not cfg.rot90:
        return x
    ang = k.to(torch.float32) * (math.pi / 2)
    cos, sin = torch.cos(ang).round(), torch.sin(ang).round()
    fx = torch.where(flip, -1.0, 1.0)
    # input = centre + diag(sw, sh) @ R(k) @ diag(fx, 1) @ output   (normalized coordinates)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = sw * cos * fx
    theta[:, 0, 1] = -sw * sin
    theta[:, 1, 0] = sh * sin * fx
    theta[:, 1, 1] = sh * cos
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    mode = "bilinear" if crop else "nearest"
    return F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)


def _stain(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    to_hed = _HED_FROM_RGB.to(device=dev, dtype=x.dtype)
    to_rgb = _RGB_FROM_HED.to(device=dev, dtype=x.dtype)
    od = -torch.log(x.clamp(min=_OD_FLOOR))  # (N, 3, H, W)
    hed = torch.einsum("nchw,cd->ndhw", od, to_hed)
    alpha = _uniform(3 * n, 1 - cfg.hed_sigma, 1 + cfg.hed_sigma, g, dev).view(n, 3, 1, 1)
    beta = _uniform(3 * n, -cfg.hed_bias, cfg.hed_bias, g, dev).view(n, 3, 1, 1)
    od = torch.einsum("ndhw,dc->nchw", hed * alpha + beta, to_rgb)
    return torch.exp(-od)


def augment(batch: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment a uint8 tile batch ``(N, H, W, 3)``; returns float ``(N, 3, H, W)`` in [0, 1].

    ``generator`` supplies every random number (it may live on the CPU while the batch is on
    a GPU), so the same generator state gives the same batch.
    """
    x = to_float(batch)
    if x.shape[0] == 0:
        return x
    x = _geometry(x, cfg, generator)
    if cfg.hed_sigma > 0 or cfg.hed_bias > 0:
        x = _stain(x, cfg, generator)
    n, dev = x.shape[0], x.device
    if cfg.contrast > 0:
        c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator, dev).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean
    if cfg.brightness > 0:
        x = x * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, generator, dev).view(n, 1, 1, 1)
    return x.clamp_(0.0, 1.0)
