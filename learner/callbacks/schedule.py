"""Learning-rate and momentum schedules: pure functions of progress in [0, 1], and the callbacks that apply them.

Every schedule callback runs per batch at `before_batch` on every parameter group: the lr of layer group g is
`base_lrs[g] * factor(iteration)`, and the momentum (SGD `momentum` or Adam's `betas[0]`) is set for all groups.
The iteration is `learn.train_iter`, the training batches done in the whole fit, so a fit resumed from a checkpoint
continues at the same position. `describe()` gives the schedule as plain data (kind and arguments).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from .base import ORDER_SCHEDULE, Callback

__all__ = ['sched_lin', 'sched_cos', 'sched_exp', 'sched_no', 'one_cycle_factor', 'one_cycle_mom',
           'sgdr_cycle_starts', 'clr_beta', 'circular_lr', 'ConstantLR', 'OneCycle', 'SGDR', 'CLRBeta', 'CircularLR',
           'fit_schedule']


def sched_lin(start: float, end: float, pos: float) -> float:
    """Linear from `start` (pos 0) to `end` (pos 1)."""
    return start + pos * (end - start)


def sched_cos(start: float, end: float, pos: float) -> float:
    """Half a cosine from `start` (pos 0) to `end` (pos 1): flat at both ends."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def sched_exp(start: float, end: float, pos: float) -> float:
    """Geometric from `start` to `end` (both > 0): equal ratios per step, as the LR range test sweeps."""
    return start * (end / start) ** pos


def sched_no(start: float, end: float, pos: float) -> float:
    """Constant `start`."""
    return start


def one_cycle_factor(pos: float, div_factor: float, pct_start: float, final_div: float) -> float:
    """1cycle lr as a fraction of max_lr: cosine 1/div_factor -> 1 over pct_start, then 1 -> 1/final_div."""
    if pos < pct_start:
        return sched_cos(1 / div_factor, 1.0, pos / pct_start)
    return sched_cos(1.0, 1 / final_div, (pos - pct_start) / (1 - pct_start))


def one_cycle_mom(pos: float, moms: Tuple[float, float], pct_start: float) -> float:
    """1cycle momentum: cosine moms[0] -> moms[1] while the lr rises, then back to moms[0]."""
    if pos < pct_start:
        return sched_cos(moms[0], moms[1], pos / pct_start)
    return sched_cos(moms[1], moms[0], (pos - pct_start) / (1 - pct_start))


def sgdr_cycle_starts(cycle_len: float, cycle_mult: float, n_cycle: int) -> list:
    """Epochs at which each SGDR cycle starts, plus the total: cycle_len=1, cycle_mult=2, n=3 -> [0, 1, 3, 7]."""
    starts, epoch = [0.0], 0.0
    for cycle in range(n_cycle):
        epoch += cycle_len * cycle_mult ** cycle
        starts.append(epoch)
    return starts


def clr_beta(it: int, n_iter: int, div: float, pct: float, mom_max: float, mom_min: float) -> Tuple[float, float]:
    """fastai 0.7's `use_clr_beta` at iteration `it` of a cycle of `n_iter`: (lr fraction of lr, momentum).

    Linear lr/div -> lr over (1 - pct/100)/2 of the cycle, back to lr/div, then the last pct% down to lr/(100*div);
    momentum mirrors it (mom_max -> mom_min -> mom_max, then mom_max).
    """
    half = n_iter * (1 - pct / 100) / 2
    if it > 2 * half:
        frac = (it - 2 * half) / max(n_iter - 2 * half, 1e-12)
        return (1 + frac * (1 - 100) / 100) / div, mom_max
    frac = it / half if it <= half else 1 - (it - half) / half
    return (1 + frac * (div - 1)) / div, mom_max - frac * (mom_max - mom_min)


def circular_lr(it: int, n_iter: int, div: float, cut_div: float) -> float:
    """fastai 0.7's `use_clr=(div, cut_div)` at iteration `it` of a cycle of `n_iter`, as a fraction of lr: linear
    1/div -> 1 over the first n_iter // cut_div iterations, then linear back towards 1/div at the cycle's end."""
    cut = max(n_iter // cut_div, 1)
    frac = it / cut if it <= cut else 1 - (it - cut) / max(n_iter - cut, 1)
    return (1 + frac * (div - 1)) / div


class _PerBatchSchedule(Callback):
    """Applies `self._at(iteration) -> (lr factor, momentum or None)` before every training batch."""

    order = ORDER_SCHEDULE

    def __init__(self, base_lrs: Sequence[float]):
        self.base_lrs = np.asarray(base_lrs, dtype=np.float64)

    def before_fit(self) -> None:
        self.n_batches = max(len(self.learn.fit_stage.train), 1)
        self.n_iter = self.learn.n_iter  # training batches of the whole fit (a fractional last epoch included)
        self._apply(self.learn.train_iter)  # 0, or where a resumed fit left off

    def before_batch(self) -> None:
        if self.learn.training:
            self._apply(self.learn.train_iter)

    def _apply(self, it: int) -> None:
        factor, mom = self._at(it)
        self.learn.set_lrs(self.base_lrs * factor)
        if mom is not None:
            self.learn.set_mom(mom)

    def _at(self, it: int) -> Tuple[float, Optional[float]]:
        raise NotImplementedError

    def describe(self) -> dict:
        """The schedule as plain data, `{'kind': class name, 'base_lrs': [...], <arguments>}`: a checkpoint
        records it, and resuming requires the same."""
        return {'kind': self.name, 'base_lrs': [float(v) for v in self.base_lrs]}


class ConstantLR(_PerBatchSchedule):
    """The same lr (per layer group) for the whole fit; momentum is left as it is."""

    def before_batch(self) -> None:  # nothing changes per batch
        pass

    def _at(self, it: int) -> Tuple[float, Optional[float]]:
        return 1.0, None


class OneCycle(_PerBatchSchedule):
    """fastai 1+ 1cycle over the whole fit: lr cosine max/div -> max (pct_start of the iterations) -> max/final_div,
    momentum cosine moms[0] -> moms[1] -> moms[0]."""

    def __init__(self, max_lrs: Sequence[float], moms: Tuple[float, float] = (0.95, 0.85), div_factor: float = 25.,
                 pct_start: float = 0.3, final_div: Optional[float] = None):
        super().__init__(max_lrs)
        self.moms, self.div_factor, self.pct_start = moms, div_factor, pct_start
        self.final_div = div_factor * 1e4 if final_div is None else final_div

    def describe(self) -> dict:
        return {**super().describe(), 'moms': None if self.moms is None else [float(m) for m in self.moms],
                'div_factor': float(self.div_factor), 'pct_start': float(self.pct_start),
                'final_div': float(self.final_div)}

    def _at(self, it: int) -> Tuple[float, Optional[float]]:
        pos = it / self.n_iter
        mom = None if self.moms is None else one_cycle_mom(pos, self.moms, self.pct_start)
        return one_cycle_factor(pos, self.div_factor, self.pct_start, self.final_div), mom


class SGDR(_PerBatchSchedule):
    """Cosine annealing with warm restarts: cycle c lasts cycle_len * cycle_mult**c epochs, lr cosine from the base
    lrs to base * eta_min_factor within each cycle, back to the base at each restart. No warm-up."""

    def __init__(self, base_lrs: Sequence[float], cycle_len: float, cycle_mult: float = 1, n_cycle: int = 1,
                 eta_min_factor: float = 0.0):
        super().__init__(base_lrs)
        self.cycle_len, self.cycle_mult, self.n_cycle = cycle_len, cycle_mult, n_cycle
        self.eta_min_factor = eta_min_factor

    def describe(self) -> dict:
        return {**super().describe(), 'cycle_len': float(self.cycle_len), 'cycle_mult': float(self.cycle_mult),
                'n_cycle': int(self.n_cycle), 'eta_min_factor': float(self.eta_min_factor)}

    def before_fit(self) -> None:
        n_batches = max(len(self.learn.fit_stage.train), 1)
        starts = sgdr_cycle_starts(self.cycle_len, self.cycle_mult, self.n_cycle)
        self.starts_iter = [round(s * n_batches) for s in starts]  # cycle boundaries in iterations
        self.starts_iter[-1] = self.learn.n_iter  # the fit ends where the last cycle does (same rounding)
        super().before_fit()

    def _cycle_bounds(self, it: int) -> Tuple[int, int]:
        """First and one-past-last iteration of the cycle holding iteration `it`."""
        cycle = max(i for i, s in enumerate(self.starts_iter[:-1]) if s <= it) if it > 0 else 0
        return self.starts_iter[cycle], self.starts_iter[cycle + 1]

    def _at(self, it: int) -> Tuple[float, Optional[float]]:
        start, end = self._cycle_bounds(it)
        return sched_cos(1.0, self.eta_min_factor, (it - start) / max(end - start, 1)), None


class CLRBeta(SGDR):
    """fastai 0.7's `use_clr_beta=(div, pct, mom_max, mom_min)`, repeated over each cycle (see `clr_beta`)."""

    def __init__(self, base_lrs: Sequence[float], div: float, pct: float, mom_max: Optional[float] = None,
                 mom_min: Optional[float] = None, cycle_len: float = 1, cycle_mult: float = 1, n_cycle: int = 1):
        super().__init__(base_lrs, cycle_len, cycle_mult, n_cycle)
        self.div, self.pct, self.mom_max, self.mom_min = div, pct, mom_max, mom_min

    def describe(self) -> dict:
        moms = {k: None if v is None else float(v) for k, v in (('mom_max', self.mom_max), ('mom_min', self.mom_min))}
        return {**super().describe(), 'div': float(self.div), 'pct': float(self.pct), **moms}

    def _at(self, it: int) -> Tuple[float, Optional[float]]:
        start, end = self._cycle_bounds(it)
        factor, mom = clr_beta(it - start, end - start, self.div, self.pct,
                               self.mom_max if self.mom_max is not None else 0.0,
                               self.mom_min if self.mom_min is not None else 0.0)
        return factor, (mom if self.mom_max is not None else None)


class CircularLR(SGDR):
    """fastai 0.7's `use_clr=(div, cut_div)`: a triangular cycle per SGDR cycle (see `circular_lr`); momentum as is."""

    def __init__(self, base_lrs: Sequence[float], div: float, cut_div: float, cycle_len: float = 1,
                 cycle_mult: float = 1, n_cycle: int = 1):
        super().__init__(base_lrs, cycle_len, cycle_mult, n_cycle)
        self.div, self.cut_div = div, cut_div

    def describe(self) -> dict:
        return {**super().describe(), 'div': float(self.div), 'cut_div': float(self.cut_div)}

    def _at(self, it: int) -> Tuple[float, Optional[float]]:
        start, end = self._cycle_bounds(it)
        return circular_lr(it - start, end - start, self.div, self.cut_div), None


def fit_schedule(base_lrs: Sequence[float], n_cycle: int, cycle_len: Optional[float] = None, cycle_mult: float = 1,
                 use_clr: Optional[Tuple[float, float]] = None,
                 use_clr_beta: Optional[Tuple[float, ...]] = None) -> _PerBatchSchedule:
    """The schedule of fastai 0.7's `fit(lrs, n_cycle, cycle_len=..., use_clr=..., use_clr_beta=...)`: constant
    without `cycle_len`; SGDR with it; per cycle a triangle (`use_clr`) or 0.7's 1cycle (`use_clr_beta`)."""
    if use_clr is not None and use_clr_beta is not None:
        raise ValueError('pass use_clr or use_clr_beta, not both')
    n_cycle_len = 1 if cycle_len is None else cycle_len
    if use_clr_beta is not None:
        div, pct, *moms = use_clr_beta
        return CLRBeta(base_lrs, div, pct, *moms, cycle_len=n_cycle_len, cycle_mult=cycle_mult, n_cycle=n_cycle)
    if use_clr is not None:
        div, cut_div = use_clr
        return CircularLR(base_lrs, div, cut_div, cycle_len=n_cycle_len, cycle_mult=cycle_mult, n_cycle=n_cycle)
    if cycle_len is not None:
        return SGDR(base_lrs, cycle_len, cycle_mult, n_cycle)
    return ConstantLR(base_lrs)
