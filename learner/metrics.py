"""Metrics computed once per epoch on the whole validation set (never averaged per batch).

A metric is `fn(preds, targs) -> float` where `preds` are the model's raw outputs for every item (logits or
log-probabilities, (N, C)) and `targs` the targets ((N,) class indices, or (N, C) multi-hot). The learner logs it
under `fn.__name__`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['accuracy', 'accuracy_np', 'error_rate', 'accuracy_thresh', 'fbeta', 'log_loss', 'precision', 'recall',
           'f1', 'accuracy_multi']


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def accuracy(preds, targs) -> float:
    """Fraction of items whose highest-scoring class is the target (single-label)."""
    preds, targs = _tensor(preds), _tensor(targs)
    return (preds.argmax(dim=-1) == targs.view(-1)).float().mean().item()


def accuracy_np(preds: np.ndarray, targs: np.ndarray) -> float:
    """`accuracy` for numpy arrays (fastai 0.7: `accuracy_np(np.exp(log_preds), y)`)."""
    return float((np.argmax(np.asarray(preds), axis=1) == np.asarray(targs)).mean())


def error_rate(preds, targs) -> float:
    """1 - accuracy."""
    return 1.0 - accuracy(preds, targs)


def _multi_hot(preds: torch.Tensor, targs: torch.Tensor, thresh: float, sigmoid: bool):
    """Thresholded (N, C) predictions and (N, C) targets; single-label targets become one-hot of argmax."""
    if targs.dim() == 1:  # single-label: compare one-hot argmax with one-hot targets
        n_classes = preds.shape[-1]
        return F.one_hot(preds.argmax(-1), n_classes).bool(), F.one_hot(targs.long(), n_classes).bool()
    probs = preds.float().sigmoid() if sigmoid else preds.float()
    return probs > thresh, targs > 0.5


def accuracy_thresh(thresh: float = 0.5, sigmoid: bool = True) -> Callable:
    """Multi-label accuracy: the fraction of (item, class) cells where `sigmoid(pred) > thresh` equals the target.

    Args:
        thresh: probability threshold.
        sigmoid: apply a sigmoid first (the model outputs logits); False when preds are already probabilities.
    """
    def accuracy_thresh_(preds, targs) -> float:
        predicted, actual = _multi_hot(_tensor(preds), _tensor(targs), thresh, sigmoid)
        return (predicted == actual).float().mean().item()
    accuracy_thresh_.__name__ = 'accuracy_thresh'
    return accuracy_thresh_


accuracy_multi = accuracy_thresh


def _counts(preds, targs, thresh: float, sigmoid: bool):
    predicted, actual = _multi_hot(_tensor(preds), _tensor(targs), thresh, sigmoid)
    tp = (predicted & actual).sum().item()
    return tp, predicted.sum().item(), actual.sum().item()


def precision(preds, targs, thresh: float = 0.5, sigmoid: bool = True) -> float:
    """Micro precision over all (item, class) cells: true positives / predicted positives (0 when none predicted)."""
    tp, n_pred, _ = _counts(preds, targs, thresh, sigmoid)
    return tp / n_pred if n_pred else 0.0


def recall(preds, targs, thresh: float = 0.5, sigmoid: bool = True) -> float:
    """Micro recall over all (item, class) cells: true positives / actual positives (0 when there are none)."""
    tp, _, n_true = _counts(preds, targs, thresh, sigmoid)
    return tp / n_true if n_true else 0.0


def fbeta(preds=None, targs=None, beta: float = 2.0, thresh: float = 0.5, sigmoid: bool = True):
    """Micro F-beta over all (item, class) cells. Called without preds it returns a metric function:
    `fbeta(beta=2)` -> fn(preds, targs) named 'fbeta'."""
    if preds is None:
        def fbeta_(p, t) -> float:
            return fbeta(p, t, beta=beta, thresh=thresh, sigmoid=sigmoid)
        fbeta_.__name__ = 'fbeta'
        return fbeta_
    prec, rec = precision(preds, targs, thresh, sigmoid), recall(preds, targs, thresh, sigmoid)
    b2 = beta ** 2
    return (1 + b2) * prec * rec / (b2 * prec + rec) if prec + rec > 0 else 0.0


def f1(preds, targs, thresh: float = 0.5, sigmoid: bool = True) -> float:
    """Micro F1 (F-beta with beta = 1)."""
    return fbeta(preds, targs, beta=1.0, thresh=thresh, sigmoid=sigmoid)


def log_loss(preds, targs) -> float:
    """Mean negative log-likelihood of the targets under softmax(preds) (multi-label: binary cross-entropy)."""
    preds, targs = _tensor(preds).float(), _tensor(targs)
    if targs.dim() == 1:
        return F.cross_entropy(preds, targs.long()).item()  # log_softmax is idempotent: log-prob outputs work too
    return F.binary_cross_entropy_with_logits(preds, targs.float()).item()
