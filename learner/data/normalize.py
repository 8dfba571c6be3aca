"""The one normalization of the library: uint8 pixels -> float32 `(x / 255 - mean) / std`, and back.

Loaders (per batch, on the device), `Transforms.normalize` (single images), the exported learner and the
prediction service all call `Normalize`, so an image is normalized the same way wherever it enters.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch

__all__ = ['Normalize']


class Normalize:
    """`(x / 255 - mean) / std` for uint8 (C, H, W) or (B, C, H, W) images, or (B, C, T, H, W) video clips, folded
    into one multiply and one add.

    Args:
        stats: (mean, std), one value per channel in 0..1 units; None means (0, 1): pixels only scaled to [0, 1].

    The constants are built once per device and reused. Tensors that are not uint8 (a user's dataset that yields
    floats) are returned unchanged: they are taken to be normalized already.

    Example:
        >>> norm = Normalize(imagenet_stats)
        >>> norm(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).dtype
        torch.float32
    """

    def __init__(self, stats: Any = None):
        mean, std = (np.zeros(3), np.ones(3)) if stats is None else stats
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self.mean.shape != self.std.shape or (self.std <= 0).any():
            raise ValueError(f'stats must be (mean, std) with one positive std per mean, got {stats!r}')
        self._constants: dict = {}

    @property
    def stats(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.mean, self.std

    def _scale_bias(self, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._constants:
            # (x/255 - mean)/std = x * (1/(255*std)) + (-mean/std); shape (C, 1, 1) broadcasts over a batch too
            scale = torch.tensor(1 / (self.std * 255), dtype=torch.float32).view(-1, 1, 1).to(device)
            bias = torch.tensor(-self.mean / self.std, dtype=torch.float32).view(-1, 1, 1).to(device)
            self._constants[key] = (scale, bias)
        return self._constants[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return x
        scale, bias = self._scale_bias(x.device)
        if x.dim() == 5:  # (B, C, T, H, W) clips: the channels are 4th from the end
            scale, bias = scale.unsqueeze(-1), bias.unsqueeze(-1)
        # Convert first, then scale in place: a promoting uint8 * float32 multiply is up to 15x slower on one
        # CPU thread (torch 2.14), and the in-place ops allocate nothing more.
        return x.to(torch.float32).mul_(scale).add_(bias)

    def denorm(self, x: Any) -> np.ndarray:
        """A normalized (B, C, H, W) or (C, H, W) batch (tensor or numpy) -> (B, H, W, C) floats in [0, 1]; clips
        (B, C, T, H, W) -> (B, T, H, W, C).

        uint8 pixels (what the transforms give, `val_tfms(open_image(f))`) are not normalized yet: they are only
        scaled to [0, 1], so `data.val_ds.denorm(val_tfms(open_image(f))[None])` shows the image, as in fastai 0.7
        whose transforms returned normalized floats."""
        is_pixels = (x.dtype == torch.uint8) if isinstance(x, torch.Tensor) else (np.asarray(x).dtype == np.uint8)
        arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        if is_pixels:
            return np.moveaxis(arr, 1, -1) / 255.0
        arr = np.moveaxis(arr, 1, -1) * self.std.astype(np.float32) + self.mean.astype(np.float32)
        return np.clip(arr, 0.0, 1.0)

    def __getstate__(self) -> dict:  # loader workers get a copy without device constants
        return {**self.__dict__, '_constants': {}}

    def __repr__(self) -> str:
        return f'Normalize(mean={np.round(self.mean, 5).tolist()}, std={np.round(self.std, 5).tolist()})'
