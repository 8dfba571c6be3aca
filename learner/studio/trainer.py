"""The studio's training recipes, written with the library's public API as a user's script would:

quick     the head on precomputed features of the frozen pretrained body (`ConvLearner.pretrained(...,
          precompute=True)` and 1cycle): seconds to a few minutes.
advanced  a time budget: 1cycle for the head on precomputed features (always: seconds), then lr_find on the
          unfrozen model (which also times a batch; at most a quarter of the budget left) and as many 1cycle epochs
          with differential learning rates as the rest of the budget holds. The fine-tuned model is kept only when it
          is at least as accurate on the validation images as the head alone was; a hard stop at the budget ends a
          fit that runs over.

A `Reporter` (see jobs.py) hears every phase, batch and epoch, and its `cancelled` flag stops training within a
batch (`CancelFit`): the recipe then raises `JobCancelled`.

The same recipes run on N processes under torchrun (a job's `n_procs`, see processes.py): every step below is then
collective, and whatever one process decides alone is made common first: a cancel or a passed deadline is reduced
over the processes at each training batch (`distributed.any_process`), so all of them stop at the same batch and none
waits forever in the next gradient sync; the budget's deadline and the number of epochs it holds are process 0's
(`distributed.broadcast_object`). The job's `bs` stays the global batch: each process reads bs / N images per step.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, List, Optional, Protocol

import numpy as np
import torch

from .. import distributed
from ..callbacks.base import Callback, CancelFit
from ..conv_learner import ConvLearner
from ..data.databunch import DataBunch
from ..data.datasets import FilesDataset
from ..data.transforms import tfms_from_model, transforms_side_on

__all__ = ['Reporter', 'JobCancelled', 'JobFailed', 'build_data', 'train_quick', 'train_advanced', 'ReportProgress',
           'cancel_agreed']

QUICK_EPOCHS = 5
QUICK_LR = 1e-2          # the head on cached features: what the course uses, and robust at any data size
HEAD_EPOCHS_ADVANCED = 3


class JobCancelled(Exception):
    """The job was cancelled while it trained."""


class JobFailed(Exception):
    """The job cannot go on; the message is the whole reason the job shows (no exception type in front)."""


def cancel_agreed(reporter: 'Reporter') -> bool:
    """The reporter's cancel flag, the same on every process: True when any process saw a cancel (collective under
    torchrun; the flag itself on one process)."""
    return distributed.any_process(reporter.cancelled)[0]


class Reporter(Protocol):
    cancelled: bool

    def phase(self, name: str, n_epochs: Optional[int] = None) -> None: ...

    def batch(self, epoch: int, batch: int, n_batches: int, loss: float, fraction: float) -> None: ...

    def epoch(self, log: dict) -> None: ...


class ReportProgress(Callback):
    """Tells the reporter about each training batch and epoch, and stops the fit when the job is cancelled or the
    deadline (time.monotonic() seconds, optional) has passed.

    Under torchrun the stop is agreed: the cancel and deadline flags are reduced over the processes before the fit,
    after each training batch and after validation (never per validation batch: evaluation shards may differ in
    length), and a fit stops on every process at once when any of them saw either.
    """

    def __init__(self, reporter: Reporter, deadline: Optional[float] = None, epochs: bool = True):
        self.reporter, self.deadline, self.hit_deadline, self.epochs = reporter, deadline, False, epochs
        self.n_batches = 0   # training batches seen (over every fit it served)
        self.cancelled = False

    def before_fit(self) -> None:
        self._check()

    def after_batch(self) -> None:
        learn = self.learn
        if learn.training:
            self.n_batches += 1
            n_batches = max(len(learn.dl), 1) if hasattr(learn.dl, '__len__') else 1
            fraction = (learn.epoch + (learn.iter + 1) / n_batches) / max(learn.n_epochs, 1)
            loss = float(learn.loss) if learn.loss is not None else math.nan
            self.reporter.batch(learn.epoch, learn.iter, n_batches, loss, fraction)
            self._check()
        elif learn.distributed is None:
            self._check()        # a validation batch: one process may stop anywhere

    def after_validate(self) -> None:
        if self.learn.distributed is not None:
            self._check()        # under torchrun, the check every process reaches after validating

    def after_epoch(self) -> None:
        if self.epochs:        # not for an LR range test's passes: they are no training epochs
            self.reporter.epoch(dict(self.learn.log))

    def _check(self) -> None:
        cancelled = bool(self.reporter.cancelled)
        late = self.deadline is not None and time.monotonic() > self.deadline
        if self.learn.distributed is not None:
            cancelled, late = distributed.any_process(cancelled, late)
        if cancelled:
            self.cancelled = True
            raise CancelFit()
        if late:
            self.hit_deadline = True
            raise CancelFit()


def build_data(items: List[dict], blob_path, classes: List[str], multi_label: bool, backbone: str, size: int,
               bs: int, workdir: Path, num_workers: Optional[int], n_procs: int = 1) -> DataBunch:
    """A DataBunch over the snapshot's files (content-addressed paths), its split and its labels.

    `bs` is the global batch: with `n_procs` processes each reads ceil(bs / n_procs) images per step (at least 2,
    for the head's BatchNorm), so a job trains with the same batches on any number of processes."""
    index = {name: i for i, name in enumerate(classes)}

    def labels(split_items):
        if multi_label:
            y = np.zeros((len(split_items), len(classes)), dtype=np.float32)
            for row, item in enumerate(split_items):
                y[row, [index[label] for label in item['labels']]] = 1
            return y
        return np.array([index[item['labels'][0]] for item in split_items], dtype=np.int64)

    trn_tfms, val_tfms = tfms_from_model(backbone, size, aug_tfms=transforms_side_on, max_zoom=1.1)
    datasets = []
    for split, tfms in (('train', trn_tfms), ('valid', val_tfms)):
        split_items = [item for item in items if item['split'] == split]
        files = [blob_path(item['sha256']) for item in split_items]
        datasets.append(FilesDataset(files, labels(split_items), classes, tfms=tfms, is_multi=multi_label))
    bs = max(2, min(int(bs), len(datasets[0])))
    bs = max(2, -(-bs // max(int(n_procs), 1)))
    return DataBunch.from_datasets(workdir, datasets[0], datasets[1], bs=bs, num_workers=num_workers)


def _history(name: str, learn: ConvLearner, seconds: float) -> dict:
    recorder = learn.recorder
    names = list(getattr(recorder, 'metric_names', []) or learn.metric_names)
    metrics = [list(map(float, row)) for row in recorder.metrics]
    return {'phase': name, 'epochs': len(recorder.valid_losses), 'train_loss': list(map(float, recorder.train_losses)),
            'valid_loss': list(map(float, recorder.valid_losses)), 'metrics': dict(zip(names, map(list, zip(*metrics))))
            if metrics else {}, 'seconds': round(seconds, 2)}


def _fit(learn: ConvLearner, reporter: Reporter, name: str, n_epochs: int, max_lr: Any,
         deadline: Optional[float] = None) -> dict:
    reporter.phase(name, n_epochs)
    started = time.perf_counter()
    callback = ReportProgress(reporter, deadline)
    learn.fit_one_cycle(n_epochs, max_lr=max_lr, callbacks=[callback])
    if callback.cancelled or cancel_agreed(reporter):
        raise JobCancelled()
    out = _history(name, learn, time.perf_counter() - started)
    out['stopped_at_budget'] = callback.hit_deadline
    return out


def _pick_lr(suggestions, low: float, high: float, fallback: float) -> float:
    """lr_find's min-loss/10 suggestion (else the steepest point), kept inside [low, high]."""
    values = [getattr(suggestions, 'min_div10', None), getattr(suggestions, 'steep', None)]
    values = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    return float(min(max(values[0] if values else fallback, low), high))


def _lr_find(learn: ConvLearner, reporter: Reporter, num_it: int, deadline: Optional[float] = None, **kwargs):
    """lr_find, stopped early at `deadline`; (suggestions or None when too few points, batches swept, seconds, whether
    the deadline stopped it: agreed by every process, as the batches swept are)."""
    callback = ReportProgress(reporter, deadline, epochs=False)
    started = time.monotonic()
    try:
        suggestions = learn.lr_find(num_it=num_it, callbacks=[callback], **kwargs)
    except ValueError:       # too few points to suggest (the learner is restored all the same): cut short by the
        # deadline, or diverged at once (a head already trained on a few images: a loss near 0 that one batch quadruples)
        if not (callback.hit_deadline or callback.n_batches < 3):
            raise
        suggestions = None
    if callback.cancelled or cancel_agreed(reporter):
        raise JobCancelled()
    return suggestions, callback.n_batches, time.monotonic() - started, callback.hit_deadline


def _new_learner(data: DataBunch, backbone: str, cache_dir: Optional[Path]) -> ConvLearner:
    learn = ConvLearner.pretrained(backbone, data, precompute=False, progress=False)
    learn.precompute_cache_dir = cache_dir   # shared by a studio's jobs: an unchanged snapshot is not recomputed
    learn.precompute = True
    return learn


def train_quick(data: DataBunch, backbone: str, options: dict, reporter: Reporter,
                cache_dir: Optional[Path] = None) -> tuple:
    """The head on precomputed features (cached in `cache_dir`, default the data's folder); returns (learner,
    history)."""
    torch.manual_seed(int(options.get('seed') or 0))
    reporter.phase('preparing')
    learn = _new_learner(data, backbone, cache_dir)
    reporter.phase('computing features')
    learn.stage()  # builds the feature cache now, so the training phase's ETA is about training only
    epochs = int(options.get('epochs') or QUICK_EPOCHS)
    history = [_fit(learn, reporter, 'training', epochs, float(options.get('lr') or QUICK_LR))]
    return learn, history


def _accuracy_now(learn: ConvLearner) -> float:
    from ..metrics import accuracy_np
    probs, y = learn.get_preds('valid')
    if learn.data.is_multi:
        return float(((probs >= 0.5) == (y > 0.5)).mean())
    return float(accuracy_np(probs, y))


def train_advanced(data: DataBunch, backbone: str, options: dict, budget_minutes: float, reporter: Reporter,
                   cache_dir: Optional[Path] = None) -> tuple:
    """Head, then fine-tuning for the rest of the budget; returns (learner, history)."""
    # process 0's clock decides for all (time.monotonic is one clock per machine, and torchrun jobs run on one)
    deadline = distributed.broadcast_object(time.monotonic() + 60.0 * float(budget_minutes))
    torch.manual_seed(int(options.get('seed') or 0))
    reporter.phase('preparing')
    learn = _new_learner(data, backbone, cache_dir)
    reporter.phase('computing features')
    learn.stage()
    # the head first, always (seconds on cached features), at the lr that suits a new head on a pretrained body;
    # the budget decides how long the whole model is fine-tuned after it
    lr = float(options.get('lr') or QUICK_LR)
    head_epochs = int(options.get('epochs') or HEAD_EPOCHS_ADVANCED)
    history = [_fit(learn, reporter, 'training the head', head_epochs, lr)]
    head_accuracy, head_state = _accuracy_now(learn), copy.deepcopy(learn.model.state_dict())
    history[-1]['accuracy'] = head_accuracy
    learn.precompute = False
    learn.unfreeze()
    # the sweep also times a batch of the whole model; it may use a quarter of what is left, and when cut short its
    # lowest-loss point is not trusted: the body then gets the course's lr (the head's / 100)
    reporter.phase('finding the learning rate (fine-tuning)')
    n_sweep = int(min(30, max(5, len(data.trn_dl) * 2)))
    remaining = deadline - time.monotonic()
    suggestions, n_swept, seconds, cut_short = _lr_find(learn, reporter, n_sweep, time.monotonic() + remaining / 4,
                                                        start_lr=1e-6, end_lr=1e-1)
    if n_swept < 1 or (n_swept < 2 and cut_short):   # the head used the budget: no time to measure, let alone fine-tune
        history.append({'phase': 'fine-tuning', 'epochs': 0, 'skipped': 'the head used the whole budget: give '
                        'more minutes to fine-tune the body'})
        learn.model.load_state_dict(head_state)
        return learn, history
    seconds_per_batch = seconds / n_swept
    epoch_s = seconds_per_batch * (len(data.trn_dl) + len(data.val_dl) / 3)    # validation: forward only
    remaining = deadline - time.monotonic() - 2 * epoch_s / 3                     # keep time to evaluate and export
    n_epochs = int(min(max(remaining // max(epoch_s, 1e-6), 0), 100))
    n_epochs, epoch_s, remaining = distributed.broadcast_object((n_epochs, epoch_s, remaining))  # one plan for all
    if n_epochs < 1:
        history.append({'phase': 'fine-tuning', 'epochs': 0, 'skipped': f'the budget left ({max(remaining, 0):.0f} s) '
                        f'is less than one epoch of the whole model ({epoch_s:.0f} s)'})
        learn.model.load_state_dict(head_state)
        return learn, history
    lr_body = _pick_lr(suggestions, 1e-5, 1e-3, 1e-4) if suggestions and n_swept >= n_sweep else lr / 100
    history.append(_fit(learn, reporter, 'fine-tuning', n_epochs, slice(lr_body / 10, lr_body),
                        deadline + 0.25 * epoch_s + 10))
    tuned_accuracy = _accuracy_now(learn)
    history[-1].update(accuracy=tuned_accuracy, max_lr=lr_body, kept=tuned_accuracy >= head_accuracy)
    if tuned_accuracy < head_accuracy:  # never hand back a model worse than one the job already had
        learn.model.load_state_dict(head_state)
        history[-1]['note'] = (f'fine-tuning ended at accuracy {tuned_accuracy:.4f}, below the head alone '
                               f'({head_accuracy:.4f}): the head-only weights are kept')
    return learn, history
