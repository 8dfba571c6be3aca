"""Test-time augmentation: predictions on the plain images plus passes with the training transforms."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

__all__ = ['tta_log_preds', 'tta_probs', 'collect_log_preds']


def collect_log_preds(model: torch.nn.Module, loader: Any, log_probs: Callable[[torch.Tensor], torch.Tensor]) -> tuple:
    """Run `model` in eval mode over `loader` -> `(log_preds (N, C), y)` numpy, in loader order; `log_probs` turns
    outputs into log-probabilities (the learner's own conversion, so TTA and predict agree)."""
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    try:
        with torch.no_grad():
            for xb, yb in loader:
                outputs.append(log_probs(model(xb)).cpu())
                targets.append(yb.cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs).numpy(), torch.cat(targets).numpy()


def tta_log_preds(learn: Any, n_aug: int = 4, is_test: bool = False) -> tuple:
    """`(log_preds (n_aug + 1, N, C), y)`: pass 0 with the validation transforms, then `n_aug` augmented passes.

    Always runs the whole model on images (also while precompute is on: augmentation needs the body).
    `y` holds the test labels when the DataBunch has them (`test_with_labels=True`), else zeros, as in 0.7.
    """
    if n_aug < 0:
        raise ValueError(f'n_aug must be >= 0, got {n_aug}')
    split = 'test' if is_test else 'valid'
    data = learn.data
    if is_test and data.test_dl is None:
        raise ValueError('TTA(is_test=True) needs a test set: build the DataBunch with test_name=...')
    plain, y = collect_log_preds(learn.model, data.loader(split), learn._log_probs)
    passes = [plain]
    augmented = data.loader(split, augment=True)
    for _ in range(n_aug):
        passes.append(collect_log_preds(learn.model, augmented, learn._log_probs)[0])
    return np.stack(passes), y


def tta_probs(learn: Any, n_aug: int = 4, beta: float = 0.4, is_test: bool = False) -> tuple:
    """`(probs (N, C), y)` blending plain and augmented predictions: `(1 - beta) * plain + beta * mean(augmented)`."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f'beta must be in [0, 1], got {beta}')
    log_preds, y = tta_log_preds(learn, n_aug=n_aug, is_test=is_test)
    probs = np.exp(log_preds)
    if n_aug == 0:
        return probs[0], y
    return (1 - beta) * probs[0] + beta * probs[1:].mean(0), y
