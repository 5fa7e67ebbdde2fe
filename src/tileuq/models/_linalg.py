"""Small linear-algebra helpers of the SNGP head."""

from __future__ import annotations

import torch


def orthogonal_random_features(
    num_features: int, dim: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(num_features, dim)`` rows: orthonormal blocks scaled by chi(dim) norms."""
    blocks = []
    remaining = num_features
    while remaining > 0:
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        blocks.append(q.t()[: min(dim, remaining)])
        remaining -= dim
    directions = torch.cat(blocks, dim=0)
    norms = torch.randn(num_features, dim, generator=generator).norm(dim=1, keepdim=True)
    return directions * norms


def spd_inverse(p: torch.Tensor) -> torch.Tensor:
    """Inverse of a symmetric positive-definite matrix (float64 Cholesky, jitter, pinv)."""
    p = p.to(torch.float64)
    p = 0.5 * (p + p.t())
    scale = float(p.diagonal().abs().mean()) or 1.0
    eye = torch.eye(p.shape[0], dtype=p.dtype, device=p.device)
    for jitter in (0.0, 1e-10, 1e-8, 1e-6, 1e-4):
        chol, info = torch.linalg.cholesky_ex(p + (jitter * scale) * eye)
        if int(info) == 0:
            return torch.cholesky_inverse(chol)
    return torch.linalg.pinv(p, hermitian=True)
