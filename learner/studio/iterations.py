"""Iterations: what a finished training job leaves (its export, its snapshot of images, the validation
probabilities of each held-out image), and what the studio says about them: precision, recall and average
precision per tag and overall at any threshold, the threshold table of the slider, the confusion matrix, the images
it got wrong, and two iterations side by side on the validation images they share."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..reports import DEFAULT_THRESHOLD, validation_report
from ..serve.info import threshold_table
from .errors import Invalid, NotFound
from .queue import finish_job, snapshot
from .store import iterations, publications, snapshot_images

__all__ = ['record_iteration', 'get_iteration', 'list_iterations', 'performance', 'thresholds', 'wrong_images',
           'compare', 'export_path', 'publish', 'unpublish']


def record_iteration(conn: Connection, job: dict, project: dict, export_file: str, classes: List[str],
                     valid_probs: np.ndarray, report: dict, curve: dict, history: list,
                     progress: Optional[dict] = None) -> Optional[int]:
    """Insert the iteration of a finished job and end the job as succeeded, in the caller's transaction; None (and
    nothing written) when the job is no longer running (cancelled or failed meanwhile)."""
    items = snapshot(conn, job['id'])
    valid = [item for item in items if item['split'] == 'valid']
    number = (conn.execute(sa.select(sa.func.max(iterations.c.number))
                           .where(iterations.c.project_id == project['id'])).scalar() or 0) + 1
    iteration_id = conn.execute(sa.insert(iterations).values(
        project_id=project['id'], job_id=job['id'], number=number, created_at=time.time(), mode=job['mode'],
        backbone=project['backbone'], size=project['size'], classes=list(classes),
        multi_label=project['multi_label'], export_file=export_file, n_train=len(items) - len(valid),
        n_valid=len(valid), report=report, curve=curve, history=history)).inserted_primary_key[0]
    if not finish_job(conn, job['id'], 'succeeded', iteration_id=iteration_id,
                      progress={**(progress or {}), 'phase': 'done', 'iteration': number, 'eta_s': 0}):
        raise _JobGone()
    for item, probs in zip(valid, np.asarray(valid_probs, dtype=np.float64)):
        conn.execute(sa.update(snapshot_images).where(snapshot_images.c.job_id == job['id'],
                                                      snapshot_images.c.position == item['position'])
                     .values(probs=[round(float(p), 6) for p in probs]))
    return iteration_id


class _JobGone(Exception):
    """The job stopped running before its iteration could be recorded (the transaction rolls back)."""


def _row(row) -> dict:
    out = dict(row._mapping)
    out['multi_label'] = bool(out['multi_label'])
    out.pop('curve', None)
    return out


def get_iteration(conn: Connection, project_id: int, iteration_id: int) -> dict:
    row = conn.execute(sa.select(iterations).where(iterations.c.id == iteration_id,
                                                   iterations.c.project_id == project_id)).first()
    if row is None:
        raise NotFound(f'project {project_id} has no iteration {iteration_id}: GET /projects/{project_id}/iterations '
                       f'lists them')
    out = _row(row)
    published = conn.execute(sa.select(publications).where(publications.c.iteration_id == iteration_id)).first()
    out['published_name'] = None if published is None else published.name
    return out


def list_iterations(conn: Connection, project_id: int) -> List[dict]:
    rows = conn.execute(sa.select(iterations).where(iterations.c.project_id == project_id)
                        .order_by(iterations.c.number))
    published = conn.execute(sa.select(publications).where(publications.c.project_id == project_id)).first()
    out = []
    for row in rows:
        item = _row(row)
        item['published_name'] = published.name if published is not None and published.iteration_id == row.id else None
        out.append(item)
    return out


def export_path(exports_dir: Path, iteration: dict) -> Path:
    return Path(exports_dir) / iteration['export_file']


def _validation(conn: Connection, iteration: dict) -> tuple:
    """(valid items, probs (N, C), targets) of the iteration, in data-set order."""
    valid = [item for item in snapshot(conn, iteration['job_id']) if item['split'] == 'valid']
    classes = iteration['classes']
    probs = np.array([item['probs'] for item in valid], dtype=np.float64).reshape(len(valid), len(classes))
    index = {name: i for i, name in enumerate(classes)}
    if iteration['multi_label']:
        y = np.zeros((len(valid), len(classes)), dtype=np.float32)
        for row, item in enumerate(valid):
            y[row, [index[label] for label in item['labels']]] = 1
    else:
        y = np.array([index[item['labels'][0]] for item in valid], dtype=np.int64)
    return valid, probs, y


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise Invalid(f'threshold must be between 0 and 1, got {threshold}')
    return threshold


def performance(conn: Connection, iteration: dict, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Per-tag and overall precision, recall and average precision at `threshold`, and the confusion matrix."""
    _, probs, y = _validation(conn, iteration)
    report = validation_report(probs, y, iteration['classes'], iteration['multi_label'], _check_threshold(threshold))
    return {'iteration_id': iteration['id'], 'number': iteration['number'], **report}


def thresholds(conn: Connection, iteration: dict) -> dict:
    """Per-tag and overall precision and recall at thresholds 0, 0.01, ..., 1 (the slider's table)."""
    curve = conn.execute(sa.select(iterations.c.curve).where(iterations.c.id == iteration['id'])).scalar()
    return threshold_table({'classes': iteration['classes'], 'is_multi': iteration['multi_label'],
                            'validation': {'curve': curve}})


def _predicted(probs: np.ndarray, classes: List[str], multi_label: bool, threshold: float) -> List[List[str]]:
    if multi_label:
        return [[classes[j] for j in np.nonzero(row >= threshold)[0]] for row in probs]
    return [[classes[int(row.argmax())]] for row in probs]


def wrong_images(conn: Connection, iteration: dict, threshold: float = DEFAULT_THRESHOLD) -> List[dict]:
    """The validation images the iteration got wrong (least confident in the truth first)."""
    valid, probs, _ = _validation(conn, iteration)
    classes = iteration['classes']
    predicted = _predicted(probs, classes, iteration['multi_label'], _check_threshold(threshold))
    out = []
    for item, row, guess in zip(valid, probs, predicted):
        if sorted(guess) != sorted(item['labels']):
            truth = min(float(row[classes.index(label)]) for label in item['labels'])
            out.append({'image_id': item['image_id'], 'sha256': item['sha256'], 'tags': item['labels'],
                        'predicted': guess, 'probability_of_truth': round(truth, 6),
                        'probabilities': dict(zip(classes, [round(float(p), 6) for p in row]))})
    return sorted(out, key=lambda w: w['probability_of_truth'])


def compare(conn: Connection, first: dict, second: dict, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Two iterations side by side: each one's report, and accuracy on the validation images both hold out."""
    threshold = _check_threshold(threshold)
    sides = []
    for iteration in (first, second):
        valid, probs, _ = _validation(conn, iteration)
        predicted = _predicted(probs, iteration['classes'], iteration['multi_label'], threshold)
        right = {item['sha256']: sorted(guess) == sorted(item['labels']) for item, guess in zip(valid, predicted)}
        sides.append((iteration, right))
    shared = sorted(set(sides[0][1]) & set(sides[1][1]))
    out = {'threshold': threshold, 'n_shared_valid': len(shared), 'iterations': []}
    for iteration, right in sides:
        out['iterations'].append({
            'iteration_id': iteration['id'], 'number': iteration['number'], 'n_train': iteration['n_train'],
            'n_valid': iteration['n_valid'], 'report': performance(conn, iteration, threshold),
            'accuracy_on_shared': float(np.mean([right[s] for s in shared])) if shared else None})
    return out


def publish(conn: Connection, project_id: int, iteration_id: int, name: str) -> dict:
    """Make the iteration answer the project's prediction endpoint under `name` (replacing any published one)."""
    get_iteration(conn, project_id, iteration_id)
    name = (name or '').strip()
    if not name or len(name) > 200:
        raise Invalid('publish needs a name of 1 to 200 characters (the published name clients see)')
    values = dict(iteration_id=iteration_id, name=name, published_at=time.time())
    if conn.execute(sa.select(publications.c.project_id).where(publications.c.project_id == project_id)).first():
        conn.execute(sa.update(publications).where(publications.c.project_id == project_id).values(**values))
    else:
        conn.execute(sa.insert(publications).values(project_id=project_id, **values))
    return get_iteration(conn, project_id, iteration_id)


def unpublish(conn: Connection, project_id: int) -> None:
    """Stop answering predictions for the project (NotFound when nothing is published)."""
    if not conn.execute(sa.delete(publications).where(publications.c.project_id == project_id)).rowcount:
        raise NotFound(f'project {project_id} has no published iteration')
