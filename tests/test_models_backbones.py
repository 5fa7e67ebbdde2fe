"""Backbones: torchvision-compatible architecture, feature/head split, normalization."""

from __future__ import annotations

import pytest
import torch

from tileuq.models import build_backbone
from tileuq.models.backbones import IMAGENET_MEAN, IMAGENET_STD, Normalize


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    ("name", "expected"),
    # torchvision's parameter counts minus its fc layer (11,689,512 - 513,000 etc.)
    [("resnet18", 11_176_512), ("resnet34", 21_284_672), ("resnet50", 23_508_032)],
)
def test_resnet_parameter_counts_match_torchvision(name: str, expected: int) -> None:
    net = build_backbone(name)
    assert _params(net) == expected
    assert net.num_features == (2048 if name == "resnet50" else 512)


def test_torchvision_parameter_names() -> None:
    keys = set(build_backbone("resnet18", num_classes=3).state_dict())
    for k in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.bias",
        "layer4.1.bn2.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ):
        assert k in keys, k
    keys50 = set(build_backbone("resnet50").state_dict())
    assert "layer3.5.conv3.weight" in keys50


def test_slim_is_small_and_works_from_96_to_224_px() -> None:
    net = build_backbone("resnet_slim", num_classes=5).eval()
    assert 300_000 <= _params(net) <= 1_000_000
    for px in (96, 224):
        with torch.no_grad():
            f = net.forward_features(torch.rand(2, 3, px, px))
            logits = net.forward_head(f)
        assert f.shape == (2, net.num_features)
        assert logits.shape == (2, 5)


def test_forward_is_features_then_head_and_dropout_only_in_head() -> None:
    net = build_backbone("resnet_slim", num_classes=4, drop_rate=0.5)
    x = torch.rand(3, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), net.forward_head(net.forward_features(x)))
    net.train()
    with torch.no_grad():
        f = net.forward_features(x)
        # dropout before the head is active in training: two head passes differ
        assert not torch.equal(net.forward_head(f), net.forward_head(f))


def test_normalization_is_stored_and_applied_inside() -> None:
    torch.manual_seed(0)
    net = build_backbone("resnet_slim", normalize=True).eval()
    bare = build_backbone("resnet_slim", normalize=False).eval()
    bare.load_state_dict(
        {k: v for k, v in net.state_dict().items() if not k.startswith("input_norm.")}
    )
    assert "input_norm.mean" in net.state_dict()
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = bare.forward_features((x - mean) / std)
        assert torch.allclose(net.forward_features(x), expected, atol=1e-5)


def test_normalize_decodes_uint8_and_float_alike() -> None:
    norm = Normalize()
    u8 = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.allclose(norm(u8), norm(u8.float() / 255), atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        Normalize(std=(1.0, 0.0, 1.0))


def test_channels_last_gives_the_same_features() -> None:
    net = build_backbone("resnet_slim").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = net.forward_features(x)
        net_cl = net.to(memory_format=torch.channels_last)
        out = net_cl.forward_features(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)


def test_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")
