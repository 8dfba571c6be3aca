"""ClassificationInterpretation: what a trained classifier gets wrong, as numbers and as pictures.

Also the per-class precision / recall / average precision functions that `export_learner` stores and the
prediction server shows (plain numpy, so an export holds plain data and the server needs no training code).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .plotting import confusion_matrix_figure, new_figure

__all__ = ['ClassificationInterpretation', 'DEFAULT_THRESHOLD', 'threshold_counts', 'average_precision',
           'precision_recall_curve', 'validation_report', 'threshold_curve']

#: The probability threshold that per-class precision and recall use when none is given (Custom Vision's 50%).
DEFAULT_THRESHOLD = 0.5


def _one_hot(y: np.ndarray, n_classes: int, is_multi: bool) -> np.ndarray:
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
    truth = _one_hot(y, n_classes, is_multi)                        # (N, C)
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
    truth = _one_hot(y, probs.shape[1], is_multi)
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


class ClassificationInterpretation:
    """Confusion matrix, most-confused pairs, per-class accuracy and top losses of a single-label classifier.

    Args:
        log_preds: (N, C) log-probabilities in data-set order.
        y: (N,) integer targets.
        classes: the class names, index-aligned with the columns of `log_preds`.
        dataset: optional data set, used to draw top losses: its `item_uint8(i)` (or else `ds[i]`) gives
            `(uint8 CHW image, label)`.

    Example:
        >>> interp = ClassificationInterpretation.from_learner(learn)
        >>> interp.most_confused(min_val=2)
    """

    def __init__(self, log_preds: np.ndarray, y: np.ndarray, classes: Sequence[str],
                 dataset: Optional[Any] = None):
        log_preds = np.asarray(log_preds, dtype=np.float64)
        y = np.asarray(y)
        if log_preds.ndim != 2 or y.ndim != 1 or len(log_preds) != len(y):
            raise ValueError(f'expected log_preds (N, C) and y (N,), got {log_preds.shape} and {y.shape}; '
                             'interpretation is for single-label classifiers')
        self.log_preds, self.y = log_preds, y.astype(np.int64)
        self.classes = list(classes)
        self.dataset = dataset
        self.probs = np.exp(log_preds)
        self.pred_class = log_preds.argmax(1)
        self.losses = -log_preds[np.arange(len(y)), self.y]  # per-item negative log-likelihood

    @classmethod
    def from_learner(cls, learn: Any, ds: str = 'valid', tta: bool = False) -> 'ClassificationInterpretation':
        """Interpret `learn`'s predictions on the validation (or labelled test) set, optionally with TTA."""
        if ds not in ('valid', 'test'):
            raise ValueError(f"ds must be 'valid' or 'test', got {ds!r}")
        is_test = ds == 'test'
        if tta:
            log_preds, y = learn.TTA(is_test=is_test)
            log_preds = np.log(np.mean(np.exp(log_preds), 0))
        else:
            log_preds, y = learn.predict_with_targs(is_test=is_test)
        dataset = learn.data.test_ds if is_test else learn.data.val_ds
        return cls(log_preds, y, learn.data.classes, dataset)

    def confusion_matrix(self) -> np.ndarray:
        """(C, C) counts: row = actual class, column = predicted class."""
        c = len(self.classes)
        cm = np.zeros((c, c), dtype=np.int64)
        np.add.at(cm, (self.y, self.pred_class), 1)
        return cm

    def per_class_accuracy(self) -> dict:
        """Class name -> fraction of that class's items predicted correctly (nan for a class with no items)."""
        cm = self.confusion_matrix()
        totals = cm.sum(1)
        return {name: (float(cm[i, i] / totals[i]) if totals[i] else float('nan'))
                for i, name in enumerate(self.classes)}

    def most_confused(self, min_val: int = 1) -> list:
        """(actual, predicted, count) for each off-diagonal cell with at least `min_val` items, largest first."""
        cm = self.confusion_matrix()
        pairs = [(self.classes[i], self.classes[j], int(cm[i, j]))
                 for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] >= min_val]
        return sorted(pairs, key=lambda p: -p[2])

    def top_losses(self, k: Optional[int] = None) -> tuple:
        """(losses, indices) of the k items with the largest loss, largest first."""
        order = np.argsort(-self.losses, kind='stable')[:k]
        return self.losses[order], order

    def report(self, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """Per-class precision, recall and average precision at `threshold` (see `validation_report`): an item is
        predicted as its most likely class when that probability is >= threshold, otherwise not at all."""
        return validation_report(self.probs, self.y, self.classes, is_multi=False, threshold=threshold)

    def precision_recall(self, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """Class name -> (precision, recall) at `threshold` (nan where undefined: no predictions or no items)."""
        rows = self.report(threshold)['per_class']
        nan = float('nan')
        return {r['class']: (nan if r['precision'] is None else r['precision'],
                             nan if r['recall'] is None else r['recall']) for r in rows}

    def average_precision(self) -> dict:
        """Class name -> average precision of ranking the items by that class's probability (threshold-free)."""
        truth = _one_hot(self.y, len(self.classes), False)
        return {name: average_precision(self.probs[:, j], truth[:, j]) for j, name in enumerate(self.classes)}

    def plot_precision_recall(self, threshold: float = DEFAULT_THRESHOLD, classes: Optional[Sequence[str]] = None,
                              figsize=None):
        """One precision-recall curve per class (AP in the legend), each with a dot at `threshold`; returns the Figure.

        Args:
            threshold: the operating point marked on each curve (the class's own probability >= threshold).
            classes: the class names to draw (default: all).
        """
        names = list(self.classes) if classes is None else list(classes)
        unknown = [c for c in names if c not in self.classes]
        if unknown:
            raise ValueError(f'classes {unknown} are not among {self.classes}')
        truth = _one_hot(self.y, len(self.classes), False)
        fig = new_figure(figsize=figsize or (6, 5))
        ax = fig.add_subplot(1, 1, 1)
        for name in names:
            j = self.classes.index(name)
            precision, recall, scores = precision_recall_curve(self.probs[:, j], truth[:, j])
            if not len(recall) or np.isnan(recall[0]):
                continue  # no validation items of this class: no curve
            line, = ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where='post',
                            label=f'{name} (AP {average_precision(self.probs[:, j], truth[:, j]):.2f})')
            at = np.nonzero(scores >= threshold)[0]
            if len(at):
                ax.plot(recall[at[-1]], precision[at[-1]], 'o', color=line.get_color())
        ax.set_xlim(0, 1.02); ax.set_ylim(0, 1.05)
        ax.set_xlabel('recall'); ax.set_ylabel('precision')
        ax.set_title(f'Precision-recall per class (dots: probability >= {threshold:g})')
        ax.legend(fontsize=8, loc='lower left')
        fig.tight_layout()
        return fig

    def plot_confusion_matrix(self, normalize: bool = False, cmap: str = 'Blues', figsize=None):
        """Draw the confusion matrix (counts, or row fractions when `normalize`); returns the Figure."""
        return confusion_matrix_figure(self.confusion_matrix(), self.classes, normalize, cmap=cmap, figsize=figsize)

    def plot_top_losses(self, k: int = 9, figsize=None):
        """Show the k worst-predicted images titled predicted/actual/loss/probability of actual; returns the Figure.
        Videos: one row of frames of each item's first clip."""
        if self.dataset is None:
            raise ValueError('plot_top_losses needs the data set: build the interpretation with from_learner')
        losses, idxs = self.top_losses(k)
        if getattr(self.dataset, 'is_video', False):
            from .data.video_plots import clip_strips
            titles = [f'{self.classes[self.pred_class[i]]}/{self.classes[self.y[i]]}\n{loss:.2f}/'
                      f'{self.probs[i, self.y[i]]:.2f}' for loss, i in zip(losses, idxs)]
            return clip_strips([self.dataset.item_uint8(int(i))[0] for i in idxs], titles)
        cols = int(np.ceil(np.sqrt(len(idxs)))) or 1
        rows = int(np.ceil(len(idxs) / cols)) or 1
        fig = new_figure(figsize=figsize or (3 * cols, 3 * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.axis('off')
        for ax, loss, i in zip(axes.flat, losses, idxs):
            item = getattr(self.dataset, 'item_uint8', self.dataset.__getitem__)  # the pixels, not normalized ones
            image = item(int(i))[0]
            image = np.asarray(image.permute(1, 2, 0) if hasattr(image, 'permute') else image)
            ax.imshow(image)
            actual, pred = self.classes[self.y[i]], self.classes[self.pred_class[i]]
            ax.set_title(f'{pred}/{actual}\n{loss:.2f}/{self.probs[i, self.y[i]]:.2f}', fontsize=9)
        fig.suptitle('predicted/actual, loss/probability of actual')
        fig.tight_layout()
        return fig
