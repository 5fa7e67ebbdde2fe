"""ResNet backbones in plain PyTorch (torchvision is not a dependency).

Every backbone exposes ``forward_features(x) -> (N, D)`` (globally average-pooled features)
and ``forward_head(features) -> (N, C)`` (dropout, then the classifier ``fc``), in the style
of timm's ``ResNet``.  ``fc`` may be an :class:`torch.nn.Linear` or an
:class:`~tileuq.models.sngp.SNGPHead`; ``forward_head`` does not care which.

Module and parameter names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ...) so published torchvision-layout checkpoints map 1:1 (see
:mod:`tileuq.models.sngp_core`).  The architecture is torchvision's ResNet v1.5 (stride on the
3x3 conv of a bottleneck), BatchNorm eps 1e-5.

``resnet_slim`` is a CPU-friendly ResNet (basic blocks ``[1, 1, 1, 1]``, widths 24-192, 3x3
stem; ~0.7 M parameters) that works from 96 to 224 px tiles.

Input normalization: a backbone built with ``normalize=True`` holds the mean/std as buffers
(:class:`Normalize`) and applies it first in ``forward_features``.  :class:`~tileuq.TileModel`
builds its networks with ``normalize=False`` and normalizes once for all ensemble members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean/std stored as buffers of shape (1, 3, 1, 1).

    Accepts float tensors in [0, 1] or uint8 tensors in [0, 255] (N, 3, H, W); the uint8
    decode and the normalization are fused into one multiply-add, in float32, so the memory
    format of the input (e.g. channels_last from an NHWC uint8 batch) is preserved.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        m = torch.as_tensor(list(mean), dtype=torch.float32).reshape(1, -1, 1, 1)
        s = torch.as_tensor(list(std), dtype=torch.float32).reshape(1, -1, 1, 1)
        if m.numel() != 3 or s.numel() != 3 or bool((s <= 0).any()):
            raise ValueError(f"normalization needs 3 means and 3 positive stds, got {mean}, {std}")
        self.register_buffer("mean", m)
        self.register_buffer("std", s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        scale = 1.0 / self.std
        if x.dtype == torch.uint8:
            scale = scale / 255.0
        return x.to(torch.float32) * scale - self.mean / self.std

    def extra_repr(self) -> str:  # noqa: D102
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (torchvision ``BasicBlock``)."""

    expansion = 1

    def __init__(
        self,
        cin: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.drop(out)))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 bottleneck, expansion 4 (torchvision ``Bottleneck``, v1.5)."""

    expansion = 4

    def __init__(
        self,
        cin: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv3 = _conv1x1(width, width * 4)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.drop(out)))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A torchvision-compatible ResNet with ``forward_features`` / ``forward_head``.

    Parameters
    ----------
    block
        :class:`BasicBlock` or :class:`Bottleneck`.
    layers
        Blocks per stage (four stages).
    widths
        Base width of each stage.
    num_classes
        Outputs of ``fc``; 0 gives ``fc = Identity`` (features only).
    stem
        ``"7x7"`` (torchvision: 7x7/2 conv + 3x3/2 max pool) or ``"3x3"`` (3x3/2 conv + max pool).
    stem_width
        Channels of the stem conv (defaults to ``widths[0]``).
    drop_rate
        Dropout probability applied to the pooled features before ``fc`` (MC dropout).
    block_drop_rate
        Dropout inside every residual block, between its convolutions (0 disables).
    normalize
        Hold a :class:`Normalize` and apply it first in ``forward_features``.
    mean, std
        Normalization statistics (ImageNet by default).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 0,
        *,
        stem: str = "7x7",
        stem_width: int | None = None,
        drop_rate: float = 0.0,
        block_drop_rate: float = 0.0,
        normalize: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("a ResNet needs four stages (layers and widths of length 4)")
        if not 0.0 <= drop_rate < 1.0 or not 0.0 <= block_drop_rate < 1.0:
            raise ValueError("dropout rates must lie in [0, 1)")
        self.input_norm: nn.Module = Normalize(mean, std) if normalize else nn.Identity()
        sw = stem_width or widths[0]
        if stem == "7x7":
            self.conv1 = nn.Conv2d(3, sw, 7, stride=2, padding=3, bias=False)
        elif stem == "3x3":
            self.conv1 = nn.Conv2d(3, sw, 3, stride=2, padding=1, bias=False)
        else:
            raise ValueError(f"unknown stem {stem!r}: use '7x7' or '3x3'")
        self.bn1 = nn.BatchNorm2d(sw)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin = sw
        stages = []
        for i, (n, w) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks: list[nn.Module] = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or cin != w * block.expansion:
                    down = nn.Sequential(
                        _conv1x1(cin, w * block.expansion, s), nn.BatchNorm2d(w * block.expansion)
                    )
                blocks.append(block(cin, w, s, down, block_drop_rate))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = cin
        self.drop_rate = float(drop_rate)
        self.block_drop_rate = float(block_drop_rate)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, num_features)`` of an image batch ``(N, 3, H, W)``."""
        x = self.input_norm(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(torch.mean(x, dim=(2, 3)), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features: dropout (``drop_rate``), then ``fc``."""
        return self.fc(self.head_drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.forward_head(self.forward_features(x))


_Builder = Callable[..., ResNet]


def resnet18(**kw: Any) -> ResNet:
    """ResNet-18 (torchvision layout, ~11.2 M parameters without ``fc``)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kw)


def resnet34(**kw: Any) -> ResNet:
    """ResNet-34 (torchvision layout)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kw)


def resnet50(**kw: Any) -> ResNet:
    """ResNet-50 (torchvision layout, v1.5)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kw)


def resnet_slim(**kw: Any) -> ResNet:
    """Build a slim ResNet for CPU work: basic blocks [1, 1, 1, 1], widths 24-192, 3x3 stem."""
    kw.setdefault("stem", "3x3")
    return ResNet(BasicBlock, (1, 1, 1, 1), (24, 48, 96, 192), **kw)


BACKBONES: dict[str, _Builder] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet_slim": resnet_slim,
}


def build_backbone(name: str, **kw: Any) -> ResNet:
    """Build a backbone by name (``resnet18``, ``resnet34``, ``resnet50``, ``resnet_slim``).

    Keyword arguments go to :class:`ResNet` (``num_classes``, ``drop_rate``,
    ``block_drop_rate``, ``normalize``, ``mean``, ``std``).
    """
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None
    return builder(**kw)
