"""Training jobs in the database: queue one (with its snapshot of images and validation split), claim one (`FOR
UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite), report progress, cancel, finish, and fail the jobs
whose worker is gone.

A project has at most one queued or running job: a partial unique index enforces it, so two requests racing to
train the same project get one job and one 409 Conflict ("refused", never silently queued twice).

The snapshot is taken when the job is queued, in the same transaction: the images, their tags and their split are
rows of `snapshot_images`, so uploads, retags and deletions during training change nothing the job trains on.

The validation split is stratified and fixed per image: each image draws a number from the hash of its bytes and
its project, and within each tag (for multi-label, the image's rarest tag) the `valid_pct` of images with the lowest
numbers are held out. An image keeps its number forever, so two iterations validate on the same images wherever
their data overlap.

The option `n_procs` (default 1) trains the job on that many processes of the worker's machine (processes.py). It is
refused here when it is not a whole number of at least 1, when it exceeds what the studio's machine can run (one
process per GPU, else per CPU core; `learner studio --max-procs` raises the bound when bigger workers run
elsewhere), or when the snapshot holds fewer validation images than processes (each validates its share). The
worker that claims the job checks its own machine again.
"""
from __future__ import annotations

import hashlib
import math
import os
import socket
import time
from collections import Counter, defaultdict
from typing import Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .catalog import get_project, image_tag_names
from .errors import Conflict, Invalid, NotFound
from .store import ACTIVE_JOB_STATES, Store, images, jobs, snapshot_images

__all__ = ['MIN_IMAGES_PER_TAG', 'DEFAULT_OPTIONS', 'check_n_procs', 'queue_job', 'get_job', 'list_jobs', 'cancel_job',
           'claim_job', 'heartbeat', 'set_progress', 'finish_job', 'fail_stale_jobs', 'fail_jobs_of_worker',
           'split_images', 'worker_name']

MIN_IMAGES_PER_TAG = 5
MODES = ('quick', 'advanced')
#: Options a job may set, with their defaults (None: chosen by the recipe).
DEFAULT_OPTIONS = {'epochs': None, 'bs': 32, 'seed': 0, 'valid_pct': 0.2, 'lr': None,
                   'num_workers': None, 'n_procs': 1}


def worker_name() -> str:
    """host:pid of this process (what a job's `worker` column holds)."""
    return f'{socket.gethostname()}:{os.getpid()}'


def _order_key(project_id: int, sha: str) -> float:
    digest = hashlib.sha256(f'{project_id}:{sha}'.encode()).digest()
    return int.from_bytes(digest[:8], 'big') / 2.0 ** 64


def split_images(project_id: int, items: List[dict], valid_pct: float) -> List[str]:
    """'train' or 'valid' for each item ({'sha256', 'labels'}), stratified by label (see the module docstring)."""
    counts = Counter(label for item in items for label in item['labels'])
    strata = defaultdict(list)
    for i, item in enumerate(items):
        rarest = min(item['labels'], key=lambda label: (counts[label], label))
        strata[rarest].append(i)
    split = ['train'] * len(items)
    for members in strata.values():
        n_valid = min(max(1, round(valid_pct * len(members))), len(members) - 1)
        for i in sorted(members, key=lambda i: _order_key(project_id, items[i]['sha256']))[:n_valid]:
            split[i] = 'valid'
    return split


def _training_items(conn: Connection, project: dict) -> List[dict]:
    """The project's tagged images as {'image_id', 'sha256', 'labels'}; Invalid when there are too few to train."""
    rows = conn.execute(sa.select(images.c.id, images.c.sha256).where(images.c.project_id == project['id'])
                        .order_by(images.c.id)).all()
    labels = image_tag_names(conn, [r.id for r in rows])
    items = [{'image_id': r.id, 'sha256': r.sha256, 'labels': labels[r.id]} for r in rows if r.id in labels]
    counts = Counter(label for item in items for label in item['labels'])
    short = sorted((n, name) for name, n in counts.items() if n < MIN_IMAGES_PER_TAG)
    if short:
        listed = ', '.join(f'{name!r} has {n} (add {MIN_IMAGES_PER_TAG - n})' for n, name in short)
        raise Invalid(f'every tag needs at least {MIN_IMAGES_PER_TAG} images to train: {listed}; or remove those tags')
    if not project['multi_label'] and len(counts) < 2:
        have = f'only {next(iter(counts))!r}' if counts else 'no tagged images'
        raise Invalid(f'a single-label project needs at least 2 tags with {MIN_IMAGES_PER_TAG} images or more each to '
                      f'train; it has {have}: upload images under another tag')
    if not counts:
        raise Invalid(f'no tagged images: tag at least {MIN_IMAGES_PER_TAG} images to train')
    return items


def check_n_procs(value, max_procs: Optional[int] = None) -> int:
    """`value` as a number of training processes; Invalid (what was wrong, what to ask for) unless it is a whole
    number from 1 to `max_procs` (default: what this machine runs, see processes.machine_processes)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f'n_procs is the number of processes that train the job: a whole number, 1 or more; got '
                      f'{value!r}')
    if value < 1:
        raise Invalid(f'n_procs must be at least 1 (the number of processes that train the job), got {value}')
    if max_procs is None:
        from .processes import machine_processes
        limit, why = machine_processes()
    else:
        limit, why = int(max_procs), "this studio's --max-procs"
    if value > limit:
        raise Invalid(f'n_procs={value} is more than the machine can run: at most {limit} training processes '
                      f'({why}); ask for n_procs <= {limit}')
    return value


def _number(name: str, value, low: float, high: float, integer: bool = False, low_open: bool = False,
            high_open: bool = False, why: str = ''):
    """`value` as an int or float within [low, high] (open ends where asked), or Invalid naming `name`."""
    kind = 'a whole number' if integer else 'a number'
    bounds = f'{"above" if low_open else "from"} {low:g} {"and below" if high_open else "to"} {high:g}'
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise Invalid(f'{name} must be {kind} {bounds}, got {value!r}' + (f': {why}' if why else ''))
    return int(value) if integer else float(value)


#: The training options a job may set: (smallest, largest, whole number); None keeps the recipe's choice.
_OPTION_RANGES = {'epochs': (1, 100_000, True), 'bs': (1, 4096, True), 'seed': (0, 2 ** 63 - 1, True),
                  'lr': (1e-8, 10.0, False), 'num_workers': (0, 64, True)}


def check_options(options: Optional[dict]) -> dict:
    """The job's options merged over DEFAULT_OPTIONS, each checked (Invalid names the first wrong one), so that a bad
    value is refused when queued, never found by the worker minutes later."""
    if options is not None and not isinstance(options, dict):
        raise Invalid(f'options must be an object of training options, got {options!r}')
    unknown = set(options or {}) - set(DEFAULT_OPTIONS)
    if unknown:
        raise Invalid(f'unknown training option(s) {sorted(unknown)}: known are {sorted(DEFAULT_OPTIONS)}')
    merged = {**DEFAULT_OPTIONS, **(options or {})}
    for name, (low, high, integer) in _OPTION_RANGES.items():
        if merged[name] is not None:
            merged[name] = _number(name, merged[name], low, high, integer)
    merged['valid_pct'] = _number('valid_pct', merged['valid_pct'], 0, 1, low_open=True, high_open=True,
                                  why='the share of each tag held out for validation')
    return merged


def queue_job(store: Store, project_id: int, mode: str = 'quick', budget_minutes: Optional[float] = None,
              options: Optional[dict] = None, max_procs: Optional[int] = None) -> dict:
    """Queue a training job with its snapshot; Conflict if the project already has one queued or running.
    `max_procs`: the most processes a job may ask for (default: what this machine runs)."""
    if mode not in MODES:
        raise Invalid(f'mode must be one of {MODES}, got {mode!r}')
    if mode == 'advanced':
        budget_minutes = _number('budget_minutes', budget_minutes, 0, 24 * 60, low_open=True,
                                 why='an advanced training needs the time it may take')
    elif budget_minutes is not None:
        raise Invalid(f'budget_minutes ({budget_minutes!r}) is for an advanced training: a quick one takes none')
    merged = check_options(options)
    n_procs = check_n_procs(merged['n_procs'], max_procs)
    try:
        with store.write() as conn:
            project = get_project(conn, project_id)
            _refuse_if_active(conn, project_id)
            items = _training_items(conn, project)
            split = split_images(project_id, items, float(merged['valid_pct']))
            n_valid = split.count('valid')
            if n_procs > n_valid:
                raise Invalid(f'n_procs={n_procs} but this training holds out {n_valid} validation image(s), and '
                              f'each process validates at least one: ask for n_procs <= {n_valid}, or add images')
            job_id = conn.execute(sa.insert(jobs).values(
                project_id=project_id, mode=mode, budget_minutes=budget_minutes, options=merged, status='queued',
                cancel_requested=False, created_at=time.time(),
                progress={'phase': 'queued'})).inserted_primary_key[0]
            conn.execute(sa.insert(snapshot_images), [
                {'job_id': job_id, 'position': k, 'image_id': item['image_id'], 'sha256': item['sha256'],
                 'labels': item['labels'], 'split': s} for k, (item, s) in enumerate(zip(items, split))])
    except sa.exc.IntegrityError as err:   # a concurrent request queued one between our check and insert
        with store.read() as conn:
            _refuse_if_active(conn, project_id)
        raise err
    with store.read() as conn:
        return get_job(conn, job_id)


def _refuse_if_active(conn: Connection, project_id: int) -> None:
    active = conn.execute(sa.select(jobs.c.id, jobs.c.status).where(
        jobs.c.project_id == project_id, jobs.c.status.in_(ACTIVE_JOB_STATES))).first()
    if active is not None:
        raise Conflict(f'refused: project {project_id} already has a training job {active.status} (job {active.id}); '
                       f'wait for it (GET /jobs/{active.id}) or cancel it (POST /jobs/{active.id}/cancel)')


def _job_row(row) -> dict:
    out = {k: row._mapping[k] for k in ('id', 'project_id', 'mode', 'budget_minutes', 'options', 'status',
                                        'cancel_requested', 'worker', 'created_at', 'started_at', 'heartbeat_at',
                                        'finished_at', 'progress', 'error', 'iteration_id')}
    out['cancel_requested'] = bool(out['cancel_requested'])
    return out


def get_job(conn: Connection, job_id: int) -> dict:
    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f'no training job {job_id}')
    out = _job_row(row)
    counts = dict(conn.execute(sa.select(snapshot_images.c.split, sa.func.count()).where(
        snapshot_images.c.job_id == job_id).group_by(snapshot_images.c.split)).all())
    out['n_train'], out['n_valid'] = counts.get('train', 0), counts.get('valid', 0)
    return out


def list_jobs(conn: Connection, project_id: int) -> List[dict]:
    get_project(conn, project_id)
    return [_job_row(r) for r in conn.execute(sa.select(jobs).where(jobs.c.project_id == project_id)
                                              .order_by(jobs.c.id.desc()))]


def cancel_job(store: Store, job_id: int) -> dict:
    """A queued job is cancelled at once; a running one is asked to stop (its worker stops within a batch)."""
    with store.write() as conn:
        job = get_job(conn, job_id)
        if job['status'] == 'queued':
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == 'queued').values(
                status='cancelled', finished_at=time.time(), progress={'phase': 'cancelled'}))
        elif job['status'] == 'running':
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
        else:
            raise Conflict(f'job {job_id} has already ended ({job["status"]}): nothing to cancel')
        return get_job(conn, job_id)


def claim_job(store: Store, worker: str) -> Optional[int]:
    """Take the oldest queued job for `worker` (None when none is queued); safe with any number of workers."""
    with store.write() as conn:
        query = (sa.select(jobs.c.id).where(jobs.c.status == 'queued').order_by(jobs.c.id).limit(1)
                 .with_for_update(skip_locked=True))
        job_id = conn.execute(query).scalar()
        if job_id is None:
            return None
        now = time.time()
        claimed = conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == 'queued').values(
            status='running', worker=worker, started_at=now, heartbeat_at=now,
            progress={'phase': 'starting'})).rowcount
        return job_id if claimed == 1 else None


def heartbeat(store: Store, job_id: int) -> bool:
    """Mark the job alive; returns whether a cancel was requested."""
    with store.write() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == 'running')
                     .values(heartbeat_at=time.time()))
        return bool(conn.execute(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())


def set_progress(store: Store, job_id: int, progress: dict) -> None:
    with store.write() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == 'running')
                     .values(progress=progress, heartbeat_at=time.time()))


def finish_job(conn: Connection, job_id: int, status: str, error: Optional[str] = None,
               iteration_id: Optional[int] = None, progress: Optional[dict] = None) -> bool:
    """End a running job (succeeded, failed or cancelled) in the caller's transaction; False if it was not running
    (someone failed it meanwhile, e.g. as stale)."""
    values = dict(status=status, finished_at=time.time(), error=error, iteration_id=iteration_id)
    if progress is not None:
        values['progress'] = progress
    return conn.execute(sa.update(jobs).where(jobs.c.id == job_id, jobs.c.status == 'running')
                        .values(**values)).rowcount == 1


def fail_stale_jobs(store: Store, stale_s: float) -> List[int]:
    """Fail running jobs whose worker has not been heard from for `stale_s` seconds (a worker that died or lost
    the database); returns their ids."""
    cutoff = time.time() - stale_s
    with store.write() as conn:
        stale = conn.execute(sa.select(jobs.c.id, jobs.c.worker, jobs.c.heartbeat_at).where(
            jobs.c.status == 'running', jobs.c.heartbeat_at < cutoff)).all()
        for row in stale:
            silent = math.floor(time.time() - row.heartbeat_at)
            finish_job(conn, row.id, 'failed', f'the worker {row.worker} stopped answering {silent} s ago (killed, '
                                                f'crashed or cut off from the database); train again')
    return [row.id for row in stale]


def fail_jobs_of_worker(store: Store, worker: str, reason: str) -> List[int]:
    """Fail the running jobs of a worker known to be gone (its process exited); returns their ids."""
    with store.write() as conn:
        ids = [r.id for r in conn.execute(sa.select(jobs.c.id).where(jobs.c.status == 'running',
                                                                     jobs.c.worker == worker))]
        for job_id in ids:
            finish_job(conn, job_id, 'failed', reason)
    return ids


def snapshot(conn: Connection, job_id: int) -> List[dict]:
    """The job's images in order: {'position', 'image_id', 'sha256', 'labels', 'split', 'probs'}."""
    rows = conn.execute(sa.select(snapshot_images).where(snapshot_images.c.job_id == job_id)
                        .order_by(snapshot_images.c.position))
    return [dict(r._mapping) for r in rows]


def label_counts(items: List[dict]) -> Dict[str, int]:
    return dict(Counter(label for item in items for label in item['labels']))
