"""fastai 0.7's sizing and cropping steps: scale, random scale, padding, random/centre crop, resize without crop,
and the GoogleNet (Inception) random window. uint8 (C, H, W) tensors in and out; `batchable` steps also take
(B, C, H, W) batches, and pixel-picking ones describe themselves by `index_map` so `Transforms.batch` can fuse them.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from .augment import Transform, _happens, _rand
from .resample import pad, pad_mode_name, resize, scaled_size

__all__ = ['Scale', 'RandomScale', 'AddPadding', 'RandomCrop', 'CenterCrop', 'NoCrop', 'GoogleNetResize']


class Scale(Transform):
    """Resize so the smaller side is `sz`, the other side `floor(side * sz / smaller)` (fastai 0.7's `scale_min`).

    Args:
        sz: the smaller side after scaling, in pixels.
        interpolation: 'bilinear' (antialiased; fast) or 'area' (OpenCV INTER_AREA, fastai 0.7's exact pixels).
    """
    batchable = True

    def __init__(self, sz: int, interpolation: str = 'bilinear'):
        self.sz, self.interpolation = sz, interpolation

    def __call__(self, x):
        h, w = x.shape[-2:]
        return resize(x, scaled_size(h, w, self.sz), self.interpolation)

    batch = __call__

    def index_map(self, rows, cols):
        return (rows, cols) if min(rows.shape[1], cols.shape[1]) == self.sz else None


class RandomScale(Transform):
    """With probability p, scale the smaller side to int(sz * U(min_zoom, max_zoom)); otherwise to sz.

    Args:
        sz: the smaller side without zoom.
        max_zoom: the largest factor (min_zoom 1), or a (min_zoom, max_zoom) pair as fastai 0.7 accepted.
        p: probability of zooming.
        interpolation: as `Scale`.
    """

    def __init__(self, sz: int, max_zoom, p: float = 0.75, interpolation: str = 'bilinear'):
        if isinstance(max_zoom, (tuple, list, np.ndarray)):
            if len(max_zoom) != 2:
                raise ValueError(f'RandomScale max_zoom must be a number or a (min, max) pair, got {max_zoom!r}')
            self.min_zoom, self.max_zoom = float(max_zoom[0]), float(max_zoom[1])
        else:
            self.min_zoom, self.max_zoom = 1.0, float(max_zoom)
        self.sz, self.p, self.interpolation = sz, p, interpolation

    def __call__(self, x):
        mult = _rand(self.min_zoom, self.max_zoom) if _happens(self.p) else 1.0
        h, w = x.shape[-2:]
        return resize(x, scaled_size(h, w, int(mult * self.sz)), self.interpolation)


class AddPadding(Transform):
    """Pad `pad` pixels on every side.

    Args:
        pad: pixels per side.
        mode: 'symmetric' (default: mirror with the edge pixel repeated, OpenCV BORDER_REFLECT as in fastai 0.7),
            'reflect' (mirror without it), 'edge' or 'constant' (black); cv2.BORDER_* codes are accepted.
    """
    batchable = True

    def __init__(self, pad: int, mode='symmetric'):
        self.pad, self.mode = pad, pad_mode_name(mode, 'AddPadding mode')

    def __call__(self, x):
        return pad(x, self.pad, self.mode) if self.pad else x

    batch = __call__

    def _axis(self, n: int) -> torch.Tensor:
        """Source index of each padded position along an axis of length n (cached per n)."""
        cache = self.__dict__.setdefault('_axis_cache', {})
        if n not in cache:
            i = torch.arange(-self.pad, n + self.pad)
            if self.mode == 'edge':
                i = i.clamp(0, n - 1)
            elif self.mode == 'symmetric':
                i = torch.where(i < 0, -i - 1, i)
                i = torch.where(i >= n, 2 * n - 1 - i, i)
            else:                                         # reflect: mirror without repeating the edge pixel
                i = i.abs()
                i = torch.where(i >= n, 2 * (n - 1) - i, i)
            cache[n] = i
        return cache[n]

    def index_map(self, rows, cols):
        if self.mode == 'constant' or self.pad >= min(rows.shape[1], cols.shape[1]):
            return None
        return rows.index_select(1, self._axis(rows.shape[1])), cols.index_select(1, self._axis(cols.shape[1]))


class RandomCrop(Transform):
    """A random sz x sz window, every position equally likely (the image must be at least sz on each side)."""
    batchable = True

    def __init__(self, sz: int):
        self.sz = sz

    def _check(self, h, w):
        if h < self.sz or w < self.sz:
            raise ValueError(f'{type(self).__name__}({self.sz}) got an image of {h}x{w}; scale it to at least '
                             f'{self.sz} first (tfms_from_stats does)')

    def __call__(self, x):
        h, w = x.shape[-2:]
        self._check(h, w)
        top, left = int(torch.randint(h - self.sz + 1, ())), int(torch.randint(w - self.sz + 1, ()))
        return F.crop(x, top, left, self.sz, self.sz)

    def batch(self, xb):
        # Vectorised: one gather with per-item offsets. (B, C, H, W) -> (B, C, sz, sz)
        n, _, h, w = xb.shape
        self._check(h, w)
        ar = torch.arange(self.sz)
        rows = (torch.randint(h - self.sz + 1, (n, 1)) + ar)[:, :, None]     # (B, sz, 1)
        cols = (torch.randint(w - self.sz + 1, (n, 1)) + ar)[:, None, :]     # (B, 1, sz)
        out = xb.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows, cols]  # (B, sz, sz, C)
        return out.permute(0, 3, 1, 2).contiguous()

    def index_map(self, rows, cols):
        n, h, w = rows.shape[0], rows.shape[1], cols.shape[1]
        self._check(h, w)
        ar = torch.arange(self.sz)
        return (torch.gather(rows, 1, torch.randint(h - self.sz + 1, (n, 1)) + ar),
                torch.gather(cols, 1, torch.randint(w - self.sz + 1, (n, 1)) + ar))


def _centre_start(n: int, sz: int) -> int:
    """First row/column of a centred window: an odd margin puts the extra pixel before it (ceil, fastai 0.7)."""
    return math.ceil((n - sz) / 2)


class CenterCrop(Transform):
    """The central sz x sz window; with an odd margin it starts one pixel later (fastai 0.7's rounding up).

    Images smaller than sz are padded with black to sz (torchvision's behaviour).
    """
    batchable = True

    def __init__(self, sz: int):
        self.sz = sz

    def __call__(self, x):
        h, w = x.shape[-2:]
        if h < self.sz or w < self.sz:
            return F.center_crop(x, [self.sz, self.sz])
        top, left = _centre_start(h, self.sz), _centre_start(w, self.sz)
        return x[..., top:top + self.sz, left:left + self.sz]

    batch = __call__

    def index_map(self, rows, cols):
        h, w = rows.shape[1], cols.shape[1]
        if h < self.sz or w < self.sz:
            return None   # torchvision pads small images; leave that to __call__
        top, left = _centre_start(h, self.sz), _centre_start(w, self.sz)
        return rows[:, top:top + self.sz], cols[:, left:left + self.sz]


class NoCrop(Transform):
    """Resize to sz x sz without cropping (the aspect ratio is not kept); `interpolation` as `Scale`."""
    batchable = True

    def __init__(self, sz: int, interpolation: str = 'bilinear'):
        self.sz, self.interpolation = sz, interpolation

    def __call__(self, x):
        return resize(x, (self.sz, self.sz), self.interpolation)

    batch = __call__

    def index_map(self, rows, cols):
        return (rows, cols) if rows.shape[1] == cols.shape[1] == self.sz else None


class GoogleNetResize(Transform):
    """Inception-style crop: a random window of random area and aspect ratio, resized to sz x sz (fastai 0.7).

    Up to 10 tries draw an area fraction U(min_area_frac, 1) and an aspect ratio (width / height)
    U(min_aspect_ratio, max_aspect_ratio), swapped to height / width for the whole image with probability
    flip_hw_p; the first window that fits is taken at a random position. If none fits, the image is scaled (smaller
    side sz) and centre-cropped.
    """

    def __init__(self, sz: int, min_area_frac: float = 0.08, min_aspect_ratio: float = 0.75,
                 max_aspect_ratio: float = 1.333, flip_hw_p: float = 0.5, interpolation: str = 'bilinear'):
        self.sz, self.min_area_frac = sz, min_area_frac
        self.min_aspect_ratio, self.max_aspect_ratio, self.flip_hw_p = min_aspect_ratio, max_aspect_ratio, flip_hw_p
        self.interpolation = interpolation

    def __call__(self, x):
        h, w = x.shape[-2:]
        swap = _happens(self.flip_hw_p)
        for _ in range(10):
            area = _rand(self.min_area_frac, 1.0) * h * w
            aspect = _rand(self.min_aspect_ratio, self.max_aspect_ratio)
            ww, hh = int(math.sqrt(area * aspect) + 0.5), int(math.sqrt(area / aspect) + 0.5)
            if swap:
                ww, hh = hh, ww
            if hh <= h and ww <= w:
                top, left = int(torch.randint(h - hh + 1, ())), int(torch.randint(w - ww + 1, ()))
                return resize(x[..., top:top + hh, left:left + ww], (self.sz, self.sz), self.interpolation)
        return CenterCrop(self.sz)(Scale(self.sz, self.interpolation)(x))
