"""The worker process: claims queued training jobs through the database, trains each with the library (see
trainer.py), and writes an iteration. The web process never trains; it starts one of these (`learner studio` does),
and more can run on other machines against the same database and folder:

    python -m learner.studio.jobs --dir DIR [--db postgresql://...]      (or `learner studio worker ...`)

While a job runs, a heartbeat thread marks it alive every few seconds and reads its cancel flag; progress (phase,
epoch, loss, accuracy, ETA) is written to the job's row at most twice a second. A job ends exactly once:
succeeded (with its iteration, recorded in the same transaction), cancelled, or failed with the reason. A worker
that is killed leaves its job running with a silent heartbeat: the studio that started it fails it at once (it
sees the process exit), and any worker or studio fails it after `stale_s` seconds otherwise. SIGTERM, or the death
of the studio that started the worker, stops the job within a batch and fails it saying so.

A job whose `n_procs` option is above 1 trains on that many local processes under torchrun (processes.py): this
worker then only supervises them (heartbeat, cancel, their exit), process 0 writes the progress and the iteration,
and the training itself is `train_job` below, the same function a one-process job runs here.
"""
from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence

from .blobs import BlobStore
from .catalog import get_project
from .queue import claim_job, fail_stale_jobs, finish_job, get_job, heartbeat, label_counts, set_progress, snapshot
from .store import Store, database_url

__all__ = ['Worker', 'JobReporter', 'StudioDirs', 'read_job', 'train_job', 'main']

HEARTBEAT_S = 2.0
STALE_S = 60.0


class StudioDirs:
    """The folders of a studio: blobs/ (images), exports/ (iterations), work/ (a job's temporary files), cache/
    (precomputed features, shared by jobs over the same images; the library's cache key keeps them correct)."""

    def __init__(self, root):
        self.root = Path(root).absolute()
        self.blobs_dir, self.exports, self.work = self.root / 'blobs', self.root / 'exports', self.root / 'work'
        self.cache = self.root / 'cache'
        for folder in (self.root, self.blobs_dir, self.exports, self.work, self.cache):
            folder.mkdir(parents=True, exist_ok=True)


class JobReporter:
    """What the trainer reports, written to the job's row (throttled); `cancelled` is set by the heartbeat."""

    def __init__(self, store: Store, job_id: int, min_interval_s: float = 0.5, n_procs: int = 1):
        self.store, self.job_id, self.min_interval = store, job_id, min_interval_s
        self.cancelled = False       # a cancel was requested, or the worker is stopping
        self.state: dict = {'phase': 'starting', 'epochs': [], 'n_procs': n_procs}
        self._fit_started = time.monotonic()
        self._last_write = 0.0
        self.started = time.monotonic()

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= self.min_interval:
            self.state['elapsed_s'] = round(now - self.started, 1)
            set_progress(self.store, self.job_id, dict(self.state))
            self._last_write = now

    def note(self, **fields) -> None:
        """Add fields to the progress (e.g. the processes of an N-process job) and write it now."""
        self.state.update(fields)
        self._write(force=True)

    def phase(self, name: str, n_epochs: Optional[int] = None) -> None:
        self.state.update(phase=name, epoch=None, n_epochs=n_epochs, batch=None, n_batches=None, eta_s=None)
        self._fit_started = time.monotonic()
        self._write(force=True)

    def batch(self, epoch: int, batch: int, n_batches: int, loss: float, fraction: float) -> None:
        elapsed = time.monotonic() - self._fit_started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        self.state.update(epoch=epoch, batch=batch + 1, n_batches=n_batches,
                          train_loss=None if math.isnan(loss) else round(loss, 5),
                          eta_s=None if eta is None else round(eta, 1))
        self._write()

    def epoch(self, log: dict) -> None:
        row = {'phase': self.state['phase'], 'epoch': int(log.get('epoch', 0))}
        for key in ('train_loss', 'valid_loss', 'accuracy', 'accuracy_thresh'):
            value = log.get(key)
            if isinstance(value, float) and not math.isnan(value):
                row['accuracy' if key == 'accuracy_thresh' else key] = round(value, 5)
        self.state['epochs'].append(row)
        self.state.update({k: v for k, v in row.items() if k in ('valid_loss', 'accuracy')})
        self._write(force=True)


class _Heartbeat(threading.Thread):
    """Marks the job alive every HEARTBEAT_S and turns a cancel request (or the worker stopping) into
    `reporter.cancelled`."""

    def __init__(self, worker: 'Worker', job_id: int, reporter: JobReporter):
        super().__init__(name=f'studio-heartbeat-{job_id}', daemon=True)
        self.worker, self.job_id, self.reporter = worker, job_id, reporter
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.worker.heartbeat_s):
            self.worker.check_parent()
            try:
                requested = heartbeat(self.worker.store, self.job_id)
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                requested = False
            if requested or self.worker.stopping:
                self.reporter.cancelled = True


class Worker:
    """Claims and runs jobs until stopped.

    Args:
        store: the studio's database.
        dirs: the studio's folders (the same shared folder on every machine).
        poll_s: seconds between looks for a queued job.
        stale_s: fail running jobs whose heartbeat is older than this.
        parent_pid: stop when this process (the studio that started us) is gone.
    """

    def __init__(self, store: Store, dirs: StudioDirs, poll_s: float = 1.0, stale_s: float = STALE_S,
                 parent_pid: Optional[int] = None, heartbeat_s: float = HEARTBEAT_S):
        from .queue import worker_name
        self.store, self.dirs, self.poll_s, self.stale_s = store, dirs, poll_s, stale_s
        self.blobs = BlobStore(dirs.blobs_dir)
        self.parent_pid, self.heartbeat_s = parent_pid, heartbeat_s
        self.name = worker_name()
        self.stopping: Optional[str] = None

    def check_parent(self) -> None:
        if self.parent_pid is not None and os.getppid() != self.parent_pid and not self.stopping:
            self.stopping = f'the studio that started this worker (pid {self.parent_pid}) exited'

    def stop(self, reason: str) -> None:
        self.stopping = reason

    def run(self, once: bool = False) -> int:
        """Run jobs until `stop()` (or, with `once`, until no job is queued); returns how many ran."""
        n_run, last_reap = 0, -math.inf
        while not self.stopping:
            if time.monotonic() - last_reap > min(10.0, self.stale_s / 2):
                fail_stale_jobs(self.store, self.stale_s)
                last_reap = time.monotonic()
            job_id = claim_job(self.store, self.name)
            if job_id is None:
                if once:
                    break
                time.sleep(self.poll_s)
                self.check_parent()
                continue
            self.run_job(job_id)
            n_run += 1
        return n_run

    def run_job(self, job_id: int) -> None:
        """Train one claimed job and end it (succeeded, cancelled or failed); never raises for a training error."""
        reporter = JobReporter(self.store, job_id)
        beat = _Heartbeat(self, job_id, reporter)
        beat.start()
        workdir = self.dirs.work / f'job-{job_id}'
        try:
            self._train_and_record(job_id, reporter, workdir)
        except BaseException as err:  # noqa: BLE001 - every way out ends the job
            self._end_unsuccessfully(job_id, reporter, err)
            if not isinstance(err, Exception):
                raise
        finally:
            beat.done.set()
            beat.join()
            shutil.rmtree(workdir, ignore_errors=True)

    def _end_unsuccessfully(self, job_id: int, reporter: JobReporter, err: BaseException) -> None:
        from .trainer import JobCancelled, JobFailed
        if isinstance(err, JobCancelled) and not self.stopping:
            status, reason = 'cancelled', None
        elif isinstance(err, (JobCancelled, KeyboardInterrupt)) or (self.stopping and isinstance(err, JobFailed)):
            status, reason = 'failed', f'the worker was stopped during training ({self.stopping or "interrupted"}); ' \
                                       f'train again'
        elif isinstance(err, JobFailed):
            status, reason = 'failed', str(err)
            print(f'job {job_id} failed: {reason}', file=sys.stderr, flush=True)
        else:
            status = 'failed'
            reason = f'{type(err).__name__}: {err}'
            print(f'job {job_id} failed:\n{traceback.format_exc()}', file=sys.stderr, flush=True)
        progress = dict(reporter.state, phase=status)
        with self.store.write() as conn:
            finish_job(conn, job_id, status, error=reason, progress=progress)

    def _train_and_record(self, job_id: int, reporter: JobReporter, workdir: Path) -> None:
        spec = read_job(self.store, job_id)
        workdir.mkdir(parents=True, exist_ok=True)
        n_procs = int(spec['job']['options'].get('n_procs') or 1)
        if n_procs > 1:
            from .processes import train_on_processes
            train_on_processes(self, spec, reporter, workdir)
        else:
            train_job(spec, self.store, self.dirs, self.blobs, reporter, workdir)


def read_job(store: Store, job_id: int) -> dict:
    """What a job trains: {'job', 'project', 'items' (its snapshot)}, plain data (a process of an N-process job
    reads it from a file, so that every process trains on exactly what the worker read)."""
    with store.read() as conn:
        job = get_job(conn, job_id)
        return {'job': job, 'project': get_project(conn, job['project_id']), 'items': snapshot(conn, job_id)}


def train_job(spec: dict, store: Optional[Store], dirs: StudioDirs, blobs: BlobStore, reporter, workdir: Path) -> None:
    """Train the job `spec` describes (see `read_job`), export it and record its iteration.

    On one process this is the whole job. Under torchrun every process calls it (each step is collective: the
    features, the fits, the validation predictions, the export) and process 0 alone, the one given a `store`,
    reads the export back and records the iteration; the others return after the export.

    Raises:
        JobCancelled: a cancel was seen (by any process, under torchrun: all raise it together).
    """
    from .trainer import build_data
    from .. import distributed
    job, project, items = spec['job'], spec['project'], spec['items']
    classes = sorted(label_counts(items))
    options = job['options']
    data = build_data(items, blobs.path, classes, project['multi_label'], project['backbone'], project['size'],
                      options.get('bs') or 32, workdir, options.get('num_workers'), distributed.world_size())
    try:
        _train_export_record(spec, store, blobs, dirs, reporter, data)
    finally:
        data.close()   # the worker trains job after job: its loaders' worker processes end with each job


def _train_export_record(spec: dict, store, blobs, dirs, reporter, data) -> None:
    from ..persistence import safe_torch_load
    from .iterations import _JobGone, record_iteration
    from .trainer import JobCancelled, cancel_agreed, train_advanced, train_quick
    from .. import distributed
    job, project, items = spec['job'], spec['project'], spec['items']
    classes = sorted(label_counts(items))
    options = job['options']
    if job['mode'] == 'quick':
        learn, history = train_quick(data, project['backbone'], options, reporter, dirs.cache)
    else:
        learn, history = train_advanced(data, project['backbone'], options, job['budget_minutes'], reporter,
                                        dirs.cache)
    if cancel_agreed(reporter):
        raise JobCancelled()
    reporter.phase('exporting')
    export_file = distributed.broadcast_object(f'job-{job["id"]}-{secrets.token_hex(6)}.pth')
    path = learn.export(dirs.exports / export_file)   # atomic, written by process 0; holds the validation metrics
    if not distributed.is_main_process():
        return
    validation = safe_torch_load(path)['meta'].get('validation') or {}
    probs = validation['probs'].numpy() if 'probs' in validation else learn.get_preds('valid')[0]
    try:
        with store.write() as conn:
            record_iteration(conn, job, project, export_file, classes, probs, validation['report'],
                             validation['curve'], history, progress=reporter.state)
    except _JobGone:
        path.unlink(missing_ok=True)   # failed or cancelled meanwhile: keep no export without its iteration


def _install_signal_handlers(worker: Worker) -> None:
    def on_signal(signum, _frame):
        worker.stop(f'signal {signal.Signals(signum).name}')
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='learner studio worker', description='Run training jobs of a studio.')
    parser.add_argument('--dir', default='studio', help='the studio folder (shared by every machine; default: '
                        './studio)')
    parser.add_argument('--db', default=None, help='database URL (default: DIR/studio.db, SQLite)')
    parser.add_argument('--once', action='store_true', help='exit when no job is queued')
    parser.add_argument('--poll', type=float, default=1.0, help='seconds between looks for a job (default: 1)')
    parser.add_argument('--stale', type=float, default=STALE_S, help='fail running jobs silent this many seconds '
                        f'(default: {STALE_S:.0f})')
    parser.add_argument('--parent', type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    dirs = StudioDirs(args.dir)
    store = Store(database_url(args.db, dirs.root))
    store.migrate()
    worker = Worker(store, dirs, poll_s=args.poll, stale_s=args.stale, parent_pid=args.parent)
    _install_signal_handlers(worker)
    print(f'studio worker {worker.name} on {store.safe_url}, folder {dirs.root}', flush=True)
    worker.run(once=args.once)
    store.dispose()
    return 0


if __name__ == '__main__':
    sys.exit(main())
