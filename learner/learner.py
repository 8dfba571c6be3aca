"""Learner: a model, its data, an optimizer and the training loop, with fit / SGDR / 1cycle and
persistence (lr_find is in `lr_find.py`, prediction in `prediction.py`, the layer table in `summary.py`).

The loop is `_fit` -> `_do_epoch` -> `_train_batch` / `_validate` below: the core owns the order-sensitive numerics
(autocast, GradScaler, unscale before clipping, decoupled weight decay, metrics before any monitor); callbacks own
policy (schedules, recording, progress, saving, stopping).
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .callbacks.base import EVENTS, CancelBatch, CancelFit, CancelValidate, Callback
from .callbacks.checkpoint import checkpoint_callbacks
from .callbacks.progress import ProgressCallback
from .callbacks.recorder import Recorder
from .callbacks.schedule import CLRBeta, ConstantLR, OneCycle, SGDR, sgdr_cycle_starts
from .callbacks.tracking import CycleSnapshot, SaveBest
from .core import default_device
from .layer_groups import NORM_TYPES, build_param_groups, per_group_values, set_frozen
from .lr_find import LRFindMixin
from .persistence import atomic_torch_save, safe_torch_load
from .prediction import PredictionMixin
from .summary import SummaryMixin

__all__ = ['Learner', 'NonFiniteLossError']

_CANCELS = (CancelFit, CancelValidate, CancelBatch, KeyboardInterrupt)
_PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (the message names the epoch and the batch)."""


def _default_loss(data: Any) -> Callable:
    if getattr(data, 'is_multi', False):
        return F.binary_cross_entropy_with_logits
    if getattr(data, 'is_reg', False):
        return F.mse_loss
    return F.cross_entropy  # log_softmax is idempotent, so models returning log-probabilities work too


class Learner(LRFindMixin, PredictionMixin, SummaryMixin):
    """Trains `model` on `data` with per-layer-group learning rates.

    Args:
        data: a DataBunch, or anything with `trn_dl`, `val_dl`, `test_dl`, `c`, `is_multi`, `path`, `classes` and
            optionally `device`/`to(device)`.
        model: the network; moved to `data.device` (or the default device).
        opt_fn: a torch optimizer class or a factory `f(param_groups, lr=...)`; default SGD with momentum 0.9
            (fastai 0.7). Its own `weight_decay` is set to 0: weight decay is applied decoupled by the learner.
        loss_func: `f(outputs, targets)`; default cross-entropy (multi-label: BCE with logits; regression: MSE).
        metrics: functions `f(preds, targs)` computed on the whole validation set each epoch.
        wd: decoupled weight decay (per step `w -= lr * wd * w`), skipping biases and BN unless `decay_bn_bias`.
        wds: per layer group weight decays (float, list or slice); overrides `wd`.
        clip: max gradient norm (after unscaling), or None.
        precision: 'fp32', 'bf16' (autocast) or 'fp16' (autocast + GradScaler); on CPU always fp32.
        cbs: callbacks used in every fit.
        layer_groups: list of modules; default the model's children (or `[model]`).
        path: root folder for `models/`; default `data.path`.
        model_dir: checkpoint folder under `path`.
        progress: show fastprogress bars and one line per epoch.
        train_bn: keep BatchNorm parameters of frozen groups trainable (fastai 1+).
        on_nan: 'raise' (NonFiniteLossError), 'stop' (warn and end the fit) or 'ignore' for a NaN/inf loss.

    Example:
        >>> learn = Learner.from_model_data(model, data, metrics=[accuracy])
        >>> learn.fit_one_cycle(3, max_lr=1e-2)
    """

    def __init__(self, data: Any, model: nn.Module, opt_fn: Optional[Callable] = None,
                 loss_func: Optional[Callable] = None, metrics: Optional[Sequence[Callable]] = None, wd: float = 0.0,
                 wds: Any = None, clip: Optional[float] = None, precision: str = 'fp32',
                 cbs: Optional[Sequence[Callback]] = None, layer_groups: Optional[Sequence[nn.Module]] = None,
                 path: Union[str, Path, None] = None, model_dir: str = 'models', progress: bool = True,
                 train_bn: bool = True, on_nan: str = 'raise', decay_bn_bias: bool = False):
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {list(_PRECISIONS)}, got {precision!r}")
        if on_nan not in ('raise', 'stop', 'ignore'):
            raise ValueError(f"on_nan must be 'raise', 'stop' or 'ignore', got {on_nan!r}")
        self.data = data
        self.device = torch.device(getattr(data, 'device', None) or default_device())
        if hasattr(data, 'to'):
            data.to(self.device)
        self.model = model.to(self.device)
        self.opt_fn = opt_fn if opt_fn is not None else partial(torch.optim.SGD, momentum=0.9)
        self.loss_func = loss_func if loss_func is not None else _default_loss(data)
        self.metrics = list(metrics or [])
        self.clip, self.train_bn, self.on_nan, self.decay_bn_bias = clip, train_bn, on_nan, decay_bn_bias
        self.precision = precision
        self.cbs = list(cbs or [])
        self.path = Path(path if path is not None else getattr(data, 'path', '.'))
        self.model_dir = model_dir
        self.progress = progress
        self._layer_groups = list(layer_groups) if layer_groups is not None else (list(model.children()) or [model])
        self.wds = per_group_values(wds if wds is not None else wd, len(self._layer_groups), 'wds')
        self.n_frozen = 0
        self.opt: Optional[torch.optim.Optimizer] = None
        self.recorder = Recorder()
        self.lr_finding = False
        self.training = False
        self.loss: Optional[torch.Tensor] = None
        self.log: dict = {}
        self.dl = None
        self._stop_requested = False
        self._handlers: dict = {e: [] for e in EVENTS}
        amp_device = self.device.type == 'cuda'
        self._amp_dtype = _PRECISIONS[precision] if amp_device else None
        self.scaler = torch.amp.GradScaler('cuda', enabled=amp_device and precision == 'fp16')

    @classmethod
    def from_model_data(cls, model: nn.Module, data: Any, **kwargs: Any) -> 'Learner':
        """A learner for a user model (unfrozen; its children are the layer groups). fastai 0.7's entry point."""
        return cls(data, model, **kwargs)

    # ----------------------------------------------------------------------------- extension points
    def get_loader(self, split: str):
        """The `(x, y)` batches of 'train', 'valid' or 'test' (None when the data has no such split)."""
        attrs = {'train': 'trn_dl', 'valid': 'val_dl', 'test': 'test_dl'}
        if split not in attrs:
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        return getattr(self.data, attrs[split], None)

    @property
    def active_model(self) -> nn.Module:
        """The module the loop runs forward/backward on (subclasses may return a part of `model`)."""
        return self.model

    def before_train_mode(self) -> None:
        """Called right after `active_model.train()`: with `train_bn=False`, BatchNorms of frozen groups stay in eval."""
        if not self.train_bn:
            for module in self._layer_groups[:self.n_frozen]:
                for sub in module.modules():
                    if isinstance(sub, NORM_TYPES):
                        sub.eval()

    @property
    def layer_groups(self) -> List[nn.Module]:
        """The modules that share a learning rate; setting them rebuilds the optimizer at the next fit."""
        return self._layer_groups

    @layer_groups.setter
    def layer_groups(self, groups: Sequence[nn.Module]) -> None:
        self._layer_groups = list(groups)
        self.wds = per_group_values(self.wds[-1], len(self._layer_groups), 'wds')
        self.opt = None

    @property
    def sched(self) -> Recorder:
        """fastai 0.7 name of the recorder: `learn.sched.plot()`, `.plot_lr()`, `.plot_loss()`."""
        return self.recorder

    @property
    def metric_names(self) -> List[str]:
        return [getattr(m, '__name__', type(m).__name__) for m in self.metrics]

    # ----------------------------------------------------------------------------- optimizer and groups
    def create_opt(self, lrs: Any = 1e-3) -> torch.optim.Optimizer:
        """Build the optimizer: parameter groups from the layer groups (see `layer_groups.build_param_groups`)."""
        lr_values = per_group_values(lrs, len(self._layer_groups))
        groups = build_param_groups(self._layer_groups, self.wds, self.decay_bn_bias, extra_module=self.model)
        for g in groups:
            g['lr'] = float(lr_values[g['layer_group']])
        self.opt = self.opt_fn(groups, lr=float(lr_values[-1]))
        return self.opt

    def set_lrs(self, lrs: Any) -> None:
        """Set the lr of every parameter group from a per-layer-group value (float, list/array or slice)."""
        if self.opt is None:
            self.create_opt(lrs)
        values = per_group_values(lrs, len(self._layer_groups))
        for g in self.opt.param_groups:
            g['lr'] = float(values[g['layer_group']])

    def set_wds(self, wds: Any) -> None:
        """Set the decoupled weight decay per layer group (float, list/array or slice)."""
        self.wds = per_group_values(wds, len(self._layer_groups), 'wds')
        if self.opt is not None:
            for g in self.opt.param_groups:
                g['wd'] = float(self.wds[g['layer_group']])

    def set_mom(self, mom: float) -> None:
        """Set the momentum of every parameter group: SGD/RMSprop `momentum`, or Adam-family `betas[0]`."""
        for g in self.opt.param_groups:
            if 'betas' in g:
                g['betas'] = (mom, g['betas'][1])
            elif 'momentum' in g:
                g['momentum'] = mom

    def get_mom(self) -> Optional[float]:
        """The momentum (or beta1) of the last parameter group, None when the optimizer has neither."""
        g = self.opt.param_groups[-1]
        return g['betas'][0] if 'betas' in g else g.get('momentum')

    def freeze_to(self, n: int) -> None:
        """Freeze layer groups `[:n]` (BatchNorm params stay trainable when `train_bn`) and unfreeze the rest."""
        self.n_frozen = max(0, min(n, len(self._layer_groups))) if n >= 0 else max(0, len(self._layer_groups) + n)
        set_frozen(self._layer_groups, self.n_frozen, self.train_bn)

    def freeze(self) -> None:
        """Freeze all layer groups but the last."""
        self.freeze_to(len(self._layer_groups) - 1)

    def unfreeze(self) -> None:
        """Make every layer group trainable."""
        self.freeze_to(0)

    # ----------------------------------------------------------------------------- the loop
    def _event(self, name: str) -> None:
        for cb, handler in self._handlers[name]:
            try:
                handler()
            except _CANCELS:
                raise
            except Exception as e:
                if not getattr(e, '_learner_noted', False):
                    e.add_note(f'raised by callback {cb.name} at event {name}')
                    e._learner_noted = True
                raise

    def _all_cbs(self, extra: Sequence[Callback] = ()) -> List[Callback]:
        cbs = [self.recorder, *self.cbs, *extra]
        if self.progress:
            cbs.append(ProgressCallback())
        return sorted(cbs, key=lambda cb: cb.order)

    def _install(self, cbs: Sequence[Callback]) -> None:
        for cb in cbs:
            cb.learn = self
        self._handlers = {e: [(cb, getattr(cb, e)) for cb in cbs
                              if getattr(type(cb), e, None) is not getattr(Callback, e, None)] for e in EVENTS}

    def show_training_loop(self, cbs: Sequence[Callback] = ()) -> str:
        """Print (and return) which callbacks run at each event, in order, for a fit with these extra callbacks."""
        all_cbs = self._all_cbs(cbs)
        lines = []
        for e in EVENTS:
            names = [cb.name for cb in all_cbs if callable(getattr(type(cb), e, None))]
            lines.append(f'{e:16s} {", ".join(names) if names else "-"}')
        text = '\n'.join(lines)
        print(text)
        return text

    @contextlib.contextmanager
    def _sigint_at_batch_end(self):
        """First Ctrl-C: finish the current batch, then stop; a second one interrupts at once."""
        self._stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            self._stop_requested = True
            signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)
        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _fit(self, n_epochs: int, cbs: Sequence[Callback] = ()) -> List[float]:
        """Run `n_epochs` epochs with the learner's and these callbacks; returns `[valid_loss, *metrics]` of the last."""
        if self.opt is None:
            self.create_opt()
        all_cbs = self._all_cbs(cbs)
        self._install(all_cbs)
        self.n_epochs, self.epoch, self.train_iter, self.log = n_epochs, 0, 0, {}
        self.start_epoch = 0  # ResumeFromCheckpoint moves it (and train_iter) at before_fit
        try:
            with self._sigint_at_batch_end():
                try:
                    self._event('before_fit')
                    for self.epoch in range(self.start_epoch, n_epochs):
                        self._do_epoch()
                except CancelFit:
                    pass
                except KeyboardInterrupt:
                    print(f'fit interrupted at epoch {self.epoch}, batch {getattr(self, "iter", 0)}: '
                          'the model, optimizer and recorder hold what was done so far')
                    raise
                finally:
                    self.training = False
                    self._event('after_fit')
        finally:
            self._install([])
            self.dl = None
        if not self.log:
            return []
        return [self.log['valid_loss'], *[self.log[n] for n in self.metric_names]]

    def _do_epoch(self) -> None:
        start = time.perf_counter()
        self._event('before_epoch')
        train_loss = self._train_epoch()
        valid_loss, metric_values = self._validate()
        self.log = {'epoch': self.epoch, 'train_loss': train_loss, 'valid_loss': valid_loss,
                    **dict(zip(self.metric_names, metric_values)), 'time': time.perf_counter() - start}
        self._event('after_epoch')

    def _train_epoch(self) -> float:
        model = self.active_model
        model.train()
        self.before_train_mode()
        self.training = True
        self.dl = self.get_loader('train')
        self._event('before_train')
        losses: list = []
        check_every = 1 if self.device.type == 'cpu' else 25  # a NaN check is a device sync: amortise it on GPU
        for self.iter, (self.xb, self.yb) in enumerate(self.dl):
            self._train_batch(model)
            if self.loss is not None:
                losses.append(self.loss)
                if self.on_nan != 'ignore' and not self.lr_finding and (self.iter + 1) % check_every == 0:
                    self._check_finite(losses)
            self.train_iter += 1
            if self._stop_requested:
                raise KeyboardInterrupt
        if losses and self.on_nan != 'ignore' and not self.lr_finding:
            self._check_finite(losses)
        self._event('after_train')
        return torch.stack(losses).float().mean().item() if losses else math.nan

    def _train_batch(self, model: nn.Module) -> None:
        self.loss = None
        try:
            self._event('before_batch')
            with torch.autocast(self.device.type, dtype=self._amp_dtype, enabled=self._amp_dtype is not None):
                self.pred = model(self.xb)
                loss = self.loss_func(self.pred, self.yb)
            self.loss = loss.detach()
            self._loss_grad = loss
            self._event('after_loss')
            self.scaler.scale(self._loss_grad).backward()
            self._loss_grad = None
            self.scaler.unscale_(self.opt)  # so clipping and before_step see true gradients; no-op unless fp16
            if self.clip is not None:
                nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g['params']], self.clip)
            self._event('before_step')
            self._decay_weights()
            self.scaler.step(self.opt)
            self.scaler.update()
        except CancelBatch:
            self._loss_grad = None
        self.opt.zero_grad(set_to_none=True)
        self._event('after_batch')

    @torch.no_grad()
    def _decay_weights(self) -> None:
        """Decoupled weight decay `w <- w * (1 - lr * wd)` for parameters that have a gradient this step."""
        for g in self.opt.param_groups:
            if g['apply_wd'] and g['wd']:
                params = [p for p in g['params'] if p.grad is not None]
                if params:
                    torch._foreach_mul_(params, 1 - g['lr'] * g['wd'])

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
        model = self.active_model
        model.eval()
        self.training = False
        self.dl = self.get_loader('valid')
        nan_result = (math.nan, [math.nan] * len(self.metrics))
        if self.dl is None:
            return nan_result
        total, count, preds, targs = torch.zeros((), device=self.device), 0, [], []
        try:
            self._event('before_validate')
            with torch.no_grad():
                for self.iter, (self.xb, self.yb) in enumerate(self.dl):
                    self._event('before_batch')
                    with torch.autocast(self.device.type, dtype=self._amp_dtype, enabled=self._amp_dtype is not None):
                        self.pred = model(self.xb)
                        self.loss = self.loss_func(self.pred, self.yb)
                    self._event('after_loss')
                    n = len(self.yb)
                    total += self.loss.float() * n
                    count += n
                    if self.metrics:
                        preds.append(self.pred.float())
                        targs.append(self.yb)
                    self._event('after_batch')
        except CancelValidate:
            count = 0
        self._event('after_validate')
        if count == 0:
            return nan_result
        if not self.metrics:
            return (total / count).item(), []
        all_preds, all_targs = torch.cat(preds), torch.cat(targs)
        return (total / count).item(), [float(m(all_preds, all_targs)) for m in self.metrics]

    # ----------------------------------------------------------------------------- fitting
    def fit(self, lrs: Any, n_cycle: int, wds: Any = None, cycle_len: Optional[float] = None, cycle_mult: float = 1,
            cycle_save_name: Optional[str] = None, best_save_name: Optional[str] = None,
            use_clr_beta: Optional[Tuple[float, ...]] = None, callbacks: Optional[Sequence[Callback]] = None,
            checkpoint_every: Optional[int] = None, resume: bool = False) -> List[float]:
        """fastai 0.7's fit: `n_cycle` cycles; without `cycle_len` that is n_cycle epochs at a constant lr.

        Args:
            lrs: lr per layer group: a float, a list/array (one per group) or `slice(lo, hi)`.
            n_cycle: number of cycles (epochs when `cycle_len` is None).
            wds: decoupled weight decay per layer group (kept for later fits).
            cycle_len: epochs of the first cycle; turns on SGDR (cosine annealing per batch from lrs to 0, restarting
                at each cycle). Total epochs = cycle_len * (1 + cycle_mult + ... + cycle_mult**(n_cycle-1)).
            cycle_mult: growth of the cycle length after each restart.
            cycle_save_name: save `<name>_cyc_<i>` at the end of each cycle.
            best_save_name: save the weights with the lowest valid loss as `<name>`.
            use_clr_beta: `(div, pct, mom_max, mom_min)`: fastai 0.7's 1cycle per cycle (momentum optional).
            callbacks: extra callbacks for this fit only.
            checkpoint_every: write a resumable checkpoint `models/checkpoint.pth` every this many epochs (SaveEvery).
            resume: continue from that checkpoint after its epoch, with the same schedule positions (the arguments
                must be the same as the saved fit's; see `callbacks.checkpoint`).

        Returns:
            `[valid_loss, *metrics]` of the last epoch (empty when no epoch finished).
        """
        if wds is not None:
            self.set_wds(wds)
        base = per_group_values(lrs, len(self._layer_groups))
        self.set_lrs(base)
        n_cycle_len = 1 if cycle_len is None else cycle_len
        starts = sgdr_cycle_starts(n_cycle_len, cycle_mult, n_cycle)
        n_epochs = int(round(starts[-1]))
        if use_clr_beta is not None:
            div, pct, *moms = use_clr_beta
            sched = CLRBeta(base, div, pct, *moms, cycle_len=n_cycle_len, cycle_mult=cycle_mult, n_cycle=n_cycle)
        elif cycle_len is not None:
            sched = SGDR(base, cycle_len, cycle_mult, n_cycle)
        else:
            sched = ConstantLR(base)
        extra: List[Callback] = [sched]
        if cycle_save_name:
            extra.append(CycleSnapshot(cycle_save_name, starts[1:]))
        if best_save_name:
            extra.append(SaveBest(best_save_name, monitor='valid_loss'))
        extra += checkpoint_callbacks(checkpoint_every, resume)
        return self._fit(n_epochs, extra + list(callbacks or []))

    def fit_one_cycle(self, n_epochs: int, max_lr: Any = 3e-3, moms: Optional[Tuple[float, float]] = (0.95, 0.85),
                      div_factor: float = 25., pct_start: float = 0.3, final_div: Optional[float] = None,
                      wd: Any = None, callbacks: Optional[Sequence[Callback]] = None,
                      checkpoint_every: Optional[int] = None, resume: bool = False) -> List[float]:
        """fastai 1+ 1cycle: lr cosine from max_lr/div_factor up to max_lr over pct_start of the batches, then down to
        max_lr/final_div (default div_factor * 1e4); momentum cosine moms[0] -> moms[1] -> moms[0].

        `checkpoint_every=N` writes a resumable checkpoint every N epochs; `resume=True` continues from it (same
        arguments required) and, with the same seed and deterministic algorithms, ends with the same weights as an
        uninterrupted run. See `fit` and `callbacks.checkpoint`.

        Example:
            >>> learn.fit_one_cycle(3, max_lr=slice(1e-4, 1e-2))
        """
        if wd is not None:
            self.set_wds(wd)
        max_lrs = per_group_values(max_lr, len(self._layer_groups))
        if self.opt is None:
            self.create_opt(max_lrs)
        return self._fit(n_epochs, [OneCycle(max_lrs, moms, div_factor, pct_start, final_div),
                                    *checkpoint_callbacks(checkpoint_every, resume), *(callbacks or [])])

    def fit_sgdr(self, n_cycles: int, cycle_len: float, max_lr: Any, cycle_mult: float = 2,
                 callbacks: Optional[Sequence[Callback]] = None, checkpoint_every: Optional[int] = None,
                 resume: bool = False) -> List[float]:
        """SGDR: `n_cycles` cosine cycles from max_lr to 0, the first `cycle_len` epochs, each next `cycle_mult` times
        longer (restarts at epochs 1, 3, 7 for cycle_len=1, cycle_mult=2). `checkpoint_every`/`resume`: see `fit`."""
        return self.fit(max_lr, n_cycles, cycle_len=cycle_len, cycle_mult=cycle_mult, callbacks=callbacks,
                        checkpoint_every=checkpoint_every, resume=resume)

    @contextlib.contextmanager
    def no_bar(self):
        """`with learn.no_bar(): ...` runs without progress bars or epoch lines."""
        previous, self.progress = self.progress, False
        try:
            yield self
        finally:
            self.progress = previous

    # ----------------------------------------------------------------------------- persistence
    def _model_file(self, name: Union[str, Path]) -> Path:
        name = Path(name)
        if name.is_absolute() or name.parent != Path('.'):
            return name if name.suffix else name.with_suffix('.pth')
        return self.path / self.model_dir / f'{name}.pth'

    def save(self, name: Union[str, Path], with_opt: bool = True) -> Path:
        """Save the weights (and optimizer state) to `path/model_dir/name.pth`, atomically (temp file, fsync,
        rename), so a crash never leaves a half-written checkpoint. Returns the file."""
        file = self._model_file(name)
        state = {'model': self.model.state_dict()}
        if with_opt and self.opt is not None:
            state['opt'] = self.opt.state_dict()
        return atomic_torch_save(state, file)

    def load(self, name: Union[str, Path], with_opt: bool = True) -> 'Learner':
        """Load weights (and optimizer state if saved) from `path/model_dir/name.pth` with `weights_only=True`:
        a file holding anything but tensors and plain containers is refused with a ValueError."""
        file = self._model_file(name)
        if not file.exists():
            raise FileNotFoundError(f'no checkpoint {file}: save one with learn.save({str(name)!r}) first')
        state = safe_torch_load(file, map_location=self.device)  # UnsafeCheckpointError (a ValueError) for code
        if not isinstance(state, dict):
            raise ValueError(f'{file} holds a {type(state).__name__}, expected a dict of weights')
        weights = state['model'] if 'model' in state else state  # also a bare state_dict
        self.model.load_state_dict(weights)
        if with_opt and 'opt' in state:
            if self.opt is None:
                self.create_opt()
            try:
                self.opt.load_state_dict(state['opt'])
            except ValueError as e:
                warnings.warn(f'optimizer state in {file} does not match this learner ({e}); kept a fresh optimizer')
        return self

    def __repr__(self) -> str:
        return f'{type(self).__name__}(model={type(self.model).__name__}, layer_groups={len(self._layer_groups)})'
