"""Bounded spectral normalization: the bound holds on the real operators."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tileuq.models import SNGPHead, build_backbone, spectral_norm
from tileuq.models.spectral import SpectralBatchNorm2d, spectral_layers

BOUND = 0.95


def _conv_matrix(conv: nn.Conv2d, c: int, h: int, w: int) -> torch.Tensor:
    """Dense matrix of the (bias-free) conv operator on (c, h, w) inputs, built column by column."""
    eye = torch.eye(c * h * w).reshape(-1, c, h, w)
    with torch.no_grad():
        out = F.conv2d(
            eye, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups
        )
    return out.reshape(c * h * w, -1).t()


def _opnorm(m: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(m.detach().double(), ord=2))


def _converge(layer: nn.Module, x: torch.Tensor, steps: int = 60) -> None:
    """Training forwards: one power-iteration step each, as during training."""
    layer.train()
    with torch.no_grad():
        for _ in range(steps):
            layer(x)
    layer.eval()


def test_linear_bound_holds_and_small_weights_are_not_scaled_up() -> None:
    torch.manual_seed(0)
    big = nn.Linear(32, 16)
    with torch.no_grad():
        big.weight.mul_(20.0)
    assert _opnorm(big.weight) > 5
    spectral_norm(big, BOUND)
    _converge(big, torch.randn(4, 32))
    assert _opnorm(big.weight) <= BOUND * 1.001
    assert _opnorm(big.weight) >= BOUND * 0.99  # rescaled to the bound, not below it

    small = nn.Linear(32, 16)
    with torch.no_grad():
        small.weight.mul_(0.01)
    ref = small.weight.detach().clone()
    spectral_norm(small, BOUND)
    small.eval()
    # torch's built-in would scale this up to sigma = 1; the bounded form leaves it alone
    assert torch.equal(small.weight, ref)


@pytest.mark.parametrize(("stride", "hw"), [(1, 8), (2, 8), (2, 9)])
def test_conv3x3_operator_norm_is_bounded(stride: int, hw: int) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.mul_(10.0)
    spectral_norm(conv, BOUND)
    _converge(conv, torch.randn(2, 4, hw, hw))
    true = _opnorm(_conv_matrix(conv, 4, hw, hw))
    # power iteration approaches sigma from below (slowly when the top singular values are
    # close: one step per training forward, as edward2/DUE); 60 steps leave < 0.5 %
    assert true <= BOUND * 1.005
    assert true >= BOUND * 0.98


def test_reshaped_kernel_norm_does_not_bound_a_3x3_conv() -> None:
    """Why the operator mode exists: the reshape mode lets the operator exceed the bound."""
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.mul_(10.0)
    spectral_norm(conv, BOUND, conv_mode="reshape")
    _converge(conv, torch.randn(2, 4, 8, 8))
    assert _opnorm(conv.weight.reshape(4, -1)) <= BOUND * 1.001
    assert _opnorm(_conv_matrix(conv, 4, 8, 8)) > BOUND * 1.1


def test_conv_adjoint_uses_the_right_output_padding() -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=False)
    spectral_norm(conv, BOUND)
    conv.eval()
    with torch.no_grad():
        conv(torch.randn(1, 3, 9, 9))
    sn = conv.parametrizations["weight"][0]
    assert sn.input_hw == (9, 9)
    w = conv.parametrizations["weight"].original
    x, y = torch.randn(1, 3, 9, 9), torch.randn(1, 5, 5, 5)
    lhs = (sn._conv(x, w) * y).sum()
    rhs = (x * sn._conv_t(y, w)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-5)


def test_eval_runs_no_power_iteration_and_training_does() -> None:
    torch.manual_seed(4)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    spectral_norm(conv, BOUND)
    x = torch.randn(2, 3, 8, 8)
    conv.eval()
    with torch.no_grad():
        conv(x)
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    with torch.no_grad():
        conv(x)
        conv(x)
    assert all(torch.equal(before[k], v) for k, v in conv.state_dict().items())
    conv.train()
    with torch.no_grad():
        conv(x)
    after = conv.state_dict()
    assert not torch.equal(
        before["parametrizations.weight.0._u"], after["parametrizations.weight.0._u"]
    )


def test_no_gradient_through_sigma() -> None:
    torch.manual_seed(5)
    lin = nn.Linear(8, 8, bias=False)
    with torch.no_grad():
        lin.weight.mul_(10)
    spectral_norm(lin, BOUND)
    lin.eval()
    orig = lin.parametrizations["weight"].original
    factor = float((orig.detach() / lin.weight.detach()).mean())
    assert factor > 1.5
    g = torch.randn(8, 8)
    (lin.weight * g).sum().backward()
    # stop-gradient: d W_eff / d W is the plain rescaling 1 / factor
    assert torch.allclose(orig.grad, g / factor, rtol=1e-5)


def test_batchnorm_is_bounded_in_eval() -> None:
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([4.0, -0.2, 1.0]))
        bn.running_var.copy_(torch.tensor([0.5, 1.0, 0.01]))
    bounded = spectral_norm(bn, BOUND)
    assert isinstance(bounded, SpectralBatchNorm2d)
    bounded.eval()
    x = torch.randn(1, 3, 4, 4)
    d = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        gain = (bounded(x + d) - bounded(x)).flatten(2).norm(dim=2) / d.flatten(2).norm(dim=2)
    assert float(gain.max()) <= BOUND * 1.0001
    assert bounded.lipschitz() == pytest.approx(BOUND, rel=1e-5)
    # unbounded BN would have gain max |gamma| / sqrt(var) = 1 / 0.1 = 10 on channel 2
    assert (
        spectral_norm(nn.BatchNorm2d(3), BOUND, batchnorm_bound=False).__class__ is nn.BatchNorm2d
    )


def test_recursive_wrapping_skips_the_sngp_head_and_survives_a_state_dict_round_trip() -> None:
    torch.manual_seed(6)
    net = build_backbone("resnet_slim", normalize=False)
    net.fc = SNGPHead(net.num_features, 3, num_inducing=16)
    spectral_norm(net, BOUND)
    wrapped = {name for name, _, _ in spectral_layers(net)}
    convs = {n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert wrapped == convs  # every conv, and not the GP output layer
    assert not any(
        isinstance(m, nn.BatchNorm2d) and type(m) is nn.BatchNorm2d for m in net.modules()
    )
    net.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = net.forward_features(x)
    fresh = build_backbone("resnet_slim", normalize=False)
    fresh.fc = SNGPHead(fresh.num_features, 3, num_inducing=16)
    spectral_norm(fresh, BOUND)
    # conv power-iteration state does not exist before the first forward: loading adopts it
    fresh.load_state_dict(net.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh.forward_features(x), ref)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="bound"):
        spectral_norm(nn.Linear(2, 2), bound=0)
    with pytest.raises(ValueError, match="conv_mode"):
        spectral_norm(nn.Linear(2, 2), conv_mode="fft")
