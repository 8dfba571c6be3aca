"""Checkpoint files written atomically and read safely (weights only: a file can never run code when loaded), and
the Learner's save/load of weights and optimizer state on top of them."""
from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from .distributed import on_main

__all__ = ['atomic_torch_save', 'safe_torch_load', 'UnsafeCheckpointError', 'save_weights', 'load_weights',
           'PersistenceMixin']


class UnsafeCheckpointError(ValueError):
    """A checkpoint that is not plain tensors/containers (for example a pickle that would run code)."""


def atomic_torch_save(obj: Any, path: Union[str, Path]) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename: a crash never leaves half a file.

    Under torchrun only process 0 writes and the others wait until the file is complete (so they can read it at
    once); call it on every process, as the same script does. An error writing is raised on every process.
    """
    path = Path(path)
    on_main(lambda: _write_atomically(obj, path), f'writing {path}')
    return path


def _write_atomically(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def safe_torch_load(path: Union[str, Path], map_location: Union[str, torch.device] = 'cpu') -> Any:
    """`torch.load(path, weights_only=True)` with errors that name the file and say what to do."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'no checkpoint at {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f'{path} holds objects other than tensors and plain containers, so it was refused '
            f'(loading it could run code). Only load files you trust; re-save them with learn.save/learn.export. '
            f'Detail: {str(err).splitlines()[0]}') from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f'{path} is not a readable checkpoint (truncated or not a torch file): {err}') from err


def save_weights(model: nn.Module, opt: Optional[torch.optim.Optimizer], file: Union[str, Path]) -> Path:
    """Write `{'model': state_dict, 'opt': optimizer state}` (no 'opt' when `opt` is None) atomically."""
    state = {'model': model.state_dict()}
    if opt is not None:
        state['opt'] = opt.state_dict()
    return atomic_torch_save(state, file)


def load_weights(model: nn.Module, file: Union[str, Path], device: Union[str, torch.device] = 'cpu',
                 get_opt: Optional[Callable[[], torch.optim.Optimizer]] = None) -> None:
    """Load a file `save_weights` wrote (or a bare state dict) into `model` and, when `get_opt` is given and the file
    holds optimizer state, into `get_opt()`; an optimizer state that does not fit warns and is skipped."""
    file = Path(file)
    state = safe_torch_load(file, map_location=device)  # UnsafeCheckpointError (a ValueError) for code
    if not isinstance(state, dict):
        raise ValueError(f'{file} holds a {type(state).__name__}, expected a dict of weights')
    model.load_state_dict(state['model'] if 'model' in state else state)
    if get_opt is not None and 'opt' in state:
        try:
            get_opt().load_state_dict(state['opt'])
        except ValueError as err:
            warnings.warn(f'optimizer state in {file} does not match this learner ({err}); kept a fresh optimizer')


class PersistenceMixin:
    """The Learner's `save`, `load` and `load_cycle`. Uses the Learner's `model`, `opt`, `create_opt`, `device`,
    `path` and `model_dir`."""

    def _model_file(self, name: Union[str, Path]) -> Path:
        name = Path(name)
        if name.is_absolute() or name.parent != Path('.'):
            return name if name.suffix else name.with_suffix('.pth')
        return Path(self.path) / self.model_dir / f'{name}.pth'

    def save(self, name: Union[str, Path], with_opt: bool = True) -> Path:
        """Save the weights (and optimizer state) to `path/model_dir/name.pth` atomically (temp file, fsync,
        rename), so a crash never leaves a half-written checkpoint. Returns the file.

        Under torchrun: process 0 writes, the others wait until it is written; call it on every process."""
        return save_weights(self.model, self.opt if with_opt else None, self._model_file(name))

    def load(self, name: Union[str, Path], with_opt: bool = True) -> 'PersistenceMixin':
        """Load weights (and optimizer state if saved) from `path/model_dir/name.pth` with `weights_only=True`: a file
        holding anything but tensors and plain containers is refused (`UnsafeCheckpointError`, a ValueError).

        Under torchrun every process reads the file (on a file system they share) onto its own device."""
        file = self._model_file(name)
        if not file.exists():
            raise FileNotFoundError(f'no checkpoint {file}: save one with learn.save({str(name)!r}) first')
        get_opt = (lambda: self.opt if self.opt is not None else self.create_opt()) if with_opt else None
        load_weights(self.model, file, self.device, get_opt)
        return self

    def load_cycle(self, name: str, cycle: int) -> 'PersistenceMixin':
        """Load the snapshot `fit(..., cycle_save_name=name)` saved at the end of cycle `cycle` (fastai 0.7)."""
        return self.load(f'{name}_cyc_{cycle}')
