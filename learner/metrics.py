"""Metrics computed once per epoch on the whole validation set (never averaged per batch).

A metric is `fn(preds, targs) -> float`, logged under `fn.__name__`. Each metric here declares which way is better
(`fn.higher_is_better`, as torchmetrics does), so `EarlyStopping`/`SaveBest` with `mode='auto'` never guess from a
name; give your own metrics the attribute too (`my_metric.higher_is_better = False`). `preds` are what `learn.predict()` returns,
as in fastai 0.7: log-probabilities (N, C) for single-label data (logits work too: every single-label metric here
depends only on the ranking or on log_softmax, which is idempotent), probabilities (N, C) for multi-label data.
`targs` are (N,) class indices or (N, C) multi-hot rows.

Multi-label thresholds apply to probabilities. Planet-style scoring (fastai 0.7's `planet.f2`/`opt_th`): F2 averaged
over samples, at the best threshold in 0.17..0.24.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['accuracy', 'accuracy_np', 'error_rate', 'accuracy_thresh', 'accuracy_multi', 'fbeta', 'f2', 'opt_th',
           'log_loss', 'precision', 'recall', 'f1', 'mae', 'mse', 'rmse', 'metric_name', 'higher_is_better']


def metric_name(fn: Callable) -> str:
    """The name a metric is logged under in `learn.log` and the epoch table (its `__name__`)."""
    inner = getattr(fn, 'func', None)  # functools.partial
    return getattr(fn, '__name__', None) or getattr(inner, '__name__', None) or type(fn).__name__


def higher_is_better(fn: Callable) -> Optional[bool]:
    """What a metric declares (`fn.higher_is_better`; a partial's function's), or None when it declares nothing."""
    for obj in (fn, getattr(fn, 'func', None)):
        value = getattr(obj, 'higher_is_better', None)
        if value is not None:
            return bool(value)
    return None


def _declare(higher: bool, *fns: Callable) -> None:
    for fn in fns:
        fn.higher_is_better = higher


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


def accuracy_multi(preds, targs, thresh: float = 0.5, sigmoid: bool = False) -> float:
    """Multi-label accuracy: the fraction of (item, class) cells where `pred > thresh` equals the target.

    Args:
        thresh: probability threshold.
        sigmoid: apply a sigmoid first (for logits); by default preds are probabilities, as the learner hands them.
    """
    predicted, actual = _multi_hot(_tensor(preds), _tensor(targs), thresh, sigmoid)
    return (predicted == actual).float().mean().item()


def accuracy_thresh(preds_or_thresh: Union[float, torch.Tensor, np.ndarray] = 0.5, targs=None, thresh: float = 0.5,
                    sigmoid: bool = False) -> Union[float, Callable]:
    """`accuracy_multi`, usable both ways course code uses it.

    `accuracy_thresh(0.2)` (fastai 0.7) returns a metric named 'accuracy_thresh' with that threshold;
    `metrics=[accuracy_thresh]` or `accuracy_thresh(preds, targs)` (fastai 1+) computes it at `thresh`.
    """
    if targs is not None:
        return accuracy_multi(preds_or_thresh, targs, thresh, sigmoid)
    if not isinstance(preds_or_thresh, (int, float)):
        raise TypeError('accuracy_thresh takes a threshold (accuracy_thresh(0.5) -> metric) or (preds, targs)')
    chosen = float(preds_or_thresh)

    def accuracy_thresh_(preds, targs) -> float:
        return accuracy_multi(preds, targs, chosen, sigmoid)
    accuracy_thresh_.__name__ = 'accuracy_thresh'
    accuracy_thresh_.higher_is_better = True
    return accuracy_thresh_


def _counts(preds, targs, thresh: float, sigmoid: bool):
    predicted, actual = _multi_hot(_tensor(preds), _tensor(targs), thresh, sigmoid)
    tp = (predicted & actual).sum().item()
    return tp, predicted.sum().item(), actual.sum().item()


def precision(preds, targs, thresh: float = 0.5, sigmoid: bool = False) -> float:
    """Micro precision over all (item, class) cells: true positives / predicted positives (0 when none predicted)."""
    tp, n_pred, _ = _counts(preds, targs, thresh, sigmoid)
    return tp / n_pred if n_pred else 0.0


def recall(preds, targs, thresh: float = 0.5, sigmoid: bool = False) -> float:
    """Micro recall over all (item, class) cells: true positives / actual positives (0 when there are none)."""
    tp, _, n_true = _counts(preds, targs, thresh, sigmoid)
    return tp / n_true if n_true else 0.0


def fbeta(preds=None, targs=None, beta: float = 2.0, thresh: float = 0.5, sigmoid: bool = False):
    """Micro F-beta over all (item, class) cells (fastai 0.7's `fbeta(preds, targs, beta, thresh)`). Called without
    preds it returns a metric: `fbeta(beta=2)` -> fn(preds, targs) named 'fbeta'."""
    if beta <= 0:
        raise ValueError(f'beta must be > 0, got {beta}')
    if preds is None:
        def fbeta_(p, t) -> float:
            return fbeta(p, t, beta=beta, thresh=thresh, sigmoid=sigmoid)
        fbeta_.__name__ = 'fbeta'
        fbeta_.higher_is_better = True
        return fbeta_
    prec, rec = precision(preds, targs, thresh, sigmoid), recall(preds, targs, thresh, sigmoid)
    b2 = beta ** 2
    return (1 + b2) * prec * rec / (b2 * prec + rec) if prec + rec > 0 else 0.0


def f1(preds, targs, thresh: float = 0.5, sigmoid: bool = False) -> float:
    """Micro F1 (F-beta with beta = 1)."""
    return fbeta(preds, targs, beta=1.0, thresh=thresh, sigmoid=sigmoid)


def _samples_fbeta(probs: np.ndarray, targs: np.ndarray, thresh: float, beta: float) -> float:
    """F-beta of each item's predicted label set against its true set, averaged over items (0 for an item with
    neither predicted nor true labels, as scikit-learn's average='samples' scores it)."""
    predicted, actual = probs > thresh, targs > 0.5
    tp = (predicted & actual).sum(1)
    b2 = beta ** 2
    denominator = b2 * actual.sum(1) + predicted.sum(1)
    return float(np.mean(np.where(denominator > 0, (1 + b2) * tp / np.maximum(denominator, 1), 0.0)))


def _thresholds(start: float, end: float, step: float) -> np.ndarray:
    return np.arange(start, end, step)


def opt_th(preds, targs, start: float = 0.17, end: float = 0.24, step: float = 0.01) -> float:
    """The threshold in [start, end) (by step) with the best samples-averaged F2 (fastai 0.7's planet `opt_th`)."""
    probs, truth = np.asarray(_tensor(preds).float()), np.asarray(_tensor(targs).float())
    scores = [_samples_fbeta(probs, truth, t, 2.0) for t in _thresholds(start, end, step)]
    return float(_thresholds(start, end, step)[int(np.argmax(scores))])


def f2(preds, targs, start: float = 0.17, end: float = 0.24, step: float = 0.01) -> float:
    """Planet's metric (fastai 0.7 `planet.f2`): samples-averaged F2 of probabilities at the best threshold in
    [start, end). Use it as `metrics=[f2]` on multi-label data, or `f2(learn.predict(), y)`."""
    probs, truth = np.asarray(_tensor(preds).float()), np.asarray(_tensor(targs).float())
    if probs.ndim != 2 or probs.shape != truth.shape:
        raise ValueError(f'f2 expects (N, C) probabilities and (N, C) multi-hot targets, got {probs.shape} and '
                         f'{truth.shape}')
    return max(_samples_fbeta(probs, truth, t, 2.0) for t in _thresholds(start, end, step))


def log_loss(preds, targs) -> float:
    """Mean negative log-likelihood of the targets: under softmax(preds) for single-label (log-probabilities or
    logits), binary cross-entropy of the probabilities for multi-label."""
    preds, targs = _tensor(preds).float(), _tensor(targs)
    if targs.dim() == 1:
        return F.cross_entropy(preds, targs.long()).item()  # log_softmax is idempotent: log-prob outputs work too
    return F.binary_cross_entropy(preds.clamp(1e-7, 1 - 1e-7), targs.float()).item()


def _regression(preds, targs):
    preds, targs = _tensor(preds).float(), _tensor(targs).float()
    if preds.numel() != targs.numel():
        raise ValueError(f'regression metrics compare values one to one: got predictions of shape '
                         f'{tuple(preds.shape)} for targets of shape {tuple(targs.shape)}')
    return preds.reshape(targs.shape), targs


def mae(preds, targs) -> float:
    """Mean absolute error (regression)."""
    preds, targs = _regression(preds, targs)
    return (preds - targs).abs().mean().item()


def mse(preds, targs) -> float:
    """Mean squared error (regression)."""
    preds, targs = _regression(preds, targs)
    return ((preds - targs) ** 2).mean().item()


def rmse(preds, targs) -> float:
    """Root mean squared error (regression)."""
    return mse(preds, targs) ** 0.5


_declare(True, accuracy, accuracy_np, accuracy_multi, accuracy_thresh, precision, recall, fbeta, f1, f2)
_declare(False, error_rate, log_loss, mae, mse, rmse)
