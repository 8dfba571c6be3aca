"""The data classes fastai 0.7's notebooks build by hand, with 0.7's signatures, on this library's data sets and
loaders: `FilesIndexArrayDataset(fnames, y, transform, path)` and its siblings, `ArraysIndexDataset(x, y,
transform)`, 0.7's `DataLoader(dataset, batch_size=1, shuffle=False, ...)`, `ModelData(path, trn_dl, val_dl)` and
`split_by_idx`.

Why: the dog-breeds notebook predicts one file with
`learn.predict_dl(DataLoader(FilesIndexArrayDataset([fn], np.array([0]), val_tfms, PATH)))`; these names make that
run. The data sets are this library's `FilesDataset`/`ArrayDataset` (uint8 items, `ds[i]` gives 0.7's normalized
float image); the DataLoader gives batches on the learner's device, normalized there, as every loader here does.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.utils.data

from ..core import default_device
from .datasets import ArrayDataset, FilesDataset, _Batch, collate_uint8
from .loaders import DeviceDataLoader

__all__ = ['FilesArrayDataset', 'FilesIndexArrayDataset', 'FilesNhotArrayDataset', 'FilesIndexArrayRegressionDataset',
           'ArraysDataset', 'ArraysIndexDataset', 'ArraysNhotDataset', 'DataLoader', 'ModelData', 'split_by_idx']


def _class_names(n: int) -> list:
    return [str(i) for i in range(n)]


class FilesArrayDataset(FilesDataset):
    """Image files `path/fnames[i]` with labels `y` as given (fastai 0.7: `c` is y's width, 0 for 1-D labels).

    Args:
        fnames: file names relative to `path`.
        y: labels, one row or value per file.
        transform: the item pipeline, e.g. `val_tfms` from `tfms_from_model(arch, sz)`.
        path: the folder the names are relative to.
    """
    is_multi_labels, is_reg_labels = False, False

    def __init__(self, fnames: Sequence, y: Any, transform: Any = None, path: Any = None):
        y = np.asarray(y)
        if len(fnames) != len(y):
            raise ValueError(f'{len(fnames)} files but {len(y)} labels: give one label per file')
        super().__init__(fnames, y, self._classes(y), tfms=transform, is_multi=self.is_multi_labels,
                         is_reg=self.is_reg_labels, path=path)

    def _classes(self, y: np.ndarray) -> list:
        return _class_names(y.shape[1]) if y.ndim > 1 else []


class FilesIndexArrayDataset(FilesArrayDataset):
    """Image files with one class index each (`c` = largest index + 1), as 0.7's single-label data sets."""

    def _classes(self, y: np.ndarray) -> list:
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f'FilesIndexArrayDataset needs one integer class index per file, got {y.dtype} {y.shape}')
        return _class_names(int(y.max()) + 1 if len(y) else 0)


class FilesNhotArrayDataset(FilesArrayDataset):
    """Image files with a multi-hot row each (multi-label)."""
    is_multi_labels = True


class FilesIndexArrayRegressionDataset(FilesArrayDataset):
    """Image files with continuous targets (regression)."""
    is_reg_labels = True


def _uint8_images(x: Any) -> np.ndarray:
    """(N, H, W, 3) uint8 from uint8, or from floats in [0, 1] as fastai 0.7's arrays were."""
    x = np.asarray(x)
    if x.dtype.kind == 'f':
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError('float images must be in [0, 1] (fastai 0.7), or pass uint8 pixels')
        x = (x * 255).round().astype(np.uint8)
    return x


class ArraysDataset(ArrayDataset):
    """In-memory images `x` ((N, H, W, 3): uint8, or floats in [0, 1]) with labels `y` as given."""
    is_multi_labels, is_reg_labels = False, False

    def __init__(self, x: Any, y: Any, transform: Any = None):
        y = np.asarray(y)
        super().__init__(_uint8_images(x), y, self._classes(y), tfms=transform, is_multi=self.is_multi_labels,
                         is_reg=self.is_reg_labels)

    def _classes(self, y: np.ndarray) -> list:
        return _class_names(y.shape[1]) if y.ndim > 1 else []


class ArraysIndexDataset(ArraysDataset):
    """In-memory images with one class index each."""

    def _classes(self, y: np.ndarray) -> list:
        return _class_names(int(y.max()) + 1 if len(y) else 0)


class ArraysNhotDataset(ArraysDataset):
    """In-memory images with a multi-hot row each (multi-label)."""
    is_multi_labels = True


def _stack(values: list, pad_idx: int, pre_pad: bool) -> np.ndarray:
    """Stack numpy items; 1-D/2-D items of different lengths (sequences) are padded with `pad_idx`, at the start
    (`pre_pad`) or the end, as 0.7's loader did."""
    arrays = [np.asarray(v) for v in values]
    lengths = {len(a) for a in arrays} if arrays and arrays[0].ndim in (1, 2) else set()
    if len(lengths) <= 1:
        return np.stack(arrays)
    out = np.full((len(arrays), max(lengths), *arrays[0].shape[1:]), pad_idx, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        if pre_pad:
            out[i, len(out[i]) - len(a):] = a
        else:
            out[i, :len(a)] = a
    return out


def collate_07(items: Any, pad_idx: int = 0, pre_pad: bool = True):
    """This library's uint8 items as `collate_uint8` stacks them; anything else (a user's data set giving numpy
    arrays or numbers) as tensors, sequences padded as 0.7's loader did."""
    if isinstance(items, _Batch) or isinstance(items[0][0], torch.Tensor):
        return collate_uint8(items)
    xs, ys = zip(*items)
    return torch.from_numpy(_stack(xs, pad_idx, pre_pad)), torch.as_tensor(_stack(ys, pad_idx, pre_pad))


class DataLoader(DeviceDataLoader):
    """fastai 0.7's DataLoader signature: batches `(x, y)` on the default device, this library's images normalized
    there (other data sets' items are stacked as they come).

    Args: as 0.7: `batch_size`, `shuffle`, `sampler`, `batch_sampler`, `num_workers` (None: 0, batches in this
    process; 0.7 used a thread per core), `pin_memory`, `drop_last`; `pad_idx`/`pre_pad` pad sequences of different
    lengths; `half` gives float16 inputs; `transpose`/`transpose_y` transpose the x/y batches (sequence-first).
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False, sampler: Any = None,
                 batch_sampler: Any = None, pad_idx: int = 0, num_workers: Optional[int] = None,
                 pin_memory: bool = False, drop_last: bool = False, pre_pad: bool = True, half: bool = False,
                 transpose: bool = False, transpose_y: bool = False):
        batching = (dict(batch_size=batch_size, shuffle=shuffle, sampler=sampler, drop_last=drop_last)
                    if batch_sampler is None else dict(batch_sampler=batch_sampler))
        inner = torch.utils.data.DataLoader(dataset, num_workers=num_workers or 0, pin_memory=pin_memory,
                                            collate_fn=partial(collate_07, pad_idx=pad_idx, pre_pad=pre_pad),
                                            **batching)
        super().__init__(inner, default_device())
        self.half, self.transpose, self.transpose_y = half, transpose, transpose_y

    def __iter__(self):
        for xb, yb in super().__iter__():
            if self.half and xb.is_floating_point():
                xb = xb.half()
            yield (xb.T if self.transpose else xb), (yb.T if self.transpose_y else yb)


class ModelData:
    """fastai 0.7's container of loaders built by hand: `ModelData(path, trn_dl, val_dl, test_dl=None)` (or
    `ModelData.from_dls(...)`), accepted by `Learner`. `is_multi`, `is_reg`, `c`, `classes`, `trn_y`, `val_y` come
    from the training and validation data sets. It has no augmented loaders: TTA needs a DataBunch."""

    def __init__(self, path: Any, trn_dl: Any, val_dl: Any, test_dl: Any = None):
        self.path, self.trn_dl, self.val_dl, self.test_dl = Path(path), trn_dl, val_dl, test_dl

    @classmethod
    def from_dls(cls, path: Any, trn_dl: Any, val_dl: Any, test_dl: Any = None) -> 'ModelData':
        return cls(path, trn_dl, val_dl, test_dl)

    trn_ds = property(lambda self: self.trn_dl.dataset)
    val_ds = property(lambda self: self.val_dl.dataset)
    test_ds = property(lambda self: self.test_dl.dataset if self.test_dl is not None else None)
    trn_y = property(lambda self: self.trn_ds.y)
    val_y = property(lambda self: self.val_ds.y)
    is_multi = property(lambda self: bool(getattr(self.trn_ds, 'is_multi', False)))
    is_reg = property(lambda self: bool(getattr(self.trn_ds, 'is_reg', False)))
    classes = property(lambda self: list(getattr(self.trn_ds, 'classes', [])))
    c = property(lambda self: getattr(self.trn_ds, 'c', len(self.classes)))

    def loader(self, split: str, augment: bool = False) -> Any:
        """The 'train', 'valid' or 'test' loader (what predictions on the whole model read)."""
        if augment:
            raise ValueError('ModelData has no augmented loaders: TTA needs a DataBunch (ImageClassifierData)')
        return {'train': self.trn_dl, 'valid': self.val_dl, 'test': self.test_dl}[split]


def split_by_idx(idxs: Sequence[int], *arrays: Any) -> list:
    """For each array: `(its items at idxs, the others)` (fastai 0.7: `((val_x, trn_x), (val_y, trn_y)) =
    split_by_idx(val_idxs, x, y)`)."""
    mask = np.zeros(len(arrays[0]), dtype=bool)
    mask[np.asarray(idxs, dtype=np.int64)] = True
    return [(np.asarray(a)[mask], np.asarray(a)[~mask]) for a in arrays]
