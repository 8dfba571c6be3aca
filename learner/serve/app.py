"""The prediction service: a FastAPI app around an exported learner (`create_app`), and `serve` to run it.

Endpoints:
    POST /predict          one image (multipart field, or the raw request body) -> sorted class probabilities
    POST /predict/batch    several images (multipart, one part each) -> one answer per image, batched together
    GET  /model            classes, architecture, input size, export time, validation metrics stored at export
    GET  /model/thresholds per-class precision/recall at 101 thresholds (for the quick-test page's slider)
    GET  /health           liveness and queue length
    GET  /                 the quick-test web page; /docs the OpenAPI docs

Uploads over `max_upload_bytes` are answered 413 before they are read in full; a body that is not a decodable image
(empty, another format, truncated, a decompression bomb) is 422 with the reason. Decoding runs in worker threads
and the model in one thread of its own (see `Batcher`), never on the event loop.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.images import ImageError
from .batcher import Batcher, QueueFull
from .decode import decode_image_bytes
from .info import default_threshold, model_info, threshold_table

__all__ = ['ServeConfig', 'PredictionService', 'create_app', 'serve']

STATIC = Path(__file__).resolve().parent / 'static'
MB = 1024 * 1024


@dataclasses.dataclass
class ServeConfig:
    """Limits of the prediction service.

    Args:
        max_upload_bytes: the largest request body (default 20 MB); larger ones get 413.
        max_files: the most images in one /predict/batch call (default 64).
        max_batch: the most images in one model call (default 32).
        max_queue: the most images waiting for the model before new requests get 503 (default 1024).
        max_wait_ms: how long the model waits to fill a batch once it has an image (default 0: never waits).
        max_pixels: refuse larger images as decompression bombs (default None: PIL.Image.MAX_IMAGE_PIXELS).
    """
    max_upload_bytes: int = 20 * MB
    max_files: int = 64
    max_batch: int = 32
    max_queue: int = 1024
    max_wait_ms: float = 0.0
    max_pixels: Optional[int] = None


class Prediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(alias='class', description='class name')
    probability: float = Field(description='softmax probability (sigmoid for multi-label models)')


class PredictResponse(BaseModel):
    predictions: List[Prediction] = Field(description='classes by decreasing probability, after top_k/threshold')


class BatchItem(BaseModel):
    filename: str = Field(description="the part's file name")
    predictions: List[Prediction]


class BatchResponse(BaseModel):
    results: List[BatchItem]


class Health(BaseModel):
    status: str
    classes: int
    queued: int
    model_calls: int
    images: int


class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f'request body larger than the {limit // MB} MB limit '
                              f'({limit} bytes); send a smaller image or raise --max-upload-mb')


class BodyLimit:
    """ASGI middleware: 413 for bodies over `limit` bytes, by Content-Length at once, else while they stream in."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        declared = dict(scope.get('headers') or []).get(b'content-length')
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            error = _BodyTooLarge(self.limit)
            response = JSONResponse({'detail': error.detail}, status_code=413, headers={'Connection': 'close'})
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > self.limit:
                    raise _BodyTooLarge(self.limit)  # raised inside the endpoint's read: becomes a 413 answer
            return message

        await self.app(scope, limited_receive, send)


_IMAGE_BODY = {'type': 'string', 'format': 'binary'}


def _request_body_doc(batch: bool) -> dict:
    field = {'type': 'array', 'items': _IMAGE_BODY} if batch else _IMAGE_BODY
    name = 'files' if batch else 'file'
    multipart = {'schema': {'type': 'object', 'properties': {name: field}, 'required': [name]}}
    raw = {'schema': _IMAGE_BODY}
    return {'requestBody': {'required': True, 'content': {
        'multipart/form-data': multipart, 'application/octet-stream': raw, 'image/jpeg': raw, 'image/png': raw}}}


def _ranked(probs: np.ndarray, classes: List[str], top_k: Optional[int], threshold: float) -> List[dict]:
    order = np.argsort(-probs, kind='stable')
    rows = [{'class': classes[i], 'probability': round(float(probs[i]), 6)} for i in order if probs[i] >= threshold]
    return rows[:top_k] if top_k else rows


async def read_images(request: Request, max_files: int) -> List[Tuple[str, bytes]]:
    """(name, bytes) of each image in the request: the multipart file parts, or the raw body as one image."""
    if request.headers.get('content-type', '').startswith('multipart/form-data'):
        try:
            form = await request.form(max_files=max_files, max_fields=100)
        except StarletteHTTPException as err:  # Starlette's own, raised for malformed or oversized forms
            if 'Too many files' not in str(err.detail):
                raise
            raise HTTPException(400, f'more than {max_files} image(s) in one request: '
                                     + ('use /predict/batch for several' if max_files == 1 else
                                        'send several requests')) from err
        parts = [(value.filename or key, await value.read()) for key, value in form.multi_items()
                 if isinstance(value, UploadFile)]
        await form.close()
        if not parts:
            raise HTTPException(400, "the multipart form holds no file: send the image as a file part "
                                     "(curl -F 'file=@photo.jpg')")
        return parts
    body = await request.body()
    if not body:
        raise HTTPException(400, "empty request: send an image as the body (curl --data-binary @photo.jpg) "
                                 "or as a multipart file (curl -F 'file=@photo.jpg')")
    return [('request body', body)]


class PredictionService:
    """An `InferenceLearner` behind a `Batcher`: decode uploads, queue them for the model, rank the answers."""

    def __init__(self, inference: Any, config: ServeConfig):
        self.inference, self.config, self.meta = inference, config, inference.meta
        self.classes = [str(c) for c in inference.classes]
        self.is_multi, self.sz = bool(inference.is_multi), int(inference.sz)
        self.batcher = Batcher(inference.predict_probs, max_batch=config.max_batch, max_queue=config.max_queue,
                               max_wait_ms=config.max_wait_ms)
        self.info, self.table = model_info(self.meta), threshold_table(self.meta)
        # multi-label answers list the labels present by default; single-label ones every class, ranked
        self.default_threshold = default_threshold(self.meta) if self.is_multi else 0.0

    def decode_all(self, parts: List[Tuple[str, bytes]]) -> List[np.ndarray]:
        """Decode every part (in a worker thread); one 422 naming every bad part."""
        arrays, errors = [], []
        for name, data in parts:
            try:
                arrays.append(decode_image_bytes(data, name, target_size=self.sz, max_pixels=self.config.max_pixels))
            except ImageError as err:
                errors.append(str(err))
        if errors:
            raise HTTPException(422, '; '.join(errors))
        return arrays

    async def classify(self, request: Request, max_files: int, top_k: Optional[int],
                       threshold: Optional[float]) -> List[Tuple[str, List[dict]]]:
        """(name, ranked predictions) for each image of the request."""
        parts = await read_images(request, max_files)
        arrays = await run_in_threadpool(self.decode_all, parts)
        try:
            probs = await self.batcher.predict(arrays)
        except QueueFull as err:
            raise HTTPException(503, str(err), headers={'Retry-After': '1'}) from err
        threshold = self.default_threshold if threshold is None else threshold
        return [(name, _ranked(p, self.classes, top_k, threshold)) for (name, _), p in zip(parts, probs)]


def create_app(model: Union[str, Path, Any], config: Optional[ServeConfig] = None) -> FastAPI:
    """The FastAPI app serving `model`: an export's path (loaded with `load_learner`) or an `InferenceLearner`.

    Example:
        >>> from fastapi.testclient import TestClient
        >>> with TestClient(create_app('out/model.pth')) as client:
        ...     client.post('/predict', files={'file': open('cat.jpg', 'rb')}).json()
    """
    config = config or ServeConfig()
    if isinstance(model, (str, Path)):
        from ..export import load_learner
        model = load_learner(model)
    from .video import service_for  # a video export answers video uploads (serve/video.py)
    service = service_for(model, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await service.batcher.aclose()

    app = FastAPI(title='learner prediction service', lifespan=lifespan,
                  description=f'{service.meta.get("arch")} image classifier: {len(service.classes)} classes, '
                              f'{service.sz} px input. Send an image to /predict (multipart field `file`, or the '
                              f'raw bytes as the body).')
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    app.state.service = service

    top_k_query = Query(None, ge=1, description='return at most this many classes (default: all)')
    threshold_query = Query(None, ge=0.0, le=1.0, description='return only classes with at least this probability '
                            '(default: 0, or the export threshold, usually 0.5, for multi-label models)')

    @app.post('/predict', response_model=PredictResponse, openapi_extra=_request_body_doc(False),
              responses={400: {'description': 'no image, or several (use /predict/batch)'},
                         413: {'description': 'body too large'},
                         422: {'description': 'not a decodable image, or a bad parameter'},
                         503: {'description': 'queue full: retry'}})
    async def predict(request: Request, top_k: Optional[int] = top_k_query,
                      threshold: Optional[float] = threshold_query) -> Any:
        """Classify one image: its classes by decreasing probability."""
        (_, predictions), = await service.classify(request, 1, top_k, threshold)
        return {'predictions': predictions}

    @app.post('/predict/batch', response_model=BatchResponse, openapi_extra=_request_body_doc(True),
              responses={400: {'description': 'no image in the request, or more than max_files'},
                         413: {'description': 'body too large'},
                         422: {'description': 'a part is not a decodable image (all are named)'},
                         503: {'description': 'queue full: retry'}})
    async def predict_batch(request: Request, top_k: Optional[int] = top_k_query,
                            threshold: Optional[float] = threshold_query) -> Any:
        """Classify several images (one multipart file part each) in one call; answers in the parts' order."""
        answers = await service.classify(request, config.max_files, top_k, threshold)
        return {'results': [{'filename': name, 'predictions': p} for name, p in answers]}

    @app.get('/model')
    async def model_card() -> dict:
        """Classes, architecture, input size, export time and the validation metrics stored at export."""
        return service.info

    @app.get('/model/thresholds', responses={404: {'description': 'the export holds no validation predictions'}})
    async def thresholds() -> dict:
        """Per-class and overall precision and recall on the validation set at thresholds 0, 0.01, ..., 1."""
        if service.table is None:
            raise HTTPException(404, 'this export holds no validation predictions (written by an older version, '
                                     'or without a validation set); re-export with learn.export(path)')
        return service.table

    @app.get('/health', response_model=Health)
    async def health() -> Any:
        """The service is up and the model loaded; how many images wait for it."""
        batcher = service.batcher
        return {'status': 'ok', 'classes': len(service.classes), 'queued': batcher.queued,
                'model_calls': batcher.n_batches, 'images': batcher.n_images}

    @app.get('/', include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / 'index.html', media_type='text/html')

    app.mount('/static', StaticFiles(directory=STATIC), name='static')
    return app


def serve(model: Union[str, Path, Any], host: str = '127.0.0.1', port: int = 8000,
          config: Optional[ServeConfig] = None, log_level: str = 'info') -> None:
    """Run the prediction service with uvicorn until interrupted (binds to loopback unless `host` says otherwise)."""
    import warnings
    import uvicorn
    from PIL import Image
    # uploads over max_pixels are refused by decode_image_bytes itself; Pillow's warning would only be noise
    warnings.filterwarnings('ignore', category=Image.DecompressionBombWarning)
    uvicorn.run(create_app(model, config), host=host, port=port, log_level=log_level, workers=1)
