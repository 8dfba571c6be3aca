"""The prediction side of the studio: the published iterations' models (loaded once per web process, swapped
atomically), stored predictions (the retrain loop's input) and their listing, most uncertain first.

Publishing or switching takes effect for the next request: each request reads which iteration is published, then
takes that iteration's model from `PublishedModels`, which hands out only fully loaded models (a model is loaded in
a worker thread and put in the cache only when ready, and a request holding the previous one finishes on it).
The decoding, batching and upload limits are the prediction service's own (`learner.serve`), so the studio answers
exactly as `learner serve` would for the same export.
"""
from __future__ import annotations

import asyncio
import collections
import io
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from ..serve.app import PredictionService, ServeConfig
from .catalog import get_project, image_tag_names
from .errors import NotFound
from .ingest import Ingestor
from .store import Store, images, predictions, publications

__all__ = ['PublishedModels', 'published', 'uncertainty', 'store_prediction', 'list_predictions', 'get_prediction',
           'ranked']


class PublishedModels:
    """Loaded models by iteration export (at most `max_models`, least recently used dropped), one load at a time each.

    Args:
        exports_dir: where iteration exports live.
        config: the prediction service's limits (batching, queue, pixels).
        max_models: how many iterations' models stay loaded.
    """

    def __init__(self, exports_dir: Path, config: ServeConfig, max_models: int = 4):
        self.exports_dir, self.config, self.max_models = Path(exports_dir), config, max_models
        self._services: "collections.OrderedDict[str, PredictionService]" = collections.OrderedDict()
        self._locks: Dict[str, asyncio.Lock] = {}

    async def get(self, iteration: dict) -> PredictionService:
        """The iteration's loaded model (loading it the first time, off the event loop). Keyed by its export file (a
        name made once, with a random part), never by an id a database could hand out again."""
        key = str(iteration['export_file'])
        service = self._services.get(key)
        if service is not None:
            self._services.move_to_end(key)
            return service
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            service = self._services.get(key)
            if service is None:
                service = await run_in_threadpool(self._load, iteration)
                self._services[key] = service      # only now visible: never half-loaded
                await self._evict()
        return service

    def _load(self, iteration: dict) -> PredictionService:
        from ..export import load_learner
        path = self.exports_dir / iteration['export_file']
        if not path.is_file():
            raise NotFound(f'the export of iteration {iteration["id"]} is missing from the studio folder '
                           f'({iteration["export_file"]}): train again')
        return PredictionService(load_learner(path), self.config)

    async def _evict(self) -> None:
        while len(self._services) > self.max_models:
            _, service = self._services.popitem(last=False)
            await service.aclose()

    async def aclose(self) -> None:
        for service in self._services.values():
            await service.aclose()
        self._services.clear()


def published(conn: Connection, project_id: int) -> dict:
    """The published iteration of the project (with 'published_name'); NotFound saying how to publish one."""
    from .iterations import get_iteration
    get_project(conn, project_id)
    row = conn.execute(sa.select(publications).where(publications.c.project_id == project_id)).first()
    if row is None:
        raise NotFound(f'project {project_id} has no published iteration: train one, then POST '
                       f'/projects/{project_id}/iterations/ITERATION_ID/publish')
    return get_iteration(conn, project_id, row.iteration_id)


def uncertainty(probs: np.ndarray, multi_label: bool) -> float:
    """How unsure a prediction is, in [0, 1]: single-label 1 - (top - second) probability; multi-label the largest
    1 - |2p - 1| over tags (1 when a tag sits at 0.5)."""
    probs = np.asarray(probs, dtype=np.float64)
    if multi_label:
        return float(np.max(1 - np.abs(2 * probs - 1))) if len(probs) else 0.0
    top = np.sort(probs)[::-1]
    return float(1 - (top[0] - (top[1] if len(top) > 1 else 0.0)))


def ranked(probs: np.ndarray, classes: List[str]) -> List[dict]:
    order = np.argsort(-np.asarray(probs), kind='stable')
    return [{'tag': classes[i], 'probability': round(float(probs[i]), 6)} for i in order]


def store_prediction(store: Store, blobs, iteration: dict, name: str, data: bytes, probs: np.ndarray) -> Optional[int]:
    """Keep a predicted image (untagged, source 'prediction') and its probabilities; returns the prediction's id."""
    with Image.open(io.BytesIO(data)) as img:
        size = img.size
    ingestor = Ingestor(store, blobs, iteration['project_id'], source='prediction', check_near=False)
    report = ingestor.add(name, data, size=size)
    if report['status'] == 'error':
        return None
    classes = iteration['classes']
    top = int(np.argmax(probs))
    with store.write() as conn:
        return conn.execute(sa.insert(predictions).values(
            project_id=iteration['project_id'], iteration_id=iteration['id'], image_id=report['image_id'],
            created_at=time.time(), probs={c: round(float(p), 6) for c, p in zip(classes, probs)},
            top_tag=classes[top], top_probability=float(probs[top]),
            uncertainty=uncertainty(probs, iteration['multi_label']))).inserted_primary_key[0]


def _prediction_rows(conn: Connection, rows) -> List[dict]:
    rows = list(rows)
    tags_now = image_tag_names(conn, [r.image_id for r in rows])
    out = []
    for r in rows:
        probs = sorted(r.probs.items(), key=lambda kv: -kv[1])
        out.append({'id': r.id, 'image_id': r.image_id, 'iteration_id': r.iteration_id, 'created_at': r.created_at,
                    'predictions': [{'tag': t, 'probability': p} for t, p in probs], 'top_tag': r.top_tag,
                    'top_probability': r.top_probability, 'uncertainty': round(r.uncertainty, 6),
                    'tags': tags_now.get(r.image_id, [])})
    return out


def list_predictions(conn: Connection, project_id: int, offset: int = 0, limit: int = 50,
                     untagged_only: bool = False) -> dict:
    """Stored predictions, most uncertain first (then newest), with the image's tags now."""
    from .store import image_tags
    get_project(conn, project_id)
    where = [predictions.c.project_id == project_id]
    if untagged_only:
        where.append(~predictions.c.image_id.in_(sa.select(image_tags.c.image_id)))
    total = conn.execute(sa.select(sa.func.count()).select_from(predictions).where(*where)).scalar()
    rows = conn.execute(sa.select(predictions).where(*where)
                        .order_by(predictions.c.uncertainty.desc(), predictions.c.id.desc())
                        .offset(int(offset)).limit(max(1, min(int(limit), 500))))
    return {'total': total, 'offset': int(offset), 'predictions': _prediction_rows(conn, rows)}


def get_prediction(conn: Connection, project_id: int, prediction_id: int) -> dict:
    row = conn.execute(sa.select(predictions).where(predictions.c.id == prediction_id,
                                                    predictions.c.project_id == project_id)).first()
    if row is None:
        raise NotFound(f'project {project_id} has no stored prediction {prediction_id}')
    return _prediction_rows(conn, [row])[0]


def image_file(conn: Connection, project_id: int, image_id: int) -> tuple:
    """(sha256, media type) of a project's image."""
    row = conn.execute(sa.select(images.c.sha256).where(images.c.id == image_id,
                                                        images.c.project_id == project_id)).first()
    if row is None:
        raise NotFound(f'project {project_id} has no image {image_id}')
    return row.sha256
