"""SNGPHead: precision bookkeeping, variance scale, mean field, numerics."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from tileuq.models import SNGPHead


def _head(**kw) -> SNGPHead:
    kw = {"num_inducing": 256, "ridge": 1.0, "normalize_input": False, "lengthscale": 1.0, **kw}
    torch.manual_seed(0)
    return SNGPHead(2, 3, seed=0, **kw)


def test_precision_is_ridge_plus_sum_over_one_epoch_and_resets() -> None:
    head = _head(ridge=2.0)
    batches = [torch.randn(16, 2) for _ in range(4)]
    head.train()
    head.reset_precision()
    for b in batches:
        head(b)
    phi = torch.cat([head.random_features_of(b) for b in batches]).double()
    expected = 2.0 * torch.eye(256, dtype=torch.float64) + phi.t() @ phi
    assert torch.allclose(head.precision(), expected, atol=1e-9)
    assert int(head.seen) == 64
    # eval forwards never touch the precision
    head.eval()
    head(torch.randn(8, 2))
    head.variance(torch.randn(8, 2))
    assert torch.allclose(head.precision(), expected, atol=1e-9)
    head.reset_precision()
    assert torch.equal(head.precision(), 2.0 * torch.eye(256, dtype=torch.float64))
    assert int(head.seen) == 0


def test_precision_accumulates_without_autograd() -> None:
    head = _head()
    x = torch.randn(8, 2, requires_grad=True)
    head.train()
    head(x).sum().backward()
    assert not head.precision_accum.requires_grad
    assert head.precision_accum.grad_fn is None
    assert head.precision_accum.dtype == torch.float64


def test_variance_is_one_far_from_data_and_small_near_it() -> None:
    head = _head(num_inducing=1024)
    torch.manual_seed(1)
    train = 0.3 * torch.randn(1000, 2)
    head.train()
    head.reset_precision()
    for b in train.split(250):
        head(b)
    head.eval()
    far = torch.tensor([[10.0, 10.0], [-8.0, 9.0], [15.0, -12.0]])
    near = 0.3 * torch.randn(200, 2)
    v_far, v_near = head.variance(far), head.variance(near)
    assert v_far.shape == (3,)
    # ridge = 1: the prior variance ||phi||^2 ~ 1 far away ...
    assert torch.allclose(v_far, torch.ones(3), atol=0.1)
    # ... and roughly ridge / (nearby training points) on the data
    assert float(v_near.mean()) < 0.02


def test_variance_without_ridge_factor_matches_the_plain_quadratic_form() -> None:
    a = _head(ridge=1e-3, scale_variance_by_ridge=False)
    b = _head(ridge=1e-3, scale_variance_by_ridge=True)
    x = torch.randn(5, 2)
    a.eval()
    b.eval()
    assert torch.allclose(a.variance(x) * 1e-3, b.variance(x), rtol=1e-5)
    # no data: Sigma = I / ridge, so var = ||phi||^2 / ridge
    phi = a.random_features_of(x)
    assert torch.allclose(a.variance(x), (phi * phi).sum(-1) / 1e-3, rtol=1e-5)


def test_mean_field_is_not_in_the_training_loss() -> None:
    head = _head()
    x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
    head.train()
    for _ in range(3):  # precision non-trivial
        head(torch.randn(32, 2))
    logits = head(x)
    phi = head.random_features_of(x)
    raw = F.linear(phi, head.output.weight)
    assert torch.equal(logits, raw)
    F.cross_entropy(logits, y).backward()
    grad = head.output.weight.grad.clone()
    # the gradient is that of cross-entropy on the raw logits (analytically)
    p = F.softmax(raw.detach(), -1)
    expected = (p - F.one_hot(y, 3).float()).t() @ phi.detach() / 32
    assert torch.allclose(grad, expected, atol=1e-6)
    # while at inference the mean-field logits differ from the raw ones
    head.eval()
    raw_e, var = head.logits_and_variance(x)
    mf = head.mean_field_logits(raw_e, var)
    assert torch.allclose(mf, raw_e / torch.sqrt(1 + math.pi / 8 * var)[:, None])
    assert not torch.allclose(mf, raw_e)


def test_covariance_is_cached_and_invalidated_by_updates() -> None:
    head = _head()
    head.train()
    head(torch.randn(8, 2))
    head.eval()
    c1 = head.finalize()
    assert head.finalize() is c1
    assert torch.allclose(c1 @ head.precision(), torch.eye(256, dtype=torch.float64), atol=1e-8)
    head.train()
    head.reset_precision()
    head(torch.randn(8, 2))
    head.eval()
    assert head.finalize() is not c1


def test_guards_catch_a_forgotten_reset() -> None:
    head = _head(num_data=20)
    head.train()
    head.reset_precision()
    head(torch.randn(20, 2))  # one epoch
    with pytest.raises(RuntimeError, match="reset_precision"):
        head(torch.randn(20, 2))  # the next epoch without a reset
    soft = _head()
    soft.train()
    soft(torch.randn(20, 2))
    soft.eval()
    soft.variance(torch.randn(2, 2))  # validation computed the covariance
    soft.train()
    with pytest.warns(RuntimeWarning, match="reset_precision"):
        soft(torch.randn(20, 2))


def test_variance_needs_eval_mode() -> None:
    head = _head()
    head.train()
    with pytest.raises(RuntimeError, match="eval"):
        head.variance(torch.randn(2, 2))


def test_momentum_mode_copies_the_first_batch_then_averages() -> None:
    head = _head(momentum=0.9)
    a, b = torch.randn(10, 2), torch.randn(10, 2)
    head.train()
    head(a)
    pa = head.random_features_of(a).double()
    assert torch.allclose(head.precision_accum, pa.t() @ pa / 10, atol=1e-9)
    head(b)
    pb = head.random_features_of(b).double()
    expected = 0.9 * (pa.t() @ pa / 10) + 0.1 * (pb.t() @ pb / 10)
    assert torch.allclose(head.precision_accum, expected, atol=1e-9)


def test_dtypes_survive_half_and_autocast() -> None:
    head = _head()
    head.train()
    head(torch.randn(16, 2))
    head.eval()
    x = torch.randn(4, 2)
    ref = head.variance(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = head.variance(x)
        logits = head(x)
    assert v.dtype == torch.float32 and logits.dtype == torch.float32
    assert torch.allclose(v, ref, atol=1e-6)
    head.to(torch.bfloat16)
    assert head.precision_accum.dtype == torch.float64
    assert head.rff_weight.dtype == torch.float32


def test_orthogonal_random_features_and_default_lengthscale() -> None:
    head = SNGPHead(16, 2, num_inducing=40, seed=3)
    w = head.rff_weight[:16]
    gram = w @ w.t()
    off = gram - torch.diag(torch.diag(gram))
    assert float(off.abs().max()) < 1e-4  # rows orthogonal within a block
    assert head.lengthscale == pytest.approx(2.0)  # sqrt(16) / 2 with the input LayerNorm
    assert SNGPHead(16, 2, normalize_input=False).lengthscale == 1.0


def test_random_features_approximate_the_rbf_kernel() -> None:
    head = SNGPHead(4, 2, num_inducing=8000, normalize_input=False, lengthscale=2.0, seed=1)
    x, y = torch.randn(1, 4), torch.randn(1, 4)
    k = float(head.random_features_of(x) @ head.random_features_of(y).t())
    rbf = math.exp(-float(((x - y) ** 2).sum()) / (2 * 2.0**2))
    assert k == pytest.approx(rbf, abs=0.03)


def test_tile_model_training_protocol() -> None:
    """What a trainer does: raw-logit loss, reset each epoch, validate, finalize."""
    import warnings

    import tileuq

    model = tileuq.build_model(
        "sngp", "resnet_slim", num_classes=2, tile_px=32, num_inducing=32, num_data=8
    )
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    params = [p for m in model.members for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.05)
    head = model.sngp_heads()[0]
    conv = model.members[0].conv1.parametrizations["weight"]
    before = conv.original.detach().clone()
    for _ in range(2):  # two epochs of two batches (8 samples)
        model.train()
        model.reset_precision()
        for _ in range(2):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert int(head.seen) == 8
        val = model.predict(x)  # validation: computes the covariance, mutates nothing
        assert int(head.seen) == 8 and model.training
        assert bool((val["variance"] < 1.0).all())
    assert not torch.equal(conv.original, before)  # gradients reached the SN backbone
    model.eval()
    model.finalize()
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(RuntimeError, match="reset_precision"):
            model(x)  # a third epoch without reset: 12 > num_data
