"""Per-class precision, recall and average precision, confusion counts and threshold curves of a classifier's
validation predictions, in plain numpy: what `export_learner` stores, what the prediction service and the studio
show, and what `ClassificationInterpretation` reports. No plotting here (a server imports this)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ['DEFAULT_THRESHOLD', 'one_hot_targets', 'threshold_counts', 'average_precision', 'precision_recall_curve',
           'validation_report', 'threshold_curve']

#: The probability threshold that per-class precision and recall use when none is given (Custom Vision's 50%).
DEFAULT_THRESHOLD = 0.5


def one_hot_targets(y: np.ndarray, n_classes: int, is_multi: bool) -> np.ndarray:
    """(N, C) bool targets from class indices (N,) or multi-hot rows (N, C)."""
    y = np.asarray(y)
    if is_multi:
        if y.ndim != 2 or y.shape[1] != n_classes:
            raise ValueError(f'multi-label targets must be (N, {n_classes}) multi-hot, got shape {y.shape}')
        return y > 0.5
    if y.ndim != 1:
        raise ValueError(f'single-label targets must be (N,) class indices, got shape {y.shape}')
    return np.arange(n_classes)[None, :] == y.astype(np.int64)[:, None]


def threshold_counts(probs: np.ndarray, y: np.ndarray, thresholds: Sequence[float], is_multi: bool = False) -> np.ndarray:
    """True positives, false positives and false negatives per threshold and class: (T, C, 3) int64.

    What "predicted" means at threshold t:
        * multi-label: class j is predicted for an item when its probability is >= t (each class on its own);
        * single-label: the item is predicted as its most likely class when that class's probability is >= t,
          otherwise it gets no prediction (it then counts as a false negative of its true class only).
    So raising t trades recall for precision in both cases, as Custom Vision's threshold slider does.

    Args:
        probs: (N, C) probabilities (softmax rows, or per-class sigmoids for multi-label).
        y: (N,) class indices, or (N, C) multi-hot targets when `is_multi`.
        thresholds: the T probability thresholds in [0, 1].
        is_multi: multi-label targets and per-class thresholds.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f'probs must be (N, C), got shape {probs.shape}')
    n_classes = probs.shape[1]
    truth = one_hot_targets(y, n_classes, is_multi)                        # (N, C)
    n_true = truth.sum(0)                                           # (C,)
    out = np.zeros((len(thresholds), n_classes, 3), dtype=np.int64)
    if not is_multi:
        pred, conf = probs.argmax(1), probs.max(1)                  # (N,), (N,)
        correct = truth[np.arange(len(pred)), pred]
    for k, t in enumerate(thresholds):
        if is_multi:
            predicted = probs >= t                                  # (N, C)
            tp = (predicted & truth).sum(0)
            fp = (predicted & ~truth).sum(0)
        else:
            kept = conf >= t
            tp = np.bincount(pred[kept & correct], minlength=n_classes)
            fp = np.bincount(pred[kept & ~correct], minlength=n_classes)
        out[k, :, 0], out[k, :, 1], out[k, :, 2] = tp, fp, n_true - tp
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with nan where den == 0 (a precision with no predictions is undefined, not 0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple:
    """(precision, recall, thresholds) of ranking `scores` for one class, one point per distinct score.

    Ties are one point (every item with the same score is in or out together), as scikit-learn does.
    """
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind='stable')
    scores, positive = scores[order], positive[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1] if len(scores) else np.array([], int)
    tp = np.cumsum(positive)[last_of_tie]
    n_pred = last_of_tie + 1
    precision = tp / np.maximum(n_pred, 1)
    recall = _ratio(tp, positive.sum())
    return precision, recall, scores[last_of_tie]


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under one class's precision-recall step curve: sum over score thresholds of (R_k - R_k-1) * P_k.

    Threshold-free (it ranks the class's own probability over all items); nan when the class has no positives.
    """
    precision, recall, _ = precision_recall_curve(scores, positive)
    if not len(recall) or np.isnan(recall[0]):
        return float('nan')
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _nan_to_none(values) -> list:
    return [None if v != v else float(v) for v in np.asarray(values, dtype=np.float64).tolist()]


def validation_report(probs: np.ndarray, y: np.ndarray, classes: Sequence[str], is_multi: bool = False,
                      threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Per-class precision, recall and average precision at `threshold`, overall (micro) precision and recall,
    mean average precision and the confusion matrix, as plain data (lists, floats, None for undefined).

    The confusion matrix is (C, C) counts of actual (row) vs most likely class (column) for single-label; for
    multi-label it is one [[TN, FP], [FN, TP]] block per class at `threshold`. See `threshold_counts` for what
    "predicted" means at a threshold.
    """
    probs = np.asarray(probs, dtype=np.float64)
    truth = one_hot_targets(y, probs.shape[1], is_multi)
    counts = threshold_counts(probs, y, [threshold], is_multi)[0]           # (C, 3)
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    ap = np.array([average_precision(probs[:, j], truth[:, j]) for j in range(probs.shape[1])])
    if is_multi:
        predicted = probs >= threshold
        cm = [[[int((~predicted[:, j] & ~truth[:, j]).sum()), int(fp[j])], [int(fn[j]), int(tp[j])]]
              for j in range(probs.shape[1])]
    else:
        cm = np.zeros((probs.shape[1],) * 2, dtype=np.int64)
        np.add.at(cm, (np.asarray(y, dtype=np.int64), probs.argmax(1)), 1)
        cm = cm.tolist()
    per_class = [{'class': str(name), 'precision': p, 'recall': r, 'average_precision': a, 'n': int(n)}
                 for name, p, r, a, n in zip(classes, _nan_to_none(precision), _nan_to_none(recall),
                                             _nan_to_none(ap), truth.sum(0))]
    overall_p, overall_r = _nan_to_none([_ratio(tp.sum(), tp.sum() + fp.sum()), _ratio(tp.sum(), tp.sum() + fn.sum())])
    return {'threshold': float(threshold), 'n_valid': int(len(probs)), 'per_class': per_class,
            'precision': overall_p, 'recall': overall_r,
            'mean_average_precision': _nan_to_none([np.nanmean(ap) if np.isfinite(ap).any() else np.nan])[0],
            'confusion_matrix': cm}


def threshold_curve(probs: np.ndarray, y: np.ndarray, is_multi: bool = False, n_points: int = 101) -> dict:
    """Counts at `n_points` evenly spaced thresholds in [0, 1], as plain lists: {'thresholds': [T],
    'tp'/'fp'/'fn': [T][C]} ints. Compact (T x C x 3 numbers whatever the validation set's size), and exact:
    any precision or recall at those thresholds follows from them."""
    thresholds = np.linspace(0.0, 1.0, n_points)
    counts = threshold_counts(probs, y, thresholds, is_multi)
    return {'thresholds': [round(float(t), 6) for t in thresholds],
            'tp': counts[:, :, 0].tolist(), 'fp': counts[:, :, 1].tolist(), 'fn': counts[:, :, 2].tolist()}
