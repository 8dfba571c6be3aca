"""Small helpers every module shares: the default device, tensor/numpy conversion, random-number state, and the
`Stage` the training loop runs."""
from __future__ import annotations

import contextlib
import os
import random
import stat
import warnings
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

__all__ = ['default_device', 'to_numpy', 'to_device', 'rng_state', 'set_rng_state', 'Stage', 'stop_at_batch_end',
           'is_writable', 'user_cache_dir', 'output_folder', 'lone_last_batch']


def default_device() -> torch.device:
    """The device a learner uses when none is given: the first CUDA GPU if there is one, else the CPU."""
    return torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device, any grad state), list or array as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move a tensor, or the tensors inside a list/tuple/dict, to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device, non_blocking) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    return obj


def lone_last_batch(n_items: int, bs: int) -> bool:
    """True when batches of `bs` over `n_items` would end with a batch of a single item, which training loaders drop:
    BatchNorm cannot compute batch statistics from one row (and one noisy step is worth little)."""
    return n_items > 1 and n_items % bs == 1


def rng_state() -> dict:
    """torch (CPU and CUDA), numpy and python `random` generator states, as plain data (safe to save and load with
    `weights_only=True`)."""
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            'numpy': [np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
            'python': [py_version, list(py_internal), py_gauss]}


def set_rng_state(state: dict) -> None:
    """Put back the generator states `rng_state()` returned."""
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    np_keys, np_pos, np_has_gauss, np_gauss = state['numpy']
    np.random.set_state(('MT19937', np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    py_version, py_internal, py_gauss = state['python']
    random.setstate((py_version, tuple(py_internal), py_gauss))


@dataclass
class Stage:
    """What the loop runs: the module that computes outputs from a batch's x, and the loaders it reads.

    Normally the whole model over the DataBunch's loaders; with precompute, the trainable part of the head over
    batches of cached body features (see `precompute.PrecomputedFeatures.stage`).
    """
    model: nn.Module
    train: Optional[Any]
    valid: Optional[Any]
    test: Optional[Any] = None

    def loader(self, split: str) -> Optional[Any]:
        """The loader of 'train', 'valid' or 'test' (None when there is no such split)."""
        if split not in ('train', 'valid', 'test'):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        return getattr(self, split)


@contextlib.contextmanager
def stop_at_batch_end(request_stop: Callable[[], None]) -> Iterator[None]:
    """While inside, the first Ctrl-C calls `request_stop()` (the loop then ends after the current batch) and a
    second one interrupts at once. Outside the main thread, signals cannot be caught: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        request_stop()
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def is_writable(folder: Union[str, os.PathLike]) -> bool:
    """True when files may be written under `folder` (or, if it does not exist yet, under its nearest existing
    parent): this process may write there and the folder is not marked read-only (no write bit for anyone).

    The mode bits are respected even when running as root, who may write anywhere: a data set shipped read-only
    (a shared folder, a course's mounted data) is never written into by default.
    """
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir():
        return False
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def user_cache_dir(*parts: str) -> Path:
    """`$XDG_CACHE_HOME/learner/<parts>` (default `~/.cache/learner/<parts>`): where files go whose natural place
    (beside the data) is read-only."""
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')).joinpath('learner', *parts)


def output_folder(data_path: Union[str, os.PathLike]) -> Path:
    """Where a Learner writes `models/` by default: the data's folder (fastai 0.7), or the working directory when
    that folder is read-only (with a warning saying so)."""
    path = Path(data_path)
    if is_writable(path):
        return path
    warnings.warn(f'{path} is read-only: checkpoints go to {Path.cwd() / "models"} (pass path= to choose)', stacklevel=3)
    return Path.cwd()
