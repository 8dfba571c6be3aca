"""Training phases, fastai 0.7's `sgdr.py` API: a fit described as a list of `TrainingPhase`s, each with its own
length, optimizer, lr and momentum (constant or decaying by a `DecayType`), weight decay and data.

`learn.fit_opt_sched(phases, ...)` runs them as one fit, on the one schedule machinery: the lr and momentum of each
batch are pure functions of the position in the phase (`sched_lin`, `sched_cos`, `sched_exp`, `sched_poly` of
`schedule.py`), applied before every batch by one `_PerBatchSchedule` callback, `PhaseSchedule`.

How a fit is cut into epochs (as 0.7's `fit` cut it): phase k lasts `epochs * len(its data's train loader)` batches
(fractions allowed; boundaries rounded up); consecutive phases on the same data share epochs, so a phase may
start mid-epoch; when the next phase reads other data (`data_list`), the current epoch ends early, is validated,
and the next epoch reads the new data. `plan_phases` computes this plan up front, so the fit has a known number of
epochs.

What the schedule changes it puts back after the fit: the learner's optimizer (a phase may switch to another
optimizer class; the fit puts its hyper-parameters back) and the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..optim import per_group_values, set_beta, set_group_values
from .base import Callback, CancelFit
from .schedule import _PerBatchSchedule, sched_cos, sched_exp, sched_lin, sched_no, sched_poly

__all__ = ['DecayType', 'TrainingPhase', 'PhasePlan', 'plan_phases', 'PhaseSchedule', 'PhasesMixin']


class DecayType(IntEnum):
    """How a value goes from its start to its end over a phase (fastai 0.7's numbering)."""
    NO = 1           # constant: the start value
    LINEAR = 2       # sched_lin
    COSINE = 3       # sched_cos (half a cosine)
    EXPONENTIAL = 4  # sched_exp (equal ratios per batch; needs a start and an end > 0)
    POLYNOMIAL = 5   # sched_poly with a power: (DecayType.POLYNOMIAL, 2)


_DECAY_FUNCTIONS = {DecayType.NO: sched_no, DecayType.LINEAR: sched_lin, DecayType.COSINE: sched_cos,
                    DecayType.EXPONENTIAL: sched_exp}


def _decay_function(decay: Any, what: str) -> Tuple[DecayType, Callable]:
    """(DecayType, f(start, end, pos)) from a DecayType or a (DecayType.POLYNOMIAL, power) pair."""
    decay, power = decay if isinstance(decay, tuple) else (decay, None)
    try:
        decay = DecayType(decay)
    except ValueError:
        raise ValueError(f'{what} must be a DecayType (NO, LINEAR, COSINE, EXPONENTIAL, POLYNOMIAL) or '
                         f'(DecayType.POLYNOMIAL, power), got {decay!r}') from None
    if decay == DecayType.POLYNOMIAL:
        if power is None:
            raise ValueError(f'{what}=DecayType.POLYNOMIAL needs its power: ({what}=(DecayType.POLYNOMIAL, 2))')
        return decay, partial(sched_poly, power=float(power))
    return decay, _DECAY_FUNCTIONS[decay]


def _start_end(value: Any) -> Tuple[Any, Any]:
    """A (start, end) tuple as it is, anything else as (value, None)."""
    return value if isinstance(value, tuple) else (value, None)


class TrainingPhase:
    """One part of a fit: how long, which optimizer, and how lr, momentum and weight decay behave.

    Args:
        epochs: length in epochs of this phase's data (a float: 0.25 is a quarter of an epoch).
        opt_fn: optimizer class or factory (`optim.SGD`, `optim.Adam`, `partial(optim.Adam, eps=1e-4)`).
        lr: a learning rate, or `(start, end)`; each a float or one value per layer group (an array, a list or a
            slice), e.g. `(lrs / 10, lrs)`.
        lr_decay: how lr goes from start to end: a `DecayType`, or `(DecayType.POLYNOMIAL, power)`. Without an end,
            the end is 0 (an error for EXPONENTIAL, which needs both ends > 0).
        momentum: momentum (Adam: beta1), or `(start, end)`; None leaves it as it is.
        momentum_decay: as `lr_decay`, for momentum.
        beta: Adam's beta2 or RMSprop's alpha for this phase (None: the optimizer's own).
        wds: weight decay, a float or one per layer group (None: the learner's own, decoupled).
        wd_loss: True (fastai 0.7's default): `wds` is L2 in the loss (the optimizer's own `weight_decay`);
            False: decoupled (`w -= lr * wd * w` after each step, as the learner's `wd`). Either way biases and
            normalization layers do not decay (the learner's policy).

    Example:
        >>> phases = [TrainingPhase(epochs=1, opt_fn=optim.SGD, lr=(1e-3, 1e-2), lr_decay=DecayType.LINEAR,
        ...                         momentum=(0.95, 0.85), momentum_decay=DecayType.LINEAR),
        ...           TrainingPhase(epochs=2, opt_fn=optim.Adam, lr=1e-2, lr_decay=DecayType.COSINE)]
        >>> learn.fit_opt_sched(phases)
    """

    def __init__(self, epochs: float = 1, opt_fn: Callable = torch.optim.SGD, lr: Any = 1e-2,
                 lr_decay: Any = DecayType.NO, momentum: Any = 0.9, momentum_decay: Any = DecayType.NO,
                 beta: Optional[float] = None, wds: Any = None, wd_loss: bool = True):
        if not (isinstance(epochs, (int, float)) and epochs > 0):
            raise ValueError(f'epochs must be a number > 0 (fractions of an epoch allowed), got {epochs!r}')
        if not callable(opt_fn):
            raise TypeError(f'opt_fn must be an optimizer class or factory such as optim.SGD, got {opt_fn!r}')
        self.epochs, self.opt_fn, self.lr, self.momentum = epochs, opt_fn, lr, momentum
        self.beta, self.wds, self.wd_loss = beta, wds, bool(wd_loss)
        self.lr_decay, self._lr_fn = _decay_function(lr_decay, 'lr_decay')
        self.mom_decay, self._mom_fn = _decay_function(momentum_decay, 'momentum_decay')
        self.extra_lr = lr_decay[1] if isinstance(lr_decay, tuple) else None          # 0.7's attribute names
        self.extra_mom = momentum_decay[1] if isinstance(momentum_decay, tuple) else None
        _check_ends(lr, self.lr_decay, 'lr')
        if momentum is not None:
            _check_ends(momentum, self.mom_decay, 'momentum')

    def lrs_at(self, pos: float, n_groups: int) -> np.ndarray:
        """The lr of each layer group at `pos` in [0, 1] of the phase."""
        start, end = _start_end(self.lr)
        start = per_group_values(start, n_groups)
        end = np.zeros(n_groups) if end is None else per_group_values(end, n_groups)
        return np.asarray(self._lr_fn(start, end, pos), dtype=np.float64)

    def momentum_at(self, pos: float) -> Optional[float]:
        """The momentum (beta1) at `pos` in [0, 1] of the phase; None when the phase leaves it alone."""
        if self.momentum is None:
            return None
        start, end = _start_end(self.momentum)
        return float(self._mom_fn(start, 0.0 if end is None else end, pos))

    def label(self) -> str:
        """The optimizer's name and the phase's weight decay and beta, as the phase plot writes them."""
        fn = self.opt_fn.func if isinstance(self.opt_fn, partial) else self.opt_fn
        text = getattr(fn, '__name__', type(fn).__name__)
        if self.wds is not None:
            text += f'\nwds={self.wds}'
        if self.beta is not None:
            text += f'\nbeta={self.beta}'
        return text

    def __repr__(self) -> str:
        return (f'TrainingPhase(epochs={self.epochs}, opt_fn={self.label().splitlines()[0]}, lr={self.lr}, '
                f'lr_decay={self.lr_decay.name}, momentum={self.momentum}, momentum_decay={self.mom_decay.name})')


def _positive(value: Any) -> bool:
    """Whether every value of a float, list, array or slice of learning rates (or momentums) is > 0."""
    values = [value.start, value.stop] if isinstance(value, slice) else value
    return bool(np.all(np.asarray([v for v in np.ravel(values) if v is not None], dtype=np.float64) > 0))


def _check_ends(value: Any, decay: DecayType, what: str) -> None:
    """EXPONENTIAL needs an end, and both ends > 0 (a geometric sweep cannot reach or start from 0)."""
    start, end = _start_end(value)
    if decay == DecayType.EXPONENTIAL and (end is None or not _positive(start) or not _positive(end)):
        raise ValueError(f'{what}_decay=DecayType.EXPONENTIAL needs {what}=(start, end) with both > 0, '
                         f'got {what}={value!r}')


@dataclass
class PhasePlan:
    """Where each phase runs and how the fit is cut into epochs.

    Attributes:
        starts, ends: the first iteration of each phase and one past its last (training batches in the fit).
        spans: the iterations each phase's decay spans (its whole `epochs`, also when `cut` stops it earlier).
        epochs: one (phase whose data the epoch reads, training batches in the epoch) per epoch of the fit.
    """
    starts: List[int]
    ends: List[int]
    spans: List[float]
    epochs: List[Tuple[int, int]]

    def phase_at(self, it: int) -> int:
        """The phase running at iteration `it` (the last one past the end)."""
        return next((k for k, end in enumerate(self.ends) if it < end), len(self.ends) - 1)


def plan_phases(run_epochs: Sequence[float], sched_epochs: Sequence[float], batches: Sequence[int],
                same_data: Sequence[bool]) -> PhasePlan:
    """The plan of a phased fit (see the module docstring).

    Args:
        run_epochs: epochs each phase runs (its `epochs`, or `cut`).
        sched_epochs: epochs each phase's decay spans (its `epochs`).
        batches: training batches per epoch of each phase's data.
        same_data: for each phase, whether it reads the same data as the phase before (the first: True).
    """
    starts, ends, spans, epochs = [], [], [], []
    done, cumulative, in_epoch, epoch_phase = 0, 0.0, 0, 0
    for k, (run, sched, n_batches) in enumerate(zip(run_epochs, sched_epochs, batches)):
        if n_batches < 1:
            raise ValueError(f'phase {k} has no training batches: its data has an empty training set')
        cumulative += run * n_batches
        end = max(done, math.ceil(cumulative - 1e-9))   # 0.7: a phase ends at the first batch past its share
        if not same_data[k] and in_epoch:                # new data: the epoch in progress ends here
            epochs.append((epoch_phase, in_epoch))
            in_epoch = 0
        if in_epoch == 0:
            epoch_phase = k
        starts.append(done), ends.append(end), spans.append(sched * n_batches)
        remaining = end - done
        while remaining > 0:
            take = min(remaining, n_batches - in_epoch)
            in_epoch, remaining = in_epoch + take, remaining - take
            if in_epoch == n_batches:
                epochs.append((epoch_phase, in_epoch))
                in_epoch, epoch_phase = 0, k
        done = end
    if in_epoch:
        epochs.append((epoch_phase, in_epoch))
    return PhasePlan(starts, ends, spans, epochs)


class _FirstBatches:
    """The first `n` batches of a loader (an epoch that ends where a phase hands over to other data)."""

    def __init__(self, loader: Any, n: int):
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return min(self.n, len(self.loader))

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.n:
                return
            yield batch


class PhaseSchedule(_PerBatchSchedule):
    """Runs `phases` as one fit: lr per layer group and momentum before every batch, and at each phase's first
    batch its optimizer, beta and weight decay; switches data between epochs and ends epochs where the plan says.

    Args:
        phases: the TrainingPhases.
        data_list: the data each phase reads (one per phase).
        cut: epochs each phase really runs (default their `epochs`); the decays still span their `epochs`.
        stop_div: cancel the fit when the smoothed loss exceeds 4 times its best (after 10 batches) or is NaN.
        cycle_save_name: save `<name>_cyc_<k>` when phase k ends (`learn.load_cycle(name, k)`).
    """

    def __init__(self, phases: Sequence[TrainingPhase], data_list: Sequence[Any], cut: Optional[Sequence[float]] = None,
                 stop_div: bool = False, cycle_save_name: Optional[str] = None):
        super().__init__([1.0])
        self.phases, self.data_list = list(phases), list(data_list)
        self.cut = [p.epochs for p in self.phases] if cut is None else list(cut)
        self.stop_div, self.cycle_save_name = stop_div, cycle_save_name

    def make_plan(self, learn: Any) -> PhasePlan:
        """The plan for this learner (batch counts from each data's training loader)."""
        stage = learn.fit_stage
        batches = [len(stage.train) if stage is not None and d is learn.data else len(d.trn_dl)
                   for d in self.data_list]
        same = [k == 0 or d is self.data_list[k - 1] for k, d in enumerate(self.data_list)]
        return plan_phases(self.cut, [p.epochs for p in self.phases], batches, same)

    def describe(self) -> dict:
        return {'kind': self.name, 'phases': [repr(p) for p in self.phases], 'cut': [float(c) for c in self.cut]}

    def phase_marks(self) -> Optional[dict]:
        """For the recorder's plots: each phase's (start, end) iteration and label, and whether the last phase's lr
        was linear (0.7's `sched.plot()` then uses a linear axis); None when the fit ended before it was planned."""
        if getattr(self, 'plan', None) is None:
            return None
        return {'bounds': list(zip(self.plan.starts, self.plan.ends)), 'labels': [p.label() for p in self.phases],
                'linear': self.phases[-1].lr_decay == DecayType.LINEAR}

    # ------------------------------------------------------------------------------------------- events
    def before_fit(self) -> None:
        learn = self.learn
        self.plan = self.make_plan(learn)
        if len(self.plan.epochs) != learn.n_epochs:
            raise RuntimeError(f'the phases need {len(self.plan.epochs)} epochs but the fit runs {learn.n_epochs}: '
                               'start phased fits with learn.fit_opt_sched')
        learn.n_iter = self.plan.ends[-1]  # the fit's length is the plan's (epochs of different data, part-epochs)
        self.base_lrs = np.ones(len(learn.layer_groups))  # _at gives the lrs themselves
        self.own_opt = learn.opt  # its hyper-parameters the fit puts back itself (`Learner._run`)
        self.current, self.best, self.avg_loss, self.n_losses = None, math.inf, 0.0, 0
        self._apply(learn.train_iter)

    def before_epoch(self) -> None:
        data = self.data_list[self.plan.epochs[self.learn.epoch][0]]
        if data is not self.learn.data:
            self.learn.set_data(data)

    def before_train(self) -> None:
        n_batches = self.plan.epochs[self.learn.epoch][1]
        if n_batches < len(self.learn.fit_stage.train):
            self.learn.dl = _FirstBatches(self.learn.dl, n_batches)

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.training or learn.loss is None:
            return
        it = learn.train_iter
        k = self.plan.phase_at(it)
        if self.cycle_save_name and it + 1 == self.plan.ends[k]:
            learn.save(f'{self.cycle_save_name}_cyc_{k}')
        if self.stop_div:
            self._check_divergence(float(learn.loss))

    def after_fit(self) -> None:
        self.learn.opt = self.own_opt  # a phase may have switched to another optimizer class

    # ------------------------------------------------------------------------------------------- helpers
    def _check_divergence(self, loss: float) -> None:
        """fastai 0.7's stop_div: the debiased moving average (0.98) of the loss against 4x its best."""
        self.n_losses += 1
        self.avg_loss = 0.98 * self.avg_loss + 0.02 * loss
        smoothed = self.avg_loss / (1 - 0.98 ** self.n_losses)
        if math.isnan(smoothed) or smoothed > 4 * self.best:
            raise CancelFit()
        if self.n_losses > 10:
            self.best = min(self.best, smoothed)

    def _apply(self, it: int) -> None:
        k = self.plan.phase_at(it)
        if k != self.current:
            self._begin_phase(k)
        super()._apply(it)

    def _at(self, it: int) -> Tuple[np.ndarray, Optional[float]]:
        k = self.plan.phase_at(it)
        pos = min(max((it - self.plan.starts[k]) / max(self.plan.spans[k], 1e-12), 0.0), 1.0)
        phase = self.phases[k]
        return phase.lrs_at(pos, len(self.base_lrs)), phase.momentum_at(pos)

    def _begin_phase(self, k: int) -> None:
        """Phase k's optimizer (a new one only when its class differs, as 0.7 did), beta and weight decay."""
        learn, phase = self.learn, self.phases[k]
        self.current = k
        candidate = learn.new_optimizer(phase.opt_fn, phase.lrs_at(0.0, len(learn.layer_groups)))
        if type(candidate) is not type(learn.opt):
            learn.opt = candidate
        if phase.beta is not None:
            set_beta(learn.opt, phase.beta)
        wds = learn.wds if phase.wds is None else per_group_values(phase.wds, len(learn.layer_groups), 'wds')
        l2 = phase.wds is not None and phase.wd_loss
        set_group_values(learn.opt, 'wd', np.zeros_like(wds) if l2 else wds)
        for group in learn.opt.param_groups:  # the optimizer's own L2 term, for the groups that decay
            group['weight_decay'] = float(wds[group['layer_group']]) if l2 and group['apply_wd'] else 0.0


class PhasesMixin:
    """The Learner's `fit_opt_sched` (the feature itself is this module). Uses the Learner's `data`, `set_data`,
    `_fit`, `distributed` and the optimizer methods."""

    def fit_opt_sched(self, phases: Sequence[TrainingPhase], cycle_save_name: Optional[str] = None,
                      best_save_name: Optional[str] = None, stop_div: bool = False,
                      data_list: Optional[Sequence[Any]] = None, callbacks: Optional[Sequence[Callback]] = None,
                      cut: Optional[Sequence[float]] = None, use_swa: bool = False, swa_start: int = 1,
                      swa_eval_freq: int = 5) -> List[float]:
        """Train through `phases` as one fit (fastai 0.7's training-phase API; see the module docstring).

        Args:
            phases: a list of TrainingPhase.
            cycle_save_name: save `<name>_cyc_<k>` at the end of phase k.
            best_save_name: save the weights with the lowest valid loss as `<name>`.
            stop_div: stop when the smoothed loss exceeds 4x its best (an LR range test made of phases).
            data_list: the data of each phase, one per phase (repeat a data object to keep it), e.g. a smaller size
                first; the learner's data is put back afterwards.
            callbacks: extra callbacks for this fit.
            cut: epochs each phase really runs (the decays still span their `epochs`): stop early, keep the shape.
            use_swa, swa_start, swa_eval_freq: stochastic weight averaging (see `callbacks.swa.SWA`).

        Returns:
            `[valid_loss, *metrics]` of the last epoch; `learn.sched.plot_lr()` draws the phases.

        Example:
            >>> learn.fit_opt_sched([TrainingPhase(1, optim.Adam, 1e-2, DecayType.COSINE)] * 2,
            ...                     data_list=[get_data(28, 64), get_data(32, 64)])
        """
        from .swa import swa_callbacks
        from .tracking import SaveBest
        phases = list(phases)
        if not phases or not all(isinstance(p, TrainingPhase) for p in phases):
            raise TypeError(f'phases must be a non-empty list of TrainingPhase, got {phases!r}')
        for name, values in (('data_list', data_list), ('cut', cut)):
            if values is not None and len(values) != len(phases):
                raise ValueError(f'{name} has {len(values)} items for {len(phases)} phases: give one per phase')
        if data_list is not None and self.distributed is not None:
            raise ValueError('data_list is not supported under torchrun: run the phases of each size with its own '
                             'fit_opt_sched')
        schedule = PhaseSchedule(phases, list(data_list) if data_list is not None else [self.data] * len(phases),
                                 cut, stop_div, cycle_save_name)
        plan = schedule.make_plan(self)
        extra: List[Callback] = [schedule, *swa_callbacks(self, use_swa, swa_start, swa_eval_freq)]
        if best_save_name:
            extra.append(SaveBest(best_save_name, monitor='valid_loss'))
        own_data = self.data
        first = schedule.data_list[plan.epochs[0][0]]
        try:
            if first is not own_data:
                self.set_data(first)
            return self._fit(len(plan.epochs), extra + list(callbacks or []))
        finally:
            if self.data is not own_data:
                self.set_data(own_data)
