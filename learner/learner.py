"""Learner: a model, its data and an optimizer; the fit entry points (fastai 0.7's `fit` with SGDR, 1cycle) and the
training loop, top to bottom.

The loop is `_run` -> `_do_epoch` -> `_train_epoch` / `_train_batch` / `_validate`. It asks `stage()` for what to run
(the model and its loaders, or the head and cached features while precompute is on) and owns the order-sensitive
numerics: autocast, GradScaler, unscale before clipping, weight decay only for steps really taken, metrics on the
whole validation set before any monitor. Callbacks own policy (schedules, recording, progress, saving, stopping).
The other methods come from one mixin per job (see the package docstring).
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from . import distributed
from .callbacks.base import CallbackRunner, CancelBatch, CancelFit, CancelValidate, Callback
from .callbacks.checkpoint import checkpoint_callbacks
from .callbacks.lr_finder import LRFindMixin
from .callbacks.phases import PhasesMixin
from .callbacks.progress import ProgressCallback, ProgressMixin
from .callbacks.recorder import Recorder
from .callbacks.schedule import OneCycle, fit_schedule, sgdr_cycle_starts
from .callbacks.swa import swa_callbacks
from .callbacks.tracking import CycleSnapshot, SaveBest
from .callbacks.weight_decay import weight_decay_callbacks
from .core import Stage, default_device, output_folder, stop_at_batch_end
from .freeze import FreezeMixin, apply_train_mode, mark_trainable
from .inference import average_clips, clips_in, default_loss, task_kind, to_predictions
from .metrics import metric_names
from .optim import OptimizerMixin, decay_weights, hyper_state, per_group_values, set_hyper_state
from .persistence import PersistenceMixin
from .prediction import PredictionMixin
from .summary import SummaryMixin

__all__ = ['Learner', 'NonFiniteLossError', 'fit_length']

_PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def fit_length(n_epochs: float, n_batches: int) -> Tuple[int, int]:
    """(training batches, epochs begun) of a fit of `n_epochs` (possibly fractional) epochs of `n_batches` each.

    Raises:
        ValueError: a negative length, or a fractional one so short it holds no batch at all.
    """
    if not (n_epochs >= 0 and math.isfinite(n_epochs)):
        raise ValueError(f'the fit would last {n_epochs} epochs: give a finite number of epochs >= 0')
    n_batches = max(int(n_batches), 1)
    n_iter = int(round(n_epochs * n_batches))
    if n_epochs > 0 and n_iter == 0:
        raise ValueError(f'{n_epochs:g} epochs of {n_batches} batches is not a single batch: lengthen the fit '
                         f'(e.g. cycle_len >= {1 / n_batches:.2g}) or use smaller batches')
    return n_iter, -(-n_iter // n_batches)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (the message names the epoch and the batch)."""


class Learner(OptimizerMixin, FreezeMixin, LRFindMixin, PhasesMixin, PredictionMixin, PersistenceMixin, SummaryMixin,
              ProgressMixin):
    """Trains `model` on `data` with per-layer-group learning rates.

    Args:
        data: a DataBunch, or anything with `trn_dl`, `val_dl`, `test_dl`, `c`, `is_multi`, `path`, `classes` and
            optionally `device`/`to(device)`.
        model: the network, moved to `data.device` (or the default device); or fastai 0.7's `BasicModel(model)` /
            `SingleModel(model)`, whose `get_layer_groups()` gives the layer groups.
        opt_fn: a torch optimizer class or a factory `f(param_groups, lr=...)`; default SGD with momentum 0.9
            (fastai 0.7). Its own `weight_decay` is set to 0: weight decay is applied decoupled by the learner.
        loss_func: `f(outputs, targets)`; default cross-entropy (multi-label: BCE with logits; regression: MSE).
            `crit=` and `learn.crit` are fastai 0.7's names for it.
        metrics: functions `f(preds, targs)` computed on the whole validation set each epoch, where `preds` are
            what `predict()` returns: log-probabilities, or probabilities for multi-label data (fastai 0.7).
        wd: decoupled weight decay (per step `w -= lr * wd * w`), skipping biases and BN unless `decay_bn_bias`.
        wds: per layer group weight decays (float, list or slice); overrides `wd`.
        clip: max gradient norm (after unscaling), or None.
        mixed_precision: 'fp32', 'bf16' (autocast) or 'fp16' (autocast + GradScaler); on CPU always fp32.
            (`precision=` is its old name, kept with a DeprecationWarning: `precision` is also a metric.)
        cbs: callbacks used in every fit.
        layer_groups: list of modules; default the model's children (or `[model]`).
        path: root folder for `models/`; default `data.path`.
        model_dir: checkpoint folder under `path`.
        progress: show fastprogress bars and one line per epoch.
        train_bn: train the BatchNorm layers of frozen layer groups (fastai 1+); default False: they stay in eval
            mode with fixed statistics (fastai 0.7, Keras). See `freeze.py`.
        on_nan: 'raise' (NonFiniteLossError), 'stop' (warn and end the fit) or 'ignore' for a NaN/inf loss.
        sync_bn: under torchrun on GPUs, BatchNorm layers normalise over the global batch (SyncBatchNorm).

    Under torchrun the same script trains with DistributedDataParallel (global batch = bs x processes; only process 0
    prints and writes; call fits, predictions and `save` on every process): see `distributed.py`.

    Example:
        >>> learn = Learner.from_model_data(model, data, metrics=[accuracy])
        >>> learn.fit_one_cycle(3, max_lr=1e-2)
    """

    def __init__(self, data: Any, model: nn.Module, opt_fn: Optional[Callable] = None,
                 loss_func: Optional[Callable] = None, metrics: Optional[Sequence[Callable]] = None, wd: float = 0.0,
                 wds: Any = None, clip: Optional[float] = None, mixed_precision: str = 'fp32',
                 cbs: Optional[Sequence[Callback]] = None, layer_groups: Optional[Sequence[nn.Module]] = None,
                 path: Union[str, Path, None] = None, model_dir: str = 'models', progress: bool = True,
                 train_bn: bool = False, on_nan: str = 'raise', decay_bn_bias: bool = False, sync_bn: bool = False,
                 crit: Optional[Callable] = None, precision: Optional[str] = None):
        if not isinstance(model, nn.Module) and callable(getattr(model, 'get_layer_groups', None)):
            layer_groups = model.get_layer_groups() if layer_groups is None else layer_groups  # 0.7's BasicModel
            model = model.model
        if precision is not None and mixed_precision != 'fp32' and precision != mixed_precision:
            raise ValueError(f'Learner got precision={precision!r} and mixed_precision={mixed_precision!r}: '
                             'pass mixed_precision only (precision= is its old name)')
        if precision is not None:
            warnings.warn("Learner(precision=...) is now mixed_precision=... (precision is a metric's name); "
                          "the old name will go", DeprecationWarning, stacklevel=2)
            mixed_precision = precision
        if mixed_precision not in _PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {list(_PRECISIONS)}, got {mixed_precision!r}")
        if on_nan not in ('raise', 'stop', 'ignore'):
            raise ValueError(f"on_nan must be 'raise', 'stop' or 'ignore', got {on_nan!r}")
        self.data = data
        self.device = distributed.setup(getattr(data, 'device', None) or default_device())  # torchrun: joins the group
        if hasattr(data, 'to'):
            data.to(self.device)
        self.model = distributed.broadcast_state(model.to(self.device))  # every process starts from process 0's
        self.opt_fn = opt_fn if opt_fn is not None else partial(torch.optim.SGD, momentum=0.9)
        self.loss_func = loss_func or crit or default_loss(task_kind(data))
        self.metrics = list(metrics or [])
        self.clip, self.train_bn, self.on_nan, self.decay_bn_bias = clip, train_bn, on_nan, decay_bn_bias
        self.mixed_precision, self.progress, self.cbs, self.sync_bn = mixed_precision, progress, list(cbs or []), sync_bn
        self.path, self.model_dir = Path(path) if path is not None else output_folder(getattr(data, 'path', '.')), model_dir
        self._layer_groups = list(layer_groups) if layer_groups is not None else (list(model.children()) or [model])
        self.wds = per_group_values(wds if wds is not None else wd, len(self._layer_groups), 'wds')
        self.n_frozen, self.bn_frozen = 0, False
        mark_trainable(self._layer_groups, self.n_frozen)  # fastai 0.7's `module.trainable` flags
        self.opt: Optional[torch.optim.Optimizer] = None
        self.recorder = Recorder()
        self.precomputed = None   # a PrecomputedFeatures while precompute is on (ConvLearner)
        # under torchrun: sharded loaders, DDP and reductions; `gather`: this process's rows -> everyone's, in order
        self.distributed = distributed.DistributedContext(self.device) if distributed.is_distributed() else None
        self.gather = distributed.gather_rows if self.distributed else None
        self.fit_stage: Optional[Stage] = None
        self.training, self.loss, self.log, self.dl = False, None, {}, None
        self.n_clips = 1  # rows of a batch per item: K for video evaluation clips (see `inference.average_clips`)
        self._runner, self._stop_requested = CallbackRunner(), False
        on_gpu = self.device.type == 'cuda'
        self.amp_dtype = _PRECISIONS[mixed_precision] if on_gpu else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=on_gpu and mixed_precision == 'fp16')

    @classmethod
    def from_model_data(cls, model: nn.Module, data: Any, **kwargs: Any) -> 'Learner':
        """A learner for a user model (unfrozen; its children are the layer groups). fastai 0.7's entry point."""
        return cls(data, model, **kwargs)

    @staticmethod
    def pretrained_convnet(f: Any, data: Any, **kwargs: Any) -> 'Learner':
        """Early fastai 0.7's name of `ConvLearner.pretrained` (the course's planet scripts call it)."""
        from .conv_learner import ConvLearner  # conv_learner builds on this module
        return ConvLearner.pretrained(f, data, **kwargs)

    # ----------------------------------------------------------------------------- what the loop runs
    def stage(self) -> Stage:
        """The module and loaders a fit runs: the cached-feature stage while precompute is on, else the whole model
        over the data's loaders; under torchrun, this process's part of each loader."""
        data = self.data
        stage = self.precomputed.stage() if self.precomputed is not None else Stage(
            self.model, data.trn_dl, getattr(data, 'val_dl', None), getattr(data, 'test_dl', None))
        return self.distributed.shard(stage) if self.distributed else stage

    def set_data(self, data: Any) -> None:
        """Swap in another DataBunch (progressive resizing) on the learner's device; freeze state and precompute are
        kept (the cache reads `learn.data`, so it follows the new data). During a fit (a phase schedule switching
        data) the loop reads the new loaders from the next epoch on."""
        self.data = data
        if hasattr(data, 'to'):
            data.to(self.device)
        if self.fit_stage is not None:
            self.fit_stage = self.distributed.wrap(self.stage(), self.sync_bn) if self.distributed else self.stage()

    @property
    def crit(self) -> Callable:
        """fastai 0.7's name of `loss_func` (readable and writable)."""
        return self.loss_func

    @crit.setter
    def crit(self, fn: Callable) -> None:
        self.loss_func = fn

    @property
    def sched(self) -> Recorder:
        """fastai 0.7 name of the recorder: `learn.sched.plot()`, `.plot_lr()`, `.plot_loss()`."""
        return self.recorder

    @property
    def metric_names(self) -> List[str]:
        return metric_names(self.metrics)

    @property
    def callbacks(self) -> List[Callback]:
        """The callbacks of the fit in progress, in order (empty outside a fit)."""
        return self._runner.callbacks

    # ----------------------------------------------------------------------------- the loop
    def _fit(self, n_epochs: int, cbs: Sequence[Callback] = ()) -> List[float]:
        """`_run` with the recorder, the learner's callbacks, these and (when `progress`) the progress display."""
        show = self.progress and distributed.is_main_process()  # under torchrun only process 0 prints
        return self._run(n_epochs, [self.recorder, *self.cbs, *cbs, *([ProgressCallback()] if show else [])])

    def _run(self, n_epochs: float, cbs: Sequence[Callback], stage: Optional[Stage] = None) -> List[float]:
        """Run `n_epochs` epochs with exactly these callbacks (on `stage`, default `stage()`); returns
        `[valid_loss, *metrics]` of the last epoch.

        `n_epochs` may be fractional (SGDR with `cycle_len=0.5`): the fit then runs `round(n_epochs * batches per
        epoch)` training batches, the last epoch stopping part-way and validating there. The optimizer's
        hyper-parameters (lr, momentum, betas, wd) are put back as they were when the fit ends, however it ends, so
        a schedule never leaks into the next fit.
        """
        if self.opt is None:
            self.create_opt()
        self.fit_stage = stage or self.stage()   # builds the precompute cache, if any, before the first bar
        if self.distributed:            # DDP around what trains, rebuilt when freezing changed what trains
            self.fit_stage = self.distributed.wrap(self.fit_stage, self.sync_bn)
        self.n_batches = len(self.fit_stage.train)   # per epoch (a phased fit may switch data later)
        self.n_iter, n_whole = fit_length(n_epochs, self.n_batches)
        if self.n_iter == 0:   # a fit of no epochs: nothing runs, no callback is called
            self.fit_stage = None
            return []
        self._stop_requested = False
        self._runner = CallbackRunner(cbs, self)
        self.n_epochs, self.epoch, self.train_iter, self.log = n_whole, 0, 0, {}
        self.start_epoch = 0  # ResumeFromCheckpoint moves it (and train_iter) at before_fit
        self._fit_hypers = [(self.opt, hyper_state(self.opt))]  # every optimizer the fit uses, as first seen
        try:
            with stop_at_batch_end(self._request_stop):
                try:
                    self._runner('before_fit')
                    for self.epoch in range(self.start_epoch, self.n_epochs):
                        self._do_epoch()
                except CancelFit:
                    self._runner('after_cancel_fit')
                except KeyboardInterrupt:
                    print(f'fit interrupted at epoch {self.epoch}, batch {getattr(self, "iter", 0)}: '
                          'the model, optimizer and recorder hold what was done so far')
                    raise
                finally:
                    self.training = False
                    self._runner('after_fit')
        finally:
            self._runner, self.dl, self.fit_stage = CallbackRunner(), None, None
            for opt, hypers in self._fit_hypers:
                if len(opt.param_groups) == len(hypers):
                    set_hyper_state(opt, hypers)
            self._fit_hypers = []
        return [self.log['valid_loss'], *[self.log[n] for n in self.metric_names]] if self.log else []

    def _request_stop(self) -> None:
        self._stop_requested = True  # the first Ctrl-C: the loop stops after the current batch

    def _do_epoch(self) -> None:
        start = time.perf_counter()
        self._runner('before_epoch')
        train_loss = self._train_epoch()
        valid_loss, metric_values = self._validate()
        self.log = {'epoch': self.epoch, 'train_loss': train_loss, 'valid_loss': valid_loss,
                    **dict(zip(self.metric_names, metric_values)), 'time': time.perf_counter() - start}
        self._runner('after_epoch')

    def _train_epoch(self) -> float:
        model = self.fit_stage.model
        apply_train_mode(model, self._layer_groups, self.n_frozen, self.train_bn, self.bn_frozen)
        self.training, self.dl = True, self.fit_stage.train
        self.n_clips = clips_in(self.dl)  # > 1: each item is K clips of a video, their predictions averaged
        if self.distributed:  # this epoch's shuffle, the same on every process
            self.distributed.set_epoch(self.dl, self.epoch)
        self._runner('before_train')
        losses: list = []
        check_every = 1 if self.device.type == 'cpu' else 25  # a NaN check is a device sync: amortise it on GPU
        for self.iter, (self.xb, self.yb) in enumerate(self.dl):
            if self.train_iter >= self.n_iter:  # a fractional fit ends part-way through its last epoch
                break
            self._train_batch(model)
            if self.loss is not None:
                losses.append(self.loss)
                if self.on_nan != 'ignore' and (self.iter + 1) % check_every == 0:
                    self._check_finite(losses)
            self.train_iter += 1
            if self._stop_requested:
                raise KeyboardInterrupt
        if losses and self.on_nan != 'ignore':
            self._check_finite(losses)
        if self.distributed:  # each process's last batches moved its own BatchNorm statistics: take process 0's
            self.distributed.sync_buffers(model)
        self._runner('after_train')
        return torch.stack(losses).float().mean().item() if losses else math.nan

    def _train_batch(self, model: nn.Module) -> None:
        self.loss = None
        if self.opt is not self._fit_hypers[-1][0]:  # replaced mid-fit: remember it as it came, before any schedule
            self._fit_hypers.append((self.opt, hyper_state(self.opt)))
        try:
            self._runner('before_batch')
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                self.pred = average_clips(model(self.xb), self.n_clips, self.kind)
                loss = self.loss_func(self.pred, self.yb)
            # under torchrun the mean over processes, so every callback sees (and decides on) the same number
            self.loss = self.distributed.average(loss.detach()) if self.distributed else loss.detach()
            self._loss_grad = loss
            self._runner('after_loss')
            self.scaler.scale(self._loss_grad).backward()
            self._loss_grad = None
            self.scaler.unscale_(self.opt)  # so clipping and before_step see true gradients; no-op unless fp16
            if self.clip is not None:
                nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g['params']], self.clip)
            self._runner('before_step')
            scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
            self.scaler.step(self.opt)
            self.scaler.update()
            if scale is None or self.scaler.get_scale() >= scale:  # a step fp16 skipped (inf grads) must not decay
                decay_weights(self.opt)
        except CancelBatch:  # the batch is skipped: it counts in neither the epoch's loss nor the recorder
            self._loss_grad, self.loss = None, None
            self._runner('after_cancel_batch')
        self.opt.zero_grad(set_to_none=True)
        self._runner('after_batch')

    def _check_finite(self, losses: list) -> None:
        if bool(torch.isfinite(losses[-1])):
            return
        bad = next(i for i, v in enumerate(torch.stack(losses).tolist()) if not math.isfinite(v))
        message = (f'training loss is {float(losses[bad])} at epoch {self.epoch}, batch {bad} '
                   f'(lr {self.opt.param_groups[-1]["lr"]:.3g}): lower the learning rate, add gradient clipping '
                   "(clip=...), or pass on_nan='stop'/'ignore' to the Learner")
        if self.on_nan == 'raise':
            raise NonFiniteLossError(message)
        warnings.warn(message, stacklevel=3)
        raise CancelFit()

    def _validate(self) -> Tuple[float, List[float]]:
        model = distributed.unwrap(self.fit_stage.model)  # no gradient sync to do: the bare module
        model.eval()
        self.training, self.dl = False, self.fit_stage.valid
        self.n_clips = clips_in(self.dl)
        nan_result = (math.nan, [math.nan] * len(self.metrics))
        if self.dl is None:
            return nan_result
        total, count, outs, targs = torch.zeros((), device=self.device), 0, [], []
        try:
            self._runner('before_validate')
            with torch.no_grad():
                for self.iter, (self.xb, self.yb) in enumerate(self.dl):
                    try:
                        self._runner('before_batch')
                        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                            self.pred = average_clips(model(self.xb), self.n_clips, self.kind)
                            self.loss = self.loss_func(self.pred, self.yb)
                        self._runner('after_loss')
                        total, count = total + self.loss.float() * len(self.yb), count + len(self.yb)
                        if self.metrics:
                            outs.append(self.pred.float())
                            targs.append(self.yb)
                    except CancelBatch:
                        self._runner('after_cancel_batch')
                    self._runner('after_batch')
        except CancelValidate:
            count = 0
            self._runner('after_cancel_validate')
        self._runner('after_validate')
        if self.distributed:  # every process's sums and rows: loss and metrics of the whole set
            total, count, outs, targs = self.distributed.merge_validation(total, count, outs, targs, bool(self.metrics))
        if count == 0:
            return nan_result
        if not self.metrics:
            return (total / count).item(), []
        preds, all_targs = to_predictions(torch.cat(outs), self.kind), torch.cat(targs)
        return (total / count).item(), [float(m(preds, all_targs)) for m in self.metrics]

    # ----------------------------------------------------------------------------- fitting
    def fit(self, lrs: Any, n_cycle: int, wds: Any = None, cycle_len: Optional[float] = None, cycle_mult: float = 1,
            cycle_save_name: Optional[str] = None, best_save_name: Optional[str] = None,
            use_clr: Optional[Tuple[float, float]] = None, use_clr_beta: Optional[Tuple[float, ...]] = None,
            metrics: Optional[Sequence[Callable]] = None, callbacks: Optional[Sequence[Callback]] = None,
            checkpoint_every: Optional[int] = None, resume: bool = False, use_wd_sched: bool = False,
            norm_wds: bool = False, wds_sched_mult: Optional[Callable] = None, use_swa: bool = False,
            swa_start: int = 1, swa_eval_freq: int = 5) -> List[float]:
        """fastai 0.7's fit: `n_cycle` cycles; without `cycle_len` that is n_cycle epochs at a constant lr.

        Args:
            lrs: lr per layer group: a float, a list/array (one per group) or `slice(lo, hi)`.
            n_cycle: number of cycles (epochs when `cycle_len` is None).
            wds: decoupled weight decay per layer group for this fit only (fastai 0.7); the learner's own `wd`/`wds`
                apply again after it.
            cycle_len: epochs of the first cycle; turns on SGDR (cosine annealing per batch from lrs to 0, restarting
                at each cycle). Total epochs = cycle_len * (1 + cycle_mult + ... + cycle_mult**(n_cycle-1)).
            cycle_mult: growth of the cycle length after each restart.
            cycle_save_name: save `<name>_cyc_<i>` at the end of each cycle (`load_cycle(name, i)` reads it).
            best_save_name: save the weights with the lowest valid loss as `<name>`.
            use_clr: `(div, cut_div)`: fastai 0.7's triangular cyclical lr per cycle: linear lr/div -> lr over
                1/cut_div of the cycle, then back to lr/div.
            use_clr_beta: `(div, pct, mom_max, mom_min)`: fastai 0.7's 1cycle per cycle (momentum optional).
            metrics: metrics for this fit (and later ones: they replace the learner's), as 0.7 allowed.
            callbacks: extra callbacks for this fit only.
            checkpoint_every: write a resumable checkpoint `models/checkpoint.pth` every this many epochs (SaveEvery).
            resume: continue from that checkpoint after its epoch (same arguments required; `callbacks.checkpoint`).
            use_wd_sched, norm_wds, wds_sched_mult: fastai 0.7's AdamW/SGDW weight decay schedule
                (`callbacks.weight_decay`): `wds` normalized per cycle and/or multiplied by `wds_sched_mult(sched)`.
            use_swa, swa_start, swa_eval_freq: stochastic weight averaging into `learn.swa_model` (`callbacks.swa`).

        Returns:
            `[valid_loss, *metrics]` of the last epoch (empty when no epoch finished).
        """
        wd_schedule = weight_decay_callbacks(use_wd_sched, per_group_values(lrs, len(self._layer_groups)), cycle_len,
                                             cycle_mult, n_cycle, norm_wds, wds_sched_mult)  # checked before changes
        if isinstance(n_cycle, bool) or not isinstance(n_cycle, (int, np.integer)) or n_cycle < 0:
            raise ValueError(f'n_cycle must be a whole number of cycles >= 0, got {n_cycle!r}')
        if metrics is not None:
            self.metrics = list(metrics)
        base = per_group_values(lrs, len(self._layer_groups))
        self.set_lrs(base)
        starts = sgdr_cycle_starts(1 if cycle_len is None else cycle_len, cycle_mult, n_cycle)
        sched = fit_schedule(base, n_cycle, cycle_len, cycle_mult, use_clr, use_clr_beta)
        extra: List[Callback] = [sched]
        if cycle_save_name:
            extra.append(CycleSnapshot(cycle_save_name, starts[1:]))
        if best_save_name:
            extra.append(SaveBest(best_save_name, monitor='valid_loss'))
        extra += checkpoint_callbacks(checkpoint_every, resume)
        extra += wd_schedule + swa_callbacks(self, use_swa, swa_start, swa_eval_freq)
        with self._wds_for_this_fit(wds):
            return self._fit(starts[-1], extra + list(callbacks or []))

    @contextlib.contextmanager
    def _wds_for_this_fit(self, wds: Any):
        """Weight decay `wds` (None: the learner's own) for one fit, the learner's own put back after it."""
        if wds is None:
            yield
            return
        own = self.wds
        self.set_wds(wds)
        try:
            yield
        finally:
            self.set_wds(own)

    def fit_one_cycle(self, n_epochs: int, max_lr: Any = 3e-3, moms: Optional[Tuple[float, float]] = (0.95, 0.85),
                      div_factor: float = 25., pct_start: float = 0.3, final_div: Optional[float] = None,
                      wd: Any = None, callbacks: Optional[Sequence[Callback]] = None,
                      checkpoint_every: Optional[int] = None, resume: bool = False) -> List[float]:
        """fastai 1+ 1cycle: lr cosine from max_lr/div_factor up to max_lr over pct_start of the batches, then down to
        max_lr/final_div (default div_factor * 1e4); momentum cosine moms[0] -> moms[1] -> moms[0].
        `checkpoint_every`/`resume`: see `fit`.

        Example:
            >>> learn.fit_one_cycle(3, max_lr=slice(1e-4, 1e-2))
        """
        max_lrs = per_group_values(max_lr, len(self._layer_groups))
        if self.opt is None:
            self.create_opt(max_lrs)
        with self._wds_for_this_fit(wd):
            return self._fit(n_epochs, [OneCycle(max_lrs, moms, div_factor, pct_start, final_div),
                                        *checkpoint_callbacks(checkpoint_every, resume), *(callbacks or [])])

    def fit_sgdr(self, n_cycles: int, cycle_len: float, max_lr: Any, cycle_mult: float = 2,
                 callbacks: Optional[Sequence[Callback]] = None, checkpoint_every: Optional[int] = None,
                 resume: bool = False) -> List[float]:
        """SGDR: `n_cycles` cosine cycles from max_lr to 0, the first `cycle_len` epochs, each next `cycle_mult` times
        longer (restarts at epochs 1, 3, 7 for cycle_len=1, cycle_mult=2). `checkpoint_every`/`resume`: see `fit`."""
        return self.fit(max_lr, n_cycles, cycle_len=cycle_len, cycle_mult=cycle_mult, callbacks=callbacks,
                        checkpoint_every=checkpoint_every, resume=resume)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(model={type(self.model).__name__}, layer_groups={len(self._layer_groups)})'
