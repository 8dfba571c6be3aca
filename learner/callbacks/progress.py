"""Progress display with fastprogress: a live bar and table in Jupyter, bars plus one line per epoch in an
interactive terminal, and only the plain epoch lines when output goes to a file or CI log.

Turn it off with `Learner(..., progress=False)`, `learn.progress = False`, or for a block with
`with learn.no_bar(): ...`.
"""
from __future__ import annotations

import contextlib
import math
import sys

from .base import ORDER_PROGRESS, Callback, CallbackRunner

__all__ = ['ProgressCallback', 'ProgressMixin', 'format_time']


def format_time(seconds: float) -> str:
    """`mm:ss` (or `h:mm:ss` past an hour)."""
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f'{h}:{m:02d}:{s:02d}' if h else f'{m:02d}:{s:02d}'


def _fmt(value) -> str:
    if isinstance(value, float):
        return 'nan' if math.isnan(value) else f'{value:.6f}'
    return str(value)


def _live_display() -> bool:
    """True in Jupyter or an interactive terminal (where redrawn bars make sense)."""
    from fastprogress.fastprogress import IN_NOTEBOOK
    isatty = getattr(sys.stdout, 'isatty', None)
    return bool(IN_NOTEBOOK or (isatty is not None and isatty()))


class ProgressCallback(Callback):
    """Wraps the training and validation loaders in fastprogress bars (when the display is live) and writes one
    row per epoch: epoch, train_loss, valid_loss, each metric, time."""

    order = ORDER_PROGRESS

    def before_fit(self) -> None:
        learn = self.learn
        self.names = ['epoch', 'train_loss', 'valid_loss', *learn.metric_names, 'time']
        self.widths = [max(len(n), 9) for n in self.names]
        self._header_written = False
        self.mb = None
        if _live_display():
            from fastprogress.fastprogress import master_bar
            self.mb = master_bar(range(learn.n_epochs))
            self.mb.on_iter_begin()
            self.mb.main_bar.update(0)

    def _wrap(self) -> None:
        if self.mb is None or self.learn.dl is None or not hasattr(self.learn.dl, '__len__'):
            return
        from fastprogress.fastprogress import progress_bar
        self.learn.dl = progress_bar(self.learn.dl, parent=self.mb, leave=False)

    def before_train(self) -> None:
        self._wrap()

    def before_validate(self) -> None:
        self._wrap()

    def _write(self, cells) -> None:
        if self.mb is not None:
            self.mb.write(list(cells), table=True)
        else:
            print('  '.join(c.ljust(w) for c, w in zip(cells, self.widths)).rstrip(), flush=True)

    def after_epoch(self) -> None:
        if not self._header_written:  # values other callbacks added to the log (SWA's) get columns before 'time'
            extra = [k for k in self.learn.log if k not in self.names]
            self.names[-1:-1] = extra
            self.widths[-1:-1] = [max(len(n), 9) for n in extra]
            self._write(self.names)
            self._header_written = True
        log = self.learn.log
        self._write([str(log['epoch'])] + [_fmt(log.get(n, math.nan)) for n in self.names[1:-1]]
                    + [format_time(log['time'])])
        if self.mb is not None:
            self.mb.main_bar.update(self.learn.epoch + 1)

    def after_fit(self) -> None:
        if self.mb is not None:
            self.mb.on_iter_end()
            self.mb = None


class ProgressMixin:
    """The Learner's display switches. Uses the Learner's `progress`, `recorder` and `cbs`."""

    @contextlib.contextmanager
    def no_bar(self):
        """`with learn.no_bar(): ...` runs without progress bars or epoch lines."""
        previous, self.progress = self.progress, False
        try:
            yield self
        finally:
            self.progress = previous

    def show_training_loop(self, cbs=()) -> str:
        """Print (and return) which callbacks would run at each event, in order, in a fit with these extra ones."""
        extra = [ProgressCallback()] if self.progress else []
        text = CallbackRunner([self.recorder, *self.cbs, *cbs, *extra], self).table()
        print(text)
        return text
