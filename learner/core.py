"""Small helpers every module shares: the default device and tensor/numpy conversion."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ['default_device', 'to_numpy', 'to_device']


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
