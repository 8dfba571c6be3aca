"""Datasets of image files or in-memory arrays: `ds[i]` gives fastai 0.7's (normalized float image, label);
the loaders fetch uint8 items through `__getitems__` and normalize per batch on the device."""
from __future__ import annotations

import copy
import hashlib
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import BadImageWarning, open_image, open_image_or_placeholder
from .transforms import Transforms, image_to_tensor

__all__ = ['BaseDataset', 'FilesDataset', 'ArrayDataset', 'collate_uint8']


class _Batch(tuple):
    """(xb, yb) already stacked by a dataset's `__getitems__`; `collate_uint8` passes it through."""


def collate_uint8(items) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (uint8 CHW, label) items into (uint8 (B, C, H, W), labels (B, ...)); no float conversion here."""
    if isinstance(items, _Batch):
        return items[0], items[1]
    xs, ys = zip(*items)
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ValueError(f'images in one batch have different sizes {sorted(shapes)[:4]}: give the DataBunch '
                         f'transforms with a size, e.g. tfms=tfms_from_stats(imagenet_stats, 224)')
    return torch.stack(xs), torch.stack(ys)


@contextmanager
def _one_thread():
    """Run item transforms on one intra-op thread: on small images, thread start-up and contention with
    the training process cost far more than they save (measured 50 us vs 11 ms for a 32 px reflect pad on a
    busy 2-core machine). DataLoader workers already run with one thread."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _label_tensor(y: np.ndarray, is_multi: bool, is_reg: bool) -> torch.Tensor:
    if is_multi or is_reg:
        return torch.as_tensor(np.asarray(y, dtype=np.float32))
    return torch.as_tensor(np.asarray(y, dtype=np.int64))


class BaseDataset(Dataset):
    """Common part: labels, classes, the item pipeline `tfms`, `with_tfms`, `denorm`.

    `ds[i]` is what fastai 0.7 returned: `(x, y)` with x the normalized float32 (C, H, W) numpy image after the
    data set's transforms, and y its label (an int class index, or a float row for multi-label and regression);
    so `ds.denorm(np.stack([ds[i][0] for i in idxs]))` gives viewable (B, H, W, C) images in [0, 1].
    A slice gives `(stacked x, labels)`.

    Loaders do not use `ds[i]`: DataLoader fetches through `__getitems__`, which gives uint8 items like
    `item_uint8` (before normalization), so batches travel as uint8 and are normalized per batch on the device.

    Subclasses implement `get_x(i) -> uint8 (C, H, W) tensor` (before transforms) and `fingerprint()`.
    """
    fnames: list[str] | None = None
    paths: list[Path] | None = None

    def __init__(self, y, classes: Sequence, tfms: Transforms | None, is_multi: bool = False, is_reg: bool = False):
        self.y = np.asarray(y)
        self.classes = list(classes)
        self.is_multi, self.is_reg = is_multi, is_reg
        self.tfms = tfms if tfms is not None else Transforms([])
        self._yt = _label_tensor(self.y, is_multi, is_reg)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def c(self) -> int:
        """Number of outputs the model needs: classes, or regression targets."""
        if self.is_reg:
            return 1 if self.y.ndim == 1 else self.y.shape[1]
        return len(self.classes)

    @property
    def sz(self) -> int | None:
        return self.tfms.sz

    @property
    def stats(self):
        return self.tfms.stats

    def get_x(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def item_uint8(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 (C, H, W) image after the item transforms, label tensor): what the loaders move."""
        with _one_thread():
            return self.tfms(self.get_x(i)), self._yt[i]

    def __getitems__(self, idxs: Sequence[int]):
        """Items `idxs` for a loader (DataLoader calls this instead of `ds[i]`): uint8, not normalized."""
        with _one_thread():
            return [(self.tfms(self.get_x(int(i))), self._yt[int(i)]) for i in idxs]

    def __getitem__(self, i):
        if isinstance(i, slice):
            xs, ys = zip(*(self[k] for k in range(*i.indices(len(self)))))
            return np.stack(xs), np.stack(ys)
        x, _ = self.item_uint8(i)
        return self.tfms.normalize(x).numpy(), self.y[i]

    def with_tfms(self, tfms: Transforms) -> 'BaseDataset':
        """The same items under another pipeline (TTA, precompute, resizing)."""
        new = copy.copy(self)
        new.tfms = tfms
        return new

    def denorm(self, x) -> np.ndarray:
        """A normalized (B, C, H, W) or (C, H, W) batch (tensor or numpy) -> (B, H, W, C) float numpy in [0, 1]."""
        return self.tfms.denorm(x)

    def _hash_labels(self, h) -> None:
        h.update(np.ascontiguousarray(self.y).tobytes())
        h.update(repr(self.classes).encode())

    def fingerprint(self) -> str:
        raise NotImplementedError


def _relative_name(path: Path, root: Path | None) -> str:
    """`path` relative to `root` with '/' separators (fastai 0.7's `fnames`), or in full when outside it."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


class FilesDataset(BaseDataset):
    """Image files with labels; decoding through `open_image` (EXIF, any mode, JPEG draft at the target size).

    Args:
        fnames: image files: relative to `path` (e.g. 'train/cats/cat.1.jpg'), or absolute.
        y: labels: class indices (int), multi-hot rows (float) or regression targets (float).
        classes: class names (index order).
        tfms: the item pipeline.
        strict: raise `ImageError` for a file that cannot be decoded. By default (False) an epoch never dies on a
            bad file: a truncated file is read partially, an undecodable one is replaced by a gray square, and a
            `BadImageWarning` names the file (once per file and process). DataBunch constructors check headers
            up front, so only broken pixel data, or files changed during training, get here.
        path: the folder the names are relative to (the DataBunch's `path`); None: the working directory, and
            `fnames` keeps the names as given.

    Attributes:
        fnames: names relative to `path` with '/' separators, as fastai 0.7 had them, so course code's
            `PATH + ds.fnames[i]` opens the file (names outside `path` are given in full).
        paths: the absolute `pathlib.Path` of every file; decoding, fingerprints and resizing use these.
    """

    def __init__(self, fnames: Sequence, y, classes: Sequence, tfms: Transforms | None = None,
                 is_multi: bool = False, is_reg: bool = False, strict: bool = False, path=None):
        self.path = Path(path) if path is not None else None
        root = self.path.absolute() if self.path is not None else Path.cwd()
        self.paths = [p if p.is_absolute() else root / p for p in map(Path, fnames)]
        self.fnames = ([_relative_name(p, root) for p in self.paths] if self.path is not None
                       else [Path(f).as_posix() for f in fnames])
        if len(self.paths) != len(y):
            raise ValueError(f'{len(self.paths)} files but {len(y)} labels: give one label per file')
        self.strict = strict
        self._warned: set = set()
        super().__init__(y, classes, tfms, is_multi, is_reg)

    def get_x(self, i: int) -> torch.Tensor:
        if self.strict:
            return image_to_tensor(open_image(self.paths[i], target_size=self.tfms.decode_size))
        arr, problem = open_image_or_placeholder(self.paths[i], target_size=self.tfms.decode_size or self.tfms.sz)
        if problem is not None and i not in self._warned:
            self._warned.add(i)
            warnings.warn(f'{problem}. verify_images() lists such files; skip_bad=True leaves them out',
                          BadImageWarning, stacklevel=2)
        return image_to_tensor(arr)

    def with_root(self, path) -> 'FilesDataset':
        """The same names, labels and transforms under another folder (e.g. resized copies of the files)."""
        new = copy.copy(self)
        new.path = Path(path)
        root = new.path.absolute()
        new.paths = [root / f for f in self.fnames]
        new._warned = set()
        return new

    def fingerprint(self) -> str:
        """sha256 of every file's name, size and mtime, and of the labels."""
        h = hashlib.sha256()
        for f in self.paths:
            st = os.stat(f)
            h.update(f'{f}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
        self._hash_labels(h)
        return h.hexdigest()


class ArrayDataset(BaseDataset):
    """In-memory uint8 (N, H, W, 3) images; no PIL: transforms run on uint8 tensors, batched when possible.

    (Batched transforms keep torch's intra-op threads: unlike per-item work on one small image, a whole
    batch is large enough to gain from them.)

    With a vectorised pipeline (e.g. the CIFAR recipe: pad, flip, random crop) the loader fetches a
    whole batch through `__getitems__` and transforms it in a few tensor operations.
    """
    whole_batches = True   # make_loader may fetch batches in the main process (BatchLoader)

    def __init__(self, x: np.ndarray, y, classes: Sequence, tfms: Transforms | None = None,
                 is_multi: bool = False, is_reg: bool = False):
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f'expected uint8 images of shape (N, H, W, 3), got {x.dtype} {x.shape}; convert '
                             f'floats in [0, 1] with (x * 255).round().astype(np.uint8)')
        if len(x) != len(y):
            raise ValueError(f'{len(x)} images but {len(y)} labels: give one label per image')
        self._np = x
        self.x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()   # (N, 3, H, W)
        super().__init__(y, classes, tfms, is_multi, is_reg)

    def get_x(self, i: int) -> torch.Tensor:
        return self.x[i]

    def __getitems__(self, idxs: Sequence[int]):
        idx = torch.as_tensor(idxs, dtype=torch.long)
        return _Batch((self.tfms.batch(self.x.index_select(0, idx)), self._yt.index_select(0, idx)))

    def fingerprint(self) -> str:
        """sha256 of the image bytes and the labels."""
        h = hashlib.sha256()
        h.update(str(self._np.shape).encode())
        h.update(memoryview(np.ascontiguousarray(self._np)).cast('B'))
        self._hash_labels(h)
        return h.hexdigest()
