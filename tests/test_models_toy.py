"""Two moons plus a distant cluster, in the spirit of the TF SNGP tutorial.

A residual MLP (frozen input projection, spectrally normalized residual layers, as the
tutorial's ``DeepResNetSNGP``) with an ``SNGPHead`` (``normalize_input=False``,
``lengthscale=1``, ridge 1, exact per-epoch precision) is trained next to the same network
with a plain linear head.  The SNGP variance must separate the distant cluster from the
in-distribution test points far better than the deterministic network's max probability.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tileuq.models import SNGPHead, spectral_norm


def make_moons(
    n: int, noise: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.rand(n, generator=generator) * math.pi
    label = torch.randint(0, 2, (n,), generator=generator)
    x = torch.where(label == 0, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(label == 0, torch.sin(t), 0.5 - torch.sin(t))
    pts = torch.stack([x, y], 1) + noise * torch.randn(n, 2, generator=generator)
    return pts, label


def auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """P(score_out > score_in) + 0.5 P(tie) (Mann-Whitney)."""
    diff = scores_out[:, None] - scores_in[None, :]
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


class ResMLP(nn.Module):
    def __init__(self, sngp: bool, hidden: int = 64, depth: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(2, hidden)
        self.inp.requires_grad_(False)  # frozen random projection, as in the tutorial
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.drop = nn.Dropout(0.1)
        if sngp:
            spectral_norm(self.layers, bound=0.9)
            self.head: nn.Module = SNGPHead(
                hidden, 2, num_inducing=512, ridge=1.0, lengthscale=1.0, normalize_input=False
            )
        else:
            self.head = nn.Linear(hidden, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer in self.layers:
            h = h + self.drop(F.relu(layer(h)))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _train(model: ResMLP, x: torch.Tensor, y: torch.Tensor, epochs: int = 30) -> None:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(epochs):
        if isinstance(model.head, SNGPHead):
            model.head.reset_precision()
        for idx in torch.randperm(len(x), generator=g).split(128):
            loss = F.cross_entropy(model(x[idx]), y[idx])  # raw logits
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


@pytest.mark.slow  # a few seconds on an idle CPU
def test_sngp_variance_separates_a_distant_cluster_far_better_than_max_probability() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x_train, y_train = make_moons(500, 0.1, g)
    x_test, y_test = make_moons(500, 0.1, g)
    x_ood = torch.tensor([-2.5, 2.0]) + 0.25 * torch.randn(300, 2, generator=g)

    torch.manual_seed(0)
    sngp = ResMLP(sngp=True)
    _train(sngp, x_train, y_train)
    torch.manual_seed(0)
    det = ResMLP(sngp=False)
    _train(det, x_train, y_train)

    head = sngp.head
    assert isinstance(head, SNGPHead)
    assert int(head.seen) == len(x_train)  # exactly one epoch in the precision
    with torch.no_grad():
        var_in = head.variance(sngp.features(x_test))
        var_out = head.variance(sngp.features(x_ood))
        raw, var = head.logits_and_variance(sngp.features(x_test))
        acc_sngp = float((head.mean_field_logits(raw, var).argmax(1) == y_test).float().mean())
        p_det_in = F.softmax(det(x_test), -1)
        p_det_out = F.softmax(det(x_ood), -1)
        acc_det = float((p_det_in.argmax(1) == y_test).float().mean())

    assert acc_sngp > 0.95 and acc_det > 0.95  # both learned the moons
    auroc_sngp = auroc(var_in, var_out)
    auroc_det = auroc(1 - p_det_in.max(1).values, 1 - p_det_out.max(1).values)
    assert auroc_sngp > 0.98
    assert auroc_sngp - auroc_det > 0.2, (auroc_sngp, auroc_det)
    # with ridge 1 the distant cluster sits near the prior variance, the data far below it
    assert float(var_out.mean()) > 0.5
    assert float(var_in.mean()) < 0.25
