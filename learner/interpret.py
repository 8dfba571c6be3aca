"""ClassificationInterpretation: what a trained classifier gets wrong, as numbers and as pictures.

The numbers behind its per-class report (precision / recall / average precision, threshold curves) live in
`reports.py`, plain numpy, shared with exports and the prediction service.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .plotting import confusion_matrix_figure, new_figure
from .reports import (DEFAULT_THRESHOLD, average_precision, one_hot_targets, precision_recall_curve,
                      threshold_counts, threshold_curve, validation_report)

__all__ = ['ClassificationInterpretation', 'DEFAULT_THRESHOLD', 'threshold_counts', 'average_precision',
           'precision_recall_curve', 'validation_report', 'threshold_curve']


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
        truth = one_hot_targets(self.y, len(self.classes), False)
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
        truth = one_hot_targets(self.y, len(self.classes), False)
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
