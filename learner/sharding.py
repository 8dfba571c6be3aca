"""Splitting a loader over the processes of a torch.distributed run: which items each process reads.

Training shards are interleaved slices of one permutation of the whole set (the same on every process, drawn from
one seed process 0 broadcasts), padded so every process has as many batches; evaluation shards are contiguous
blocks, nothing padded or dropped, so putting them together in rank order gives data-set order. See
`learner.distributed` for where the Learner uses them.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch
from torch.utils.data import Sampler

from .core import lone_last_batch

__all__ = ['ShardSampler', 'shard_loader']


class ShardSampler(Sampler):
    """This process's indices of a data set of `n_items`, the same split on every process.

    Args:
        n_items: size of the whole data set.
        rank, world: this process and the number of processes.
        shuffle: a new permutation of the whole set each epoch, seeded by `set_epoch(epoch, seed)` (the seed must be
            the same on every process; `DistributedContext.set_epoch` broadcasts process 0's).
        even: training shards: every `world`-th item of the (shuffled) order from `rank` on, padded by wrapping so
            every process gets `ceil(n_items / world)` items. False (evaluation): the contiguous block
            `[rank * n // world, (rank + 1) * n // world)`, nothing padded or dropped.
        draw_seed: how process 0 draws each epoch's seed (the generator one process would have shuffled with).
    """

    def __init__(self, n_items: int, rank: int, world: int, shuffle: bool = False, even: bool = False,
                 draw_seed: Optional[Callable[[], int]] = None):
        if not even and n_items < world:
            raise ValueError(f'cannot split {n_items} evaluation item(s) over {world} processes (each needs at least '
                             f'one): use a validation/test set of at least {world} items, or fewer processes')
        self.n_items, self.rank, self.world, self.shuffle, self.even = n_items, rank, world, shuffle, even
        self.draw_seed = draw_seed or _draw_torch_seed(None)
        self.epoch, self.seed = 0, 0

    def set_epoch(self, epoch: int, seed: Optional[int] = None) -> None:
        """The epoch about to start and the seed of its permutation (default: the epoch number)."""
        self.epoch, self.seed = int(epoch), int(epoch if seed is None else seed)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n_items)
        return torch.randperm(self.n_items, generator=torch.Generator().manual_seed(self.seed))

    def __len__(self) -> int:
        if self.even:
            return -(-self.n_items // self.world)
        return (self.rank + 1) * self.n_items // self.world - self.rank * self.n_items // self.world

    def __iter__(self):
        order = self._order()
        if self.even:
            total = len(self) * self.world
            if total > self.n_items:  # wrap around (repeat the start) so every process has as many items
                order = torch.cat([order] * (-(-total // self.n_items)))[:total]
            return iter(order[self.rank::self.world].tolist())
        start, stop = self.rank * self.n_items // self.world, (self.rank + 1) * self.n_items // self.world
        return iter(order[start:stop].tolist())

    def __repr__(self) -> str:
        kind = 'train' if self.even else 'eval'
        return f'ShardSampler({kind}, rank {self.rank}/{self.world}, {len(self)} of {self.n_items} items)'


def _draw_torch_seed(generator: Optional[torch.Generator]) -> Callable[[], int]:
    return lambda: int(torch.randint(0, 2 ** 62, (), generator=generator))


def _shuffle_source(loader: Any) -> Tuple[bool, Optional[Callable[[], int]]]:
    """(does the loader shuffle, how one process would draw its order's randomness)."""
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
    inner = getattr(loader, 'dl', loader)  # a DeviceDataLoader wraps a DataLoader or a BatchLoader
    if isinstance(inner, DataLoader):
        if isinstance(inner.sampler, RandomSampler):
            return True, _draw_torch_seed(inner.sampler.generator)
        if isinstance(inner.sampler, SequentialSampler):
            return False, None
        raise TypeError(f'the loader uses a {type(inner.sampler).__name__}, which cannot be split over processes: '
                        'under torchrun give the Learner loaders with shuffle=True or False and no custom sampler')
    if not getattr(inner, 'shuffle', False):
        return False, None
    return True, _draw_torch_seed(None)


def shard_loader(loader: Any, rank: int, world: int, train: bool) -> Tuple[Any, ShardSampler]:
    """(this process's version of `loader`, its ShardSampler). `train`: shuffled like `loader`, even shards.

    Works for torch DataLoaders over map-style data sets and for the package's loaders (DeviceDataLoader,
    BatchLoader, CachedFeatureLoader: anything with `with_sampler(sampler, drop_last)`).

    Raises:
        TypeError: a loader that cannot be split (an iterable data set, a generator of batches, a custom sampler).
    """
    from torch.utils.data import DataLoader, IterableDataset
    from .data.loaders import dataloader_with_sampler
    dataset = getattr(loader, 'dataset', None)
    n_items = getattr(loader, 'n_items', None)   # loaders that are not over a data set say how many items they hold
    if n_items is None:
        if dataset is None or isinstance(dataset, IterableDataset) or not hasattr(dataset, '__len__'):
            raise TypeError(f'cannot split a {type(loader).__name__} over {world} processes: under torchrun the '
                            'Learner needs loaders over map-style data sets (a DataBunch, or torch DataLoaders over a '
                            'Dataset with __len__ and __getitem__)')
        n_items = len(dataset)
    shuffle, draw_seed = _shuffle_source(loader) if train else (False, None)
    sampler = ShardSampler(n_items, rank, world, shuffle=shuffle, even=train, draw_seed=draw_seed)
    bs = getattr(loader, 'batch_size', None)
    drop_last = False
    if train and bs:
        # one process drops a last batch of one item (BatchNorm cannot train on it): the same rule per process
        drop_last = lone_last_batch(len(sampler), bs)
        if getattr(getattr(loader, 'dl', loader), 'drop_last', False) and n_items % bs != 1:
            drop_last = True  # the loader drops every ragged last batch
    if callable(getattr(loader, 'with_sampler', None)):
        return loader.with_sampler(sampler, drop_last), sampler
    if isinstance(loader, DataLoader):
        return dataloader_with_sampler(loader, sampler, drop_last), sampler
    raise TypeError(f'cannot split a {type(loader).__name__} over processes: give the Learner torch DataLoaders or '
                    'a DataBunch, or add a with_sampler(sampler, drop_last) method to the loader')
