"""Tracking callbacks that read `learn.log` at the end of each epoch: save-best, early stopping, cycle snapshots."""
from __future__ import annotations

import math
from typing import Optional, Sequence

from .base import ORDER_TRACKING, CancelFit, Callback

__all__ = ['SaveBest', 'EarlyStopping', 'CycleSnapshot']


class _Monitor(Callback):
    """Shared logic: follow `learn.log[monitor]`; `mode` 'auto' means lower is better for names with 'loss' or
    'error', higher otherwise."""

    order = ORDER_TRACKING

    def __init__(self, monitor: str = 'valid_loss', mode: str = 'auto', min_delta: float = 0.0):
        if mode not in ('auto', 'min', 'max'):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == 'auto':
            mode = 'min' if ('loss' in monitor or 'error' in monitor) else 'max'
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)

    def before_fit(self) -> None:
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None

    def _improved(self) -> bool:
        log = self.learn.log
        if self.monitor not in log:
            raise KeyError(f'{self.name} monitors {self.monitor!r}, but the epoch log has only {sorted(log)}')
        value = float(log[self.monitor])
        if math.isnan(value):
            return False
        better = (self.best is None or
                  (value < self.best - self.min_delta if self.mode == 'min' else value > self.best + self.min_delta))
        if better:
            self.best, self.best_epoch = value, self.learn.epoch
        return better


class SaveBest(_Monitor):
    """Save the model (`learn.save(name)`) whenever `monitor` improves; with `load_at_end` reload the best at the end.

    Args:
        name: checkpoint name under `learn.path/models/`.
        monitor: a key of `learn.log` ('valid_loss', 'accuracy', ...).
        mode: 'auto', 'min' or 'max'.
        load_at_end: load the best weights after the fit.
    """

    def __init__(self, name: str = 'best', monitor: str = 'valid_loss', mode: str = 'auto', load_at_end: bool = False):
        super().__init__(monitor, mode)
        self.fname, self.load_at_end = name, load_at_end

    def after_epoch(self) -> None:
        if self._improved():
            self.learn.save(self.fname)

    def after_fit(self) -> None:
        if self.load_at_end and self.best_epoch is not None:
            self.learn.load(self.fname)


class EarlyStopping(_Monitor):
    """Stop the fit when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str = 'valid_loss', patience: int = 3, min_delta: float = 0.0, mode: str = 'auto'):
        super().__init__(monitor, mode, min_delta)
        self.patience = patience

    def after_epoch(self) -> None:
        if self._improved():
            self.wait = 0
            return
        self.wait = getattr(self, 'wait', 0) + 1
        if self.wait >= self.patience:
            self.stopped_epoch = self.learn.epoch
            raise CancelFit()

    def before_fit(self) -> None:
        super().before_fit()
        self.wait, self.stopped_epoch = 0, None


class CycleSnapshot(Callback):
    """Save `name_cyc_<i>` at the end of each cycle (fastai 0.7 `cycle_save_name`); `cycle_ends` are epoch counts."""

    order = ORDER_TRACKING

    def __init__(self, name: str, cycle_ends: Sequence[float]):
        self.fname = name
        self.cycle_ends = [int(round(e)) for e in cycle_ends]

    def after_epoch(self) -> None:
        done = self.learn.epoch + 1
        if done in self.cycle_ends:
            self.learn.save(f'{self.fname}_cyc_{self.cycle_ends.index(done)}')
