"""DeviceDataLoader: uint8 batches from worker processes -> device -> float, normalized per batch there."""
from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..core import default_device, lone_last_batch
from .datasets import collate_uint8
from .normalize import Normalize

__all__ = ['DeviceDataLoader', 'one_pass_copy', 'stop_workers', 'loader_generators', 'BatchLoader', 'default_num_workers', 'make_loader', 'get_cv_idxs',
           'dataloader_with_sampler', 'clips_per_item']


def default_num_workers() -> int:
    """Worker processes for image loading: $LEARNER_NUM_WORKERS if set, else min(4, CPU count)."""
    env = os.environ.get('LEARNER_NUM_WORKERS')
    if env is not None:
        return max(0, int(env))
    return min(4, os.cpu_count() or 1)


def get_cv_idxs(n: int, cv_idx: int = 0, val_pct: float = 0.2, seed: int = 42) -> np.ndarray:
    """Validation indices: slice `cv_idx` (of size int(val_pct * n)) of a permutation of range(n) seeded by `seed`.

    Deterministic and side-effect free (numpy's global random state is untouched); the same indices as
    fastai 0.7 for the same arguments.

    Example:
        >>> val_idxs = get_cv_idxs(1000, val_pct=0.1)   # 100 indices, the same every run
    """
    n_val = int(val_pct * n)
    perm = np.random.RandomState(seed).permutation(n)
    return perm[cv_idx * n_val:(cv_idx + 1) * n_val]


class BatchLoader:
    """Whole batches from a dataset with `__getitems__` (in-memory arrays), in the main process.

    What a DataLoader with `num_workers=0` does, minus its per-index sampler and fetcher, which cost as much as the
    CIFAR recipe's augmentation itself for 32 px images. The order comes from `torch.randperm` on torch's global
    generator, so `torch.manual_seed` makes it repeatable (and a resumed fit restores it).

    Args:
        dataset: has `__len__` and `__getitems__(indices) -> (uint8 (B, C, H, W), labels)`.
        batch_size: items per batch.
        shuffle: a new random order every epoch.
        drop_last: leave out a last, smaller batch.
        sampler: where the indices come from instead (under torchrun, this process's `ShardSampler`).
    """
    num_workers = 0

    def __init__(self, dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 pin_memory: bool = False, sampler=None):
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), shuffle and sampler is None
        self.drop_last, self.pin_memory, self.sampler = drop_last, pin_memory, sampler

    def with_sampler(self, sampler, drop_last: bool = False) -> 'BatchLoader':
        """The same loader reading the indices `sampler` yields (for sharding over processes)."""
        return BatchLoader(self.dataset, self.batch_size, False, drop_last, self.pin_memory, sampler)

    def __len__(self) -> int:
        n, bs = len(self.dataset) if self.sampler is None else len(self.sampler), self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = self.batch_size
        if self.sampler is not None:
            order = torch.as_tensor(list(self.sampler), dtype=torch.int64)
        else:
            order = torch.randperm(len(self.dataset)) if self.shuffle else torch.arange(len(self.dataset))
        for start in range(0, len(self) * bs, bs):
            xb, yb = collate_uint8(self.dataset.__getitems__(order[start:start + bs]))
            if self.pin_memory:
                xb, yb = xb.pin_memory(), yb.pin_memory()
            yield xb, yb


def make_loader(ds, bs: int, shuffle: bool, num_workers: int, device: torch.device,
                drop_single: bool = False, persistent: bool = True) -> 'DeviceDataLoader':
    """A DeviceDataLoader over `ds`; with `drop_single` the last batch is dropped only if it would hold 1 item.

    `bs` counts what the model sees in one call: for a video data set whose items hold K clips each (evaluation),
    a batch holds max(1, bs // K) items, so K x that many clips.

    In-memory datasets that fetch whole batches (`whole_batches = True`, e.g. `ArrayDataset`) load in the main
    process without DataLoader (`BatchLoader`) when `num_workers` is 0. Either way items come through the data
    set's `__getitems__` when it has one (uint8 for our data sets), else `ds[i]`.

    Args:
        persistent: keep the worker processes alive between passes (for the loaders read every epoch); loaders read
            now and then (TTA's augmented passes, `fix_dl`, building a cache) start theirs per pass, so idle
            workers never pile up.
    """
    bs = max(1, bs // clips_per_item(ds))
    drop_last = drop_single and lone_last_batch(len(ds), bs)
    pin = torch.device(device).type == 'cuda'
    if num_workers == 0 and getattr(ds, 'whole_batches', False) and callable(getattr(ds, '__getitems__', None)):
        return DeviceDataLoader(BatchLoader(ds, bs, shuffle, drop_last, pin), device)
    dl = DataLoader(ds, batch_size=bs, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers,
                    collate_fn=collate_uint8, persistent_workers=persistent and num_workers > 0, pin_memory=pin)
    return DeviceDataLoader(dl, device)


def clips_per_item(ds: Any) -> int:
    """Clips each item of a data set holds (video evaluation sets: K clips per video); 1 for everything else."""
    return int(getattr(ds, 'clips_per_item', 1) or 1)


def loader_generators(loader: Any) -> list[torch.Generator]:
    """torch Generators owned by a training loader (DataLoader, its sampler, or one wrapped as `.dl`), in a fixed order.

    A loader without its own generator draws from torch's global generator, which is saved anyway.
    """
    found: list[torch.Generator] = []
    candidates = [loader, getattr(loader, 'dl', None)]
    for obj in list(candidates):
        if obj is not None:
            sampler = getattr(obj, 'sampler', None)
            batch_sampler = getattr(obj, 'batch_sampler', None)
            candidates += [sampler, getattr(batch_sampler, 'sampler', None)]
    for obj in candidates:
        gen = getattr(obj, 'generator', None) if obj is not None else None
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def one_pass_copy(loader: Any) -> Any:
    """`loader`, or, when it keeps persistent worker processes, a copy whose workers live for one pass only.

    Why: persistent workers keep their own random generators from one epoch to the next, so a pass that must leave
    no trace (the LR range test) runs on a copy; the original's workers and their random state are untouched.
    """
    inner = loader if isinstance(loader, DataLoader) else getattr(loader, 'dl', None)
    if not isinstance(inner, DataLoader) or not inner.persistent_workers:
        return loader
    batching = (dict(batch_size=inner.batch_size, sampler=inner.sampler, drop_last=inner.drop_last)
                if inner.batch_size is not None else dict(batch_sampler=inner.batch_sampler))
    copy = DataLoader(inner.dataset, num_workers=inner.num_workers, collate_fn=inner.collate_fn,
                      pin_memory=inner.pin_memory, timeout=inner.timeout, worker_init_fn=inner.worker_init_fn,
                      multiprocessing_context=inner.multiprocessing_context, generator=inner.generator,
                      prefetch_factor=inner.prefetch_factor, persistent_workers=False, **batching)
    if inner is loader:
        return copy
    out = DeviceDataLoader(copy, loader.device)
    out.normalize = loader.normalize
    return out


def stop_workers(loader: Any) -> None:
    """End the worker processes a loader keeps between passes (persistent workers); its next pass starts new ones.

    Why: they live as long as the loader, and a loader in a reference cycle (a Learner and its callbacks) lives until
    the garbage collector runs, so a long-lived process that trains many times (the studio's worker) piles them up.
    """
    inner = loader if isinstance(loader, DataLoader) else getattr(loader, 'dl', None)
    iterator = getattr(inner, '_iterator', None) if isinstance(inner, DataLoader) else None
    if iterator is None:
        return
    inner._iterator = None
    shutdown = getattr(iterator, '_shutdown_workers', None)   # torch's multi-process iterator; none with 0 workers
    if shutdown is not None:
        shutdown()


def dataloader_with_sampler(dl: DataLoader, sampler, drop_last: bool) -> DataLoader:
    """A DataLoader like `dl` (same data set, batch size, workers, collate, pinning, generator) whose indices come
    from `sampler` (under torchrun, this process's `ShardSampler`)."""
    if dl.batch_size is None:
        raise TypeError('cannot re-sample a DataLoader built with a batch_sampler: under torchrun give the Learner '
                        'DataLoaders with batch_size= and shuffle= (or a DataBunch)')
    return DataLoader(dl.dataset, batch_size=dl.batch_size, sampler=sampler, num_workers=dl.num_workers,
                      collate_fn=dl.collate_fn, pin_memory=dl.pin_memory, drop_last=drop_last, timeout=dl.timeout,
                      worker_init_fn=dl.worker_init_fn, multiprocessing_context=dl.multiprocessing_context,
                      generator=dl.generator, prefetch_factor=dl.prefetch_factor if dl.num_workers > 0 else None,
                      persistent_workers=dl.persistent_workers)


class DeviceDataLoader:
    """Iterates `(x, y)` with x float32 (B, C, H, W) normalized on `device` and y on `device`.

    The wrapped DataLoader yields uint8 batches; each is moved with one `.to(device)`, then converted and
    normalized there by `Normalize`. Batches that are not uint8 (a user's dataset giving floats) are passed
    through unnormalized.

    Args:
        dl: a torch DataLoader (or a `BatchLoader`) yielding (uint8 (B, C, H, W), labels).
        device: where batches go (default: `default_device()`); settable.
        stats: (mean, std) in 0..1 units; default: the dataset's `tfms.stats`, else (0, 1).
    """

    def __init__(self, dl: DataLoader, device: torch.device | str | None = None, stats=None):
        self.dl = dl
        tfms = getattr(dl.dataset, 'tfms', None)
        if stats is not None:
            self.normalize = Normalize(stats)
        else:
            self.normalize = getattr(tfms, 'normalize', None) or Normalize(None)
        self.device = device if device is not None else default_device()

    @property
    def device(self) -> torch.device:
        return self._device

    @device.setter
    def device(self, device) -> None:
        self._device = torch.device(device)
        self.dl.pin_memory = self._device.type == 'cuda'

    @property
    def dataset(self):
        return self.dl.dataset

    @property
    def batch_size(self) -> int:
        return self.dl.batch_size

    @property
    def clips_per_item(self) -> int:
        """Consecutive rows of a batch that belong to one item (K clips of a video); the loop averages their
        predictions. 1 for images."""
        return clips_per_item(self.dl.dataset)

    def __len__(self) -> int:
        return len(self.dl)

    def with_sampler(self, sampler, drop_last: bool = False) -> 'DeviceDataLoader':
        """The same loader (device, normalization) reading the indices `sampler` yields (sharding over processes)."""
        inner = (self.dl.with_sampler(sampler, drop_last) if isinstance(self.dl, BatchLoader)
                 else dataloader_with_sampler(self.dl, sampler, drop_last))
        out = DeviceDataLoader(inner, self._device)
        out.normalize = self.normalize
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb in self.dl:
            yield self.normalize(xb.to(self._device, non_blocking=True)), yb.to(self._device, non_blocking=True)

    def __repr__(self) -> str:
        return (f'DeviceDataLoader(n_items={len(self.dataset)}, bs={self.batch_size}, device={self._device}, '
                f'num_workers={self.dl.num_workers})')
