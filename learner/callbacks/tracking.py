"""Tracking callbacks that read `learn.log` at the end of each epoch: save-best, early stopping, cycle snapshots."""
from __future__ import annotations

import math
import warnings
from typing import Callable, Optional, Sequence

from ..metrics import higher_is_better, metric_name
from .base import ORDER_TRACKING, CancelFit, Callback

__all__ = ['SaveBest', 'EarlyStopping', 'CycleSnapshot', 'monitor_direction']


def monitor_direction(monitor: str, metrics: Sequence[Callable]) -> Optional[str]:
    """'min' or 'max' for a key of `learn.log`: the losses go down; a metric goes the way it declares
    (`higher_is_better`, see metrics.py); None when nothing says."""
    if monitor in ('train_loss', 'valid_loss'):
        return 'min'
    for fn in metrics:
        if metric_name(fn) == monitor:
            higher = higher_is_better(fn)
            return None if higher is None else ('max' if higher else 'min')
    return None


class _Monitor(Callback):
    """Shared logic: follow `learn.log[monitor]` at the end of each epoch.

    `mode='auto'` takes the direction the monitored quantity declares: the losses go down, each metric says
    (`higher_is_better`); an undeclared metric is an error at the start of the fit (pass `mode='min'` or `'max'`),
    never a guess from its name. A validation quantity with no validation set (or an epoch whose validation was
    cancelled, so its value is NaN) does not count: a warning says so once, or with `strict=True` it is an error.
    """

    order = ORDER_TRACKING

    def __init__(self, monitor: str = 'valid_loss', mode: str = 'auto', min_delta: float = 0.0, strict: bool = False):
        if mode not in ('auto', 'min', 'max'):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.min_delta, self.strict = monitor, mode, abs(min_delta), strict
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None

    def before_fit(self) -> None:
        self.best, self.best_epoch, self._warned = None, None, False
        known = ['train_loss', 'valid_loss', *self.learn.metric_names]
        if self.monitor not in known:
            raise KeyError(f'{self.name} monitors {self.monitor!r}, but the epoch log will hold only {known}')
        self.direction = self.mode if self.mode != 'auto' else monitor_direction(self.monitor, self.learn.metrics)
        if self.direction is None:
            raise ValueError(f"{self.name} cannot tell whether {self.monitor!r} should go up or down: pass mode='min' "
                             f"or mode='max', or declare it on the metric ({self.monitor}.higher_is_better = False)")
        if self.monitor != 'train_loss' and self.learn.fit_stage.valid is None:
            self._skip(f'this fit has no validation set, so {self.monitor!r} is never measured')

    def _skip(self, why: str) -> None:
        message = f'{self.name} monitors {self.monitor!r} but {why}: it ignores this epoch'
        if self.strict:
            raise ValueError(message + ' (strict=True)')
        if not self._warned:
            warnings.warn(message + ' and any other without a value (strict=True makes this an error)', stacklevel=2)
            self._warned = True

    def _value(self) -> Optional[float]:
        """This epoch's value, or None when there is none to judge (no validation, or NaN)."""
        log = self.learn.log
        if self.monitor not in log:
            raise KeyError(f'{self.name} monitors {self.monitor!r}, but the epoch log has only {sorted(log)}')
        value = float(log[self.monitor])
        if math.isnan(value):
            self._skip(f'epoch {self.learn.epoch} has no value for it (NaN: no or cancelled validation)')
            return None
        return value

    def _improved(self, value: float) -> bool:
        better = (self.best is None or (value < self.best - self.min_delta if self.direction == 'min'
                                        else value > self.best + self.min_delta))
        if better:
            self.best, self.best_epoch = value, self.learn.epoch
        return better

    def state_dict(self) -> dict:
        return {'best': self.best, 'best_epoch': self.best_epoch}


class SaveBest(_Monitor):
    """Save the model (`learn.save(name)`) whenever `monitor` improves; with `load_at_end` reload the best at the end.

    Args:
        name: checkpoint name under `learn.path/models/`.
        monitor: a key of `learn.log` ('valid_loss', 'accuracy', ...).
        mode: 'auto' (the direction the quantity declares), 'min' or 'max'.
        load_at_end: load the best weights after the fit.
        strict: an epoch without a value (no validation set) is an error instead of a warning.
    """

    def __init__(self, name: str = 'best', monitor: str = 'valid_loss', mode: str = 'auto', load_at_end: bool = False,
                 strict: bool = False):
        super().__init__(monitor, mode, strict=strict)
        self.fname, self.load_at_end = name, load_at_end

    def after_epoch(self) -> None:
        value = self._value()
        if value is not None and self._improved(value):
            self.learn.save(self.fname)

    def after_fit(self) -> None:
        if self.load_at_end and self.best_epoch is not None:
            self.learn.load(self.fname)


class EarlyStopping(_Monitor):
    """Stop the fit when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    The epoch that decides it completes (every after_epoch callback runs, so a checkpoint written then holds this
    state); the fit ends before the next epoch starts. Epochs without a value do not count (see `_Monitor`).
    """

    def __init__(self, monitor: str = 'valid_loss', patience: int = 3, min_delta: float = 0.0, mode: str = 'auto',
                 strict: bool = False):
        super().__init__(monitor, mode, min_delta, strict)
        self.patience = patience
        self.wait, self.stopped_epoch = 0, None

    def before_fit(self) -> None:
        super().before_fit()
        self.wait, self.stopped_epoch = 0, None

    def before_epoch(self) -> None:
        if self.stopped_epoch is not None:
            raise CancelFit()

    def after_epoch(self) -> None:
        value = self._value()
        if value is None:
            return
        if self._improved(value):
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = self.learn.epoch

    def state_dict(self) -> dict:
        return {**super().state_dict(), 'wait': self.wait, 'stopped_epoch': self.stopped_epoch}


class CycleSnapshot(Callback):
    """Save `name_cyc_<i>` at the end of each cycle (fastai 0.7 `cycle_save_name`); `cycle_ends` are in epochs and may
    be fractional (`cycle_len=0.5`): the save happens after the cycle's last training batch."""

    order = ORDER_TRACKING

    def __init__(self, name: str, cycle_ends: Sequence[float]):
        self.fname = name
        self.cycle_ends = list(cycle_ends)

    def before_fit(self) -> None:
        n_batches = max(len(self.learn.fit_stage.train), 1)
        self._end_iters = [min(round(e * n_batches), self.learn.n_iter) for e in self.cycle_ends]

    def after_batch(self) -> None:
        learn = self.learn
        if learn.training and learn.train_iter + 1 in self._end_iters:  # train_iter: this batch's index in the fit
            learn.save(f'{self.fname}_cyc_{self._end_iters.index(learn.train_iter + 1)}')
