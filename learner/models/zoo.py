"""The networks of the seed posts, written for learner: from a fully connected net to ResNet-9 and C3D.

The course-style CIFAR-10 nets (`SimpleNet` ... `Resnet2`) follow fastai 0.7's lesson 7 (post 003 walks
through them) and return log-probabilities, as the course did; the default cross-entropy loss applied to
log-probabilities gives the same loss as on logits, so they train with any learner unchanged.
`ResNet9` and `C3D_BN` return logits.

Parameter counts with the arguments the posts used (10 CIFAR-10 classes; 8 classes for C3D_BN):

    SimpleNet([3072, 40, 10])                    123,330   (post 003 reports 123,330)
    ConvNet([3, 20, 40, 80], 10)                  37,490   (post 003 reports 37,490)
    ConvNet2([3, 20, 40, 80], 10)                 37,490
    ConvBnNet([10, 20, 40, 80, 160], 10)         155,970
    ConvBnNet2([10, 20, 40, 80, 160], 10)        462,570
    Resnet([10, 20, 40, 80, 160], 10)            769,170
    Resnet2([16, 32, 64, 128, 256], 10, 0.2)   1,966,234
    LeNet5(10)                                    62,006
    ResNet9(10)                                6,573,120
    C3D_BN(8)                                 78,034,056   (112x112x16 clips)

Example:
    >>> data = ImageClassifierData.from_arrays(PATH, (x, y), (xv, yv), bs=256,
    ...                                        tfms=tfms_from_stats(cifar_stats, 32, aug_tfms=[RandomFlip()], pad=4))
    >>> learn = Learner.from_model_data(Resnet([10, 20, 40, 80, 160], 10), data)
    >>> learn.fit(1e-2, 2)
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['SimpleNet', 'ConvNet', 'ConvLayer', 'ConvNet2', 'BnLayer', 'ConvBnNet', 'ConvBnNet2', 'ResnetLayer',
           'Resnet', 'Resnet2', 'LeNet5', 'ResNet9', 'C3D_BN']


def _check_widths(layers: Sequence[int], name: str, min_len: int = 2) -> list[int]:
    """`layers` as a list of positive ints, or a ValueError saying what was expected."""
    widths = list(layers)
    if len(widths) < min_len or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ValueError(f'{name}: layers must be at least {min_len} positive ints (channels or features per '
                         f'layer, e.g. [3, 20, 40, 80]), got {layers!r}')
    return widths


def _pool_flatten(x: torch.Tensor) -> torch.Tensor:
    """Global max pool and flatten, the course nets' last step before the linear layer."""
    return F.adaptive_max_pool2d(x, 1).flatten(1)  # (B, C, H, W) -> (B, C)


# --------------------------------------------------------------------------- the lesson 7 CIFAR-10 nets


class SimpleNet(nn.Module):
    """Fully connected ReLU net over flattened pixels (post 003; fastai 0.7 lesson7-cifar10)."""

    def __init__(self, layers: Sequence[int]):
        """Args: layers: features per layer, input first, classes last, e.g. [32*32*3, 40, 10]."""
        super().__init__()
        widths = _check_widths(layers, 'SimpleNet')
        self.layers = nn.ModuleList([nn.Linear(n_in, n_out) for n_in, n_out in zip(widths[:-1], widths[1:])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, C, H, W) -> (B, C*H*W)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:  # no ReLU on the class scores
                x = F.relu(x)
        return F.log_softmax(x, dim=-1)  # (B, c)


class ConvNet(nn.Module):
    """Unpadded stride-2 3x3 convs, global max pool, linear (post 003; fastai 0.7 lesson7-cifar10)."""

    def __init__(self, layers: Sequence[int], c: int):
        """Args: layers: channels, image channels first, e.g. [3, 20, 40, 80]; c: number of classes."""
        super().__init__()
        widths = _check_widths(layers, 'ConvNet')
        self.layers = nn.ModuleList([nn.Conv2d(n_in, n_out, kernel_size=3, stride=2)
                                     for n_in, n_out in zip(widths[:-1], widths[1:])])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.out = nn.Linear(widths[-1], c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.relu(layer(x))  # 32x32 -> 15 -> 7 -> 3 with three layers
        x = self.pool(x).flatten(1)  # (B, C)
        return F.log_softmax(self.out(x), dim=-1)  # (B, c)


class ConvLayer(nn.Module):
    """Padded stride-2 3x3 conv followed by ReLU, the refactored conv block of post 003."""

    def __init__(self, ni: int, nf: int):
        """Args: ni: input channels; nf: output channels (filters)."""
        super().__init__()
        self.conv = nn.Conv2d(ni, nf, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))  # (B, ni, H, W) -> (B, nf, ceil(H/2), ceil(W/2))


class ConvNet2(nn.Module):
    """`ConvNet` rebuilt from `ConvLayer`s (padded convs), the refactored net of post 003."""

    def __init__(self, layers: Sequence[int], c: int):
        """Args: layers: channels, image channels first, e.g. [3, 20, 40, 80]; c: number of classes."""
        super().__init__()
        widths = _check_widths(layers, 'ConvNet2')
        self.layers = nn.ModuleList([ConvLayer(n_in, n_out) for n_in, n_out in zip(widths[:-1], widths[1:])])
        self.out = nn.Linear(widths[-1], c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return F.log_softmax(self.out(_pool_flatten(x)), dim=-1)  # (B, c)


class BnLayer(nn.Module):
    """Conv -> ReLU -> the course's hand-written batch norm (post 003; fastai 0.7 lesson7-cifar10).

    The normalisation divides each channel by its batch mean and (unbiased) standard deviation, then
    multiplies by a learnt `m` and adds a learnt `a`. As in the course, statistics are not a running
    average: training mode uses the current batch's statistics and remembers them; eval mode reuses the
    statistics of the last training batch. So evaluation depends on which batch came last, as it did in the
    post; keep that in mind when comparing runs.

    What differs from the course, and why:
        - The remembered statistics are buffers (`means`, `stds`, shape (nf, 1, 1)), so they are saved in
          the state dict and a reloaded model evaluates the same as before saving (the course kept them as
          plain attributes that checkpoints lost).
        - Before any training batch (`has_stats` is False), eval mode normalises with the statistics of the
          batch it is given instead of crashing on missing attributes; they are not remembered.
        - `eps` (1e-5) is added to the standard deviation, so a channel that ReLU zeroed for a whole batch
          gives 0 instead of NaN. It is negligible next to the post's activation scales.
    """

    def __init__(self, ni: int, nf: int, stride: int = 2, kernel_size: int = 3, padding: int = 1,
                 eps: float = 1e-5):
        """Args:
            ni: input channels. nf: output channels.
            stride: conv stride (2 halves the image, 1 keeps it).
            kernel_size: conv kernel side in pixels.
            padding: pixels of zero padding; the course uses 1 for every kernel size (so `Resnet2`'s 7x7
                first layer shrinks 32x32 images to 28x28); kept for results comparable with the course.
            eps: added to the standard deviation.
        """
        super().__init__()
        self.conv = nn.Conv2d(ni, nf, kernel_size=kernel_size, stride=stride, padding=padding, bias=False)
        self.a = nn.Parameter(torch.zeros(nf, 1, 1))  # learnt offset per channel
        self.m = nn.Parameter(torch.ones(nf, 1, 1))  # learnt multiplier per channel
        self.eps = eps
        self.register_buffer('means', torch.zeros(nf, 1, 1))
        self.register_buffer('stds', torch.ones(nf, 1, 1))
        self.register_buffer('has_stats', torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))  # (B, nf, H', W'); the course normalises after the ReLU
        if self.training or not bool(self.has_stats):
            means = x.mean(dim=(0, 2, 3)).view(-1, 1, 1)  # (nf, 1, 1), gradients flow through it
            stds = x.std(dim=(0, 2, 3)).view(-1, 1, 1)  # (nf, 1, 1), unbiased as in the course
            if self.training:
                with torch.no_grad():
                    self.means.copy_(means)
                    self.stds.copy_(stds)
                    self.has_stats.fill_(True)
        else:
            means, stds = self.means, self.stds
        return (x - means) / (stds + self.eps) * self.m + self.a


class ConvBnNet(nn.Module):
    """A 5x5 first conv, then stride-2 `BnLayer`s, max pool, linear (post 003; fastai 0.7 lesson7-cifar10)."""

    def __init__(self, layers: Sequence[int], c: int):
        """Args: layers: channels after the first conv, e.g. [10, 20, 40, 80, 160]; c: number of classes."""
        super().__init__()
        widths = _check_widths(layers, 'ConvBnNet')
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=5, stride=1, padding=2)  # keeps 32x32
        self.layers = nn.ModuleList([BnLayer(n_in, n_out) for n_in, n_out in zip(widths[:-1], widths[1:])])
        self.out = nn.Linear(widths[-1], c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (B, layers[0], H, W)
        for layer in self.layers:
            x = layer(x)  # halves H and W
        return F.log_softmax(self.out(_pool_flatten(x)), dim=-1)  # (B, c)


class ConvBnNet2(nn.Module):
    """`ConvBnNet` twice as deep: each stride-2 `BnLayer` is followed by a stride-1 one (post 003)."""

    def __init__(self, layers: Sequence[int], c: int):
        """Args: layers: channels after the first conv, e.g. [10, 20, 40, 80, 160]; c: number of classes."""
        super().__init__()
        widths = _check_widths(layers, 'ConvBnNet2')
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=5, stride=1, padding=2)
        self.layers = nn.ModuleList([BnLayer(n_in, n_out) for n_in, n_out in zip(widths[:-1], widths[1:])])
        self.layers2 = nn.ModuleList([BnLayer(n, n, stride=1) for n in widths[1:]])
        self.out = nn.Linear(widths[-1], c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (B, layers[0], H, W)
        for down, same in zip(self.layers, self.layers2):
            x = same(down(x))  # halves H and W, then keeps them
        return F.log_softmax(self.out(_pool_flatten(x)), dim=-1)  # (B, c)


class ResnetLayer(BnLayer):
    """A stride-1 `BnLayer` whose output is added to its input (fastai 0.7 lesson7-cifar10)."""

    def __init__(self, ni: int, nf: int, stride: int = 1, kernel_size: int = 3, padding: int = 1,
                 eps: float = 1e-5):
        """Args: as `BnLayer`; the sum needs ni == nf and an output the size of the input (stride 1)."""
        if ni != nf or stride != 1 or kernel_size != 2 * padding + 1:
            raise ValueError(f'ResnetLayer adds its input to its output, so it needs ni == nf, stride=1 and '
                             f'kernel_size == 2*padding+1; got ni={ni}, nf={nf}, stride={stride}, '
                             f'kernel_size={kernel_size}, padding={padding}')
        super().__init__(ni, nf, stride=stride, kernel_size=kernel_size, padding=padding, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)  # (B, nf, H, W)


def _residual_stages(widths: list[int]) -> tuple[nn.ModuleList, nn.ModuleList, nn.ModuleList]:
    """Per stage: a stride-2 `BnLayer` and two `ResnetLayer`s, as the course's `Resnet` builds them."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return (nn.ModuleList([BnLayer(n_in, n_out) for n_in, n_out in pairs]),
            nn.ModuleList([ResnetLayer(n, n) for n in widths[1:]]),
            nn.ModuleList([ResnetLayer(n, n) for n in widths[1:]]))


class Resnet(nn.Module):
    """`ConvBnNet` with two residual `ResnetLayer`s after each stride-2 layer (fastai 0.7 lesson7-cifar10)."""

    def __init__(self, layers: Sequence[int], c: int):
        """Args: layers: channels after the first conv, e.g. [10, 20, 40, 80, 160]; c: number of classes."""
        super().__init__()
        widths = _check_widths(layers, 'Resnet')
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=5, stride=1, padding=2)
        self.layers, self.layers2, self.layers3 = _residual_stages(widths)
        self.out = nn.Linear(widths[-1], c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (B, layers[0], H, W)
        for down, res1, res2 in zip(self.layers, self.layers2, self.layers3):
            x = res2(res1(down(x)))  # halves H and W
        return F.log_softmax(self.out(_pool_flatten(x)), dim=-1)  # (B, c)


class Resnet2(nn.Module):
    """`Resnet` with a 7x7 `BnLayer` first layer and dropout before the linear layer (fastai 0.7 lesson7-cifar10)."""

    def __init__(self, layers: Sequence[int], c: int, p: float = 0.5):
        """Args:
            layers: channels after the first layer, e.g. [16, 32, 64, 128, 256] (the course's choice).
            c: number of classes.
            p: dropout probability on the pooled features (the course trained with 0.2).
        """
        super().__init__()
        widths = _check_widths(layers, 'Resnet2')
        if not 0 <= p < 1:
            raise ValueError(f'Resnet2: p is a dropout probability in [0, 1), got {p!r}')
        self.conv1 = BnLayer(3, widths[0], stride=1, kernel_size=7)  # padding 1 as in the course: 32 -> 28
        self.layers, self.layers2, self.layers3 = _residual_stages(widths)
        self.drop = nn.Dropout(p)
        self.out = nn.Linear(widths[-1], c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (B, layers[0], H-4, W-4)
        for down, res1, res2 in zip(self.layers, self.layers2, self.layers3):
            x = res2(res1(down(x)))
        x = self.drop(_pool_flatten(x))  # (B, layers[-1])
        return F.log_softmax(self.out(x), dim=-1)  # (B, c)


# --------------------------------------------------------------------------- other posts' nets


class LeNet5(nn.Module):
    """LeNet-5 for 32x32 RGB: 2 convs with max pools, 3 linear layers (post 000; LeCun et al. 1998)."""

    def __init__(self, c: int = 10):
        """Args: c: number of classes. Returns log-probabilities (B, c)."""
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (32, 32):
            raise ValueError(f'LeNet5 expects 32x32 images (B, 3, 32, 32), got {tuple(x.shape)}: resize to 32')
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 6, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 16, 5, 5)
        x = F.relu(self.fc1(x.flatten(1)))  # (B, 120)
        x = F.relu(self.fc2(x))  # (B, 84)
        return F.log_softmax(self.fc3(x), dim=-1)  # (B, c)


def _conv_bn_relu(ni: int, nf: int) -> nn.Sequential:
    """3x3 same-padded conv (no bias) -> BatchNorm -> ReLU, ResNet9's building block."""
    return nn.Sequential(nn.Conv2d(ni, nf, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(nf),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    """x + two conv-bn-relu blocks of x (same channels and size)."""

    def __init__(self, n: int):
        super().__init__()
        self.res1, self.res2 = _conv_bn_relu(n, n), _conv_bn_relu(n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res2(self.res1(x))  # (B, n, H, W)


class ResNet9(nn.Module):
    """The DAWNBench CIFAR-10 ResNet-9 (David Page, "How to train your ResNet", 2018); returns logits.

    prep (64) -> layer1 (128, max pool, residual) -> layer2 (256, max pool) -> layer3 (512, max pool,
    residual) -> global max pool -> linear without bias -> times `scale` (0.125 in the recipe, which keeps
    the initial logits small). Each conv is 3x3 -> BatchNorm -> ReLU. The children are the five stages, so
    `Learner` makes them the layer groups.
    """

    def __init__(self, c: int = 10, scale: float = 0.125):
        """Args: c: number of classes; scale: multiplier on the logits."""
        super().__init__()
        self.prep = _conv_bn_relu(3, 64)
        self.layer1 = nn.Sequential(_conv_bn_relu(64, 128), nn.MaxPool2d(2), _Residual(128))
        self.layer2 = nn.Sequential(_conv_bn_relu(128, 256), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(_conv_bn_relu(256, 512), nn.MaxPool2d(2), _Residual(512))
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(512, c, bias=False))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prep(x)  # (B, 64, 32, 32)
        x = self.layer1(x)  # (B, 128, 16, 16)
        x = self.layer2(x)  # (B, 256, 8, 8)
        x = self.layer3(x)  # (B, 512, 4, 4)
        return self.head(x) * self.scale  # (B, c) logits


def _pooled(n: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Length of a dimension of n after a pooling window (floor mode)."""
    return (n + 2 * padding - kernel) // stride + 1


# C3D per stage: (3x3x3 convs, pool window = stride as (time, height, width), pool padding)
C3D_STAGES = ((1, (1, 2, 2), (0, 0, 0)),  # the first pool keeps the time axis
              (1, (2, 2, 2), (0, 0, 0)), (2, (2, 2, 2), (0, 0, 0)), (2, (2, 2, 2), (0, 0, 0)),
              (2, (2, 2, 2), (0, 1, 1)))  # the last pads height and width: 7x7 -> 4x4 at 112 pixels


def _c3d_features(width: int, n_frames: int, sz: int) -> tuple[nn.Sequential, int]:
    """C3D's conv-BN-ReLU and pooling stack, and how many features it gives per clip."""
    chans = [3, width, 2 * width, 4 * width, 4 * width, 8 * width, 8 * width, 8 * width, 8 * width]
    layers, i, shape = [], 0, [n_frames, sz, sz]
    for n_convs, window, padding in C3D_STAGES:
        for n_in, n_out in zip(chans[i:i + n_convs], chans[i + 1:i + n_convs + 1]):
            layers += [nn.Conv3d(n_in, n_out, kernel_size=3, padding=1), nn.BatchNorm3d(n_out),
                       nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool3d(kernel_size=window, stride=window, padding=padding))
        shape = [_pooled(n, k, k, p) for n, k, p in zip(shape, window, padding)]
        i += n_convs
        if min(shape) < 1:  # checked per stage: the padded last pool would turn an empty side into 1
            raise ValueError(f'C3D_BN needs clips of at least 16 frames of 16x16 pixels, got n_frames={n_frames}, '
                             f'sz={sz}')
    return nn.Sequential(*layers), chans[-1] * shape[0] * shape[1] * shape[2]


class C3D_BN(nn.Module):
    """C3D (Tran et al. 2015) with BatchNorm3d after every 3D conv instead of dropout (post 004); returns logits.

    Eight 3x3x3 convs (64, 128, 256, 256, 512, 512, 512, 512 channels at `width=64`), each followed by
    BatchNorm3d and ReLU, five max pools (the first keeps the time axis, the last pads height and width by 1),
    then three linear layers. For the default 16 frames of 112x112 the flattened features are
    512 x 1 x 4 x 4 = 8192, as in the post.
    """

    def __init__(self, c: int, width: int = 64, n_hidden: int = 4096, n_frames: int = 16, sz: int = 112):
        """Args:
            c: number of classes.
            width: channels of the first conv; later convs have 2, 4 and 8 times as many (64 in the paper;
                smaller values make a cheap net with the same geometry).
            n_hidden: features of the two hidden linear layers (4096 in the paper).
            n_frames: frames per clip; sz: frame height and width in pixels. Input (B, 3, n_frames, sz, sz).
        """
        super().__init__()
        self.n_frames, self.sz = n_frames, sz
        self.features, self.n_features = _c3d_features(width, n_frames, sz)
        self.classifier = nn.Sequential(
            nn.Linear(self.n_features, n_hidden), nn.ReLU(inplace=True),
            nn.Linear(n_hidden, n_hidden), nn.ReLU(inplace=True), nn.Linear(n_hidden, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or tuple(x.shape[1:]) != (3, self.n_frames, self.sz, self.sz):
            raise ValueError(f'this C3D_BN takes clips (B, 3, {self.n_frames}, {self.sz}, {self.sz}), got '
                             f'{tuple(x.shape)}: build it with n_frames= and sz= of the data (frames_per_clip, '
                             f'sz), since its classifier is sized for them')
        x = self.features(x)  # (B, 3, 16, 112, 112) -> (B, 512, 1, 4, 4)
        return self.classifier(x.flatten(1))  # (B, 8192) -> (B, c) logits
