"""The Transform base class and fastai 0.7's random augmentations (rotate, lighting, flip, dihedral, zoom,
stretch, blur, cutout) on uint8 (C, H, W) tensors, built on torchvision v2 functional ops.

Randomness comes from torch's global generator, which DataLoader seeds differently in every worker.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

__all__ = ['Transform', 'RandomRotate', 'RandomLighting', 'RandomFlip', 'RandomDihedral', 'RandomZoom',
           'RandomStretch', 'RandomBlur', 'Cutout', 'image_to_tensor']

BILINEAR = F.InterpolationMode.BILINEAR


def image_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """An RGB uint8 (H, W, 3) array as a uint8 (3, H, W) tensor (a view when possible)."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)


def _rand(lo: float, hi: float, n: int | None = None):
    """U(lo, hi) from torch's generator: a float, or a (n,) tensor."""
    if n is None:
        return lo + (hi - lo) * torch.rand(()).item()
    return lo + (hi - lo) * torch.rand(n)


def _happens(p: float) -> bool:
    return p >= 1 or (p > 0 and torch.rand(()).item() < p)


class Transform:
    """Base class: `__call__(x)` on a uint8 (C, H, W) tensor; `batch(xb)` on (B, C, H, W), looping by default."""
    batchable = False   # True when batch() is vectorised (no per-item Python loop)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def batch(self, xb: torch.Tensor) -> torch.Tensor:
        return torch.stack([self(x) for x in xb])

    def index_map(self, rows: torch.Tensor, cols: torch.Tensor):
        """Separable geometry as source indices: rows (B, h) and cols (B, w) -> new (rows, cols), or None.

        Transforms that only pick pixels (reflect padding, crops, flips) say so here; `Transforms.batch`
        then composes a run of them into one gather, with no intermediate images.
        """
        return None

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items() if not k.startswith('_'))
        return f'{type(self).__name__}({args})'


class RandomRotate(Transform):
    """With probability p, rotate by U(-deg, deg) degrees; corners filled by reflection (or black: 'constant')."""

    def __init__(self, deg: float, p: float = 0.75, mode: str = 'reflect'):
        if mode not in ('reflect', 'constant'):
            raise ValueError(f"RandomRotate mode must be 'reflect' or 'constant', got {mode!r}")
        self.deg, self.p, self.mode = deg, p, mode

    def __call__(self, x):
        if not _happens(self.p):
            return x
        angle = _rand(-self.deg, self.deg)
        if self.mode == 'constant':
            return F.rotate(x, angle, interpolation=BILINEAR)
        h, w = x.shape[-2:]
        s, c = abs(math.sin(math.radians(angle))), abs(math.cos(math.radians(angle)))
        # Reflect-pad just enough that the rotated frame never reaches outside, rotate, then cut back.
        px = min(w - 1, math.ceil((w * c + h * s - w) / 2) + 1)
        py = min(h - 1, math.ceil((h * c + w * s - h) / 2) + 1)
        big = F.pad(x, [px, py, px, py], padding_mode='reflect')
        return F.crop(F.rotate(big, angle, interpolation=BILINEAR), py, px, h, w)


class RandomLighting(Transform):
    """Brightness b' ~ U(-b, b) and contrast c' ~ U(-c, c): x -> (x - mean) * C + mean + b' (0..1 units).

    C = c' + 1 for c' >= 0 and 1 / (1 - c') below, so contrast goes up and down symmetrically (fastai 0.7).
    """
    batchable = True

    def __init__(self, b: float, c: float):
        self.b, self.c = b, c

    def _factors(self, n):
        b, c = _rand(-self.b, self.b, n), _rand(-self.c, self.c, n)
        return b, torch.where(c < 0, 1 / (1 - c), c + 1)

    def __call__(self, x):
        return self.batch(x[None])[0]

    def batch(self, xb):
        b, c = self._factors(len(xb))
        xf = xb.float()
        mean = xf.mean(dim=(1, 2, 3), keepdim=True)
        c, b = c.view(-1, 1, 1, 1), b.view(-1, 1, 1, 1) * 255
        return ((xf - mean) * c + mean + b).clamp_(0, 255).round_().to(torch.uint8)


class RandomFlip(Transform):
    """Horizontal flip with probability p."""
    batchable = True

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x):
        return F.horizontal_flip(x) if _happens(self.p) else x

    def batch(self, xb):
        flip = (torch.rand(len(xb)) < self.p).view(-1, 1, 1, 1)
        return torch.where(flip, xb.flip(-1), xb)

    def index_map(self, rows, cols):
        flip = (torch.rand(len(cols)) < self.p)[:, None]
        return rows, torch.where(flip, cols.flip(1), cols)


class RandomDihedral(Transform):
    """One of the 8 symmetries of the square: rotate by k*90 degrees (k ~ U{0..3}), then flip with p 0.5."""

    def __call__(self, x):
        x = torch.rot90(x, int(torch.randint(4, ())), dims=(-2, -1))
        return F.horizontal_flip(x) if _happens(0.5) else x


class RandomZoom(Transform):
    """Zoom in by 1 + U(zoom_min, zoom_max) about the centre, keeping the size."""

    def __init__(self, zoom_max: float, zoom_min: float = 0.0):
        self.zoom_max, self.zoom_min = zoom_max, zoom_min

    def __call__(self, x):
        zoom = 1 + _rand(self.zoom_min, self.zoom_max)
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h / zoom)), max(1, round(w / zoom))
        return F.resized_crop(x, (h - ch) // 2, (w - cw) // 2, ch, cw, [h, w], interpolation=BILINEAR,
                              antialias=True)


class RandomStretch(Transform):
    """Stretch one axis (chosen at random) by 1 + U(0, max_stretch), keeping the size (centre crop)."""

    def __init__(self, max_stretch: float):
        self.max_stretch = max_stretch

    def __call__(self, x):
        h, w = x.shape[-2:]
        s = 1 + _rand(0.0, self.max_stretch)
        size = [h, round(w * s)] if _happens(0.5) else [round(h * s), w]
        return F.center_crop(F.resize(x, size, interpolation=BILINEAR, antialias=True), [h, w])


class RandomBlur(Transform):
    """With probability p, Gaussian blur with an odd kernel size drawn from `blur_strengths`."""

    def __init__(self, blur_strengths: int | Sequence[int] = 5, p: float = 0.5):
        sizes = [blur_strengths] if isinstance(blur_strengths, int) else list(blur_strengths)
        self.blur_strengths = [k if k % 2 else k + 1 for k in sizes]
        self.p = p

    def __call__(self, x):
        if not _happens(self.p):
            return x
        k = self.blur_strengths[int(torch.randint(len(self.blur_strengths), ()))]
        return F.gaussian_blur(x, [k, k])


class Cutout(Transform):
    """Black out `n_holes` squares of side `length` pixels at random centres (clipped at the borders)."""

    def __init__(self, n_holes: int = 1, length: int = 16):
        self.n_holes, self.length = n_holes, length

    def __call__(self, x):
        x = x.clone()
        h, w = x.shape[-2:]
        for _ in range(self.n_holes):
            cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
            y0, y1 = max(0, cy - self.length // 2), min(h, cy + (self.length + 1) // 2)
            x0, x1 = max(0, cx - self.length // 2), min(w, cx + (self.length + 1) // 2)
            x[..., y0:y1, x0:x1] = 0
        return x
