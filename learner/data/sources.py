"""Where a DataBunch's files and labels come from: ImageNet-style class folders, a test folder, a labels CSV;
and the up-front checks that name bad files or rows before the first epoch."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .images import ImageError, check_headers, image_files, verify_images

__all__ = ['folder_source', 'test_folder_files', 'read_label_csv', 'parse_labels',
           'check_labels_seen_in_training', 'require_two_classes', 'refuse_bad_headers', 'drop_bad', 'csv_splits']


def subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))


def folder_source(folder: Path, classes: Sequence[str] | None = None, lister: Callable = image_files,
                  what: str = 'images (looked for .jpg, .png, ...)') -> tuple[list[Path], np.ndarray, list[str]]:
    """ImageNet layout folder/<class>/<images> -> (files, class indices, classes).

    `lister(class folder)` lists the items of a class (default: image files; videos use `video_files`), and `what`
    names them in messages.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f'no folder {folder}: expected an ImageNet-style tree {folder}/<class>/<images>')
    dirs = subdirs(folder)
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
        found = lister(d)
        if not found:
            raise ValueError(f'class folder {d} holds no {what}; add some or remove the folder')
        files += found
        labels += [list(classes).index(d.name)] * len(found)
    return files, np.array(labels, dtype=np.int64), list(classes)


def refuse_bad_headers(files: list[Path]) -> None:
    """Fail before the first epoch, listing every file whose header cannot be read, rather than mid-epoch."""
    bad = check_headers(files)
    if bad:
        shown = '\n'.join(f'  {b.reason}' for b in bad[:20])
        more = f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''
        raise ImageError(f'{len(bad)} unreadable image file(s):\n{shown}{more}\nremove them, or pass skip_bad=True '
                         f'to leave them out with a warning')


def drop_bad(files: list[Path], labels: np.ndarray, what: str) -> tuple[list[Path], np.ndarray]:
    bad = verify_images(files)
    if not bad:
        return files, labels
    shown = '\n'.join(f'  {b.path}: {b.reason}' for b in bad[:20])
    more = f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''
    warnings.warn(f'skipping {len(bad)} unreadable image(s) in the {what} set:\n{shown}{more}', stacklevel=3)
    bad_set = {b.path for b in bad}
    keep = [i for i, f in enumerate(files) if f not in bad_set]
    return [files[i] for i in keep], labels[keep]


def read_label_csv(csv_path: Path, skip_header: bool) -> list[tuple[int, str, str]]:
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


def check_labels_seen_in_training(y: np.ndarray, is_val: np.ndarray, classes: list, rows: list, csv_path: Path) -> None:
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


def require_two_classes(classes: Sequence, where: str, what_to_add: str) -> None:
    """Single-label classification needs at least two classes: with one, the softmax over a single logit is always 1,
    so nothing trains and accuracy reads 1.0. Refuse it, saying where the classes came from and what to add."""
    if len(classes) < 2:
        found = f'only the class {str(classes[0])!r}' if classes else 'no class at all'
        raise ValueError(f'{where} gives {found}: a classifier needs at least 2 classes; {what_to_add}')


def test_folder_files(folder: Path, lister: Optional[Callable] = None, what: str = 'images') -> list[Path]:
    """The items of an unlabelled test folder: its images (also in sub-folders), or what `lister` lists."""
    if not folder.is_dir():
        raise FileNotFoundError(f'no test folder {folder}: pass test_name=None or create it')
    files = lister(folder) if lister is not None else (image_files(folder) or image_files(folder, recurse=True))
    if not files:
        raise ValueError(f'test folder {folder} holds no {what}')
    return files


def parse_labels(rows, continuous: bool, sep: str, csv_path: Path) -> tuple[np.ndarray, list, bool]:
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


def csv_splits(path: Path, folder: str, csv_fname, val_idxs, suffix: str, test_name: Optional[str], continuous: bool,
               skip_header: bool, cat_separator: str, test_lister: Optional[Callable] = None,
               what: str = 'file') -> tuple:
    """A labels CSV (Kaggle style: `id,labels`, item = path/folder/(id + suffix)) split into training and validation
    rows (`val_idxs`, default `get_cv_idxs(n)`), both in CSV row order as in fastai 0.7, plus an optional test folder.

    Returns:
        (classes, (train items, y), (valid items, y), (test items, zeros) or None, is_multi).
    """
    from .loaders import get_cv_idxs
    csv_path = Path(csv_fname)
    if not csv_path.exists() and (path / csv_fname).exists():
        csv_path = path / csv_fname
    if not csv_path.exists():
        raise FileNotFoundError(f'labels CSV {csv_fname} not found (also looked in {path})')
    rows = read_label_csv(csv_path, skip_header)
    files = []
    for line_no, ident, _ in rows:
        f = path / folder / f'{ident}{suffix}'
        if not (f.is_file() if what == 'file' else f.exists()):
            raise FileNotFoundError(f'{csv_path} line {line_no} (id {ident!r}): {what} {f} does not exist; '
                                    f'check `folder` and `suffix` (now {folder!r}, {suffix!r})')
        files.append(f)
    y, classes, is_multi = parse_labels(rows, continuous, cat_separator, csv_path)
    if not continuous and not is_multi:
        require_two_classes(classes, f'{csv_path} (column 2, the labels)', 'label rows with at least one other '
                            'class (or pass continuous=True for numeric targets)')
    n = len(files)
    val_idxs = get_cv_idxs(n) if val_idxs is None else np.asarray(val_idxs, dtype=np.int64).reshape(-1)
    if len(val_idxs) and (val_idxs.min() < 0 or val_idxs.max() >= n):
        raise ValueError(f'val_idxs must lie in 0..{n - 1} (the {n} rows of {csv_path}), got '
                         f'{val_idxs.min()}..{val_idxs.max()}')
    is_val = np.zeros(n, dtype=bool)
    is_val[val_idxs] = True
    if not continuous:
        check_labels_seen_in_training(y, is_val, classes, rows, csv_path)
    trn_idx, val_idx = np.nonzero(~is_val)[0], np.nonzero(is_val)[0]    # both in CSV row order, as 0.7
    test = None
    if test_name:
        test_files = test_folder_files(path / test_name, test_lister)
        test = (test_files, np.zeros((len(test_files),) + y.shape[1:], dtype=y.dtype))
    return (classes, ([files[i] for i in trn_idx], y[trn_idx]), ([files[i] for i in val_idx], y[val_idx]), test,
            is_multi)
