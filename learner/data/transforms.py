"""fastai 0.7 transforms: the `Transforms` pipeline, `tfms_from_stats/_model`, normalization stats, the
augmentation lists, and (re-exported) every transform.

The sizing and cropping steps live in `sizing.py`, the random augmentations in `augment.py`. Every transform takes
and returns a uint8 (C, H, W) tensor on the CPU; most also have a vectorised `batch(xb)` for (B, C, H, W) batches
of equal-sized images (array data sets use it). Randomness comes from torch's global generator, which
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

from .normalize import Normalize
from .augment import (Cutout, RandomBlur, RandomDihedral, RandomFlip, RandomLighting, RandomRotate, RandomRotateZoom,
                      RandomStretch, RandomZoom, Transform, image_to_tensor)
from .resample import pad_mode_name
from .sizing import AddPadding, CenterCrop, GoogleNetResize, NoCrop, RandomCrop, RandomScale, Scale

__all__ = ['CropType', 'Transform', 'Scale', 'RandomScale', 'AddPadding', 'RandomCrop', 'CenterCrop', 'NoCrop',
           'GoogleNetResize', 'RandomRotate', 'RandomLighting', 'RandomFlip', 'RandomDihedral', 'RandomZoom',
           'RandomStretch', 'RandomRotateZoom', 'RandomBlur', 'Cutout', 'Transforms', 'transforms_basic',
           'transforms_side_on', 'transforms_top_down', 'imagenet_stats', 'inception_stats', 'cifar_stats',
           'kinetics_stats', 'tfms_from_stats', 'tfms_from_model', 'image_to_tensor']


imagenet_stats = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
inception_stats = (np.array([0.5, 0.5, 0.5]), np.array([0.5, 0.5, 0.5]))
cifar_stats = (np.array([0.4914, 0.48216, 0.44653]), np.array([0.24703, 0.24349, 0.26159]))
#: Kinetics-400's (torchvision's video weights were trained with them), in 0..1 units.
kinetics_stats = (np.array([0.43216, 0.394666, 0.37645]), np.array([0.22803, 0.22145, 0.216989]))


class CropType(IntEnum):
    """How the training pipeline crops to sz x sz (fastai 0.7 values); NOOP keeps the scaled image uncropped."""
    RANDOM = 1
    CENTER = 2
    NO = 3
    GOOGLENET = 4
    NOOP = 5


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
        max_zoom: the largest upscale the pipeline may apply, or a (min, max) pair (decides the JPEG draft size).
    """

    def __init__(self, tfms: Sequence[Transform], sz: int | None = None, stats=None, max_zoom=None):
        self.tfms, self.sz, self.max_zoom = list(tfms), sz, max_zoom
        self.normalize = Normalize(stats)

    @property
    def stats(self) -> tuple:
        """(mean, std) numpy arrays in 0..1 units, applied per batch by the loaders (see `Normalize`)."""
        return self.normalize.stats

    @property
    def decode_size(self) -> int | None:
        """Smallest side a decoded image needs so that no step upsamples it (hint for `open_image`)."""
        zoom = self.max_zoom[-1] if isinstance(self.max_zoom, (tuple, list)) else self.max_zoom
        return None if self.sz is None else int(math.ceil(self.sz * max(zoom or 1.0, 1.0)))

    @property
    def batchable(self) -> bool:
        return all(t.batchable for t in self.tfms)

    def __call__(self, x) -> torch.Tensor:
        """The pipeline on one image -> uint8 (C, H, W) tensor (not normalized: see `normalize`).

        `x`: a uint8 (C, H, W) tensor, or an (H, W, 3) array from `open_image` (uint8, or floats in [0, 1] as
        fastai 0.7's `open_image` returned).
        """
        if isinstance(x, np.ndarray):
            if x.dtype != np.uint8:
                if x.dtype.kind != 'f':
                    raise TypeError(f'expected an (H, W, 3) uint8 image or floats in [0, 1], got {x.dtype}')
                x = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
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


def tfms_from_stats(stats, sz: int, aug_tfms: Sequence[Transform] | None = None, max_zoom=None,
                    pad: int = 0, crop_type: CropType = CropType.RANDOM, tfm_y=None, sz_y=None,
                    pad_mode='symmetric', norm_y: bool = True, scale=None) -> tuple[Transforms, Transforms]:
    """Training and validation pipelines for images normalized with `stats`, cropped to sz x sz (fastai 0.7).

    Training: scale (smaller side to sz, or `RandomScale(sz, max_zoom)`) -> `AddPadding(pad)` -> aug_tfms ->
    crop (random, centre, resize without crop, or none per `crop_type`); with `CropType.GOOGLENET` a
    `GoogleNetResize(sz)` window replaces the scale, padding and crop. Validation: scale to sz -> padding -> centre
    crop (resize for `CropType.NO`, none for `CropType.NOOP`), so `pad` with a centre crop returns the original.

    Args:
        stats: (mean, std), 3 floats each in 0..1 units, e.g. `imagenet_stats`.
        sz: final side in pixels.
        aug_tfms: training augmentations, e.g. `transforms_side_on` or `[RandomFlip()]`.
        max_zoom: scale up by up to this factor in training (1.1 = 10%), or a (min, max) pair.
        pad: pixels of padding on each side before the crop.
        crop_type: a `CropType`.
        tfm_y, sz_y, norm_y: fastai 0.7 target transforms (segmentation, boxes); only tfm_y None or 1
            (TfmType.NO) is supported.
        pad_mode: 'symmetric' (default: OpenCV BORDER_REFLECT, fastai 0.7's), 'reflect', 'edge', 'constant', or a
            cv2.BORDER_* code.
        scale: a transform or list of transforms replacing the default scaling step, for both pipelines.

    Example:
        >>> trn_tfms, val_tfms = tfms_from_stats(cifar_stats, 32, aug_tfms=[RandomFlip()], pad=4)
    """
    if tfm_y not in (None, 0, 1) or sz_y is not None:
        raise NotImplementedError('tfm_y/sz_y (transforming targets: masks, boxes) are not supported: '
                                  'learner classifies images; leave them None')
    crop_type = CropType(crop_type)
    aug = list(aug_tfms) if isinstance(aug_tfms, (list, tuple)) else [aug_tfms] if aug_tfms is not None else []
    padding = [AddPadding(pad, mode=pad_mode_name(pad_mode, 'pad_mode'))] if pad else []
    if scale is not None:
        scale = list(scale) if isinstance(scale, (list, tuple)) else [scale]
    val_scale = scale if scale is not None else [Scale(sz)]
    crops = {CropType.RANDOM: [RandomCrop(sz)], CropType.CENTER: [CenterCrop(sz)], CropType.NO: [NoCrop(sz)],
             CropType.NOOP: []}
    if crop_type == CropType.GOOGLENET:   # 0.7: no scaling or padding in training, the window is the crop
        trn_steps = [GoogleNetResize(sz)] + aug + [NoCrop(sz)]
    else:
        trn_scale = scale if scale is not None else [RandomScale(sz, max_zoom)] if max_zoom else [Scale(sz)]
        trn_steps = trn_scale + padding + aug + crops[crop_type]
    val_crop = crops[crop_type] if crop_type in (CropType.NO, CropType.NOOP) else [CenterCrop(sz)]
    trn = Transforms(trn_steps, sz, stats, max_zoom=max_zoom)
    val = Transforms(val_scale + padding + val_crop, sz, stats)
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
        # Not a registered backbone (e.g. a user's own nn.Module class): torchvision-style ImageNet stats, or the
        # Kinetics ones for the seed's video network.
        name = getattr(arch, '__name__', str(arch))
        if name == 'C3D_BN':
            return kinetics_stats
        return inception_stats if name in ('inception_4', 'inceptionresnet_2') else imagenet_stats
    if getattr(spec, 'stats', None) is None:
        return imagenet_stats
    mean, std = spec.stats
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def tfms_from_model(f_model, sz: int, aug_tfms: Sequence[Transform] | None = None, max_zoom=None,
                    pad: int = 0, crop_type: CropType = CropType.RANDOM, tfm_y=None, sz_y=None,
                    pad_mode='symmetric', norm_y: bool = True, scale=None,
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
