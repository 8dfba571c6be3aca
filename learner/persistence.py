"""Checkpoint files written atomically and read safely (weights only: a file can never run code when loaded)."""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ['atomic_torch_save', 'safe_torch_load', 'UnsafeCheckpointError']


class UnsafeCheckpointError(ValueError):
    """A checkpoint that is not plain tensors/containers (for example a pickle that would run code)."""


def atomic_torch_save(obj: Any, path: Union[str, Path]) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
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
    return path


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
