"""Prediction half of the Learner: log-probabilities for the validation/test sets, arrays and single images.

A mixin so that `learner.py` keeps only the training loop; it relies on the Learner's `active_model`, `data`,
`device`, `get_loader` and `_amp_dtype`.
"""
from __future__ import annotations

import os
from typing import Any, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .core import to_numpy
from .data.images import open_image

__all__ = ['PredictionMixin']


class PredictionMixin:
    """`predict`, `predict_with_targs`, `get_preds`, `predict_array`, `predict_image` (all eval mode, no grad)."""

    def _log_probs(self, out: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if getattr(self.data, 'is_multi', False):
            return F.logsigmoid(out)
        if getattr(self.data, 'is_reg', False):
            return out
        return F.log_softmax(out, dim=-1)

    def _outputs(self, loader) -> Tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs and targets of every batch of `loader`, on the CPU, in loader order (eval mode, no grad)."""
        model = self.active_model
        was_training = model.training
        model.eval()
        outs, ys = [], []
        try:
            with torch.no_grad(), torch.autocast(self.device.type, dtype=self._amp_dtype,
                                                 enabled=self._amp_dtype is not None):
                for xb, yb in loader:
                    outs.append(model(xb).float().cpu())
                    ys.append(yb.cpu())
        finally:
            model.train(was_training)
        return torch.cat(outs), torch.cat(ys)

    def predict_with_targs(self, is_test: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """`(log_preds (N, C), y (N,))` numpy for the validation (or test) set, in data-set order."""
        split = 'test' if is_test else 'valid'
        loader = self.get_loader(split)
        if loader is None:
            raise ValueError(f'the data has no {split} set: build the DataBunch with one (test_name=... for test)')
        out, y = self._outputs(loader)
        return to_numpy(self._log_probs(out)), to_numpy(y)

    def predict(self, is_test: bool = False) -> np.ndarray:
        """Log-probabilities (N, C) numpy for the validation (or test) set, in data-set order (fastai 0.7)."""
        return self.predict_with_targs(is_test)[0]

    def get_preds(self, ds: str = 'valid') -> Tuple[np.ndarray, np.ndarray]:
        """`(probs (N, C), y (N,))` numpy for ds 'valid' or 'test' (probabilities: softmax, or sigmoid multi-label)."""
        if ds not in ('valid', 'test'):
            raise ValueError(f"ds must be 'valid' or 'test', got {ds!r}")
        log_preds, y = self.predict_with_targs(is_test=ds == 'test')
        return (log_preds if getattr(self.data, 'is_reg', False) else np.exp(log_preds)), y

    def predict_array(self, arr: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
        """Log-probabilities numpy for a normalised NCHW batch (numpy or tensor), in batches of `data.bs`."""
        x = torch.as_tensor(np.asarray(arr) if not isinstance(arr, torch.Tensor) else arr).float()
        bs = int(getattr(self.data, 'bs', 64) or 64)
        batches = [(x[i:i + bs].to(self.device), torch.zeros(len(x[i:i + bs]))) for i in range(0, len(x), bs)]
        out, _ = self._outputs(batches)
        return to_numpy(self._log_probs(out))

    def predict_image(self, img: Any) -> Tuple[Any, np.ndarray]:
        """`(class, probabilities)` for one image: a path, a PIL image or an HxWx3 uint8 array.

        With a DataBunch the validation pipeline of `data.val_ds.tfms` and its normalisation stats are applied;
        otherwise the image is resized (shorter side to `data.sz`), centre-cropped and normalised with `data.stats`.
        """
        from PIL import Image
        if isinstance(img, (str, os.PathLike)):
            arr = open_image(img)
        else:
            arr = np.asarray(img.convert('RGB') if isinstance(img, Image.Image) else img, dtype=np.uint8)
        tfms = getattr(getattr(self.data, 'val_ds', None), 'tfms', None)
        if callable(tfms) and hasattr(tfms, 'normalize'):
            x = tfms.normalize(tfms(arr))[None]   # (1, 3, sz, sz)
        else:
            x = self._resize_normalise(Image.fromarray(arr))
        probs = np.exp(self.predict_array(x)[0])
        classes = getattr(self.data, 'classes', None)
        idx = int(np.argmax(probs))
        return (classes[idx] if classes is not None else idx), probs

    def _resize_normalise(self, img) -> np.ndarray:
        """PIL image -> (1, 3, sz, sz) normalised float array: shorter side to sz, centre crop, `data.stats`."""
        from PIL import Image
        sz = int(getattr(self.data, 'sz', None) or min(img.size))
        scale = sz / min(img.size)
        img = img.resize((max(sz, round(img.width * scale)), max(sz, round(img.height * scale))), Image.BILINEAR)
        left, top = (img.width - sz) // 2, (img.height - sz) // 2
        arr = np.asarray(img.crop((left, top, left + sz, top + sz)), dtype=np.float32) / 255  # (sz, sz, 3)
        mean, std = getattr(self.data, 'stats', (np.zeros(3), np.ones(3)))
        arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
        return arr.transpose(2, 0, 1)[None]
