"""Freezing layer groups and the BatchNorm policy in training mode.

The policy (fastai 0.7 and Keras by default): a frozen layer is frozen, so the BatchNorm layers inside frozen layer
groups run in eval mode with fixed statistics and their affine parameters do not train; a frozen BatchNorm gives
the same output in train and eval mode. `train_bn=True` trains them (fastai 1+: parameters trainable, batch
statistics). `bn_frozen=True` (`learn.bn_freeze(True)`) holds every BatchNorm outside the last layer group (the
head) in eval mode even when its group is unfrozen.

Every module of a layer group carries fastai 0.7's `trainable` flag (True when its group is not frozen), which
`freeze_to` keeps in step and course notebooks read (`m[-4].trainable`); `set_trainable(module, flag)` is 0.7's way
to (un)freeze one module by hand: it sets `requires_grad` and the flag on the module and everything inside it.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

__all__ = ['BN_TYPES', 'set_frozen', 'mark_trainable', 'apply_leaf', 'set_trainable', 'apply_train_mode', 'FreezeMixin']

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _batchnorms(modules: Sequence[nn.Module]):
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, BN_TYPES):
                yield sub


def apply_leaf(module: nn.Module, fn: Callable[[nn.Module], None]) -> None:
    """Call `fn` on `module` and on every module inside it, parents first (fastai 0.7's `apply_leaf`)."""
    for sub in module.modules():
        fn(sub)


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Make `module` and everything inside it trainable or frozen (fastai 0.7's `set_trainable`): `requires_grad`
    of its parameters and the `trainable` flag of each module. The learner's freeze state (`freeze_to`) is per
    layer group; this is for one module by hand."""
    for sub in module.modules():
        sub.trainable = bool(trainable)
        for p in sub.parameters(recurse=False):
            p.requires_grad_(bool(trainable))


def mark_trainable(layer_groups: Sequence[nn.Module], n_frozen: int) -> None:
    """Set the `trainable` flag of every module in each layer group: False in the first `n_frozen` groups."""
    for i, module in enumerate(layer_groups):
        for sub in module.modules():
            sub.trainable = i >= n_frozen


def set_frozen(layer_groups: Sequence[nn.Module], n_frozen: int, train_bn: bool) -> None:
    """Freeze the first `n_frozen` layer groups (requires_grad False) and unfreeze the rest; with `train_bn` the
    BatchNorm parameters inside frozen groups stay trainable. Every module's `trainable` flag follows its group."""
    for i, module in enumerate(layer_groups):
        for p in module.parameters():
            p.requires_grad_(i >= n_frozen)
    mark_trainable(layer_groups, n_frozen)
    if train_bn:
        for bn in _batchnorms(layer_groups[:n_frozen]):
            for p in bn.parameters(recurse=False):
                p.requires_grad_(True)


def apply_train_mode(model: nn.Module, layer_groups: Sequence[nn.Module], n_frozen: int, train_bn: bool,
                     bn_frozen: bool) -> None:
    """`model.train()`, then the BatchNorm policy of the module docstring (eval mode where it says so)."""
    model.train()
    held = list(layer_groups[:-1]) if bn_frozen else ([] if train_bn else list(layer_groups[:n_frozen]))
    for bn in _batchnorms(held):
        bn.eval()


class FreezeMixin:
    """The Learner's freezing methods. Uses the Learner's `layer_groups`, `n_frozen`, `train_bn` and `bn_frozen`."""

    def freeze_to(self, n: int) -> None:
        """Freeze layer groups `[:n]` and unfreeze the rest (n < 0 counts from the end, as a list index does).

        Raises:
            ValueError: n beyond the number of layer groups (that would freeze the head too).
        """
        n_groups = len(self.layer_groups)
        if not -n_groups <= n <= n_groups:
            raise ValueError(f'freeze_to({n}): the model has {n_groups} layer groups, so n must be in '
                             f'{-n_groups}..{n_groups} (freeze() freezes all but the last)')
        self.n_frozen = n if n >= 0 else n_groups + n
        set_frozen(self.layer_groups, self.n_frozen, self.train_bn)

    def freeze(self) -> None:
        """Freeze all layer groups but the last (the head)."""
        self.freeze_to(len(self.layer_groups) - 1)

    def unfreeze(self) -> None:
        """Make every layer group trainable."""
        self.freeze_to(0)

    def bn_freeze(self, do_freeze: bool = True) -> None:
        """Hold every BatchNorm outside the head in eval mode while training, even in unfrozen groups (fastai 0.7):
        statistics stay fixed and train-mode outputs equal eval-mode ones. `bn_freeze(False)` releases them."""
        self.bn_frozen = bool(do_freeze)
