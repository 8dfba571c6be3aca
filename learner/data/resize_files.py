"""Smaller copies of image files on disk, written once (fastai 0.7's `data.resize(targ_sz, 'tmp')`).

Each file's smaller side is brought down to `targ_sz` (the aspect ratio kept, the other side rounded down) and
the copy is written under a new root with the same relative name, so the folder layout is kept. Files already
small enough are copied as they are. Each copy carries its source's modification time; a copy whose time
matches its source's is left alone, so a second call (or one after an interrupted run) only does the missing
work, and a changed source (any new time, even an older one) is copied again. Writes are atomic: a
temporary file in the target folder, then a rename, so an interrupted run never leaves half a file.
"""
from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from .images import ImageError, open_image
from .resample import scaled_size

__all__ = ['resized_root', 'resize_files']

_JPEG_QUALITY = 90


def resized_root(path, targ_sz: int, new_path='tmp') -> Path:
    """Where `data.resize` puts its copies: path/new_path/targ_sz (new_path may be absolute)."""
    return Path(path) / new_path / str(int(targ_sz))


def _up_to_date(src: Path, dest: Path) -> bool:
    try:
        return dest.stat().st_mtime_ns == src.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _write_atomically(dest: Path, write: Callable[[Path], None], src: Path) -> None:
    """Write to a temporary file beside `dest`, stamp it with `src`'s times, then rename it over `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f'.{dest.name}.{os.getpid()}-{threading.get_ident()}.tmp')
    try:
        write(tmp)
        st = src.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _save_format(dest: Path) -> str:
    fmt = Image.registered_extensions().get(dest.suffix.lower())
    if fmt is None:
        raise ValueError(f'{dest}: Pillow cannot tell an image format from the extension {dest.suffix!r}')
    return fmt


def _resize_one(src: Path, dest: Path, targ_sz: int, fn) -> str:
    """Write dest from src; returns 'resized' or 'copied'. Raises on a file that cannot be read or written."""
    with Image.open(src) as img:
        small = min(img.size) <= targ_sz
    if small and fn is None:
        _write_atomically(dest, lambda tmp: shutil.copyfile(src, tmp), src)
        return 'copied'
    img = Image.fromarray(open_image(src, target_size=targ_sz))    # RGB, EXIF orientation applied
    if fn is not None:
        img = fn(img)
    elif min(img.size) > targ_sz:
        h, w = scaled_size(img.height, img.width, targ_sz)
        img = img.resize((w, h), Image.BILINEAR)                       # antialiased when shrinking
    fmt = _save_format(dest)
    extra = {'quality': _JPEG_QUALITY} if fmt == 'JPEG' else {}
    _write_atomically(dest, lambda tmp: img.save(tmp, format=fmt, **extra), src)
    return 'resized'


def resize_files(srcs: Sequence[Path], names: Sequence[str], targ_sz: int, dest_root, resume: bool = True,
                 fn: Callable | None = None, n_threads: int | None = None) -> dict:
    """Write a copy of each `srcs[i]` at `dest_root / names[i]`, its smaller side at most `targ_sz`.

    Args:
        srcs: the source files.
        names: relative names (with '/'), the layout under `dest_root`.
        targ_sz: the largest smaller side, in pixels.
        dest_root: the folder for the copies.
        resume: leave copies whose modification time matches their source's (False rewrites all).
        fn: a function PIL Image -> PIL Image used instead of the resizing (fastai 0.7's `fn`); it gets the
            decoded RGB image of every file.
        n_threads: parallel writers (None: min(8, CPU count)); Pillow releases the GIL while decoding, resizing
            and encoding.

    Returns:
        counts {'resized', 'copied', 'up_to_date'} and 'problems': [(source, reason)] for files that could not be
        decoded or written, which are copied unchanged instead so the data set keeps every file.
    """
    dest_root = Path(dest_root)
    counts = {'resized': 0, 'copied': 0, 'up_to_date': 0, 'problems': []}
    lock = threading.Lock()

    def work(src_name):
        src, name = Path(src_name[0]), src_name[1]
        dest = dest_root / name
        if resume and _up_to_date(src, dest):
            outcome = 'up_to_date'
        else:
            try:
                outcome = _resize_one(src, dest, targ_sz, fn)
            except (ImageError, OSError, ValueError) as e:
                _write_atomically(dest, lambda tmp: shutil.copyfile(src, tmp), src)
                outcome = 'copied'
                with lock:
                    counts['problems'].append((src, str(e)))
        with lock:
            counts[outcome] += 1

    n_threads = n_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        list(pool.map(work, zip(srcs, names)))
    return counts
