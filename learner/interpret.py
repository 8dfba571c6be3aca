"""ClassificationInterpretation: what a trained classifier gets wrong, as numbers and as pictures."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

__all__ = ['ClassificationInterpretation']


class ClassificationInterpretation:
    """Confusion matrix, most-confused pairs, per-class accuracy and top losses of a single-label classifier.

    Args:
        log_preds: (N, C) log-probabilities in data-set order.
        y: (N,) integer targets.
        classes: the class names, index-aligned with the columns of `log_preds`.
        dataset: optional data set whose `ds[i]` returns `(uint8 CHW image, label)`, used to draw top losses.

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

    def plot_confusion_matrix(self, normalize: bool = False, cmap: str = 'Blues', figsize=None):
        """Draw the confusion matrix (counts, or row fractions when `normalize`); returns the Figure."""
        import matplotlib.pyplot as plt
        cm = self.confusion_matrix().astype(np.float64)
        if normalize:
            cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        n = len(self.classes)
        size = figsize or (max(4, 0.6 * n + 2),) * 2
        fig, ax = plt.subplots(figsize=size)
        ax.imshow(cm, cmap=cmap)
        ax.set_xticks(range(n)); ax.set_xticklabels(self.classes, rotation=90)
        ax.set_yticks(range(n)); ax.set_yticklabels(self.classes)
        threshold = cm.max() / 2 if cm.size else 0
        for i in range(n):
            for j in range(n):
                text = f'{cm[i, j]:.2f}' if normalize else f'{int(cm[i, j])}'
                ax.text(j, i, text, ha='center', va='center', color='white' if cm[i, j] > threshold else 'black')
        ax.set_xlabel('Predicted'); ax.set_ylabel('Actual'); ax.set_title('Confusion matrix')
        fig.tight_layout()
        return fig

    def plot_top_losses(self, k: int = 9, figsize=None):
        """Show the k worst-predicted images titled predicted/actual/loss/probability of actual; returns the Figure."""
        import matplotlib.pyplot as plt
        if self.dataset is None:
            raise ValueError('plot_top_losses needs the data set: build the interpretation with from_learner')
        losses, idxs = self.top_losses(k)
        cols = int(np.ceil(np.sqrt(len(idxs)))) or 1
        rows = int(np.ceil(len(idxs) / cols)) or 1
        fig, axes = plt.subplots(rows, cols, figsize=figsize or (3 * cols, 3 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis('off')
        for ax, loss, i in zip(axes.flat, losses, idxs):
            image = self.dataset[int(i)][0]
            image = np.asarray(image.permute(1, 2, 0) if hasattr(image, 'permute') else image)
            ax.imshow(image)
            actual, pred = self.classes[self.y[i]], self.classes[self.pred_class[i]]
            ax.set_title(f'{pred}/{actual}\n{loss:.2f}/{self.probs[i, self.y[i]]:.2f}', fontsize=9)
        fig.suptitle('predicted/actual, loss/probability of actual')
        fig.tight_layout()
        return fig
