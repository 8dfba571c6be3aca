"""The LR range test, all of it: the `LRFinder` callback (sweep the lr per batch, record the smoothed loss, stop when
it diverges), `lr_find` (run the sweep as a short fit and put the learner back exactly as it was) and the
suggestions read off the curve."""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from ..core import rng_state, set_rng_state
from ..data.loaders import loader_generators, one_pass_copy
from ..optim import group_lrs
from .base import ORDER_SCHEDULE, CancelFit, CancelValidate, Callback
from .schedule import sched_exp, sched_lin

__all__ = ['LRFinder', 'LRSuggestions', 'suggest_lrs', 'lr_find', 'LRFindMixin']


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


def _snapshot(learn: Any, loader: Any) -> dict:
    """Everything a training run changes that lr_find must put back (`loader`: the sweep's, whose own random
    generators, if any, it advances)."""
    generators = loader_generators(loader)
    return {'model': copy.deepcopy(learn.model.state_dict()), 'opt': copy.deepcopy(learn.opt.state_dict()),
            'wds': learn.wds.copy(), 'modes': [m.training for m in learn.model.modules()],
            'rng': rng_state(), 'scaler': learn.scaler.state_dict(),
            'loader_rng': [(g, g.get_state()) for g in generators]}


def _restore(learn: Any, saved: dict) -> None:
    learn.model.load_state_dict(saved['model'])
    learn.opt.load_state_dict(saved['opt'])
    learn.set_wds(saved['wds'])
    for module, mode in zip(learn.model.modules(), saved['modes']):
        module.training = mode
    set_rng_state(saved['rng'])
    for generator, state in saved['loader_rng']:
        generator.set_state(state)
    if saved['scaler']:
        learn.scaler.load_state_dict(saved['scaler'])


def _sweep_start(learn: Any, start_lr: Any) -> tuple:
    """(start lr of the last layer group, per-group ratios to it). An array `start_lr` (fastai 0.7: one start per
    layer group) sets the ratios; a float keeps the ratios of the current differential lrs."""
    n_groups = len(learn.layer_groups)
    starts = np.atleast_1d(np.asarray(start_lr, dtype=np.float64))
    if starts.size > 1:
        if starts.size != n_groups or (starts <= 0).any():
            raise ValueError(f'start_lr has {starts.size} values; give one float, or one positive value per layer '
                             f'group ({n_groups})')
        return float(starts[-1]), starts / starts[-1]
    current = group_lrs(learn.opt, n_groups)
    ratios = current / current[-1] if current[-1] > 0 and (current > 0).all() else np.ones(n_groups)
    return float(starts[0]), ratios


def lr_find(learn: Any, start_lr: Any = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
            wds: Any = None, linear: bool = False, callbacks: Optional[Sequence[Callback]] = None) -> LRSuggestions:
    """Run the LR range test on `learn` (see `Learner.lr_find`); the learner ends exactly as it started.

    The sweep runs with the learner's recorder and the finder only (plus `callbacks`), without progress bars or
    the NaN stop (the finder itself stops at divergence); the recorder then holds the sweep, so
    `learn.sched.plot_lr()` draws it, as in fastai 0.7.
    """
    if learn.opt is None:
        learn.create_opt()
    start, ratios = _sweep_start(learn, start_lr)
    finder = LRFinder(start, end_lr, num_it, stop_div, linear, ratios=ratios)
    stage = learn.stage()
    # the sweep reads a copy of the training loader whose workers end with it: persistent workers keep their own
    # random state, which the snapshot cannot put back, so the next fit must not meet workers the sweep advanced
    stage = dataclasses.replace(stage, train=one_pass_copy(stage.train))
    n_batches = max(len(stage.train), 1)
    saved = _snapshot(learn, stage.train)
    on_nan, learn.on_nan = learn.on_nan, 'ignore'
    try:
        if wds is not None:
            learn.set_wds(wds)
        learn._run(math.ceil(num_it / n_batches), [learn.recorder, finder, *(callbacks or [])], stage)
    finally:
        learn.on_nan = on_nan
        _restore(learn, saved)
    recorder = learn.recorder
    recorder.lr_find_lrs, recorder.lr_find_losses = finder.lrs, finder.losses
    recorder.lr_find_suggestions = suggest_lrs(finder.lrs, finder.losses)
    return recorder.lr_find_suggestions


class LRFindMixin:
    """The Learner's `lr_find()` (the feature itself is this module)."""

    def lr_find(self, start_lr: Any = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
                wds: Any = None, linear: bool = False, callbacks: Optional[Sequence[Callback]] = None) -> LRSuggestions:
        """LR range test: the lr swept from start_lr to end_lr (exponentially, or linearly) over `num_it` batches.

        Afterwards the weights, BN buffers, optimizer state, train/eval modes and random-number state are exactly as
        before. `start_lr` may be an array with one start per layer group (fastai 0.7: `learn.lr_find(lrs / 1000)`).
        Results: `learn.sched.plot()` (loss against lr), `learn.sched.plot_lr()` (the sweep).

        Returns:
            LRSuggestions(steep, min_div10), also marked on the plot.
        """
        return lr_find(self, start_lr, end_lr, num_it, stop_div, wds, linear, callbacks)
