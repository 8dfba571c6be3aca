"""The classifier head fastai 0.7 put on a pretrained body, and its pooling layer.

Why: concatenating average- and max-pooled features, then BatchNorm -> Dropout -> Linear blocks, is the
head that made 0.7's transfer learning work well with few images; `ps` and `xtra_fc` keep 0.7's meaning.

The head is an nn.Sequential:
    [AdaptiveConcatPool2d, Flatten, (BN, Dropout, Linear, ReLU) per xtra_fc size, BN, Dropout, Linear(c)]
Everything from index `HEAD_POOL_LAYERS` (2) on takes flat pooled features, so precompute caches the
output of `body` followed by `head[:HEAD_POOL_LAYERS]` and trains `head[HEAD_POOL_LAYERS:]` on it.

Example:
    >>> head = create_head(512, c=10)                  # xtra_fc=[512], ps=[0.25, 0.5]
    >>> head(torch.randn(4, 512, 7, 7)).shape
    torch.Size([4, 10])
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

__all__ = ['AdaptiveConcatPool2d', 'AdaptiveConcatPool3d', 'Flatten', 'Lambda', 'create_head', 'HEAD_POOL_LAYERS']

HEAD_POOL_LAYERS = 2  # head[:2] = pool + flatten: what precompute runs once; head[2:] trains on its output


class AdaptiveConcatPool2d(nn.Module):
    """Adaptive max pool and adaptive average pool side by side: (B, C, H, W) -> (B, 2C, size, size), max first."""

    def __init__(self, size: int = 1):
        super().__init__()
        self.max_pool = nn.AdaptiveMaxPool2d(size)
        self.avg_pool = nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max_pool(x), self.avg_pool(x)], dim=1)


class AdaptiveConcatPool3d(nn.Module):
    """The same over time too, for video bodies: (B, C, T, H, W) -> (B, 2C, size, size, size), max first."""

    def __init__(self, size: int = 1):
        super().__init__()
        self.max_pool = nn.AdaptiveMaxPool3d(size)
        self.avg_pool = nn.AdaptiveAvgPool3d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max_pool(x), self.avg_pool(x)], dim=1)


class Flatten(nn.Module):
    """Keep the batch dimension, flatten the rest: (B, ...) -> (B, prod(...))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class Lambda(nn.Module):
    """A function as a layer, `Lambda(lambda x: x.view(x.size(0), -1))` (fastai 0.7's `Lambda`); it has no
    parameters, and a model holding a lambda cannot be pickled (its state dict saves as usual)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _dropouts(ps: Union[float, Sequence[float], None], n_xtra: int) -> list[float]:
    """One dropout probability per linear layer (n_xtra + 1): 0.7's defaults, a float repeated, or a checked list."""
    n_needed = n_xtra + 1
    if ps is None:
        ps = [0.25] * n_xtra + [0.5]
    elif isinstance(ps, (int, float)):
        ps = [float(ps)] * n_needed
    ps = [float(p) for p in ps]
    if len(ps) != n_needed:
        raise ValueError(f'ps needs one dropout probability per linear layer: {n_needed} for xtra_fc with '
                         f'{n_xtra} sizes (len(xtra_fc) + 1), got {len(ps)} ({ps}); pass a list of {n_needed} '
                         'or a single float')
    bad = [p for p in ps if not 0.0 <= p < 1.0]
    if bad:
        raise ValueError(f'dropout probabilities must be in [0, 1), got {bad}')
    return ps


def create_head(n_features: int, c: int, xtra_fc: Optional[Sequence[int]] = None,
                ps: Union[float, Sequence[float], None] = None, video: bool = False) -> nn.Sequential:
    """The 0.7 head for a body whose output has `n_features` channels; outputs `c` logits.

    Args:
        n_features: channels of the body's output (the pooled vector holds twice as many).
        c: number of outputs (classes).
        xtra_fc: sizes of the hidden linear layers; default [512]; [] for a single linear layer.
        ps: dropout before each linear layer; default [0.25] * len(xtra_fc) + [0.5] (= [0.25, 0.5]); a float
            is used for every layer; a list must have len(xtra_fc) + 1 entries.
        video: the body outputs (B, C, T, H, W) video features: pool over time too (`AdaptiveConcatPool3d`).
    """
    if n_features < 1 or c < 1:
        raise ValueError(f'create_head needs n_features >= 1 and c >= 1, got n_features={n_features}, c={c}')
    xtra_fc = [512] if xtra_fc is None else [int(n) for n in xtra_fc]
    ps = _dropouts(ps, len(xtra_fc))
    layers: list[nn.Module] = [AdaptiveConcatPool3d() if video else AdaptiveConcatPool2d(), Flatten()]
    n_in = 2 * n_features
    for n_out, p in zip(xtra_fc, ps):
        layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
        n_in = n_out
    layers += [nn.BatchNorm1d(n_in), nn.Dropout(ps[-1]), nn.Linear(n_in, c)]
    return nn.Sequential(*layers)
