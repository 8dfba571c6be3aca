"""DataBunch (alias ImageClassifierData): train/valid/test datasets and device loaders, built from folders,
a labels CSV, arrays or datasets; fastai 0.7's `aug_dl`, on-disk `resize` and `PATH/tmp` included."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch

from ..core import default_device, is_writable, user_cache_dir
from ..distributed import main_first, rank
from .duplicates import warn_duplicates
from .datasets import ArrayDataset, BaseDataset, FilesDataset
from .images import BadImageWarning
from .loaders import DeviceDataLoader, default_num_workers, make_loader, stop_workers
from .resize_files import resize_files, resized_root
from .sources import csv_splits, drop_bad, folder_source, refuse_bad_headers, require_two_classes, test_folder_files

__all__ = ['DataBunch', 'ImageClassifierData']

_SPLITS = ('train', 'valid', 'test')


class DataBunch:
    """Train, validation and optional test data with loaders yielding normalized float batches on `device`.

    Build one with `from_paths`, `from_csv`, `from_arrays` or `from_datasets`. Iterating `trn_dl`, `val_dl`
    or `test_dl` yields `(x, y)`: x float32 (B, 3, sz, sz) normalized on `device`, y on `device`.
    fastai 0.7's other loaders are there too: `aug_dl` (validation images, training transforms), `fix_dl`
    (training images, validation transforms) and `test_aug_dl`.

    As in fastai 0.7, `path/tmp` is created when `path` is a writable folder (course code saves there);
    a read-only `path` is left alone.

    Args:
        path: folder for outputs (models, caches); kept as `pathlib.Path`. File data sets name their files
            relative to it (`ds.fnames`).
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
        self._make_tmp()

    def _make_tmp(self) -> None:
        """Create path/tmp like fastai 0.7 (course code writes `f'{PATH}tmp/...'`); silent when not writable."""
        if self.path.is_dir() and is_writable(self.path):
            try:
                (self.path / 'tmp').mkdir(exist_ok=True)
            except OSError:
                pass

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

    @property
    def strict(self) -> bool:
        """Whether a file that cannot be decoded during training raises (True) or is filled in with a warning (False,
        the default: an epoch never dies on one bad file)."""
        return bool(getattr(self.trn_ds, 'strict', False))

    @strict.setter
    def strict(self, value: bool) -> None:
        # on every data set, and the loaders' worker processes end: they hold copies made before and would go on
        # with the old setting (the next pass starts new ones)
        for ds in (self.trn_ds, self.val_ds, self.test_ds):
            if ds is not None and hasattr(ds, 'strict'):
                ds.strict = bool(value)
        self.close()

    def close(self) -> None:
        """End the worker processes every loader of this DataBunch keeps alive (they start again on the next pass).
        A program that builds many DataBunches (a training service) calls it when done with one."""
        for dl in [self.trn_dl, self.val_dl, self.test_dl, *self._loaders.values()]:
            if dl is not None:
                stop_workers(dl)

    def to(self, device) -> 'DataBunch':
        """Send every loader's batches to `device`; returns self."""
        self._device = torch.device(device)
        for dl in [self.trn_dl, self.val_dl, self.test_dl, *self._loaders.values()]:
            if dl is not None:
                dl.device = self._device
        return self

    def loader(self, split: str, augment: bool = False, shuffle: bool = False, bs: int | None = None) -> DeviceDataLoader:
        """A loader over `split` in data-set order with the validation transforms (training ones if `augment`).

        Used by TTA (`loader('valid', augment=True)`) and precompute (`loader('train')`). What `val_dl`/`test_dl`
        already are is answered with them; other loaders are made once per arguments and start their worker
        processes per pass, so only `trn_dl` and `val_dl` keep workers alive between passes.
        """
        bs = bs or self.bs
        ds = self._ds(split)
        if not augment and not shuffle and bs == self.bs and split != 'train':
            return self.val_dl if split == 'valid' else self.test_dl
        key = (split, augment, shuffle, bs)
        if key not in self._loaders:
            self._loaders[key] = make_loader(self._pass_dataset(ds, split, augment), bs, shuffle, self.num_workers,
                                             self._device, persistent=False)
        return self._loaders[key]

    def _pass_dataset(self, ds: BaseDataset, split: str, augment: bool) -> BaseDataset:
        """What `loader(split, augment)` iterates: `ds` with the training or validation transforms."""
        return ds.with_tfms(self.trn_ds.tfms if augment else self.val_ds.tfms)

    @property
    def aug_dl(self) -> DeviceDataLoader:
        """The validation images with the training transforms, in order (fastai 0.7; `loader('valid', True)`)."""
        return self.loader('valid', augment=True)

    @property
    def fix_dl(self) -> DeviceDataLoader:
        """The training images with the validation transforms, in order (fastai 0.7; `loader('train')`)."""
        return self.loader('train')

    @property
    def test_aug_dl(self) -> DeviceDataLoader | None:
        """The test images with the training transforms, in order; None without a test set (fastai 0.7)."""
        return None if self.test_ds is None else self.loader('test', augment=True)

    def fingerprint(self, split: str) -> str:
        """A stable hash of what `split` holds (file names, sizes, mtimes and labels; array bytes)."""
        return self._ds(split).fingerprint()

    def tfms_signature(self) -> str:
        """A stable text describing the validation transforms, size and normalization stats."""
        return f'sz={self.sz}; valid={self.val_ds.tfms!r}'

    def denorm(self, x) -> np.ndarray:
        """A normalized (B, C, H, W) batch (tensor or numpy) -> (B, H, W, C) float numpy in [0, 1]."""
        return self.val_ds.denorm(x)

    def with_size(self, sz: int) -> 'DataBunch':
        """The same items, splits, classes and batch size with every transform rebuilt for size `sz`.

        Nothing is written to disk (compare `resize`). Example: progressive resizing,
        `learn.set_data(data.with_size(299))`.
        """
        trn_tfms, val_tfms = self.trn_ds.tfms.resized(sz), self.val_ds.tfms.resized(sz)
        return type(self)(self.path, self.trn_ds.with_tfms(trn_tfms), self.val_ds.with_tfms(val_tfms),
                          self.test_ds.with_tfms(val_tfms) if self.test_ds is not None else None,
                          bs=self.bs, num_workers=self.num_workers, device=self._device)

    def resize(self, targ_sz: int, new_path='tmp', resume: bool = True, fn=None) -> 'DataBunch':
        """Smaller copies of every image on disk, once; returns the same data over them (fastai 0.7).

        Each file's smaller side is brought down to `targ_sz` (never enlarged) and written to
        `path/new_path/targ_sz/<same relative name>`, in parallel threads, atomically. Copies still matching their
        source (same modification time) are kept, so calling it again costs only a `stat` per file. Decoding the
        smaller files makes every later epoch faster (course code: `data.resize(int(sz * 1.3), 'tmp')`).

        The new data has the same splits, classes, labels, transforms, batch size and file names (`fnames`); its
        `path` is the folder of the copies, as in fastai 0.7, so `PATH + ds.fnames[i]` still opens the original.

        Args:
            targ_sz: the largest smaller side, in pixels.
            new_path: folder for the copies, relative to `path` or absolute (for a read-only `path`).
            resume: keep up-to-date copies (False rewrites them all).
            fn: a function PIL Image -> PIL Image used instead of the resizing.

        Raises:
            TypeError: in-memory array data (nothing on disk): use `with_size(sz)`.
        """
        splits = [ds for ds in (self.trn_ds, self.val_ds, self.test_ds) if ds is not None]
        if not all(isinstance(ds, FilesDataset) for ds in splits):
            raise TypeError('resize() writes smaller copies of image files, but this data holds in-memory arrays or '
                            'other data sets; use data.with_size(sz) to change the transforms\' size instead')
        root = resized_root(self.path, targ_sz, new_path)
        if not Path(new_path).is_absolute() and not is_writable(self.path / new_path):
            # a read-only data folder (shared, mounted): the copies go to the user's cache instead, one folder per data
            digest = hashlib.sha256(str(self.path.absolute()).encode()).hexdigest()[:12]
            root = resized_root(user_cache_dir('resized', f'{self.path.absolute().name}-{digest}'), targ_sz, new_path)
        jobs = {}
        for ds in splits:
            for src, name in zip(ds.paths, ds.fnames):
                if Path(name).is_absolute() or name.startswith('../'):
                    raise ValueError(f'resize() keeps the layout under {self.path}, but {src} lies outside it; '
                                     f'build the data with path= a folder holding every image')
                jobs[src] = name
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PermissionError(f'resize() cannot write to {root} ({e}); pass new_path= an absolute folder you '
                                  f'can write to, e.g. data.resize({targ_sz}, tempfile.mkdtemp())') from e
        # under torchrun process 0 writes the copies while the others wait, then they only check them (resume)
        report = main_first(lambda: resize_files(list(jobs), list(jobs.values()), targ_sz, root,
                                                 resume=resume or rank() != 0, fn=fn), f'resizing images into {root}')
        if report['problems']:
            shown = '\n'.join(f'  {src}: {why}' for src, why in report['problems'][:20])
            warnings.warn(f'resize(): {len(report["problems"])} file(s) could not be resized and were copied as they '
                          f'are:\n{shown}', BadImageWarning, stacklevel=2)
        moved = [ds.with_root(root) for ds in splits]
        return type(self)(root, moved[0], moved[1], moved[2] if len(moved) > 2 else None,
                          bs=self.bs, num_workers=self.num_workers, device=self._device)

    def show_batch(self, rows: int = 3, split: str = 'train', seed: int = 0):
        """A grid of rows x rows images of `split` with their training transforms and labels (a Figure)."""
        from ..plotting import new_figure
        ds = self._ds(split)
        n = min(rows * rows, len(ds))
        gen = torch.Generator().manual_seed(seed)
        idxs = torch.randperm(len(ds), generator=gen)[:n].tolist()
        fig = new_figure(figsize=(2.2 * rows, 2.2 * rows))
        for k, i in enumerate(idxs):
            x, y = ds.item_uint8(i)          # uint8 (C, H, W) after the transforms: no need to denormalize
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
        if not trn_ds.is_multi and not trn_ds.is_reg:
            require_two_classes(trn_ds.classes, 'from_datasets: the training data set\'s classes',
                                'give it labels of at least two classes')
        return cls(path, trn_ds, val_ds, test_ds, bs=bs, num_workers=num_workers, device=device)

    @classmethod
    def from_paths(cls, path, bs: int = 64, tfms=(None, None), trn_name: str = 'train', val_name: str = 'valid',
                   test_name: str | None = None, test_with_labels: bool = False, num_workers: int | None = None,
                   skip_bad: bool = False, device=None) -> 'DataBunch':
        """From an ImageNet-style tree: path/trn_name/<class>/*, path/val_name/<class>/*, path/test_name/*.

        File names (`ds.fnames`) are relative to `path`, e.g. 'valid/cats/cat.1001.jpg' or 'test/abc.jpg', so
        course code's `PATH + data.val_ds.fnames[i]` opens the file; `ds.paths` holds the absolute paths.

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
        trn_files, trn_y, classes = folder_source(path / trn_name)
        require_two_classes(classes, f'{path / trn_name}', f'add a sub-folder of images for each other class '
                                                           f'({path / trn_name}/<class>/...)')
        val_files, val_y, _ = folder_source(path / val_name, classes)
        test_files = test_y = None
        if test_name:
            if test_with_labels:
                test_files, test_y, _ = folder_source(path / test_name, classes)
            else:
                test_files = test_folder_files(path / test_name)
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

        File names (`ds.fnames`) are `folder/<id><suffix>`, relative to `path`, as in fastai 0.7.

        Column 2 holds one label, or several separated by `cat_separator` (multi-label is detected when any
        row has a number of labels other than one), or numbers with `continuous=True` (regression).

        Args:
            path: the root folder.
            folder: sub-folder holding the labelled images.
            csv_fname: the CSV file (absolute, or relative to the working directory or to `path`).
            val_idxs: row indices (0-based, header excluded) of the validation set; None: `get_cv_idxs(n)`.
                Both sets keep the CSV's row order (fastai 0.7), whatever the order of `val_idxs`.
            suffix: appended to each id to form the file name, e.g. '.jpg'.
            test_name: sub-folder of unlabelled test images.
            skip_header: the first line is a header.
            Others: as `from_paths`.
        """
        path = Path(path)
        classes, trn, val, test, is_multi = csv_splits(path, folder, csv_fname, val_idxs, suffix, test_name,
                                                       continuous, skip_header, cat_separator)
        return cls._from_files(path, classes, trn, val, test, bs, tfms, num_workers, skip_bad, device,
                               is_multi=is_multi, is_reg=continuous)

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
        if not is_multi and not continuous:  # after the data sets, which name malformed arrays first
            require_two_classes(classes, 'from_arrays: the labels (trn[1], val[1])',
                                'give labels of at least two classes, or classes=[...] naming them')
        return cls(path, trn_ds, val_ds, test_ds, bs=bs, num_workers=num_workers, device=device)

    @classmethod
    def _from_files(cls, path, classes, trn, val, test, bs, tfms, num_workers, skip_bad, device,
                    is_multi=False, is_reg=False) -> 'DataBunch':
        trn_tfms, val_tfms = tfms
        # the sources list files as path / ...: absolute now, so a relative PATH is not applied twice
        splits = {'training': trn, 'validation': val, 'test': test}
        splits = {k: None if v is None else ([Path(f).absolute() for f in v[0]], v[1]) for k, v in splits.items()}
        if skip_bad:
            splits = {k: None if v is None else drop_bad(v[0], v[1], k) for k, v in splits.items()}
        else:
            refuse_bad_headers([f for v in splits.values() if v is not None for f in v[0]])
        # identical files within a class, across classes or across splits: a DuplicateWarning (bytes only: cheap)
        labelled = {k: (v[0], None if k == 'test' or is_reg else v[1]) for k, v in splits.items() if v is not None}
        warn_duplicates(labelled, classes, stacklevel=4)
        kw = dict(classes=classes, is_multi=is_multi, is_reg=is_reg, path=path)
        trn_ds = FilesDataset(*splits['training'], tfms=trn_tfms, **kw)
        val_ds = FilesDataset(*splits['validation'], tfms=val_tfms, **kw)
        test_ds = None if test is None else FilesDataset(*splits['test'], tfms=val_tfms, **kw)
        return cls(path, trn_ds, val_ds, test_ds, bs=bs, num_workers=num_workers, device=device)


ImageClassifierData = DataBunch
