"""Resumable checkpoints: `SaveEvery` writes the whole training state every few epochs, `ResumeFromCheckpoint`
puts it back so an interrupted fit continues exactly where the last checkpoint left it.

A checkpoint is a dict of plain data (tensors, numbers, strings, lists, tuples, dicts, None), so it loads with
`torch.load(weights_only=True)` and can never run code:

    format, version          'learner.checkpoint', 1
    model, opt, scaler       state dicts
    epoch, n_epochs          index of the epoch just completed, and the fit's total epochs (begun)
    n_iter                   training batches of the whole fit (fractional fits end part-way through an epoch)
    train_iter, n_batches    training batches done so far, and batches per epoch
    schedule                 the schedule callback's `describe()` (kind and arguments), or None
    log, recorder            the last epoch's log and the recorder's history so far
    callbacks                each callback's `state_dict()` (EarlyStopping's patience, SaveBest's best), by
                             '<class name>.<index among callbacks of that class>'
    rng                      torch CPU (and CUDA) generator states, numpy's and python's `random` state as lists,
                             and the states of generators owned by the training loader (sampler/DataLoader)
    world_size, rng_ranks    under torchrun: the number of processes and every process's `rng`, in rank order

Resuming checks that the checkpoint belongs to the same schedule (total epochs, batches per epoch, schedule kind
and arguments), restores everything above and starts the loop at the next epoch with `learn.train_iter` where the
uninterrupted run had it, so every batch gets the same lr and momentum. With the same seed, deterministic
algorithms and the same data, the final weights are those of an uninterrupted run.

Under torchrun process 0 writes the file and every process resumes from it, each with its own random states; a
checkpoint resumes only with the same number of processes (the batches per process would differ otherwise).

Limitations: the state of augmentation code with its own generators is not saved; data-loader worker processes are reseeded from the
restored torch generator, as in an uninterrupted run.

Example:
    >>> learn.fit_one_cycle(10, 1e-2, checkpoint_every=1)           # interrupted after epoch 6 ...
    >>> learn.fit_one_cycle(10, 1e-2, checkpoint_every=1, resume=True)   # ... runs epochs 7-10
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import numpy as np

from .. import distributed
from ..data.loaders import loader_generators
from ..core import rng_state, set_rng_state
from ..persistence import atomic_torch_save, safe_torch_load
from .base import ORDER_SCHEDULE, ORDER_TRACKING, Callback

__all__ = ['SaveEvery', 'ResumeFromCheckpoint', 'CheckpointMismatchError', 'checkpoint_callbacks']

_FORMAT, _VERSION = 'learner.checkpoint', 1
_RECORDER_FIELDS = ('lrs', 'moms', '_losses', 'train_losses', 'valid_losses', 'metrics', 'metric_names', 'times',
                    'epoch_iters')


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not belong to the fit asked to resume from it (other schedule, epochs or data)."""


# --------------------------------------------------------------------------------------------- helpers
def _fit_schedule(learn: Any) -> Optional[Callback]:
    """The schedule callback of the running fit (the one with a `describe()`), or None."""
    for cb in learn.callbacks:
        if callable(getattr(cb, 'describe', None)):
            return cb
    return None


def _describe_schedule(learn: Any) -> Optional[dict]:
    schedule = _fit_schedule(learn)
    return None if schedule is None else schedule.describe()


def _callback_key(learn: Any, cb: Callback) -> str:
    same = [other for other in learn.callbacks if type(other) is type(cb)]
    return f'{cb.name}.{next(i for i, other in enumerate(same) if other is cb)}'


def _callback_states(learn: Any) -> dict:
    """Every callback's `state_dict()` that holds something, by `_callback_key`."""
    states = {_callback_key(learn, cb): cb.state_dict() for cb in learn.callbacks}
    return {key: state for key, state in states.items() if state}


def _rng_state(learn: Any) -> dict:
    """Every random state the next epoch depends on, as plain data."""
    return {**rng_state(), 'loader': [g.get_state() for g in loader_generators(learn.fit_stage.train)]}


def _set_rng_state(learn: Any, state: dict, file: Path) -> None:
    set_rng_state(state)
    generators = loader_generators(learn.fit_stage.train)
    if len(generators) != len(state['loader']):
        raise CheckpointMismatchError(
            f'{file} holds {len(state["loader"])} training-loader generator states but this training loader has '
            f'{len(generators)}: resume with the same data (loaders built the same way)')
    for gen, gen_state in zip(generators, state['loader']):
        gen.set_state(gen_state)


# --------------------------------------------------------------------------------------------- callbacks
class SaveEvery(Callback):
    """Write a resumable checkpoint to `learn.path/learn.model_dir/<name>.pth` every `every` epochs (and after the
    last epoch), atomically: a crash while writing leaves the previous checkpoint intact, never half a file.

    Runs after the epoch's log and every other callback, tracking ones included (EarlyStopping ends a fit only
    before the next epoch starts, so the epoch that decides it is still written, with EarlyStopping's state). The file is also readable
    by `learn.load(name)` (weights and optimizer state).

    Args:
        every: epochs between checkpoints (a positive integer).
        name: file name without `.pth`, under the learner's model folder (or a path).

    Example:
        >>> learn.fit_one_cycle(5, 1e-2, callbacks=[SaveEvery(2, name='run1')])
    """

    order = ORDER_TRACKING + 5  # after SaveBest/EarlyStopping have judged the epoch, so their state is this epoch's

    def __init__(self, every: int = 1, name: str = 'checkpoint'):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f'every must be a positive number of epochs, got {every!r}')
        self.every, self.fname = every, name

    def after_epoch(self) -> None:
        learn = self.learn
        done = learn.epoch + 1
        if done % self.every == 0 or done == learn.n_epochs:
            self.last_file = atomic_torch_save(self.state(), learn._model_file(self.fname))

    def state(self) -> dict:
        """The checkpoint for the epoch just completed, as plain data."""
        learn = self.learn
        recorder = learn.recorder
        recorder.losses  # turns pending loss tensors into floats
        rng = _rng_state(learn)
        ranks = distributed.all_gather_object(rng) if distributed.is_distributed() else None
        return {'format': _FORMAT, 'version': _VERSION, 'world_size': distributed.world_size(), 'rng_ranks': ranks,
                'model': learn.model.state_dict(), 'opt': learn.opt.state_dict(),
                'scaler': learn.scaler.state_dict(),
                'epoch': int(learn.epoch), 'n_epochs': int(learn.n_epochs),
                'train_iter': int(learn.train_iter), 'n_batches': len(learn.fit_stage.train),
                'n_iter': int(learn.n_iter),
                'schedule': _describe_schedule(learn), 'callbacks': _callback_states(learn),
                'log': {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in learn.log.items()},
                'recorder': {f: list(getattr(recorder, f)) for f in _RECORDER_FIELDS},
                'rng': rng}


class ResumeFromCheckpoint(Callback):
    """At the start of a fit, load `<name>.pth` written by `SaveEvery`, check that it belongs to this fit, restore
    the model, optimizer, recorder and random states, and make the loop start after the saved epoch.

    Runs after the recorder's reset and before the schedule, so the schedule starts from the restored iteration.

    Raises:
        FileNotFoundError: no such checkpoint (run the fit with `checkpoint_every=...` first).
        CheckpointMismatchError: other total epochs, batches per epoch, schedule kind or arguments, or an optimizer
            that does not fit (other layer groups or frozen state); the message names the file.
        UnsafeCheckpointError: the file holds anything but plain data (see `safe_torch_load`).
    """

    order = ORDER_SCHEDULE - 5

    def __init__(self, name: str = 'checkpoint'):
        self.fname = name

    def before_fit(self) -> None:
        learn = self.learn
        file = learn._model_file(self.fname)
        if not file.exists():
            raise FileNotFoundError(f'resume=True but there is no checkpoint {file}: run the fit with '
                                    f'checkpoint_every=... first (or pass resume=False)')
        state = safe_torch_load(file, map_location='cpu')  # RNG states must stay on the CPU; weights are copied over
        if not isinstance(state, dict) or state.get('format') != _FORMAT:
            raise CheckpointMismatchError(f'{file} is not a resumable checkpoint (learn.save writes weights only): '
                                          f'write one with checkpoint_every=... or the SaveEvery callback')
        self._check_same_fit(state, file)
        learn.model.load_state_dict(state['model'])
        try:
            learn.opt.load_state_dict(state['opt'])
        except ValueError as err:
            raise CheckpointMismatchError(f'the optimizer state in {file} does not fit this learner ({err}): resume '
                                          f'with the same layer groups and frozen layers as the saved fit') from err
        if state['scaler']:
            learn.scaler.load_state_dict(state['scaler'])
        for field, values in state['recorder'].items():
            setattr(learn.recorder, field, list(values))
        per_rank = state.get('rng_ranks')
        _set_rng_state(learn, per_rank[distributed.rank()] if per_rank else state['rng'], file)
        learn.log = dict(state['log'])
        learn.start_epoch, learn.train_iter = state['epoch'] + 1, state['train_iter']
        self.resumed_from = state['epoch']
        self._callback_states = state.get('callbacks') or {}

    def before_epoch(self) -> None:
        """Once, after every callback's before_fit has reset it: put back what the callbacks had learnt."""
        states, self._callback_states = getattr(self, '_callback_states', None), None
        for cb in self.learn.callbacks if states else ():
            saved = states.get(_callback_key(self.learn, cb))
            if saved:
                cb.load_state_dict(saved)

    def _check_same_fit(self, state: dict, file: Path) -> None:
        learn = self.learn
        here = {'processes': distributed.world_size(), 'total epochs': learn.n_epochs,
                'batches per epoch': len(learn.fit_stage.train), 'total batches': learn.n_iter,
                'schedule': _describe_schedule(learn)}
        saved = {'processes': state.get('world_size', 1), 'total epochs': state['n_epochs'],
                 'batches per epoch': state['n_batches'],
                 'total batches': state.get('n_iter', state['n_epochs'] * state['n_batches']),
                 'schedule': state['schedule']}
        diffs = [f'{key}: saved {saved[key]!r}, this fit {here[key]!r}' for key in here if saved[key] != here[key]]
        if diffs:
            raise CheckpointMismatchError(
                f'{file} belongs to a different fit, so it cannot be resumed: ' + '; '.join(diffs) +
                '. Resume with the same arguments and data, or pass resume=False (or delete the file) to start over')


def checkpoint_callbacks(checkpoint_every: Optional[int] = None, resume: bool = False,
                         name: str = 'checkpoint') -> List[Callback]:
    """The callbacks for `fit(..., checkpoint_every=N, resume=...)`: SaveEvery(N) and/or ResumeFromCheckpoint."""
    cbs: List[Callback] = []
    if resume:
        cbs.append(ResumeFromCheckpoint(name))
    if checkpoint_every is not None:
        cbs.append(SaveEvery(checkpoint_every, name))
    return cbs
