"""The LR range test: sweep the lr per batch, record the smoothed loss, stop when it diverges, suggest lrs."""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from .base import ORDER_SCHEDULE, CancelFit, CancelValidate, Callback
from .schedule import sched_exp, sched_lin

__all__ = ['LRFinder', 'LRSuggestions', 'suggest_lrs']


class LRSuggestions(NamedTuple):
    """Learning rates read off an LR range test.

    Attributes:
        steep: where the smoothed loss falls fastest against log(lr).
        min_div10: a tenth of the lr with the lowest smoothed loss.
    """
    steep: float
    min_div10: float


def suggest_lrs(lrs: Sequence[float], losses: Sequence[float], n_skip: int = 5, n_skip_end: int = 3) -> LRSuggestions:
    """Suggestions from a sweep; the first `n_skip` and last `n_skip_end` points (noisy start, blow-up) are ignored."""
    lrs, losses = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if len(lrs) < 3:
        raise ValueError(f'the LR range test recorded {len(lrs)} points, need at least 3: use more num_it or data')
    if len(lrs) <= n_skip + n_skip_end + 2:
        n_skip, n_skip_end = 0, 0
    lrs, losses = lrs[n_skip:len(lrs) - n_skip_end], losses[n_skip:len(losses) - n_skip_end]
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    slopes = np.gradient(losses, np.log(lrs))
    return LRSuggestions(steep=float(lrs[int(np.argmin(slopes))]), min_div10=float(lrs[int(np.argmin(losses))] / 10))


class LRFinder(Callback):
    """Sets lr_g = sweep(i) * base_g / base_last for `num_it` batches, records the debiased smoothed loss, and
    cancels the fit when it exceeds `div_threshold` times the best so far (or is NaN) if `stop_div`."""

    order = ORDER_SCHEDULE

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
                 linear: bool = False, beta: float = 0.98, div_threshold: float = 4.0, ratios=None):
        if not 0 < start_lr < end_lr:
            raise ValueError(f'expected 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}')
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div
        self.linear, self.beta, self.div_threshold = linear, beta, div_threshold
        self.ratios = ratios  # per layer-group lr relative to the last group (differential lrs keep their shape)

    def before_fit(self) -> None:
        self.lrs, self.losses, self.best, self._avg = [], [], math.inf, 0.0
        n_groups = len(self.learn.layer_groups)
        self.ratios = np.ones(n_groups) if self.ratios is None else np.asarray(self.ratios, dtype=np.float64)

    def before_batch(self) -> None:
        if not self.learn.training:
            return
        pos = self.learn.train_iter / max(self.num_it - 1, 1)
        lr = (sched_lin if self.linear else sched_exp)(self.start_lr, self.end_lr, pos)
        self.learn.set_lrs(self.ratios * lr)

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.training or learn.loss is None:
            return
        loss = float(learn.loss)  # the sweep needs each value now, to decide whether to stop
        i = len(self.losses) + 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smoothed = self._avg / (1 - self.beta ** i)
        self.lrs.append(learn.opt.param_groups[-1]['lr'])
        self.losses.append(smoothed)
        self.best = min(self.best, smoothed)
        diverged = not math.isfinite(smoothed) or smoothed > self.div_threshold * self.best
        if (self.stop_div and diverged) or i >= self.num_it:
            raise CancelFit()

    def before_validate(self) -> None:
        raise CancelValidate()
