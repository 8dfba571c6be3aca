"""The prediction service: a FastAPI app around an exported learner (`create_app`), and `serve` to run it.

Endpoints:
    POST /predict          one image (multipart field, or the raw request body) -> sorted class probabilities
    POST /predict/batch    several images (multipart, one part each) -> one answer per image, batched together
    GET  /model            classes, architecture, input size, export time, validation metrics stored at export
    GET  /model/thresholds per-class precision/recall at 101 thresholds (for the quick-test page's slider)
    GET  /health           liveness and queue length
    GET  /                 the quick-test web page; /docs the OpenAPI docs

What one request can cost is bounded, so no client can exhaust the server:
  * bytes: a body over `max_upload_bytes` is answered 413, by its declared length at once or as it streams in; the
    rest of the body is read and dropped first (up to `max_drain_bytes`), so clients that send the whole body before
    reading (Python's urllib, requests, httpx, a browser's fetch) receive the 413 and its reason, not a reset;
  * pixels: each upload's decoded size is read from its header before anything is decoded; an image over
    `max_pixels` is 422, a request whose images add up to more than `max_request_pixels` is 413;
  * memory while decoding: at most `decode_threads` uploads decode at once, one image at a time per request, each
    shrunk at once to the model's input size (`decode.py`), so what waits for the model is small and of known size;
  * the queue: images waiting for the model are bounded in number (`max_queue`) and in bytes (`max_queue_bytes`);
    beyond that a request is 503 with Retry-After.
A body that is not a decodable image (empty, another format, truncated, a decompression bomb) is 422 with the
reason. Decoding runs in its own threads and the model in one thread of its own (see `Batcher`), never on the event
loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.images import ImageError
from .batcher import Batcher, NeverFits, QueueFull
from .decode import DEFAULT_MAX_PIXELS, decode_image_bytes, decoded_pixels
from .info import default_threshold, model_info, threshold_table

__all__ = ['ServeConfig', 'PredictionService', 'check_limits', 'create_app', 'serve']

STATIC = Path(__file__).resolve().parent / 'static'
MB = 1024 * 1024


@dataclasses.dataclass
class ServeConfig:
    """Limits of the prediction service (see the module docstring for what each one bounds).

    Args:
        max_upload_bytes: the largest request body (default 20 MB); larger ones get 413.
        max_files: the most images in one /predict/batch call (default 64).
        max_batch: the most images in one model call (default 32).
        max_queue: the most images waiting for the model before new requests get 503 (default 1024).
        max_wait_ms: how long the model waits to fill a batch once it has an image (default 0: never waits).
        max_pixels: the most pixels one upload may decode to (after JPEG's reduced-scale decoding); larger ones are
            refused as decompression bombs, 422 (default 64 megapixels).
        max_request_pixels: the most pixels the uploads of one request may decode to together; more is 413
            (default 256 megapixels: four of the largest images, or 64 phone photos).
        max_queue_bytes: the most bytes the images waiting for the model may hold before new requests get 503
            (default 256 MB; each image waits at the model's input size, 3 x sz x sz bytes).
        decode_threads: uploads decoded at the same time (default: the CPU count, at most 4); with `max_pixels` it
            bounds the memory decoding can take (about 4 bytes per pixel per thread).
        max_drain_bytes: how much of an oversized body is read and dropped before the 413 is sent (default 64 MB,
            or `max_upload_bytes` if larger); past it the connection is closed.
    """
    max_upload_bytes: int = 20 * MB
    max_files: int = 64
    max_batch: int = 32
    max_queue: int = 1024
    max_wait_ms: float = 0.0
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
    max_request_pixels: int = 256_000_000
    max_queue_bytes: int = 256 * MB
    decode_threads: int = dataclasses.field(default_factory=lambda: min(4, os.cpu_count() or 1))
    max_drain_bytes: int = 64 * MB

    def __post_init__(self) -> None:
        for name in ('max_upload_bytes', 'max_files', 'max_batch', 'max_queue', 'max_request_pixels',
                     'max_queue_bytes', 'decode_threads'):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'ServeConfig.{name} must be a positive whole number, got {value!r}')
        if self.max_pixels is not None and (not isinstance(self.max_pixels, int) or self.max_pixels < 0):
            raise ValueError(f'ServeConfig.max_pixels must be a whole number >= 0 (0: no limit), got {self.max_pixels!r}')
        if self.max_wait_ms < 0 or self.max_drain_bytes < 0:
            raise ValueError('ServeConfig.max_wait_ms and max_drain_bytes must be >= 0')


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
        super().__init__(413, f'request body larger than the {limit / MB:g} MB limit '
                              f'({limit} bytes); send a smaller image or raise --max-upload-mb')


async def _drain(receive, budget: int, seconds: float = 30.0) -> None:
    """Read and drop what is left of a request body, at most `budget` bytes and `seconds`.

    Why: a server that answers and closes while body bytes are still unread makes the kernel reset the connection,
    and a client that sends its whole body before reading (urllib, requests) then sees 'Connection reset by peer'
    instead of the answer. Reading the rest first (nginx's lingering close does the same) lets it read the 413."""
    async def drain() -> None:
        drained = 0
        while drained <= budget:
            message = await receive()
            if message['type'] != 'http.request':
                return
            drained += len(message.get('body', b''))
            if not message.get('more_body', False):
                return
    try:
        await asyncio.wait_for(drain(), seconds)
    except asyncio.TimeoutError:
        pass


class BodyLimit:
    """ASGI middleware: 413 for bodies over `limit` bytes, by Content-Length at once, else while they stream in;
    either way the rest of the body is drained first (up to `drain` bytes, see `_drain`)."""

    def __init__(self, app: Any, limit: int, drain: Optional[int] = None):
        self.app, self.limit = app, int(limit)
        self.drain = int(drain) if drain is not None else max(64 * MB, self.limit)

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        headers = dict(scope.get('headers') or [])
        declared = headers.get(b'content-length')
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            error = _BodyTooLarge(self.limit)
            if headers.get(b'expect', b'').lower() != b'100-continue':
                # a client that waits for "100 Continue" has sent nothing yet: reading would ask it for the body
                await _drain(receive, self.drain)
            response = JSONResponse({'detail': error.detail}, status_code=413, headers={'Connection': 'close'})
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > self.limit:
                    if message.get('more_body', False):
                        await _drain(receive, self.drain)
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


async def read_images(request: Request, max_files: int, too_many: Optional[str] = None) -> List[Tuple[str, bytes]]:
    """(name, bytes) of each image in the request: the multipart file parts, or the raw body as one image.
    `too_many`: what to tell a client that sent more than `max_files` (default: this service's batch route)."""
    if request.headers.get('content-type', '').startswith('multipart/form-data'):
        try:
            form = await request.form(max_files=max_files, max_fields=100)
        except StarletteHTTPException as err:  # Starlette's own, raised for malformed or oversized forms
            if 'Too many files' not in str(err.detail):
                raise
            hint = too_many or ('use /predict/batch for several' if max_files == 1 else 'send several requests')
            raise HTTPException(400, f'more than {max_files} image(s) in one request: {hint}') from err
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


def check_limits(config: ServeConfig, sz: int) -> None:
    """Refuse limits that a model of input size `sz` could never work under (a queue too small for one image)."""
    one_image = 3 * int(sz) * int(sz)   # bytes of one queued model input
    if config.max_queue_bytes < one_image:
        raise ValueError(f'max_queue_bytes={config.max_queue_bytes} cannot hold a single {sz} px image '
                         f'({one_image} bytes): raise it (--max-queue-mb)')


class PredictionService:
    """An `InferenceLearner` behind a `Batcher`: decode uploads (bounded, see the module docstring), queue them at the
    model's input size, rank the answers."""

    def __init__(self, inference: Any, config: ServeConfig):
        self.inference, self.config, self.meta = inference, config, inference.meta
        self.classes = [str(c) for c in inference.classes]
        self.is_multi, self.sz = bool(inference.is_multi), int(inference.sz)
        self.batcher = Batcher(inference.predict_prepared, max_batch=config.max_batch, max_queue=config.max_queue,
                               max_wait_ms=config.max_wait_ms, max_queue_bytes=config.max_queue_bytes)
        self.decoder = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(config.decode_threads)),
                                                             thread_name_prefix='learner-decode')
        check_limits(config, self.sz)
        self.info, self.table = model_info(self.meta), threshold_table(self.meta)
        # multi-label answers list the labels present by default; single-label ones every class, ranked
        self.default_threshold = default_threshold(self.meta) if self.is_multi else 0.0

    @property
    def target_size(self) -> int:
        """The smallest side an upload is decoded to: what the validation transforms need."""
        return int(self.inference.valid_tfms.decode_size or self.sz)

    def decode_all(self, parts: List[Tuple[str, bytes]]) -> List[Any]:
        """Every part at the model's input size (uint8 (3, sz, sz)), in a decode thread: first the decoded size of
        each from its header (one 422 naming every bad part; 413 when they add up to too many pixels), then one
        image at a time."""
        errors, total = [], 0
        for name, data in parts:
            try:
                total += decoded_pixels(data, name, self.target_size, self.config.max_pixels)
            except ImageError as err:
                errors.append(str(err))
        if errors:
            raise HTTPException(422, '; '.join(errors))
        if total > self.config.max_request_pixels:
            raise HTTPException(413, f'the {len(parts)} image(s) of this request decode to {total / 1e6:.0f} '
                                     f'megapixels, more than the {self.config.max_request_pixels / 1e6:.0f} allowed '
                                     f'in one request; send fewer or smaller images per request')
        prepared = []
        for name, data in parts:
            try:
                arr = decode_image_bytes(data, name, self.target_size, self.config.max_pixels)
            except ImageError as err:
                errors.append(str(err))
                continue
            prepared.append(self.inference.prepare(arr))
        if errors:
            raise HTTPException(422, '; '.join(errors))
        return prepared

    async def classify(self, request: Request, max_files: int, top_k: Optional[int],
                       threshold: Optional[float]) -> List[Tuple[str, List[dict]]]:
        """(name, ranked predictions) for each image of the request."""
        parts = await read_images(request, max_files)
        prepared = await asyncio.get_running_loop().run_in_executor(self.decoder, self.decode_all, parts)
        names = [name for name, _ in parts]
        del parts  # the request's bytes are not needed while it waits for the model
        try:
            probs = await self.batcher.predict(prepared)
        except QueueFull as err:
            raise HTTPException(503, str(err), headers={'Retry-After': '1'}) from err
        except NeverFits as err:
            raise HTTPException(413, str(err)) from err
        threshold = self.default_threshold if threshold is None else threshold
        return [(name, _ranked(p, self.classes, top_k, threshold)) for name, p in zip(names, probs)]

    async def aclose(self) -> None:
        await self.batcher.aclose()
        self.decoder.shutdown(wait=False, cancel_futures=True)


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
        await service.aclose()

    app = FastAPI(title='learner prediction service', lifespan=lifespan,
                  description=f'{service.meta.get("arch")} image classifier: {len(service.classes)} classes, '
                              f'{service.sz} px input. Send an image to /predict (multipart field `file`, or the '
                              f'raw bytes as the body).')
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes, drain=max(config.max_drain_bytes,
                                                                          config.max_upload_bytes))
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
