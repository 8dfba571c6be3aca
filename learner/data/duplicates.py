"""Duplicate images, as a hosted labelling service flags them on upload: the same bytes, or near-identical pixels,
within a class, across classes (conflicting labels) and across train/valid (leakage).

Two passes, both linear in the number of files:
  * identical bytes: files are grouped by size (one `stat` each) and only files sharing a size are hashed (BLAKE2b);
  * near-identical pixels: each image is decoded small (JPEGs at 1/8 scale) into a 64-bit difference hash (dHash:
    is each pixel of a 9x8 grey thumbnail brighter than its right neighbour) and a 12x12 colour thumbnail. Hashes
    within `max_hash_distance` bits share one of four 16-bit bands (pigeonhole), so only files in a common band
    bucket are compared, and a pair counts only when the colour thumbnails also match (mean absolute difference
    <= `max_pixel_difference` of 255): re-encoded, resized or slightly recompressed copies match, different photos
    of a flat background do not.

Measured on this project's 2-core machine, busy with other work: 2,000 JPEGs (500x375) in 2.8 s with pixels, so
about 2 minutes per 100k images (decoding dominates; the bucketed comparison of 100k hashes takes 0.8 s), and in
0.23 s bytes only (about 12 s per 100k, mostly listing and `stat`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageOps

from .images import _to_rgb, image_files

__all__ = ['find_duplicates', 'warn_duplicates', 'DuplicateGroup', 'DuplicateReport', 'DuplicateWarning',
           'pixel_signature', 'near_matches']

PathLike = Union[str, os.PathLike]

#: Folder names read as a split (the first folder under PATH); the folder below it is the class.
SPLIT_NAMES = frozenset({'train', 'training', 'valid', 'val', 'validation', 'test', 'testing'})
_THUMB = 12  # colour thumbnail side (pixels)


class DuplicateWarning(UserWarning):
    """A data set holds duplicate images (same bytes or near-identical pixels); the message lists some."""


@dataclasses.dataclass
class DuplicateGroup:
    """Files that are copies of one another.

    Attributes:
        kind: 'identical' (every file has the same bytes) or 'near' (near-identical pixels).
        files, labels, splits: index-aligned; a label or split is None where unknown.
    """
    kind: str
    files: list
    labels: list
    splits: list

    @property
    def conflicting(self) -> bool:
        """The copies carry different labels: at least one label is wrong."""
        return len({label for label in self.labels if label is not None}) > 1

    @property
    def leakage(self) -> bool:
        """The copies sit in different splits (e.g. train and valid): validation scores are inflated."""
        return len({split for split in self.splits if split is not None}) > 1

    def __str__(self) -> str:
        what = ', '.join(filter(None, ['conflicting labels' if self.conflicting else '',
                                       'train/valid leakage' if self.leakage else ''])) or 'same class'
        lines = [f'{self.kind} ({what}):']
        for f, label, split in zip(self.files, self.labels, self.splits):
            tag = '/'.join(str(t) for t in (split, label) if t is not None)
            lines.append(f'  {f}' + (f'  [{tag}]' if tag else ''))
        return '\n'.join(lines)


@dataclasses.dataclass
class DuplicateReport:
    """What `find_duplicates` found: the groups, the files it could not decode, and how long it took."""
    groups: list
    n_files: int
    unreadable: list
    seconds: float

    @property
    def within_class(self) -> list:
        """Groups whose copies share one label and one split (harmless, but they weigh those images more)."""
        return [g for g in self.groups if not g.conflicting and not g.leakage]

    @property
    def conflicting(self) -> list:
        """Groups whose copies carry different labels."""
        return [g for g in self.groups if g.conflicting]

    @property
    def leakage(self) -> list:
        """Groups whose copies sit in different splits."""
        return [g for g in self.groups if g.leakage]

    def __bool__(self) -> bool:
        return bool(self.groups)

    def summary(self) -> str:
        """One line: how many groups of each kind among how many files."""
        n_dup = sum(len(g.files) for g in self.groups)
        return (f'{len(self.groups)} group(s) of duplicates ({n_dup} of {self.n_files} files): '
                f'{len(self.within_class)} within a class, {len(self.conflicting)} with conflicting labels, '
                f'{len(self.leakage)} across splits')

    def __str__(self) -> str:
        return '\n'.join([self.summary()] + [str(g) for g in self.groups])


def _split_and_label(root: Path, f: Path) -> tuple:
    parts = f.relative_to(root).parts[:-1]
    if parts and parts[0].lower() in SPLIT_NAMES:
        return parts[0], (parts[1] if len(parts) > 1 else None)
    return None, (parts[0] if parts else None)


def _byte_digest(f: Path) -> Optional[bytes]:
    digest = hashlib.blake2b()
    try:
        with open(f, 'rb') as handle:
            for block in iter(lambda: handle.read(1 << 20), b''):
                digest.update(block)
    except OSError:
        return None
    return digest.digest()


_BYTE_BITS = np.array([bin(i).count('1') for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy >= 2 has it built in)."""
    if hasattr(np, 'bitwise_count'):
        return np.bitwise_count(x)
    return _BYTE_BITS[np.ascontiguousarray(x).view(np.uint8).reshape(-1, 8)].sum(1)


def pixel_signature(f: Union[PathLike, BinaryIO]) -> Optional[tuple]:
    """(dHash as int in [0, 2**64), 12x12x3 uint8 thumbnail) of an image file or open binary file, or None when it
    cannot be decoded. Two images are near-duplicates when `near_matches` says so (what `find_duplicates` uses)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with Image.open(f) as img:
                if img.format == 'JPEG':
                    img.draft('RGB', (64, 64))  # decode at 1/8 scale where the file allows: 10x faster
                img = _to_rgb(ImageOps.exif_transpose(img))
                thumb = np.asarray(img.resize((_THUMB, _THUMB), Image.BOX, reducing_gap=2.0), dtype=np.uint8)
                grey = np.asarray(img.convert('L').resize((9, 8), Image.BOX, reducing_gap=2.0), dtype=np.int16)
    except Exception:  # noqa: BLE001 - any decoder failure only means "not comparable": it is reported
        return None
    bits = (grey[:, 1:] > grey[:, :-1]).reshape(-1)                   # (64,)
    return int(np.packbits(bits).view('>u8')[0]), thumb


def _byte_groups(files: list, workers: int) -> list:
    by_size = defaultdict(list)
    for i, f in enumerate(files):
        try:
            by_size[os.stat(f).st_size].append(i)
        except OSError:
            pass
    candidates = [i for same in by_size.values() if len(same) > 1 for i in same]
    with ThreadPoolExecutor(workers) as pool:
        digests = list(pool.map(lambda i: _byte_digest(files[i]), candidates))
    by_digest = defaultdict(list)
    for i, digest in zip(candidates, digests):
        if digest is not None:
            by_digest[digest].append(i)
    return [same for same in by_digest.values() if len(same) > 1]


def _near_pairs(hashes: np.ndarray, thumbs: np.ndarray, max_distance: int, max_difference: float) -> list:
    """Index pairs whose hashes differ in <= max_distance bits and whose thumbnails match."""
    pairs = set()
    for band in range(4):
        keys = (hashes >> np.uint64(16 * band)) & np.uint64(0xFFFF)
        order = np.argsort(keys, kind='stable')
        bounds = np.nonzero(np.diff(keys[order]))[0] + 1
        for bucket in np.split(order, bounds):
            for k in range(len(bucket) - 1):
                i, rest = bucket[k], bucket[k + 1:]
                close = _popcount(hashes[rest] ^ hashes[i]) <= max_distance
                for j in rest[close]:
                    diff = np.abs(thumbs[i].astype(np.int16) - thumbs[j]).mean()
                    if diff <= max_difference:
                        pairs.add((int(min(i, j)), int(max(i, j))))
    return sorted(pairs)


def near_matches(hash_: int, thumb: np.ndarray, hashes: np.ndarray, thumbs: np.ndarray, max_hash_distance: int = 3,
                 max_pixel_difference: float = 6.0) -> np.ndarray:
    """Indices of the signatures (`hashes` (N,) uint64, `thumbs` (N, 12, 12, 3) uint8) that are near-duplicates of
    (`hash_`, `thumb`), by `find_duplicates`' rule: dHashes within `max_hash_distance` bits and colour thumbnails
    within `max_pixel_difference` (mean absolute, of 255). Vectorised: one pass over N signatures."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if not len(hashes):
        return np.zeros(0, dtype=np.int64)
    close = np.nonzero(_popcount(hashes ^ np.uint64(hash_)) <= max_hash_distance)[0]
    if not len(close):
        return close
    diff = np.abs(np.asarray(thumbs)[close].astype(np.int16) - thumb.astype(np.int16)).mean(axis=(1, 2, 3))
    return close[diff <= max_pixel_difference]


def _components(n: int, edges: list) -> list:
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for group in edges:
        for j in group[1:]:
            parent[root(j)] = root(group[0])
    members = defaultdict(list)
    for i in range(n):
        members[root(i)].append(i)
    return [m for m in members.values() if len(m) > 1]


def find_duplicates(path: Union[PathLike, Sequence[PathLike]], labels: Optional[Sequence] = None,
                    splits: Optional[Sequence] = None, pixels: bool = True, max_hash_distance: int = 3,
                    max_pixel_difference: float = 6.0, workers: Optional[int] = None) -> DuplicateReport:
    """List image files that are copies of one another (same bytes, or near-identical pixels).

    Args:
        path: a folder (every image file below it) or a list of files. For a folder, a file's split is the first
            folder under it when that is named train/valid/val/test (...), and its label the folder below that
            (or the first folder, without a split folder): PATH/train/cat/1.jpg is split 'train', label 'cat'.
        labels, splits: per file, for a list of files (None entries: unknown). A label may be any hashable.
        pixels: also look for near-identical pixels (decodes every image small); False: identical bytes only.
        max_hash_distance: the most differing bits (of 64) between two dHashes to compare the images (<= 3).
        max_pixel_difference: the largest mean absolute difference (of 255) between the 12x12 colour thumbnails.
        workers: threads for reading and decoding (default: CPU count).

    Returns:
        A `DuplicateReport`: `.groups`, `.within_class`, `.conflicting`, `.leakage`, `.unreadable`; print it.

    Example:
        >>> report = find_duplicates('data/dogscats')
        >>> print(report.summary()); for group in report.leakage: print(group)
    """
    started = time.perf_counter()
    if not 0 <= max_hash_distance <= 3:
        raise ValueError(f'max_hash_distance must be in 0..3 (four 16-bit bands find every pair that close), '
                         f'got {max_hash_distance}')
    if isinstance(path, (str, os.PathLike)):
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f'no folder {root}: pass a folder of images or a list of files')
        files = image_files(root, recurse=True)
        split_label = [_split_and_label(root, f) for f in files]
        splits, labels = [s for s, _ in split_label], [label for _, label in split_label]
    else:
        files = [Path(f) for f in path]
        labels = [None] * len(files) if labels is None else list(labels)
        splits = [None] * len(files) if splits is None else list(splits)
        if not len(labels) == len(splits) == len(files):
            raise ValueError(f'labels and splits must have one entry per file ({len(files)}), '
                             f'got {len(labels)} and {len(splits)}')
    workers = workers or os.cpu_count() or 1
    identical = _byte_groups(files, workers)
    edges, unreadable = list(identical), []
    if pixels and files:
        with ThreadPoolExecutor(workers) as pool:
            signatures = list(pool.map(pixel_signature, files))
        ok = [i for i, s in enumerate(signatures) if s is not None]
        unreadable = [files[i] for i, s in enumerate(signatures) if s is None]
        if ok:
            hashes = np.array([signatures[i][0] for i in ok], dtype=np.uint64)
            thumbs = np.stack([signatures[i][1] for i in ok])
            edges += [(ok[a], ok[b]) for a, b in _near_pairs(hashes, thumbs, max_hash_distance, max_pixel_difference)]
    same_bytes = {i: k for k, group in enumerate(identical) for i in group}
    groups = []
    for members in _components(len(files), edges):
        kind = 'identical' if len({same_bytes.get(i, -1 - i) for i in members}) == 1 else 'near'
        groups.append(DuplicateGroup(kind, [files[i] for i in members], [labels[i] for i in members],
                                     [splits[i] for i in members]))
    groups.sort(key=lambda g: (not g.conflicting, not g.leakage, str(g.files[0])))
    return DuplicateReport(groups, len(files), unreadable, time.perf_counter() - started)


def warn_duplicates(splits: Mapping[str, tuple], classes: Optional[Sequence] = None, pixels: bool = False,
                    n_shown: int = 5, stacklevel: int = 3) -> DuplicateReport:
    """Warn (`DuplicateWarning`) when the splits of a data set hold duplicates; returns the report.

    Meant for a DataBunch under construction: cheap by default (identical bytes: a `stat` per file, and hashing
    only files that share a size).

    Args:
        splits: split name -> (files, labels); labels are class indices, multi-hot rows, or None (unlabelled test).
        classes: names for the class indices in the message (default: the indices).
        pixels: also look for near-identical pixels (decodes every image; about 1 minute per 100k images).
        n_shown: how many groups the message lists.
    """
    files, labels, names = [], [], []
    for split, (split_files, split_labels) in splits.items():
        files += [Path(f) for f in split_files]
        names += [split] * len(split_files)
        labels += [None] * len(split_files) if split_labels is None else [_label_name(y, classes) for y in split_labels]
    report = find_duplicates(files, labels, names, pixels=pixels)
    if report:
        shown = '\n'.join(str(g) for g in report.groups[:n_shown])
        more = f'\n... and {len(report.groups) - n_shown} more group(s)' if len(report.groups) > n_shown else ''
        warnings.warn(f'{report.summary()}\n{shown}{more}\nRemove or relabel them; '
                      f'learner.find_duplicates(PATH) lists them all.', DuplicateWarning, stacklevel=stacklevel)
    return report


def _label_name(y, classes: Optional[Sequence]):
    y = np.asarray(y)
    name = (lambda i: classes[int(i)] if classes is not None else int(i))
    if y.ndim == 0:
        return name(y)
    return tuple(name(i) for i in np.nonzero(y)[0])  # multi-hot: the set of labels
