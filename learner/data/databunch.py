"""DataBunch (alias ImageClassifierData): train/valid/test datasets and device loaders, built from folders,
a labels CSV, arrays or datasets."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core import default_device
from .datasets import ArrayDataset, BaseDataset, FilesDataset
from .images import ImageError, check_headers, image_files, verify_images
from .loaders import DeviceDataLoader, default_num_workers, get_cv_idxs, make_loader

__all__ = ['DataBunch', 'ImageClassifierData']

_SPLITS = ('train', 'valid', 'test')


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))


def _folder_source(folder: Path, classes: Sequence[str] | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """ImageNet layout folder/<class>/<images> -> (files, class indices, classes)."""
    if not folder.is_dir():
        raise FileNotFoundError(f'no folder {folder}: expected an ImageNet-style tree {folder}/<class>/<images>')
    dirs = _subdirs(folder)
    if not dirs:
        raise ValueError(f'{folder} has no class sub-folders: expected {folder}/<class>/<images>')
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        unknown = [d for d in dirs if d.name not in classes]
        if unknown:
            raise ValueError(f'{folder}: class folder(s) {[str(d) for d in unknown]} are not in the training '
                             f'classes {list(classes)}; rename or remove them')
    files, labels = [], []
    for d in dirs:
        found = image_files(d)
        if not found:
            raise ValueError(f'class folder {d} holds no images (looked for .jpg, .png, ...); add images or '
                             f'remove the folder')
        files += found
        labels += [list(classes).index(d.name)] * len(found)
    return files, np.array(labels, dtype=np.int64), list(classes)


def _refuse_bad_headers(files: list[Path]) -> None:
    """Fail before the first epoch, listing every file whose header cannot be read, rather than mid-epoch."""
    bad = check_headers(files)
    if bad:
        shown = '\n'.join(f'  {b.reason}' for b in bad[:20])
        more = f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''
        raise ImageError(f'{len(bad)} unreadable image file(s):\n{shown}{more}\nremove them, or pass skip_bad=True '
                         f'to leave them out with a warning')


def _drop_bad(files: list[Path], labels: np.ndarray, what: str) -> tuple[list[Path], np.ndarray]:
    bad = verify_images(files)
    if not bad:
        return files, labels
    shown = '\n'.join(f'  {b.path}: {b.reason}' for b in bad[:20])
    more = f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''
    warnings.warn(f'skipping {len(bad)} unreadable image(s) in the {what} set:\n{shown}{more}', stacklevel=3)
    bad_set = {b.path for b in bad}
    keep = [i for i, f in enumerate(files) if f not in bad_set]
    return [files[i] for i in keep], labels[keep]


def _read_label_csv(csv_path: Path, skip_header: bool) -> list[tuple[int, str, str]]:
    """(line number, id, label text) for every non-empty row of a labels CSV."""
    rows = []
    with open(csv_path, newline='') as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if (skip_header and line_no == 1) or not row or not any(c.strip() for c in row):
                continue
            label = row[1].strip() if len(row) > 1 else ''
            if not label:
                raise ValueError(f'{csv_path} line {line_no} (id {row[0]!r}): the label column is blank; every '
                                 f'row needs a label in column 2')
            rows.append((line_no, row[0].strip(), label))
    if not rows:
        raise ValueError(f'{csv_path} has no data rows (expected "id,label" lines)')
    first_line = {}
    for line_no, ident, _ in rows:
        if ident in first_line:  # the same image twice would sit in both splits, perhaps with two labels
            raise ValueError(f'{csv_path} lines {first_line[ident]} and {line_no} both name id {ident!r}; each image '
                             f'must appear once (merge its labels into one row, separated by spaces)')
        first_line[ident] = line_no
    return rows


def _check_labels_seen_in_training(y: np.ndarray, is_val: np.ndarray, classes: list, rows: list, csv_path: Path) -> None:
    """A class that only validation rows carry can never be learnt: refuse it, naming the class and a line."""
    counts = y[~is_val].sum(0) if y.ndim == 2 else np.bincount(y[~is_val], minlength=len(classes))
    unseen = [i for i in range(len(classes)) if counts[i] == 0]
    if not unseen:
        return
    hits = y[:, unseen].any(1) if y.ndim == 2 else np.isin(y, unseen)
    first = rows[int(np.nonzero(hits & is_val)[0][0])][0]
    raise ValueError(f'{csv_path}: label(s) {[classes[i] for i in unseen]} appear only in validation rows (first at '
                     f'line {first}); the model cannot learn them: move some of those rows to training (val_idxs) '
                     f'or remove them')


class DataBunch:
    """Train, validation and optional test data with loaders yielding normalized float batches on `device`.

    Build one with `from_paths`, `from_csv`, `from_arrays` or `from_datasets`. Iterating `trn_dl`, `val_dl`
    or `test_dl` yields `(x, y)`: x float32 (B, 3, sz, sz) normalized on `device`, y on `device`.

    Args:
        path: folder for outputs (models, caches); kept as `pathlib.Path`.
        trn_ds, val_ds, test_ds: datasets whose `tfms` are the training / validation / validation transforms.
        bs: batch size.
        num_workers: loader processes (None: `default_num_workers()`; 0 loads in the main process).
        device: where batches go (None: `default_device()`).
    """

    def __init__(self, path, trn_ds: BaseDataset, val_ds: BaseDataset, test_ds: BaseDataset | None = None,
                 bs: int = 64, num_workers: int | None = None, device=None):
        self.path = Path(path)
        self.trn_ds, self.val_ds, self.test_ds = trn_ds, val_ds, test_ds
        self.bs = int(bs)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self._device = torch.device(device) if device is not None else default_device()
        self._loaders: dict = {}
        self.trn_dl = make_loader(trn_ds, self.bs, True, self.num_workers, self._device, drop_single=True)
        self.val_dl = make_loader(val_ds, self.bs, False, self.num_workers, self._device)
        self.test_dl = (make_loader(test_ds, self.bs, False, self.num_workers, self._device)
                        if test_ds is not None else None)

    # --- what the datasets say -------------------------------------------------------------------
    classes = property(lambda self: self.trn_ds.classes)
    c = property(lambda self: self.trn_ds.c)
    sz = property(lambda self: self.trn_ds.sz)
    is_multi = property(lambda self: self.trn_ds.is_multi)
    is_reg = property(lambda self: self.trn_ds.is_reg)
    trn_y = property(lambda self: self.trn_ds.y)
    val_y = property(lambda self: self.val_ds.y)
    test_y = property(lambda self: None if self.test_ds is None else self.test_ds.y)
    stats = property(lambda self: self.val_ds.tfms.stats)
    device = property(lambda self: self._device)

    def _ds(self, split: str) -> BaseDataset:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        ds = {'train': self.trn_ds, 'valid': self.val_ds, 'test': self.test_ds}[split]
        if ds is None:
            raise ValueError('this DataBunch has no test set: pass test_name=... (or test=...) to build one')
        return ds

    def to(self, device) -> 'DataBunch':
        """Send every loader's batches to `device`; returns self."""
        self._device = torch.device(device)
        for dl in [self.trn_dl, self.val_dl, self.test_dl, *self._loaders.values()]:
            if dl is not None:
                dl.device = self._device
        return self

    def loader(self, split: str, augment: bool = False, shuffle: bool = False, bs: int | None = None) -> DeviceDataLoader:
        """A loader over `split` in data-set order with the validation transforms (training ones if `augment`).

        Used by TTA (`loader('valid', augment=True)`) and precompute (`loader('train')`). Cached per arguments.
        """
        key = (split, augment, shuffle, bs or self.bs)
        if key not in self._loaders:
            tfms = self.trn_ds.tfms if augment else self.val_ds.tfms
            ds = self._ds(split).with_tfms(tfms)
            self._loaders[key] = make_loader(ds, bs or self.bs, shuffle, self.num_workers, self._device)
        return self._loaders[key]

    def fingerprint(self, split: str) -> str:
        """A stable hash of what `split` holds (file names, sizes, mtimes and labels; array bytes)."""
        return self._ds(split).fingerprint()

    def tfms_signature(self) -> str:
        """A stable text describing the validation transforms, size and normalization stats."""
        return f'sz={self.sz}; valid={self.val_ds.tfms!r}'

    def denorm(self, x) -> np.ndarray:
        """A normalized (B, C, H, W) batch (tensor or numpy) -> (B, H, W, C) float numpy in [0, 1]."""
        return self.val_ds.denorm(x)

    def resize(self, sz: int) -> 'DataBunch':
        """The same items, splits, classes and batch size with every transform rebuilt for size `sz`."""
        trn_tfms, val_tfms = self.trn_ds.tfms.resized(sz), self.val_ds.tfms.resized(sz)
        return type(self)(self.path, self.trn_ds.with_tfms(trn_tfms), self.val_ds.with_tfms(val_tfms),
                          self.test_ds.with_tfms(val_tfms) if self.test_ds is not None else None,
                          bs=self.bs, num_workers=self.num_workers, device=self._device)

    def show_batch(self, rows: int = 3, split: str = 'train', seed: int = 0):
        """A grid of rows x rows images of `split` with their training transforms and labels (a Figure)."""
        from matplotlib.figure import Figure
        ds = self._ds(split)
        n = min(rows * rows, len(ds))
        gen = torch.Generator().manual_seed(seed)
        idxs = torch.randperm(len(ds), generator=gen)[:n].tolist()
        fig = Figure(figsize=(2.2 * rows, 2.2 * rows))
        for k, i in enumerate(idxs):
            x, y = ds[i]
            ax = fig.add_subplot(rows, rows, k + 1)
            ax.imshow(x.permute(1, 2, 0).numpy())
            ax.set_title(self._label_text(y), fontsize=8)
            ax.axis('off')
        fig.tight_layout()
        return fig

    def _label_text(self, y: torch.Tensor) -> str:
        if self.is_reg:
            return ' '.join(f'{v:.3g}' for v in y.reshape(-1).tolist())
        if self.is_multi:
            return ' '.join(str(self.classes[j]) for j in torch.nonzero(y).reshape(-1).tolist())
        return str(self.classes[int(y)])

    def __repr__(self) -> str:
        n_test = 0 if self.test_ds is None else len(self.test_ds)
        return (f'{type(self).__name__}(train={len(self.trn_ds)}, valid={len(self.val_ds)}, test={n_test}, '
                f'c={self.c}, sz={self.sz}, bs={self.bs}, device={self._device})')

    # --- constructors ----------------------------------------------------------------------------
    @classmethod
    def from_datasets(cls, path, trn_ds: BaseDataset, val_ds: BaseDataset, test_ds: BaseDataset | None = None,
                      bs: int = 64, num_workers: int | None = None, device=None) -> 'DataBunch':
        """A DataBunch over ready datasets (their `tfms` are used as they are)."""
        return cls(path, trn_ds, val_ds, test_ds, bs=bs, num_workers=num_workers, device=device)

    @classmethod
    def from_paths(cls, path, bs: int = 64, tfms=(None, None), trn_name: str = 'train', val_name: str = 'valid',
                   test_name: str | None = None, test_with_labels: bool = False, num_workers: int | None = None,
                   skip_bad: bool = False, device=None) -> 'DataBunch':
        """From an ImageNet-style tree: path/trn_name/<class>/*, path/val_name/<class>/*, path/test_name/*.

        Args:
            path: the root folder.
            bs: batch size.
            tfms: (train_tfms, valid_tfms) from `tfms_from_stats`/`tfms_from_model`.
            trn_name, val_name: sub-folder names of the labelled splits (classes = sorted sub-folder names).
            test_name: sub-folder of unlabelled test images (labels 0) or, with `test_with_labels`, a class tree.
            num_workers: loader processes (None: sized to the machine).
            skip_bad: check every file first and leave unreadable ones out with a warning listing them
                (otherwise a bad file raises `ImageError` naming it when it is loaded).
            device: where batches go.

        Example:
            >>> data = ImageClassifierData.from_paths('data/dogscats', tfms=tfms_from_model(resnet34, 224))
        """
        path = Path(path)
        trn_files, trn_y, classes = _folder_source(path / trn_name)
        val_files, val_y, _ = _folder_source(path / val_name, classes)
        test_files = test_y = None
        if test_name:
            if test_with_labels:
                test_files, test_y, _ = _folder_source(path / test_name, classes)
            else:
                test_files = _test_files(path / test_name)
                test_y = np.zeros(len(test_files), dtype=np.int64)
        return cls._from_files(path, classes, (trn_files, trn_y), (val_files, val_y),
                               None if test_files is None else (test_files, test_y), bs, tfms, num_workers,
                               skip_bad, device)

    @classmethod
    def from_csv(cls, path, folder: str, csv_fname, bs: int = 64, tfms=(None, None), val_idxs=None,
                 suffix: str = '', test_name: str | None = None, continuous: bool = False, skip_header: bool = True,
                 num_workers: int | None = None, cat_separator: str = ' ', skip_bad: bool = False,
                 device=None) -> 'DataBunch':
        """From a labels CSV (Kaggle style): row `id,labels`, file = path/folder/(str(id) + suffix).

        Column 2 holds one label, or several separated by `cat_separator` (multi-label is detected when any
        row has a number of labels other than one), or numbers with `continuous=True` (regression).

        Args:
            path: the root folder.
            folder: sub-folder holding the labelled images.
            csv_fname: the CSV file (absolute, or relative to the working directory or to `path`).
            val_idxs: row indices (0-based, header excluded) of the validation set; None: `get_cv_idxs(n)`.
            suffix: appended to each id to form the file name, e.g. '.jpg'.
            test_name: sub-folder of unlabelled test images.
            skip_header: the first line is a header.
            Others: as `from_paths`.
        """
        path = Path(path)
        csv_path = Path(csv_fname)
        if not csv_path.exists() and (path / csv_fname).exists():
            csv_path = path / csv_fname
        if not csv_path.exists():
            raise FileNotFoundError(f'labels CSV {csv_fname} not found (also looked in {path})')
        rows = _read_label_csv(csv_path, skip_header)
        files = []
        for line_no, ident, _ in rows:
            f = path / folder / f'{ident}{suffix}'
            if not f.is_file():
                raise FileNotFoundError(f'{csv_path} line {line_no} (id {ident!r}): file {f} does not exist; '
                                        f'check `folder` and `suffix` (now {folder!r}, {suffix!r})')
            files.append(f)
        y, classes, is_multi = _parse_labels(rows, continuous, cat_separator, csv_path)
        n = len(files)
        val_idxs = get_cv_idxs(n) if val_idxs is None else np.asarray(val_idxs, dtype=np.int64).reshape(-1)
        if len(val_idxs) and (val_idxs.min() < 0 or val_idxs.max() >= n):
            raise ValueError(f'val_idxs must lie in 0..{n - 1} (the {n} rows of {csv_path}), got '
                             f'{val_idxs.min()}..{val_idxs.max()}')
        is_val = np.zeros(n, dtype=bool)
        is_val[val_idxs] = True
        if not continuous:
            _check_labels_seen_in_training(y, is_val, classes, rows, csv_path)
        trn_idx = np.nonzero(~is_val)[0]
        test = None
        if test_name:
            test_files = _test_files(path / test_name)
            test = (test_files, np.zeros((len(test_files),) + y.shape[1:], dtype=y.dtype))
        return cls._from_files(path, classes, ([files[i] for i in trn_idx], y[trn_idx]),
                               ([files[i] for i in val_idxs], y[val_idxs]), test, bs, tfms, num_workers, skip_bad,
                               device, is_multi=is_multi, is_reg=continuous)

    @classmethod
    def from_arrays(cls, path, trn, val, bs: int = 64, tfms=(None, None), classes=None,
                    num_workers: int | None = None, test=None, continuous: bool = False,
                    device=None) -> 'DataBunch':
        """From in-memory uint8 (N, H, W, 3) arrays: trn=(x, y), val=(x, y), test=x or (x, y).

        No PIL: transforms run on uint8 tensors, a whole batch at a time when every step allows it
        (the CIFAR recipe does). 2-D float/int labels mean multi-label (multi-hot) unless `continuous`.

        Args:
            num_workers: None loads in the main process when the transforms are vectorised (faster than
                shipping small batches between processes), else `default_num_workers()`.
            classes: class names; None: 0..c-1.
            Others: as `from_paths`.
        """
        (trn_x, trn_y), (val_x, val_y) = trn, val
        trn_y, val_y = np.asarray(trn_y), np.asarray(val_y)
        is_multi = trn_y.ndim == 2 and not continuous
        if classes is None:
            classes = [] if continuous else list(range(trn_y.shape[1] if is_multi else int(max(trn_y.max(), val_y.max())) + 1))
        trn_tfms, val_tfms = tfms
        if num_workers is None:
            num_workers = 0 if all(t is None or t.batchable for t in (trn_tfms, val_tfms)) else default_num_workers()
        kw = dict(classes=classes, is_multi=is_multi, is_reg=continuous)
        trn_ds = ArrayDataset(trn_x, trn_y, tfms=trn_tfms, **kw)
        val_ds = ArrayDataset(val_x, val_y, tfms=val_tfms, **kw)
        test_ds = None
        if test is not None:
            test_x, test_y = test if isinstance(test, (tuple, list)) else (test, None)
            if test_y is None:
                test_y = np.zeros((len(test_x),) + trn_y.shape[1:], dtype=trn_y.dtype)
            test_ds = ArrayDataset(test_x, test_y, tfms=val_tfms, **kw)
        return cls(path, trn_ds, val_ds, test_ds, bs=bs, num_workers=num_workers, device=device)

    @classmethod
    def _from_files(cls, path, classes, trn, val, test, bs, tfms, num_workers, skip_bad, device,
                    is_multi=False, is_reg=False) -> 'DataBunch':
        trn_tfms, val_tfms = tfms
        splits = {'training': trn, 'validation': val, 'test': test}
        if skip_bad:
            splits = {k: None if v is None else _drop_bad(v[0], v[1], k) for k, v in splits.items()}
        else:
            _refuse_bad_headers([f for v in splits.values() if v is not None for f in v[0]])
        kw = dict(classes=classes, is_multi=is_multi, is_reg=is_reg)
        trn_ds = FilesDataset(*splits['training'], tfms=trn_tfms, **kw)
        val_ds = FilesDataset(*splits['validation'], tfms=val_tfms, **kw)
        test_ds = None if test is None else FilesDataset(*splits['test'], tfms=val_tfms, **kw)
        return cls(path, trn_ds, val_ds, test_ds, bs=bs, num_workers=num_workers, device=device)


def _test_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f'no test folder {folder}: pass test_name=None or create it')
    files = image_files(folder) or image_files(folder, recurse=True)
    if not files:
        raise ValueError(f'test folder {folder} holds no images')
    return files


def _parse_labels(rows, continuous: bool, sep: str, csv_path: Path) -> tuple[np.ndarray, list, bool]:
    """Label texts -> (y, classes, is_multi): class indices, multi-hot rows, or float targets."""
    split = [label.split(sep) if sep else [label] for _, _, label in rows]
    split = [[s for s in parts if s] for parts in split]
    if continuous:
        try:
            y = np.array([[float(s) for s in parts] for parts in split], dtype=np.float32)
        except ValueError as e:
            raise ValueError(f'{csv_path}: continuous=True needs numeric labels ({e})') from e
        return (y[:, 0] if y.shape[1] == 1 else y), [], False
    classes = sorted({s for parts in split for s in parts})
    index = {c: i for i, c in enumerate(classes)}
    if any(len(parts) != 1 for parts in split):
        y = np.zeros((len(split), len(classes)), dtype=np.float32)
        for r, parts in enumerate(split):
            y[r, [index[s] for s in parts]] = 1.0
        return y, classes, True
    return np.array([index[parts[0]] for parts in split], dtype=np.int64), classes, False


ImageClassifierData = DataBunch
