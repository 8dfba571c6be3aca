"""One way to make a figure, so that every plot shows exactly once in a notebook and costs nothing in a script.

In IPython (Jupyter), figures are made through pyplot, so the inline backend shows each one when its cell ends,
also when the call is not the cell's last line (`learn.sched.plot_loss();`), as fastai 0.7's plots did; the
returned Figure does not display itself a second time as the cell's value. Elsewhere (scripts, the CLI, tests)
they are bare matplotlib Figures: no pyplot state, no display needed, nothing kept alive. Either way the plot
methods return the Figure, so `fig.savefig(...)` works.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported when a figure is made, not with the library
    from matplotlib.figure import Figure

__all__ = ['new_figure', 'in_notebook', 'confusion_matrix_figure']


def _shown_once_figure_class() -> type:
    """The Figure subclass a notebook shows once: as the cell's value, or else when the cell ends (the inline backend
    displays every new pyplot figure then), whichever comes first. Made on first use, so that importing the library
    (a prediction server, a worker) never imports matplotlib."""
    global _SHOWN_ONCE
    if _SHOWN_ONCE is None:
        from matplotlib.figure import Figure

        class ShownOnceFigure(Figure):
            def _ipython_display_(self) -> None:
                if getattr(self, '_learner_shown', False):
                    return
                self._learner_shown = True
                from IPython.core.pylabtools import print_figure
                from IPython.display import Image, display
                display(Image(data=print_figure(self, 'png', bbox_inches='tight')))
        _SHOWN_ONCE = ShownOnceFigure
    return _SHOWN_ONCE


_SHOWN_ONCE = None


def in_notebook() -> bool:
    """True inside IPython (a Jupyter kernel or the IPython shell)."""
    ipython = sys.modules.get('IPython')
    return ipython is not None and getattr(ipython, 'get_ipython', lambda: None)() is not None


def new_figure(figsize: Optional[Tuple[float, float]] = None, **kwargs: Any) -> 'Figure':
    """A Figure of `figsize` inches: through pyplot in IPython (shown once), bare elsewhere (see the module doc)."""
    if in_notebook():
        import matplotlib.pyplot as plt
        return plt.figure(figsize=figsize, FigureClass=_shown_once_figure_class(), **kwargs)
    from matplotlib.figure import Figure
    return Figure(figsize=figsize, **kwargs)


def confusion_matrix_figure(cm: Any, classes: Sequence, normalize: bool = False, title: str = 'Confusion matrix',
                            cmap: Any = 'Blues', figsize: Optional[Tuple[float, float]] = None,
                            labels: Tuple[str, str] = ('Predicted', 'Actual')) -> 'Figure':
    """A confusion matrix (rows actual, columns predicted) with its counts, or row fractions when `normalize`, in
    the cells. `labels`: the (x, y) axis names."""
    cm = np.asarray(cm, dtype=np.float64)
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig = new_figure(figsize=figsize or (max(4, 0.6 * n + 2),) * 2)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(cm, interpolation='nearest', cmap=cmap)
    ax.set_xticks(range(n))
    ax.set_xticklabels(classes, rotation=90)
    ax.set_yticks(range(n))
    ax.set_yticklabels(classes)
    middle = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f'{cm[i, j]:.2f}' if normalize else f'{int(cm[i, j])}', ha='center', va='center',
                    color='white' if cm[i, j] > middle else 'black')
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    fig.tight_layout()
    return fig
