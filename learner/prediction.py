"""The Learner's prediction methods: validation/test predictions, arrays, single images and test-time augmentation,
all through the one eval loop in `inference.py`.

Uses the Learner's `data`, `model`, `device`, `amp_dtype`, `stage()`, and under torch.distributed `distributed` (which
shards evaluation loaders) and `gather` (which puts every process's rows together in data-set order); both are None
on one process.
"""
from __future__ import annotations

from typing import Any, Tuple, Union

import numpy as np
import torch

from .data.transforms import tfms_from_stats
from .inference import (blend_tta, collect_outputs, image_batch, task_kind, to_predictions, to_probabilities,
                        tta_predictions)

__all__ = ['PredictionMixin']


class PredictionMixin:
    """`predict`, `predict_with_targs`, `get_preds`, `predict_dl`, `predict_array`, `predict_image`, `TTA`, `tta`.

    Predictions are log-probabilities for single-label data, probabilities for multi-label data (as fastai 0.7's
    sigmoid-ended models gave) and values for regression; see `inference.py`.
    """

    @property
    def kind(self) -> str:
        """'single', 'multi' or 'regression': what the data asks of the model (decides what predictions are)."""
        return task_kind(self.data)

    def _loader_of(self, split: str, whole_model: bool = False):
        stage = self.stage()
        loader = self.data.loader(split) if whole_model else stage.loader(split)
        if loader is None:
            extra = ' (test_name=... when building it)' if split == 'test' else ''
            raise ValueError(f'the data has no {split} set: build the DataBunch with one{extra}')
        if whole_model and self.distributed is not None:  # this process's part; `gather` puts the parts together
            loader = self.distributed.shard_eval(loader)
        return (self.model if whole_model else stage.model), loader

    def _valid_tfms(self):
        """The data's validation pipeline (data without one: resize and centre-crop to `data.sz`, `data.stats`)."""
        tfms = getattr(getattr(self.data, 'val_ds', None), 'tfms', None)
        if not hasattr(tfms, 'normalize'):
            tfms = tfms_from_stats(getattr(self.data, 'stats', None), self.data.sz)[1]
        return tfms

    def predict_with_targs(self, is_test: bool = False, use_swa: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """`(preds (N, C), y)` numpy for the validation (or test) set, in data-set order. While precompute is on, the
        head runs on the cached features (the same predictions as the whole model on the validation transforms).
        `use_swa`: with the weights a `use_swa=True` fit averaged (`swa_model`), on the images."""
        model, loader = self._loader_of('test' if is_test else 'valid', whole_model=use_swa)
        if use_swa:
            model = getattr(self, 'swa_model', None)
            if model is None:
                raise ValueError('no averaged weights: fit with use_swa=True first (learn.fit(..., use_swa=True))')
        out, y = collect_outputs(model, loader, self.amp_dtype, self.gather, self.kind)
        return to_predictions(out, self.kind).numpy(), y.numpy()

    def predict(self, is_test: bool = False, use_swa: bool = False) -> np.ndarray:
        """Predictions (N, C) numpy for the validation (or test) set, in data-set order (fastai 0.7)."""
        return self.predict_with_targs(is_test, use_swa)[0]

    def get_preds(self, ds: str = 'valid') -> Tuple[np.ndarray, np.ndarray]:
        """`(probs (N, C), y)` numpy for ds 'valid' or 'test': softmax, or per-class sigmoid for multi-label."""
        if ds not in ('valid', 'test'):
            raise ValueError(f"ds must be 'valid' or 'test', got {ds!r}")
        preds, y = self.predict_with_targs(is_test=ds == 'test')
        return to_probabilities(preds, self.kind), y

    def predict_dl(self, dl: Any) -> np.ndarray:
        """Predictions for any iterable of `(x, y)` batches already on the device (the whole model)."""
        return to_predictions(collect_outputs(self.model, dl, self.amp_dtype, kind=self.kind)[0], self.kind).numpy()

    def predict_array(self, arr: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
        """Predictions for an (N, C, H, W) batch (numpy or tensor), run in chunks of `data.bs`: normalized floats,
        or uint8 pixels as the transforms give them (`learn.predict_array(val_tfms(open_image(f))[None])`, which
        are normalized here with the data's statistics)."""
        x = torch.as_tensor(np.asarray(arr) if not isinstance(arr, torch.Tensor) else arr)
        if x.dtype == torch.uint8:
            x = self._valid_tfms().normalize(x)
        x = x.float()
        bs = int(getattr(self.data, 'bs', 64) or 64)
        batches = ((x[i:i + bs].to(self.device), torch.zeros(len(x[i:i + bs]))) for i in range(0, len(x), bs))
        return self.predict_dl(batches)

    def predict_image(self, img: Any) -> Tuple[Any, np.ndarray]:
        """`(class, probabilities (C,))` for one image (a path, a PIL image or an HxWx3 uint8 array), through the
        validation transforms and normalization of the data."""
        x = image_batch(img, self._valid_tfms(), self.device)
        probs = to_probabilities(self.predict_dl([(x, torch.zeros(1))])[0], self.kind)
        classes = getattr(self.data, 'classes', None)
        idx = int(np.argmax(probs))
        return (classes[idx] if classes else idx), probs

    def TTA(self, n_aug: int = 4, is_test: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """Test-time augmentation: `(preds (n_aug + 1, N, C), y)` numpy; pass 0 with the validation transforms, the
        others with the training transforms, on the validation (or test) images. Always the whole model (also while
        precompute is on). Single-label: average with `np.mean(np.exp(preds), 0)`; multi-label: `np.mean(preds, 0)`.
        `y` holds the test labels when the data has them, else zeros (fastai 0.7)."""
        split = 'test' if is_test else 'valid'
        model, plain = self._loader_of(split, whole_model=True)
        augmented = self.data.loader(split, augment=True)
        if self.distributed is not None:
            augmented = self.distributed.shard_eval(augmented)
        return tta_predictions(model, plain, augmented, n_aug, self.kind, self.amp_dtype, self.gather)

    def tta(self, n_aug: int = 4, beta: float = 0.4, is_test: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """fastai 1+ TTA: `(probs (N, C), y)` = (1 - beta) * plain + beta * mean of the augmented passes."""
        preds, y = self.TTA(n_aug=n_aug, is_test=is_test)
        return blend_tta(preds, self.kind, beta), y
