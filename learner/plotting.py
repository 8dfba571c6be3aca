"""One way to make a figure, so that every plot shows exactly once in a notebook and costs nothing in a script.

In IPython (Jupyter), figures are made through pyplot, so the inline backend shows each one when its cell ends,
also when the call is not the cell's last line (`learn.sched.plot_loss();`), as fastai 0.7's plots did; the
returned Figure does not display itself a second time as the cell's value. Elsewhere (scripts, the CLI, tests)
they are bare matplotlib Figures: no pyplot state, no display needed, nothing kept alive. Either way the plot
methods return the Figure, so `fig.savefig(...)` works.
"""
from __future__ import annotations

import sys
from typing import Any, Optional, Tuple

from matplotlib.figure import Figure

__all__ = ['new_figure', 'in_notebook']


class _ShownOnceFigure(Figure):
    """A pyplot figure that a notebook shows once: as the cell's value, or else when the cell ends (the inline
    backend displays every new pyplot figure then), whichever comes first."""

    def _ipython_display_(self) -> None:
        if getattr(self, '_learner_shown', False):
            return
        self._learner_shown = True
        from IPython.core.pylabtools import print_figure
        from IPython.display import Image, display
        display(Image(data=print_figure(self, 'png', bbox_inches='tight')))


def in_notebook() -> bool:
    """True inside IPython (a Jupyter kernel or the IPython shell)."""
    ipython = sys.modules.get('IPython')
    return ipython is not None and getattr(ipython, 'get_ipython', lambda: None)() is not None


def new_figure(figsize: Optional[Tuple[float, float]] = None, **kwargs: Any) -> Figure:
    """A Figure of `figsize` inches: through pyplot in IPython (shown once), bare elsewhere (see the module doc)."""
    if in_notebook():
        import matplotlib.pyplot as plt
        return plt.figure(figsize=figsize, FigureClass=_ShownOnceFigure, **kwargs)
    return Figure(figsize=figsize, **kwargs)
