"""fastai 0.7's weight decay schedule, `fit(..., wds=, use_wd_sched=True, norm_wds=, wds_sched_mult=)`: decoupled
weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", arXiv:1711.05101: SGDW, AdamW) whose
strength is set before every batch.

The learner always decays decoupled (`w -= lr * wd * w` after each step taken, skipping biases and normalization
layers); this schedule sets, per layer group and batch, `wd = wds * mult * norm`:
- `norm_wds`: `norm = 1 / sqrt(batches per epoch * epochs of the current SGDR cycle)` (the paper's normalized weight
  decay: the same total decay whatever the cycle's length);
- `wds_sched_mult(schedule)`: a multiplier (float or one per layer group), called with this callback, which shows
  0.7's attributes: `layer_opt.lrs` (the current lrs), `init_lrs` (the fit's), `init_wds`, `iteration`, `epoch`,
  `batch_per_epoch`; the AdamW/SGDW notebook's `lambda x: np.array(x.layer_opt.lrs) / x.init_lrs` follows the lr.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from ..optim import group_lrs, set_group_values
from .base import ORDER_SCHEDULE, Callback
from .schedule import sgdr_cycle_starts

__all__ = ['LayerOptimizerView', 'WeightDecaySchedule', 'weight_decay_callbacks']


class LayerOptimizerView:
    """fastai 0.7's `LayerOptimizer` as a read-only view of a learner's optimizer: `lrs`, `wds`, `lr`, `mom`, `opt`,
    `layer_groups` (what 0.7's `wds_sched_mult` functions read)."""

    def __init__(self, learn: Any):
        self.learn = learn

    @property
    def opt(self) -> Any:
        return self.learn.opt

    @property
    def layer_groups(self) -> list:
        return self.learn.layer_groups

    @property
    def lrs(self) -> np.ndarray:
        """The current lr of each layer group."""
        return group_lrs(self.learn.opt, len(self.learn.layer_groups))

    @property
    def lr(self) -> float:
        """The lr of the last layer group (0.7's `layer_opt.lr`)."""
        return float(self.lrs[-1])

    @property
    def wds(self) -> np.ndarray:
        """The decoupled weight decay of each layer group in force now."""
        wds = np.zeros(len(self.learn.layer_groups))
        for g in self.learn.opt.param_groups:
            wds[g['layer_group']] = g['wd']
        return wds

    @property
    def mom(self) -> Optional[float]:
        return self.learn.get_mom()


class WeightDecaySchedule(Callback):
    """Sets the decoupled weight decay of every layer group before each training batch (see the module docstring).

    Args:
        init_lrs: the fit's lrs, one per layer group (`init_lrs` of 0.7's multiplier functions).
        cycle_len, cycle_mult, n_cycle: the fit's SGDR cycles (epochs of the cycle each epoch belongs to).
        norm_wds: divide by sqrt(batches per epoch * epochs of the current cycle).
        wds_sched_mult: `f(schedule) -> float or one per layer group`, multiplied in.
    """

    order = ORDER_SCHEDULE + 1  # after the lr schedule has set this batch's lrs (a multiplier may read them)

    def __init__(self, init_lrs: Sequence[float], cycle_len: float = 1, cycle_mult: float = 1, n_cycle: int = 1,
                 norm_wds: bool = False, wds_sched_mult: Optional[Callable[['WeightDecaySchedule'], Any]] = None):
        self.init_lrs = np.asarray(init_lrs, dtype=np.float64)
        self.cycle_starts = sgdr_cycle_starts(cycle_len, cycle_mult, n_cycle)
        self.norm_wds, self.wds_sched_mult = norm_wds, wds_sched_mult

    @property
    def layer_opt(self) -> LayerOptimizerView:
        return LayerOptimizerView(self.learn)

    def cycle_epochs(self, epoch: int) -> float:
        """Length in epochs of the SGDR cycle that epoch `epoch` (0-based) belongs to."""
        starts = self.cycle_starts
        cycle = max((c for c in range(len(starts) - 1) if starts[c] <= epoch), default=0)
        return starts[cycle + 1] - starts[cycle]

    def before_fit(self) -> None:
        learn = self.learn
        self.init_wds = np.asarray(learn.wds, dtype=np.float64).copy()
        self.batch_per_epoch = max(len(learn.fit_stage.train), 1)
        self.iteration, self.epoch = learn.train_iter, learn.start_epoch
        if not self.init_wds.any():
            warnings.warn('use_wd_sched=True but the weight decay is 0: pass wds=... (e.g. wds=0.025)', stacklevel=2)

    def before_batch(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        self.iteration, self.epoch = learn.train_iter, learn.epoch
        wds = self.init_wds
        if self.norm_wds:
            wds = wds / math.sqrt(self.batch_per_epoch * self.cycle_epochs(learn.epoch))
        if self.wds_sched_mult is not None:
            wds = wds * np.broadcast_to(np.asarray(self.wds_sched_mult(self), dtype=np.float64), wds.shape)
        set_group_values(learn.opt, 'wd', wds)

    def after_fit(self) -> None:
        set_group_values(self.learn.opt, 'wd', self.learn.wds)  # the learner's own weight decay again


def weight_decay_callbacks(use_wd_sched: bool, init_lrs: Sequence[float], cycle_len: Optional[float],
                           cycle_mult: float, n_cycle: int, norm_wds: bool,
                           wds_sched_mult: Optional[Callable]) -> List[Callback]:
    """`[WeightDecaySchedule(...)]` for `fit(..., use_wd_sched=True)`, else `[]` (norm_wds and wds_sched_mult
    without use_wd_sched are an error: they would do nothing)."""
    if not use_wd_sched:
        if norm_wds or wds_sched_mult is not None:
            raise ValueError('norm_wds and wds_sched_mult shape the weight decay schedule: pass use_wd_sched=True too')
        return []
    return [WeightDecaySchedule(init_lrs, 1 if cycle_len is None else cycle_len, cycle_mult, n_cycle, norm_wds,
                                wds_sched_mult)]
