"""A studio on this machine: its folder and database opened and migrated, its keys made at the first start, what a
crash left behind cleaned, and its worker processes started and watched; `run_studio` serves it with uvicorn.

At start, before anything else runs:
  * jobs left running by a worker process of this machine that no longer exists are failed with the reason (the
    studio was stopped or killed while they trained), so no job stays "running" forever; jobs of workers on other
    machines are failed by the heartbeat rule instead (see queue.fail_stale_jobs);
  * temporary files and image files no row references are removed (an upload interrupted between its file and its
    row), as are exports no iteration names and the work folders of jobs that are not running. With SQLite one
    studio owns the folder, so everything is removed at once; with PostgreSQL other studios may be mid-upload on
    the same folder, so only files older than `orphan_grace_s` (10 minutes) are.

The worker supervisor restarts a local worker that exits, after failing the job it held with its exit status.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import sqlalchemy as sa

from ..serve.app import ServeConfig
from .blobs import BlobStore
from .ingest import UploadLimits
from .jobs import STALE_S, StudioDirs
from .keys import ensure_keys
from .queue import fail_jobs_of_worker
from .store import Store, database_url, images, iterations, jobs, snapshot_images

__all__ = ['Studio', 'run_studio']

CACHE_KEEP_S = 30 * 24 * 3600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f'was killed by signal {signal.Signals(-code).name}'
        except ValueError:
            return f'was killed by signal {-code}'
    return f'exited with status {code}'


class Studio:
    """An open studio: `store` (database), `blobs` (image files), `dirs`, upload and prediction limits, the loaded
    models of published iterations, and its local worker processes.

    Args:
        folder: the studio folder (images, exports, the SQLite database by default).
        db: a database URL (default: SQLite in `folder`); postgresql://user@host/db for a team.
        limits: upload limits; serve_config: the prediction endpoints' limits (learner.serve's).
        orphan_grace_s: leave files younger than this at the start sweep (default: 0 with SQLite, 600 with PostgreSQL).
        max_procs: the most training processes a job may ask for (`n_procs`); default: what this machine runs (one
            per GPU, else per CPU core). Raise it when bigger workers run elsewhere: each checks its own machine.
    """

    def __init__(self, folder: Union[str, Path] = 'studio', db: Optional[str] = None,
                 limits: Optional[UploadLimits] = None, serve_config: Optional[ServeConfig] = None,
                 orphan_grace_s: Optional[float] = None, max_procs: Optional[int] = None):
        from .predictions import PublishedModels
        self.dirs = StudioDirs(folder)
        self.store = Store(database_url(db, self.dirs.root))
        self.blobs = BlobStore(self.dirs.blobs_dir)
        self.limits = limits or UploadLimits()
        self.serve_config = serve_config or ServeConfig(max_upload_bytes=self.limits.max_upload_bytes,
                                                        max_pixels=self.limits.max_image_pixels,
                                                        decode_threads=2)
        self.orphan_grace_s = orphan_grace_s if orphan_grace_s is not None else (0.0 if self.store.is_sqlite else 600.0)
        self.models = PublishedModels(self.dirs.exports, self.serve_config)
        if max_procs is not None and max_procs < 1:
            raise ValueError(f'max_procs must be at least 1, got {max_procs}')
        self.max_procs = max_procs
        self.new_keys: Optional[Dict[str, str]] = None
        self._workers: List[subprocess.Popen] = []
        self._watch: Optional[threading.Thread] = None
        self._closing = threading.Event()

    def open(self) -> 'Studio':
        """Migrate, make the keys on the first start (kept in `new_keys`), fail jobs orphaned by a dead local
        worker, and sweep what a crash left."""
        self.store.migrate()
        with self.store.write() as conn:
            self.new_keys = ensure_keys(conn)
        self.fail_orphaned_jobs()
        self.sweep()
        return self

    def fail_orphaned_jobs(self) -> List[int]:
        """Fail running jobs whose worker was a process of this machine that is gone."""
        host = socket.gethostname()
        with self.store.read() as conn:
            running = conn.execute(sa.select(jobs.c.id, jobs.c.worker).where(jobs.c.status == 'running')).all()
        failed = []
        for row in running:
            worker_host, _, pid = (row.worker or '').rpartition(':')
            if worker_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                failed += fail_jobs_of_worker(self.store, row.worker, f'the worker process {pid} is gone (the studio '
                                                                      f'was stopped or killed during training); '
                                                                      f'train again')
        return failed

    def sweep(self) -> dict:
        """Remove temporary files, unreferenced image files and exports, and stale work folders."""
        def referenced(shas):
            with self.store.read() as conn:
                found = {r[0] for r in conn.execute(sa.select(images.c.sha256).where(images.c.sha256.in_(shas)))}
                found |= {r[0] for r in conn.execute(sa.select(snapshot_images.c.sha256)
                                                     .where(snapshot_images.c.sha256.in_(shas)))}
            return found
        removed = self.blobs.sweep(referenced, self.orphan_grace_s)
        cutoff = time.time() - self.orphan_grace_s
        with self.store.read() as conn:
            named = {r[0] for r in conn.execute(sa.select(iterations.c.export_file))}
            running = {f'job-{r[0]}' for r in conn.execute(sa.select(jobs.c.id).where(jobs.c.status == 'running'))}
        removed['exports'] = 0
        for path in self.dirs.exports.iterdir():
            if path.name not in named and path.stat().st_mtime <= cutoff:
                path.unlink(missing_ok=True)
                removed['exports'] += 1
        for path in self.dirs.work.iterdir():
            if path.name not in running and path.stat().st_mtime <= cutoff:
                shutil.rmtree(path, ignore_errors=True)
        unused = time.time() - CACHE_KEEP_S   # feature caches built over a month ago: rebuilt if ever needed again
        for path in self.dirs.cache.iterdir():
            if path.is_dir() and path.stat().st_mtime < unused:
                shutil.rmtree(path, ignore_errors=True)
        return removed

    # ------------------------------------------------------------------------------------------- workers
    def start_workers(self, n: int = 1, stale_s: float = STALE_S) -> None:
        """Start `n` local worker processes and a thread that restarts any that exits."""
        self._worker_args = [sys.executable, '-m', 'learner.studio.jobs', '--dir', str(self.dirs.root),
                             '--db', self.store.url, '--parent', str(os.getpid()), '--stale', str(stale_s)]
        for _ in range(n):
            self._workers.append(subprocess.Popen(self._worker_args))
        self._watch = threading.Thread(target=self._supervise, name='studio-workers', daemon=True)
        self._watch.start()

    def worker_pids(self) -> List[int]:
        return [p.pid for p in self._workers if p.poll() is None]

    def _supervise(self) -> None:
        while not self._closing.wait(0.5):
            for k, process in enumerate(self._workers):
                code = process.poll()
                if code is None or self._closing.is_set():
                    continue
                name = f'{socket.gethostname()}:{process.pid}'
                reason = f'the worker process {process.pid} {_exit_reason(code)} during training; train again'
                try:
                    fail_jobs_of_worker(self.store, name, reason)
                except Exception as err:  # noqa: BLE001 - the database is unreachable: the stale rule will do it
                    print(f'studio: could not fail the jobs of worker {name}: {err}', file=sys.stderr)
                self._workers[k] = subprocess.Popen(self._worker_args)

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop the workers (SIGTERM: a running job stops within a batch and fails saying so), then the database."""
        self._closing.set()
        for process in self._workers:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout_s
        for process in self._workers:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._workers.clear()
        self.store.dispose()


def run_studio(folder: Union[str, Path] = 'studio', db: Optional[str] = None, host: str = '127.0.0.1',
               port: int = 8000, n_workers: int = 1, log_level: str = 'info',
               limits: Optional[UploadLimits] = None, max_procs: Optional[int] = None) -> None:
    """Open the studio, print where it listens (and its keys, the first time), start its workers, serve until
    interrupted, then stop the workers."""
    import uvicorn
    from PIL import Image
    from .app import create_app
    import warnings
    warnings.filterwarnings('ignore', category=Image.DecompressionBombWarning)  # refused by the decoder's own limit
    studio = Studio(folder, db, limits=limits, max_procs=max_procs).open()
    sock = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    _announce(studio, host, bound_port, n_workers)
    if n_workers:
        studio.start_workers(n_workers)
    try:
        config = uvicorn.Config(create_app(studio), log_level=log_level, workers=1)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        studio.close()


def _announce(studio: Studio, host: str, port: int, n_workers: int) -> None:
    """Print the keys (first start only), then the address line (last: a script reading the output waits for it)."""
    if studio.new_keys:
        print('This studio\'s keys, shown only now (the database keeps their hashes; `learner studio keys --reset` '
              'makes new ones):', flush=True)
        print(f'  Training-Key:   {studio.new_keys["training"]}', flush=True)
        print(f'  Prediction-Key: {studio.new_keys["prediction"]}', flush=True)
    shown = f'[{host}]' if ':' in host else host
    print(f'learner studio at http://{shown}:{port} (API docs at /docs); folder {studio.dirs.root}, database '
          f'{studio.store.safe_url}, {n_workers} local worker process(es)', flush=True)
