"""fastai 0.7 transforms: sizing and cropping steps, the `Transforms` pipeline, `tfms_from_stats/_model`, stats.

The random augmentations live in `augment.py` and are re-exported here. Every transform takes and returns
a uint8 (C, H, W) tensor on the CPU; most also have a vectorised `batch(xb)` for (B, C, H, W) batches of
equal-sized images (array data sets use it). Randomness comes from torch's global generator, which
DataLoader seeds differently in every worker.
Normalization is not an item transform: it happens per batch on the device (see DeviceDataLoader).
"""
from __future__ import annotations

import copy
import math
from enum import IntEnum
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms as tv1
import torchvision.transforms.v2.functional as F

from .normalize import Normalize
from .augment import (BILINEAR, Cutout, RandomBlur, RandomDihedral, RandomFlip, RandomLighting, RandomRotate,
                      RandomStretch, RandomZoom, Transform, _happens, _rand, image_to_tensor)

__all__ = ['CropType', 'Transform', 'Scale', 'RandomScale', 'AddPadding', 'RandomCrop', 'CenterCrop', 'NoCrop',
           'GoogleNetResize', 'RandomRotate', 'RandomLighting', 'RandomFlip', 'RandomDihedral', 'RandomZoom',
           'RandomStretch', 'RandomBlur', 'Cutout', 'Transforms', 'transforms_basic', 'transforms_side_on',
           'transforms_top_down', 'imagenet_stats', 'inception_stats', 'cifar_stats', 'tfms_from_stats',
           'tfms_from_model', 'image_to_tensor']


imagenet_stats = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
inception_stats = (np.array([0.5, 0.5, 0.5]), np.array([0.5, 0.5, 0.5]))
cifar_stats = (np.array([0.4914, 0.48216, 0.44653]), np.array([0.24703, 0.24349, 0.26159]))


class CropType(IntEnum):
    """How the training pipeline crops to sz x sz (fastai 0.7 values)."""
    RANDOM = 1
    CENTER = 2
    NO = 3
    GOOGLENET = 4


class Scale(Transform):
    """Resize so the smaller side is `sz` (antialiased); a no-op when it already is."""
    batchable = True

    def __init__(self, sz: int):
        self.sz = sz

    def __call__(self, x):
        return x if min(x.shape[-2:]) == self.sz else F.resize(x, self.sz, interpolation=BILINEAR, antialias=True)

    batch = __call__

    def index_map(self, rows, cols):
        return (rows, cols) if min(rows.shape[1], cols.shape[1]) == self.sz else None


class RandomScale(Transform):
    """With probability p, resize the smaller side to sz * U(1, max_zoom); otherwise to sz."""

    def __init__(self, sz: int, max_zoom: float, p: float = 0.75):
        self.sz, self.max_zoom, self.p = sz, max_zoom, p

    def __call__(self, x):
        target = self.sz * _rand(1.0, self.max_zoom) if _happens(self.p) else self.sz
        target = int(round(target))
        return x if min(x.shape[-2:]) == target else F.resize(x, target, interpolation=BILINEAR, antialias=True)


class AddPadding(Transform):
    """Pad `pad` pixels on every side; mode 'reflect' (default), 'constant' (black), 'edge' or 'symmetric'."""
    batchable = True

    def __init__(self, pad: int, mode: str = 'reflect'):
        if mode not in ('reflect', 'constant', 'edge', 'symmetric'):
            raise ValueError(f"AddPadding mode must be 'reflect', 'constant', 'edge' or 'symmetric', got {mode!r}")
        self.pad, self.mode = pad, mode

    def __call__(self, x):
        return F.pad(x, [self.pad] * 4, padding_mode=self.mode) if self.pad else x

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
    """A random sz x sz window (the image must be at least sz on each side)."""
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


class CenterCrop(Transform):
    """The central sz x sz window."""
    batchable = True

    def __init__(self, sz: int):
        self.sz = sz

    def __call__(self, x):
        return x if tuple(x.shape[-2:]) == (self.sz, self.sz) else F.center_crop(x, [self.sz, self.sz])

    batch = __call__

    def index_map(self, rows, cols):
        h, w = rows.shape[1], cols.shape[1]
        if h < self.sz or w < self.sz:
            return None   # torchvision pads small images; leave that to __call__
        top, left = int(round((h - self.sz) / 2.0)), int(round((w - self.sz) / 2.0))
        return rows[:, top:top + self.sz], cols[:, left:left + self.sz]


class NoCrop(Transform):
    """Resize to sz x sz without cropping (the aspect ratio is not kept)."""
    batchable = True

    def __init__(self, sz: int):
        self.sz = sz

    def __call__(self, x):
        if tuple(x.shape[-2:]) == (self.sz, self.sz):
            return x
        return F.resize(x, [self.sz, self.sz], interpolation=BILINEAR, antialias=True)

    batch = __call__

    def index_map(self, rows, cols):
        return (rows, cols) if rows.shape[1] == cols.shape[1] == self.sz else None


class GoogleNetResize(Transform):
    """Random area fraction and aspect ratio crop, resized to sz x sz (Inception-style augmentation)."""

    def __init__(self, sz: int, min_area_frac: float = 0.08, min_aspect_ratio: float = 0.75,
                 max_aspect_ratio: float = 1.333, flip_hw_p: float = 0.5):
        self.sz, self.min_area_frac = sz, min_area_frac
        self.min_aspect_ratio, self.max_aspect_ratio, self.flip_hw_p = min_aspect_ratio, max_aspect_ratio, flip_hw_p

    def __call__(self, x):
        ratio = (self.min_aspect_ratio, self.max_aspect_ratio)
        if _happens(self.flip_hw_p):   # sample the aspect ratio as h/w instead of w/h
            ratio = (1 / ratio[1], 1 / ratio[0])
        top, left, h, w = tv1.RandomResizedCrop.get_params(x, scale=(self.min_area_frac, 1.0), ratio=ratio)
        return F.resized_crop(x, top, left, h, w, [self.sz, self.sz], interpolation=BILINEAR, antialias=True)


transforms_basic = [RandomRotate(10), RandomLighting(0.05, 0.05)]
transforms_side_on = transforms_basic + [RandomFlip()]
transforms_top_down = transforms_basic + [RandomDihedral()]


def _gather(xb: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[b, c, i, j] = xb[b, c, rows[b, i], cols[b, j]]: (B, C, H, W) -> (B, C, h, w) in one gather."""
    n, c, h, w = xb.shape
    idx = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, -1)        # (B, 1, h*w)
    out = torch.gather(xb.reshape(n, c, h * w), 2, idx.expand(n, c, idx.shape[2]))
    return out.view(n, c, rows.shape[1], cols.shape[1])


class Transforms:
    """A per-item pipeline plus the normalization stats and final size the batches will have.

    Args:
        tfms: Transform objects applied in order to a uint8 (C, H, W) tensor.
        sz: final side in pixels (None: images pass at their own size).
        stats: (mean, std) of 3 floats in 0..1 units, applied per batch on the device; None means
            (0, 1): pixels only scaled to [0, 1].
        max_zoom: the largest upscale the pipeline may apply (decides the JPEG draft size).
    """

    def __init__(self, tfms: Sequence[Transform], sz: int | None = None, stats=None, max_zoom: float | None = None):
        self.tfms, self.sz, self.max_zoom = list(tfms), sz, max_zoom
        self.normalize = Normalize(stats)

    @property
    def stats(self) -> tuple:
        """(mean, std) numpy arrays in 0..1 units, applied per batch by the loaders (see `Normalize`)."""
        return self.normalize.stats

    @property
    def decode_size(self) -> int | None:
        """Smallest side a decoded image needs so that no step upsamples it (hint for `open_image`)."""
        return None if self.sz is None else int(math.ceil(self.sz * (self.max_zoom or 1.0)))

    @property
    def batchable(self) -> bool:
        return all(t.batchable for t in self.tfms)

    def __call__(self, x) -> torch.Tensor:
        """The pipeline on one image: a uint8 (C, H, W) tensor, or an (H, W, 3) uint8 array from `open_image`."""
        if isinstance(x, np.ndarray):
            x = image_to_tensor(x)
        for t in self.tfms:
            x = t(x)
        return x

    def batch(self, xb: torch.Tensor) -> torch.Tensor:
        """The pipeline on a (B, C, H, W) uint8 batch: vectorised when every step is, else item by item.

        Runs of pixel-picking steps (reflect padding, crops, flips) are fused into one gather.
        """
        if not self.batchable:
            return torch.stack([self(x) for x in xb])
        i = 0
        while i < len(self.tfms):
            n, _, h, w = xb.shape
            rows, cols = torch.arange(h).expand(n, h), torch.arange(w).expand(n, w)
            j = i
            while j < len(self.tfms):
                mapped = self.tfms[j].index_map(rows, cols)
                if mapped is None:
                    break
                rows, cols = mapped
                j += 1
            if j > i:
                identity = all(isinstance(t, (Scale, NoCrop)) for t in self.tfms[i:j])   # mapped to themselves
                xb, i = (xb if identity else _gather(xb, rows, cols)), j
            else:
                xb, i = self.tfms[i].batch(xb), i + 1
        return xb

    def resized(self, sz: int) -> 'Transforms':
        """A copy with every size-dependent step (and the final size) set to `sz`."""
        new = copy.deepcopy(self)
        new.sz = sz
        for t in new.tfms:
            if hasattr(t, 'sz'):
                t.sz = sz
        return new

    def denorm(self, x) -> np.ndarray:
        """A normalized (B, C, H, W) or (C, H, W) batch (tensor or numpy) -> (B, H, W, C) floats in [0, 1]."""
        return self.normalize.denorm(x)

    def __repr__(self) -> str:
        mean, std = (np.round(s, 5).tolist() for s in self.stats)
        return f'Transforms(sz={self.sz}, stats=({mean}, {std}), tfms={self.tfms!r})'


def tfms_from_stats(stats, sz: int, aug_tfms: Sequence[Transform] | None = None, max_zoom: float | None = None,
                    pad: int = 0, crop_type: CropType = CropType.RANDOM, tfm_y=None, sz_y=None,
                    pad_mode: str = 'reflect', norm_y: bool = True, scale=None) -> tuple[Transforms, Transforms]:
    """Training and validation pipelines for images normalized with `stats`, cropped to sz x sz.

    Training: scale (smaller side to sz, or `RandomScale(sz, max_zoom)`) -> `AddPadding(pad)` -> aug_tfms ->
    crop (random, centre, none or GoogleNet per `crop_type`). Validation: scale to sz -> padding -> centre crop
    (so `pad` with a centre crop returns the original image).

    Args:
        stats: (mean, std), 3 floats each in 0..1 units, e.g. `imagenet_stats`.
        sz: final side in pixels.
        aug_tfms: training augmentations, e.g. `transforms_side_on` or `[RandomFlip()]`.
        max_zoom: scale up by up to this factor in training (1.1 = 10%).
        pad: pixels of padding on each side (`pad_mode`) before the crop.
        crop_type: a `CropType`.
        tfm_y, sz_y, norm_y: fastai 0.7 target transforms (segmentation, boxes); not supported.
        scale: a list of transforms replacing the default scaling step, for both pipelines.

    Example:
        >>> trn_tfms, val_tfms = tfms_from_stats(cifar_stats, 32, aug_tfms=[RandomFlip()], pad=4)
    """
    if tfm_y not in (None, 0) or sz_y is not None:
        raise NotImplementedError('tfm_y/sz_y (transforming targets: masks, boxes) are not supported: '
                                  'learner classifies images; leave them None')
    crop_type = CropType(crop_type)
    aug = list(aug_tfms or [])
    padding = [AddPadding(pad, mode=pad_mode)] if pad else []
    val_scale = list(scale) if scale is not None else [Scale(sz)]
    if scale is not None:
        trn_scale = list(scale)
    elif crop_type == CropType.GOOGLENET:
        trn_scale = [GoogleNetResize(sz)]
    else:
        trn_scale = [RandomScale(sz, max_zoom)] if max_zoom else [Scale(sz)]
    trn_crop = {CropType.RANDOM: RandomCrop, CropType.CENTER: CenterCrop, CropType.NO: NoCrop,
                CropType.GOOGLENET: NoCrop}[crop_type](sz)
    val_crop = NoCrop(sz) if crop_type == CropType.NO else CenterCrop(sz)
    trn = Transforms(trn_scale + padding + aug + [trn_crop], sz, stats, max_zoom=max_zoom)
    val = Transforms(val_scale + padding + [val_crop], sz, stats)
    return trn, val


def _stats_of(arch) -> tuple:
    """Normalization stats of an architecture: its registered backbone's, else ImageNet's."""
    try:
        from learner.models.backbones import get_backbone
    except ImportError:   # the models package is optional for data-only use
        return imagenet_stats
    try:
        spec = get_backbone(arch)
    except (KeyError, ValueError, TypeError, LookupError):
        # Not a registered backbone (e.g. a user's own nn.Module class): torchvision-style ImageNet stats.
        name = getattr(arch, '__name__', str(arch))
        return inception_stats if name in ('inception_4', 'inceptionresnet_2') else imagenet_stats
    if getattr(spec, 'stats', None) is None:
        return imagenet_stats
    mean, std = spec.stats
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def tfms_from_model(f_model, sz: int, aug_tfms: Sequence[Transform] | None = None, max_zoom: float | None = None,
                    pad: int = 0, crop_type: CropType = CropType.RANDOM, tfm_y=None, sz_y=None,
                    pad_mode: str = 'reflect', norm_y: bool = True, scale=None,
                    stats=None) -> tuple[Transforms, Transforms]:
    """`tfms_from_stats` with the stats the architecture's pretrained weights were trained with.

    Args:
        f_model: a backbone builder (`resnet34`), name (`'resnet34'`) or spec known to
            `learner.models.backbones.get_backbone`; anything else gets `imagenet_stats`.
        stats: explicit (mean, std) overriding the architecture's.
        Others: as `tfms_from_stats`.
    """
    stats = _stats_of(f_model) if stats is None else stats
    return tfms_from_stats(stats, sz, aug_tfms=aug_tfms, max_zoom=max_zoom, pad=pad, crop_type=crop_type,
                           tfm_y=tfm_y, sz_y=sz_y, pad_mode=pad_mode, norm_y=norm_y, scale=scale)
