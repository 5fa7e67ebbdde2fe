"""Small linear-algebra helpers of the SNGP head."""

from __future__ import annotations

import torch


def orthogonal_random_features(
    num_features: int, dim: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Return ``(num_features, dim)`` rows: orthonormal blocks scaled by chi(dim) norms.

    Each block of ``dim`` rows is the transposed Q of a Gaussian matrix (Haar-distributed
    orthonormal rows); each row is scaled by the norm of an independent N(0, I_dim) vector, so
    rows are marginally N(0, I_dim) as in i.i.d. random Fourier features (Yu et al. 2016).
    """
    n_blocks = -(-num_features // dim)
    q, _ = torch.linalg.qr(torch.randn(n_blocks, dim, dim, generator=generator))
    directions = q.transpose(1, 2).reshape(n_blocks * dim, dim)[:num_features]
    norms = torch.randn(num_features, dim, generator=generator).norm(dim=1, keepdim=True)
    return directions * norms


def spd_inverse(p: torch.Tensor) -> torch.Tensor:
    """Invert a symmetric positive-definite matrix (float64 Cholesky, jitter, pinv fallback)."""
    p = p.to(torch.float64)
    p = 0.5 * (p + p.t())
    scale = float(p.diagonal().abs().mean()) or 1.0
    eye = torch.eye(p.shape[0], dtype=p.dtype, device=p.device)
    for jitter in (0.0, 1e-10, 1e-8, 1e-6, 1e-4):
        chol, info = torch.linalg.cholesky_ex(p + (jitter * scale) * eye)
        if int(info) == 0:
            return torch.cholesky_inverse(chol)
    return torch.linalg.pinv(p, hermitian=True)
