"""The optimizer side of the Learner: one parameter group set per layer group, per-group hyper-parameters
(learning rate, weight decay, momentum) and decoupled weight decay.

A layer group is an `nn.Module`. The optimizer gets, per layer group, one parameter group for weights that decay and
one for those that do not (biases and normalization-layer parameters). Each is tagged with `layer_group` (its
index), `wd` (decoupled weight decay, applied by `decay_weights`) and `apply_wd`; the optimizer's own
`weight_decay` is 0.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

__all__ = ['NORM_TYPES', 'HyperValue', 'per_group_values', 'build_optimizer', 'set_group_values', 'set_momentum',
           'get_momentum', 'decay_weights', 'group_lrs', 'hyper_state', 'set_hyper_state', 'OptimizerMixin']

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
    """ids of parameters that skip weight decay: biases and the parameters of normalization layers."""
    ids = set()
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            if isinstance(sub, NORM_TYPES) or name.endswith('bias'):
                ids.add(id(p))
    return ids


def _param_groups(layer_groups: Sequence[nn.Module], wds: np.ndarray, decay_bn_bias: bool,
                  extra_module: Optional[nn.Module]) -> List[dict]:
    seen, per_group = set(), []
    for module in layer_groups:
        params = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        per_group.append(params)
    if extra_module is not None:  # parameters no layer group holds train with the last group
        per_group[-1] = per_group[-1] + [p for p in extra_module.parameters() if id(p) not in seen]
    # which parameters skip decay is decided over every module that holds them (a BatchNorm outside the layer
    # groups, appended to the last group above, is still a BatchNorm)
    skip = set()
    if not decay_bn_bias:
        for module in [*layer_groups, *([extra_module] if extra_module is not None else [])]:
            skip |= _no_decay_ids(module)
    groups = []
    for i, params in enumerate(per_group):
        for apply_wd in (True, False):
            plist = [p for p in params if (id(p) not in skip) == apply_wd]
            if plist:
                groups.append({'params': plist, 'layer_group': i, 'wd': float(wds[i]), 'apply_wd': apply_wd,
                               'weight_decay': 0.0})
    if not groups:
        raise ValueError('the model has no parameters to train: check the model and its layer groups')
    return groups


def build_optimizer(opt_fn: Callable, layer_groups: Sequence[nn.Module], lrs: np.ndarray, wds: np.ndarray,
                    decay_bn_bias: bool = False, extra_module: Optional[nn.Module] = None) -> torch.optim.Optimizer:
    """`opt_fn(param_groups, lr=...)` with two parameter groups per layer group (empty ones dropped), tagged as the
    module docstring says; `lrs` and `wds` hold one value per layer group."""
    groups = _param_groups(layer_groups, wds, decay_bn_bias, extra_module)
    for g in groups:
        g['lr'] = float(lrs[g['layer_group']])
    return opt_fn(groups, lr=float(lrs[-1]))


def set_group_values(opt: torch.optim.Optimizer, key: str, values: np.ndarray) -> None:
    """Set `key` ('lr' or 'wd') of every parameter group from one value per layer group."""
    for g in opt.param_groups:
        g[key] = float(values[g['layer_group']])


def group_lrs(opt: torch.optim.Optimizer, n_groups: int) -> np.ndarray:
    """The current lr of each layer group (from the optimizer's parameter groups)."""
    lrs = np.zeros(n_groups)
    for g in opt.param_groups:
        lrs[g['layer_group']] = g['lr']
    return lrs


def set_momentum(opt: torch.optim.Optimizer, mom: float) -> None:
    """Set the momentum of every parameter group: SGD/RMSprop `momentum`, or Adam-family `betas[0]`."""
    for g in opt.param_groups:
        if 'betas' in g:
            g['betas'] = (mom, g['betas'][1])
        elif 'momentum' in g:
            g['momentum'] = mom


def get_momentum(opt: torch.optim.Optimizer) -> Optional[float]:
    """The momentum (or beta1) of the last parameter group; None when the optimizer has neither."""
    g = opt.param_groups[-1]
    return g['betas'][0] if 'betas' in g else g.get('momentum')


def hyper_state(opt: torch.optim.Optimizer) -> List[dict]:
    """Every hyper-parameter of every parameter group (lr, momentum/betas, wd, ...: all but the parameters), as
    copies: what a fit's schedules may change, so the fit can put it back when it ends."""
    return [{k: v for k, v in g.items() if k != 'params'} for g in opt.param_groups]


def set_hyper_state(opt: torch.optim.Optimizer, state: List[dict]) -> None:
    """Put back what `hyper_state(opt)` returned (the same optimizer, the same parameter groups)."""
    if len(state) != len(opt.param_groups):
        raise ValueError(f'{len(state)} saved parameter groups for an optimizer with {len(opt.param_groups)}')
    for group, saved in zip(opt.param_groups, state):
        group.update(saved)


@torch.no_grad()
def decay_weights(opt: torch.optim.Optimizer) -> None:
    """Decoupled weight decay `w <- w * (1 - lr * wd)` for the parameters that had a gradient this step.

    Call it only for a step the optimizer really took (an fp16 step the GradScaler skipped must not decay).
    """
    for g in opt.param_groups:
        if g['apply_wd'] and g['wd']:
            params = [p for p in g['params'] if p.grad is not None]
            if params:
                torch._foreach_mul_(params, 1 - g['lr'] * g['wd'])


class OptimizerMixin:
    """The Learner's layer groups and optimizer methods. Uses the Learner's `opt_fn`, `_layer_groups`, `wds`,
    `decay_bn_bias`, `model` and `opt` (None until the first fit or `create_opt`)."""

    @property
    def layer_groups(self) -> List[nn.Module]:
        """The modules that share a learning rate; setting them rebuilds the optimizer at the next fit."""
        return self._layer_groups

    @layer_groups.setter
    def layer_groups(self, groups: Sequence[nn.Module]) -> None:
        self._layer_groups = list(groups)
        self.wds = per_group_values(self.wds[-1], len(self._layer_groups), 'wds')
        self.opt = None

    def create_opt(self, lrs: HyperValue = 1e-3) -> torch.optim.Optimizer:
        """Build the optimizer: two parameter groups per layer group (see the module docstring), lrs per group."""
        n_groups = len(self.layer_groups)
        self.opt = build_optimizer(self.opt_fn, self.layer_groups, per_group_values(lrs, n_groups), self.wds,
                                   self.decay_bn_bias, extra_module=self.model)
        return self.opt

    def set_lrs(self, lrs: HyperValue) -> None:
        """Set the lr of every layer group from a float, a list/array (one per group) or a slice."""
        if self.opt is None:
            self.create_opt(lrs)
        set_group_values(self.opt, 'lr', per_group_values(lrs, len(self.layer_groups)))

    def set_wds(self, wds: HyperValue) -> None:
        """Set the decoupled weight decay per layer group (float, list/array or slice); kept for later fits."""
        self.wds = per_group_values(wds, len(self.layer_groups), 'wds')
        if self.opt is not None:
            set_group_values(self.opt, 'wd', self.wds)

    def set_mom(self, mom: float) -> None:
        """Set the momentum of every parameter group (SGD `momentum`, or Adam-family `betas[0]`)."""
        set_momentum(self.opt, mom)

    def get_mom(self) -> Optional[float]:
        """The momentum (or beta1) of the last parameter group; None when the optimizer has neither."""
        return get_momentum(self.opt)
