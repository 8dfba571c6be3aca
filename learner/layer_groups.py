"""Layer groups: per-group hyper-parameter values (lrs, wds), optimizer parameter groups, and freezing.

A layer group is an `nn.Module`; the optimizer gets one parameter group per layer group for weights that decay and
one for those that do not (biases and normalisation-layer parameters), each tagged with `layer_group` (its index),
`wd` (decoupled weight decay, applied by the learner) and `apply_wd`.
"""
from __future__ import annotations

from typing import List, Sequence, Union

import numpy as np
from torch import nn

__all__ = ['NORM_TYPES', 'per_group_values', 'build_param_groups', 'set_frozen']

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
              nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.SyncBatchNorm)

HyperValue = Union[float, int, Sequence[float], np.ndarray, slice]


def per_group_values(value: HyperValue, n_groups: int, what: str = 'lrs') -> np.ndarray:
    """One value per layer group from a float (same for all), a list/array (one each) or a slice.

    `slice(lo, hi)`: geometric from lo (first group) to hi (last); `slice(hi)`: hi/10 for the earlier groups, hi for
    the last (fastai 1+).
    """
    if isinstance(value, slice):
        if value.stop is None:
            raise ValueError(f'{what}=slice(...) needs an upper value, e.g. slice(1e-4, 1e-2), got {value}')
        if value.start is None:
            return np.array([value.stop / 10] * (n_groups - 1) + [value.stop], dtype=np.float64)
        if n_groups == 1:
            return np.array([value.stop], dtype=np.float64)
        return np.geomspace(value.start, value.stop, n_groups)
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size == 1:
        return np.full(n_groups, float(arr[0]))
    if arr.size != n_groups:
        raise ValueError(f'{what} has {arr.size} values but the model has {n_groups} layer groups: give one float, '
                         f'{n_groups} values, or a slice(lo, hi)')
    return arr


def _no_decay_ids(module: nn.Module) -> set:
    """ids of parameters that skip weight decay: biases and the parameters of normalisation layers."""
    ids = set()
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            if isinstance(sub, NORM_TYPES) or name.endswith('bias'):
                ids.add(id(p))
    return ids


def build_param_groups(layer_groups: Sequence[nn.Module], wds: np.ndarray, decay_bn_bias: bool = False,
                       extra_module: nn.Module = None) -> List[dict]:
    """Optimizer parameter groups (two per layer group, empty ones dropped), tagged as described in the module doc.

    Parameters of `extra_module` that no layer group holds go into the last layer group, so nothing is left untrained.
    """
    seen, groups = set(), []
    per_group = []
    for module in layer_groups:
        params = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        per_group.append(params)
    if extra_module is not None:
        per_group[-1] = per_group[-1] + [p for p in extra_module.parameters() if id(p) not in seen]
    for i, (module, params) in enumerate(zip(layer_groups, per_group)):
        skip = set() if decay_bn_bias else _no_decay_ids(module)
        decay = [p for p in params if id(p) not in skip]
        no_decay = [p for p in params if id(p) in skip]
        for plist, apply_wd in ((decay, True), (no_decay, False)):
            if plist:
                groups.append({'params': plist, 'layer_group': i, 'wd': float(wds[i]), 'apply_wd': apply_wd,
                               'weight_decay': 0.0})
    if not groups:
        raise ValueError('the model has no parameters to train: check the model and its layer groups')
    return groups


def set_frozen(layer_groups: Sequence[nn.Module], n_frozen: int, train_bn: bool = True) -> None:
    """Freeze the first `n_frozen` layer groups (requires_grad False) and unfreeze the rest; with `train_bn` the
    BatchNorm parameters inside frozen groups stay trainable."""
    for i, module in enumerate(layer_groups):
        for p in module.parameters():
            p.requires_grad_(i >= n_frozen)
        if i < n_frozen and train_bn:
            for sub in module.modules():
                if isinstance(sub, NORM_TYPES):
                    for p in sub.parameters(recurse=False):
                        p.requires_grad_(True)
