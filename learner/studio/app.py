"""The studio's HTTP API (routes only: the work is in catalog, ingest, queue, iterations and predictions).

Every route needs the training key (`Training-Key` header) except the prediction endpoint, which also takes the
prediction key (`Prediction-Key` header), and /health. A missing or wrong key is 401 before anything is read or
changed. Uploads over the size limit are 413 (the prediction service's `BodyLimit`). Errors are
`{"detail": "what was wrong and what to do"}` with the status of the `StudioError` raised.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any, List, Optional

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..serve.app import BodyLimit, read_images
from ..serve.batcher import QueueFull
from . import catalog, iterations, predictions, queue
from .errors import StudioError, Unauthorized
from .ingest import Ingestor
from .keys import key_kind
from .thumbnails import THUMBNAIL_SIZES, thumbnail_jpeg

__all__ = ['create_app', 'STATIC']

STATIC = Path(__file__).resolve().parent / 'static'


class _Body(BaseModel):
    model_config = ConfigDict(extra='forbid')   # a misspelled field is a 422 naming it, never ignored


class ProjectIn(_Body):
    name: str
    description: str = ''
    multi_label: bool = False
    backbone: str = catalog.DEFAULT_BACKBONE
    size: int = catalog.DEFAULT_SIZE
    store_predictions: bool = True


class ProjectChange(_Body):
    name: Optional[str] = None
    description: Optional[str] = None
    store_predictions: Optional[bool] = None


class TagIn(_Body):
    name: str


class TagImagesIn(_Body):
    image_ids: List[int]
    tag_ids: List[int] = Field(default_factory=list)
    mode: str = 'replace'


class TrainIn(_Body):
    mode: str = 'quick'
    budget_minutes: Optional[float] = None
    options: dict = Field(default_factory=dict)


class PublishIn(_Body):
    name: str


class PredictionTagsIn(_Body):
    tags: List[str] = Field(default_factory=list)
    tag_ids: List[int] = Field(default_factory=list)


def create_app(studio: Any) -> FastAPI:
    """The FastAPI app of an open `Studio` (see server.py); it never trains (workers do)."""
    store, blobs = studio.store, studio.blobs

    def db(fn, *args, write: bool = False, **kwargs):
        with (store.write() if write else store.read()) as conn:
            return fn(conn, *args, **kwargs)

    def _kind(request: Request, header: str) -> Optional[str]:
        return db(key_kind, request.headers.get(header))

    def training_key(request: Request) -> None:
        if _kind(request, 'training-key') != 'training':
            raise Unauthorized('missing or wrong training key: send it as the Training-Key header (it was printed '
                               'when the studio first started; `learner studio keys --reset` makes new ones)')

    def prediction_key(request: Request) -> None:
        if _kind(request, 'training-key') == 'training' or _kind(request, 'prediction-key') in ('prediction',
                                                                                                'training'):
            return
        raise Unauthorized('missing or wrong prediction key: send it as the Prediction-Key header')

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await studio.models.aclose()

    app = FastAPI(title='learner studio', lifespan=lifespan,
                  description='Projects, tags, images, training jobs, iterations and published prediction endpoints')
    app.add_middleware(BodyLimit, limit=studio.limits.max_upload_bytes)

    @app.exception_handler(StudioError)
    async def studio_error(_request: Request, err: StudioError) -> JSONResponse:
        return JSONResponse({'detail': err.detail}, status_code=err.status)

    trained = [Depends(training_key)]

    @app.get('/health')
    def health() -> dict:
        """The studio is up; its database backend and local worker processes."""
        return {'status': 'ok', 'database': 'sqlite' if store.is_sqlite else 'postgresql',
                'workers': studio.worker_pids(),
                # what a client must split uploads by (the page sizes its requests from these)
                'limits': {'max_upload_bytes': studio.limits.max_upload_bytes, 'max_files': studio.limits.max_files}}

    @app.get('/backbones', dependencies=trained)
    def backbones() -> list:
        """Every registered backbone and whether a project can use it here (its pretrained weights are present)."""
        return catalog.list_backbones()

    # ------------------------------------------------------------------------------------------- projects
    @app.get('/projects', dependencies=trained)
    def projects_list() -> list:
        return db(catalog.list_projects)

    @app.post('/projects', dependencies=trained, status_code=201)
    def project_create(body: ProjectIn) -> dict:
        return db(catalog.create_project, **body.model_dump(), write=True)

    @app.get('/projects/{project_id}', dependencies=trained)
    def project_get(project_id: int) -> dict:
        return db(catalog.get_project, project_id)

    @app.patch('/projects/{project_id}', dependencies=trained)
    def project_change(project_id: int, body: ProjectChange) -> dict:
        return db(catalog.update_project, project_id, **body.model_dump(exclude_none=True), write=True)

    @app.delete('/projects/{project_id}', dependencies=trained, status_code=204)
    def project_delete(project_id: int) -> None:
        db(catalog.delete_project, project_id, write=True)

    # ------------------------------------------------------------------------------------------- tags
    @app.get('/projects/{project_id}/tags', dependencies=trained)
    def tags_list(project_id: int) -> list:
        return db(catalog.get_tags, project_id)

    @app.post('/projects/{project_id}/tags', dependencies=trained, status_code=201)
    def tag_create(project_id: int, body: TagIn) -> dict:
        return db(catalog.create_tag, project_id, body.name, write=True)

    @app.delete('/projects/{project_id}/tags/{tag_id}', dependencies=trained, status_code=204)
    def tag_delete(project_id: int, tag_id: int) -> None:
        db(catalog.delete_tag, project_id, tag_id, write=True)

    # ------------------------------------------------------------------------------------------- images
    @app.post('/projects/{project_id}/images', dependencies=trained)
    async def images_upload(request: Request, project_id: int, tag: List[str] = Query([]),
                            tag_id: List[int] = Query([])) -> JSONResponse:
        """Upload image files (multipart, any number of parts up to the limit) under the tags named by `tag` and
        `tag_id` (repeatable; none: untagged). One report per file: created, duplicate or error."""
        ingestor = await run_in_threadpool(Ingestor, store, blobs, project_id, tag, tag_id, 'upload', studio.limits)
        results = [await run_in_threadpool(ingestor.add, name, data)
                   async for name, data in _uploaded_files(request, studio.limits.max_files)]
        summary = {s: sum(r['status'] == s for r in results) for s in ('created', 'duplicate', 'error')}
        status = 422 if summary['error'] == len(results) else 200
        return JSONResponse({'summary': summary, 'results': results}, status_code=status)

    @app.get('/projects/{project_id}/images', dependencies=trained)
    def images_list(project_id: int, tag_id: Optional[int] = None, untagged: bool = False, offset: int = 0,
                    limit: int = 100) -> dict:
        return db(catalog.list_images, project_id, tag_id, untagged, offset, limit)

    @app.get('/projects/{project_id}/images/{image_id}', dependencies=trained)
    def image_get(project_id: int, image_id: int) -> dict:
        return db(catalog.get_image, project_id, image_id)

    @app.get('/projects/{project_id}/images/{image_id}/file', dependencies=trained)
    def image_file(project_id: int, image_id: int) -> FileResponse:
        sha = db(predictions.image_file, project_id, image_id)
        return FileResponse(blobs.path(sha), media_type='application/octet-stream')

    @app.get('/projects/{project_id}/images/{image_id}/thumbnail', dependencies=trained)
    async def image_thumbnail(request: Request, project_id: int, image_id: int, size: int = 160) -> Response:
        """A JPEG preview fitted in size x size pixels (96, 160 or 320), for galleries."""
        if size not in THUMBNAIL_SIZES:
            raise HTTPException(422, f'size must be one of {", ".join(map(str, THUMBNAIL_SIZES))}, got {size}')
        sha = await run_in_threadpool(db, predictions.image_file, project_id, image_id)
        # an id can name other bytes after a deletion (SQLite reuses the highest id), so the browser revalidates by
        # the content's hash: an unchanged thumbnail costs a 304; `private`: only the browser holding the key keeps it
        headers = {'ETag': f'"{sha}-{size}"', 'Cache-Control': 'private, no-cache'}
        if request.headers.get('if-none-match') == headers['ETag']:
            return Response(status_code=304, headers=headers)
        data = await run_in_threadpool(thumbnail_jpeg, blobs.path(sha), sha, size)
        return Response(data, media_type='image/jpeg', headers=headers)

    @app.post('/projects/{project_id}/images/tags', dependencies=trained)
    def images_tag(project_id: int, body: TagImagesIn) -> dict:
        n = db(catalog.set_image_tags, project_id, body.image_ids, body.tag_ids, body.mode, write=True)
        return {'changed': n}

    @app.delete('/projects/{project_id}/images', dependencies=trained)
    def images_delete(project_id: int, image_id: List[int] = Query(...)) -> dict:
        return {'deleted': db(catalog.delete_images, project_id, image_id, write=True)}

    # ------------------------------------------------------------------------------------------- training
    @app.post('/projects/{project_id}/train', dependencies=trained, status_code=202)
    def train(project_id: int, body: TrainIn) -> dict:
        """Queue a training job (refused with 409 while the project has one queued or running). `options.n_procs`
        trains it on that many processes of the worker's machine (torchrun)."""
        return queue.queue_job(store, project_id, body.mode, body.budget_minutes, body.options,
                               max_procs=getattr(studio, 'max_procs', None))

    @app.get('/projects/{project_id}/jobs', dependencies=trained)
    def jobs_list(project_id: int) -> list:
        return db(queue.list_jobs, project_id)

    @app.get('/jobs/{job_id}', dependencies=trained)
    def job_get(job_id: int) -> dict:
        return db(queue.get_job, job_id)

    @app.post('/jobs/{job_id}/cancel', dependencies=trained)
    def job_cancel(job_id: int) -> dict:
        return queue.cancel_job(store, job_id)

    @app.get('/jobs/{job_id}/events', dependencies=trained)
    async def job_events(request: Request, job_id: int) -> StreamingResponse:
        """Server-sent events: the job's row each time it changes, until it ends."""
        await run_in_threadpool(db, queue.get_job, job_id)
        return StreamingResponse(_job_stream(request, job_id), media_type='text/event-stream',
                                 headers={'Cache-Control': 'no-cache'})

    async def _job_stream(request: Request, job_id: int):
        last = None
        while not await request.is_disconnected():
            job = await run_in_threadpool(db, queue.get_job, job_id)
            text = json.dumps(job)
            if text != last:
                yield f'event: job\ndata: {text}\n\n'
                last = text
            if job['status'] not in ('queued', 'running'):
                return
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------------------------------------- iterations
    def _iteration(project_id: int, iteration_id: int) -> dict:
        return db(iterations.get_iteration, project_id, iteration_id)

    @app.get('/projects/{project_id}/iterations', dependencies=trained)
    def iterations_list(project_id: int) -> list:
        db(catalog.get_project, project_id)
        return db(iterations.list_iterations, project_id)

    @app.get('/projects/{project_id}/iterations/compare', dependencies=trained)
    def iterations_compare(project_id: int, a: int, b: int, threshold: float = 0.5) -> dict:
        return db(iterations.compare, _iteration(project_id, a), _iteration(project_id, b), threshold)

    @app.get('/projects/{project_id}/iterations/{iteration_id}', dependencies=trained)
    def iteration_get(project_id: int, iteration_id: int) -> dict:
        return _iteration(project_id, iteration_id)

    @app.get('/projects/{project_id}/iterations/{iteration_id}/performance', dependencies=trained)
    def iteration_performance(project_id: int, iteration_id: int, threshold: float = 0.5) -> dict:
        return db(iterations.performance, _iteration(project_id, iteration_id), threshold)

    @app.get('/projects/{project_id}/iterations/{iteration_id}/thresholds', dependencies=trained)
    def iteration_thresholds(project_id: int, iteration_id: int) -> dict:
        return db(iterations.thresholds, _iteration(project_id, iteration_id))

    @app.get('/projects/{project_id}/iterations/{iteration_id}/wrong', dependencies=trained)
    def iteration_wrong(project_id: int, iteration_id: int, threshold: float = 0.5) -> list:
        return db(iterations.wrong_images, _iteration(project_id, iteration_id), threshold)

    @app.get('/projects/{project_id}/iterations/{iteration_id}/export', dependencies=trained)
    def iteration_export(project_id: int, iteration_id: int) -> FileResponse:
        """The iteration as the library's export file (`load_learner` and `learner serve` read it)."""
        iteration = _iteration(project_id, iteration_id)
        return FileResponse(studio.dirs.exports / iteration['export_file'], media_type='application/octet-stream',
                            filename=f'project{project_id}-iteration{iteration["number"]}.pth')

    @app.post('/projects/{project_id}/iterations/{iteration_id}/publish', dependencies=trained)
    async def iteration_publish(project_id: int, iteration_id: int, body: PublishIn) -> dict:
        """Load the iteration's model here first, then publish: the next prediction request uses it."""
        await studio.models.get(await run_in_threadpool(_iteration, project_id, iteration_id))
        return await run_in_threadpool(db, iterations.publish, project_id, iteration_id, body.name, write=True)

    @app.delete('/projects/{project_id}/publish', dependencies=trained, status_code=204)
    def unpublish(project_id: int) -> None:
        db(iterations.unpublish, project_id, write=True)

    # ------------------------------------------------------------------------------------------- predictions
    async def _classify(request: Request, iteration: dict) -> tuple:
        service = await studio.models.get(iteration)
        (name, data), = await read_images(request, 1, 'send one image per request (they are answered together '
                                                      'when they arrive together)')
        # the prediction service's own decoding: its threads, its pixel limits, the model's input size
        prepared = await asyncio.get_running_loop().run_in_executor(service.decoder, service.decode_all,
                                                                    [(name, data)])
        try:
            probs = (await service.batcher.predict(prepared))[0]
        except QueueFull as err:
            raise HTTPException(503, str(err), headers={'Retry-After': '1'}) from err
        return name, data, probs

    @app.post('/projects/{project_id}/predict', dependencies=[Depends(prediction_key)])
    async def predict(request: Request, project_id: int) -> dict:
        """Classify one image (multipart field or raw body) with the published iteration; the image and its
        predictions are stored for the retrain loop unless the project turned that off."""
        iteration = await run_in_threadpool(db, predictions.published, project_id)
        name, data, probs = await _classify(request, iteration)
        project = await run_in_threadpool(db, catalog.get_project, project_id)
        prediction_id = None
        if project['store_predictions']:
            prediction_id = await run_in_threadpool(predictions.store_prediction, store, blobs, iteration, name, data,
                                                    probs)
        return {'project_id': project_id, 'iteration_id': iteration['id'], 'iteration': iteration['number'],
                'published_name': iteration['published_name'], 'prediction_id': prediction_id,
                'predictions': predictions.ranked(probs, iteration['classes'])}

    @app.post('/projects/{project_id}/quicktest', dependencies=trained)
    async def quick_test(request: Request, project_id: int, iteration_id: Optional[int] = None) -> dict:
        """Classify one image with an iteration (default: the latest) without storing anything."""
        if iteration_id is None:
            found = await run_in_threadpool(db, iterations.list_iterations, project_id)
            if not found:
                raise HTTPException(404, f'project {project_id} has no iteration yet: train one first')
            iteration_id = found[-1]['id']
        iteration = await run_in_threadpool(_iteration, project_id, iteration_id)
        _, _, probs = await _classify(request, iteration)
        return {'iteration_id': iteration['id'], 'iteration': iteration['number'],
                'predictions': predictions.ranked(probs, iteration['classes'])}

    @app.get('/projects/{project_id}/predictions', dependencies=trained)
    def predictions_list(project_id: int, offset: int = 0, limit: int = 50, untagged_only: bool = False) -> dict:
        return db(predictions.list_predictions, project_id, offset, limit, untagged_only)

    @app.post('/projects/{project_id}/predictions/{prediction_id}/tags', dependencies=trained)
    def prediction_tag(project_id: int, prediction_id: int, body: PredictionTagsIn) -> dict:
        """Confirm or correct a stored prediction's tags: its image joins the training set with them."""
        def tag(conn):
            found = predictions.get_prediction(conn, project_id, prediction_id)
            ids = [t['id'] for t in catalog.resolve_tags(conn, project_id, body.tags, body.tag_ids)]
            catalog.set_image_tags(conn, project_id, [found['image_id']], ids, 'replace')
            return predictions.get_prediction(conn, project_id, prediction_id)
        return db(tag, write=True)

    # ------------------------------------------------------------------------------------------- the page
    if (STATIC / 'index.html').is_file():   # the web page: plain HTML, CSS and JavaScript modules, no build step
        @app.get('/', include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(STATIC / 'index.html', media_type='text/html', headers=_REVALIDATE)
        app.mount('/static', _RevalidatedFiles(directory=STATIC), name='static')
    else:
        @app.get('/', include_in_schema=False)
        async def index() -> dict:
            return {'studio': 'learner studio', 'api_docs': '/docs', 'health': '/health'}
    return app


# a browser may otherwise keep the page's files for days by heuristics and mix an old module with a new one after an
# upgrade; revalidating costs a 304 per file
_REVALIDATE = {'Cache-Control': 'no-cache'}


class _RevalidatedFiles(StaticFiles):
    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(_REVALIDATE)
        return response


async def _uploaded_files(request: Request, max_files: int):
    """(name, bytes) of each file part of a multipart upload, one at a time (or the raw body as one file)."""
    if not request.headers.get('content-type', '').startswith('multipart/form-data'):
        for part in await read_images(request, 1):
            yield part
        return
    try:
        form = await request.form(max_files=max_files, max_fields=100)
    except StarletteHTTPException as err:
        if 'Too many files' in str(err.detail):
            raise HTTPException(400, f'more than {max_files} files in one request: send them in several') from err
        raise
    try:
        parts = [(key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
        if not parts:
            raise HTTPException(400, "the multipart form holds no file: send images as file parts "
                                     "(curl -F 'file=@photo.jpg')")
        for key, value in parts:
            yield value.filename or key, await value.read()
    finally:
        await form.close()
