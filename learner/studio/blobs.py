"""Image files stored by content: `DIR/blobs/ab/cd/<sha256>`, written atomically before their database row commits.

The name of a stored file is the sha256 of its bytes, never anything a request sent (file names and tags are only
data in the database), so an upload can never choose or escape a path. The same bytes are stored once, whichever
project or tag they are uploaded under.

Order of a write, and what a crash leaves: bytes -> `<name>.tmp` in the same folder -> fsync -> rename -> (the
caller commits the row). A crash before the rename leaves a temporary file; a crash between the rename and the
commit leaves a file no row names. `sweep` removes both when the studio starts.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

__all__ = ['BlobStore', 'sha256_hex']

_SHA = re.compile(r'^[0-9a-f]{64}$')


def sha256_hex(data: bytes) -> str:
    """The lowercase hex sha256 of `data` (a stored file's name)."""
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Content-addressed files under `root`.

    Args:
        root: the folder (created when missing).
    """

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        """Where the file with this sha256 lives (whether or not it exists)."""
        if not _SHA.match(sha):
            raise ValueError(f'not a sha256 hex digest: {sha!r}')
        return self.root / sha[:2] / sha[2:4] / sha

    def put(self, data: bytes) -> str:
        """Store `data` (once: bytes already stored are not rewritten) and return its sha256; durable on return."""
        sha = sha256_hex(data)
        target = self.path(sha)
        if target.exists():
            os.utime(target)  # fresh mtime: a sweep's grace period protects it until its row commits
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{sha[:16]}.', suffix='.tmp', dir=target.parent)
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return sha

    def read(self, sha: str) -> bytes:
        """The stored bytes (FileNotFoundError naming the sha when absent)."""
        path = self.path(sha)
        if not path.is_file():
            raise FileNotFoundError(f'image {sha} is not in the blob store {self.root}')
        return path.read_bytes()

    def __iter__(self) -> Iterator[Path]:
        """Every stored file and leftover temporary file."""
        for path in self.root.glob('*/*/*'):
            if path.is_file():
                yield path

    def sweep(self, is_referenced: Callable[[Iterable[str]], set], grace_s: float = 0.0) -> dict:
        """Remove temporary files and stored files that no row references, when older than `grace_s` seconds.

        Args:
            is_referenced: given shas, returns the subset some database row still names.
            grace_s: leave younger files alone (another process may be between its write and its commit).

        Returns:
            {'temporary': n removed, 'orphans': n removed}.
        """
        cutoff = time.time() - grace_s
        removed = {'temporary': 0, 'orphans': 0}
        candidates = {}
        for path in self:
            try:
                if path.stat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:
                continue
            if path.name.endswith('.tmp') or not _SHA.match(path.name):
                path.unlink(missing_ok=True)
                removed['temporary'] += 1
            else:
                candidates[path.name] = path
        names = list(candidates)
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            kept = is_referenced(chunk)
            for sha in chunk:
                if sha not in kept:
                    candidates[sha].unlink(missing_ok=True)
                    removed['orphans'] += 1
        return removed
