"""Recorder: what happened during the last fit (per batch and per epoch), and the plots of it.

Per-batch losses are kept as detached tensors and turned into floats once per epoch, so recording costs no
device synchronisation per batch. Every plot returns its matplotlib Figure (see `plotting.new_figure`: shown once in
a notebook, bare in a script).
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..plotting import new_figure
from .base import ORDER_RECORDER, Callback

__all__ = ['Recorder', 'smooth_debiased']


def smooth_debiased(values, beta: float = 0.98) -> List[float]:
    """Exponential moving average with bias correction (the first values are not pulled towards 0)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return out


def _figure(n_axes: int = 1, width: float = 6.0):
    fig = new_figure(figsize=(width * n_axes, 4))
    axes = [fig.add_subplot(1, n_axes, i + 1) for i in range(n_axes)]
    return fig, axes


class Recorder(Callback):
    """Per batch: lr and momentum (of the last layer group), raw and smoothed training loss. Per epoch: train loss,
    valid loss, metrics, seconds, iterations so far. Also holds the last LR range test (`lr_find_*`).

    `learn.sched` is this object, so fastai 0.7's `learn.sched.plot()`, `.plot_lr()`, `.plot_loss()` work. Like 0.7's
    `sched`, it describes the last fit or LR range test: right after `lr_find()`, `plot_lr()` draws the sweep; after
    `fit_opt_sched`, `plot_lr()` marks the phases and `plot()` draws loss against lr (a range test made of phases).
    0.7's names `iterations`, `momentums`, `val_losses` and `rec_metrics` read the same records.
    """

    order = ORDER_RECORDER

    def __init__(self, beta: float = 0.98):
        self.beta = beta
        self._reset()
        self.lr_find_lrs: List[float] = []
        self.lr_find_losses: List[float] = []
        self.lr_find_suggestions = None

    def _reset(self) -> None:
        self.lrs: List[float] = []
        self.moms: List[Optional[float]] = []
        self._losses: List[float] = []
        self._pending: list = []  # loss tensors not yet turned into floats
        self.train_losses: List[float] = []
        self.valid_losses: List[float] = []
        self.metrics: List[List[float]] = []
        self.metric_names: List[str] = []
        self.times: List[float] = []
        self.epoch_iters: List[int] = []
        self.phases: Optional[dict] = None  # the phases of a fit_opt_sched fit (PhaseSchedule.phase_marks())

    # ------------------------------------------------------------------------------------- events
    def before_fit(self) -> None:
        self._reset()
        self.metric_names = list(self.learn.metric_names)

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.training or learn.loss is None:
            return
        self.lrs.append(learn.opt.param_groups[-1]['lr'])
        self.moms.append(learn.get_mom())
        self._pending.append(learn.loss.detach())

    def after_epoch(self) -> None:
        self._flush()
        log = self.learn.log
        self.train_losses.append(log['train_loss'])
        self.valid_losses.append(log['valid_loss'])
        self.metrics.append([log[name] for name in self.metric_names])
        self.times.append(log['time'])
        self.epoch_iters.append(len(self._losses))

    def after_fit(self) -> None:
        self._flush()
        schedule = next((cb for cb in self.learn.callbacks if callable(getattr(cb, 'phase_marks', None))), None)
        self.phases = schedule.phase_marks() if schedule is not None else None

    def _flush(self) -> None:
        if self._pending:
            import torch
            self._losses.extend(torch.stack([t.float() for t in self._pending]).cpu().tolist())  # one sync
            self._pending = []

    # ------------------------------------------------------------------------------------- data
    @property
    def losses(self) -> List[float]:
        """Raw training loss of every batch of the last fit."""
        self._flush()
        return self._losses

    @property
    def smooth_losses(self) -> List[float]:
        """Debiased exponential moving average (beta) of `losses`."""
        return smooth_debiased(self.losses, self.beta)

    @property
    def iterations(self) -> List[int]:
        """fastai 0.7's x axis: 1, 2, ... one per training batch recorded."""
        return list(range(1, len(self.lrs) + 1))

    @property
    def momentums(self) -> List[Optional[float]]:
        """fastai 0.7's name of `moms`."""
        return self.moms

    @property
    def val_losses(self) -> List[float]:
        """fastai 0.7's name of `valid_losses`."""
        return self.valid_losses

    @property
    def rec_metrics(self) -> List[List[float]]:
        """fastai 0.7's name of `metrics` (per epoch)."""
        return self.metrics

    # ------------------------------------------------------------------------------------- plots
    def plot_loss(self, n_skip: int = 0, n_skip_end: int = 0, smoothed: bool = True):
        """Training loss per batch (smoothed, and raw in light grey) and valid loss per epoch, leaving out the first
        `n_skip` and the last `n_skip_end` batches (fastai 0.7's `sched.plot_loss(n_skip, n_skip_end)`); returns
        the Figure."""
        fig, (ax,) = _figure()
        raw = self.losses
        end = len(raw) - n_skip_end
        ax.plot(range(n_skip, end), raw[n_skip:end], color='0.75', label='train (batch)')
        if smoothed and raw:
            ax.plot(range(n_skip, end), self.smooth_losses[n_skip:end], label='train (smoothed)')
        if self.valid_losses:
            ax.plot(self.epoch_iters, self.valid_losses, 'o-', label='valid')
        ax.set_xlabel('batch'); ax.set_ylabel('loss'); ax.legend()
        return fig

    def plot_lr(self, show_text: bool = True, show_moms: bool = True):
        """Learning rate (of the last layer group) per batch, and momentum beside it; returns the Figure.

        After `fit_opt_sched` (fastai 0.7's phase plot): a dashed red line where each phase hands over to the next,
        and with `show_text` each phase's optimizer (and its wds and beta) written over it.
        """
        has_moms = show_moms and any(m is not None for m in self.moms)
        fig, axes = _figure(2 if has_moms else 1)
        axes[0].plot(self.lrs); axes[0].set_xlabel('batch'); axes[0].set_ylabel('learning rate')
        if has_moms:
            axes[1].plot([np.nan if m is None else m for m in self.moms])
            axes[1].set_xlabel('batch'); axes[1].set_ylabel('momentum')
        if self.phases is not None:
            for ax in axes:
                self._mark_phases(ax, show_text)
        return fig

    def _mark_phases(self, ax, show_text: bool) -> None:
        bounds, labels = self.phases['bounds'], self.phases['labels']
        low, high = ax.get_ylim()
        for k, ((start, end), label) in enumerate(zip(bounds, labels)):
            if k < len(bounds) - 1:
                ax.plot([end, end], [low, high], color='red', linestyle='dashed')
            if show_text:
                ax.text((start + end) / 2, (low + high) / 2, label, ha='center', va='center', fontsize=14, alpha=0.5)
        ax.set_ylim(low, high)

    def plot_metrics(self):
        """Each metric per epoch (one panel each); returns the Figure."""
        n = max(len(self.metric_names), 1)
        fig, axes = _figure(n, width=4.5)
        epochs = np.arange(1, len(self.metrics) + 1)
        for i, name in enumerate(self.metric_names):
            axes[i].plot(epochs, [row[i] for row in self.metrics], 'o-')
            axes[i].set_xlabel('epoch'); axes[i].set_title(name)
        return fig

    def plot_lr_find(self, n_skip: int = 10, n_skip_end: int = 5, suggestions: bool = True):
        """Smoothed loss against lr (log scale) from the last `lr_find`, with the suggestions marked; returns the Figure."""
        fig, (ax,) = _figure()
        lrs, losses = self.lr_find_lrs, self.lr_find_losses
        if len(lrs) <= n_skip + n_skip_end:  # short sweep: show everything rather than nothing
            n_skip, n_skip_end = 0, 0
        end = len(lrs) - n_skip_end
        ax.plot(lrs[n_skip:end], losses[n_skip:end])
        ax.set_xscale('log'); ax.set_xlabel('learning rate (log scale)'); ax.set_ylabel('loss (smoothed)')
        sugg = self.lr_find_suggestions
        if suggestions and sugg is not None and lrs:
            for (label, lr), marker in zip(sugg._asdict().items(), ('o', 's')):
                idx = int(np.argmin(np.abs(np.log(np.asarray(lrs)) - np.log(lr))))
                ax.plot(lr, losses[idx], marker, markersize=8, label=f'{label}: {lr:.2e}')
            ax.legend()
        return fig

    def plot(self, n_skip: int = 10, n_skip_end: int = 5, linear: Optional[bool] = None):
        """fastai 0.7's `learn.sched.plot()`: loss against lr; returns the Figure.

        After `fit_opt_sched` (a range test made of phases, `stop_div=True`): the smoothed training loss of each
        batch against its lr, skipping the first `n_skip` and last `n_skip_end` batches, on a log lr axis unless
        `linear` (default: linear when the last phase's lr decay is LINEAR). Otherwise: the last `lr_find` (see
        `plot_lr_find`; `linear=True` gives a linear lr axis).
        """
        if self.phases is None:
            fig = self.plot_lr_find(n_skip=n_skip, n_skip_end=n_skip_end)
            if linear:
                fig.axes[0].set_xscale('linear'); fig.axes[0].set_xlabel('learning rate')
            return fig
        linear = self.phases['linear'] if linear is None else linear
        fig, (ax,) = _figure()
        lrs, losses = self.lrs, self.smooth_losses
        if len(lrs) <= n_skip + n_skip_end:  # a short run: show everything rather than nothing
            n_skip, n_skip_end = 0, 0
        ax.plot(lrs[n_skip:len(lrs) - n_skip_end], losses[n_skip:len(losses) - n_skip_end])
        ax.set_ylabel('loss (smoothed)')
        if linear:
            ax.set_xlabel('learning rate')
        else:
            ax.set_xscale('log'); ax.set_xlabel('learning rate (log scale)')
        return fig
