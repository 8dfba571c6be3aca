"""Dynamic batching: requests from many concurrent clients share one model call, off the event loop.

Every image waits in one queue; a single worker task takes whatever is queued (up to `max_batch` images), runs the
model on them in one dedicated thread under `torch.inference_mode`, and hands each caller its row. While the model
runs, new requests queue up, so under load batches fill by themselves and a lone request is never held back
(`max_wait_ms` can add a short wait to collect more). A full queue (by images, or by the bytes they hold) is refused
at once (`QueueFull`, a 503) rather than letting latency and memory grow without bound; an error in the model fails only the requests of that batch and the
worker goes on.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

__all__ = ['Batcher', 'QueueFull']


def _nbytes(image) -> int:
    if isinstance(image, torch.Tensor):
        return image.numel() * image.element_size()
    return int(getattr(image, 'nbytes', 0))


class QueueFull(RuntimeError):
    """More images are waiting than the batcher's `max_queue`: the caller should retry later."""


class Batcher:
    """Queue images from concurrent requests and run them through `predict` in batches.

    Args:
        predict: (list of n images) -> (n, C) numpy probabilities; called in one worker thread, never concurrently.
        max_batch: the most images in one model call.
        max_queue: the most images waiting; more are refused with `QueueFull`.
        max_wait_ms: how long the worker waits for more images once it has one (0: take what is queued now).
        max_queue_bytes: the most bytes the waiting images may hold (their `nbytes`, or a tensor's
            numel * element_size); None: no byte limit.

    Example:
        >>> batcher = Batcher(inference.predict_probs, max_batch=32)
        >>> probs = await batcher.predict([array1, array2])   # (2, C), maybe computed with other clients' images
    """

    def __init__(self, predict: Callable[[List[np.ndarray]], np.ndarray], max_batch: int = 32,
                 max_queue: int = 1024, max_wait_ms: float = 0.0, max_queue_bytes: Optional[int] = None):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(f'max_batch and max_queue must be >= 1 and max_wait_ms >= 0, got {max_batch}, '
                             f'{max_queue}, {max_wait_ms}')
        self._predict = predict
        self.max_batch, self.max_queue, self.max_wait = int(max_batch), int(max_queue), max_wait_ms / 1000
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._queue: Optional[asyncio.Queue] = None
        self._worker: Optional[asyncio.Task] = None
        self.max_queue_bytes = None if max_queue_bytes is None else int(max_queue_bytes)
        self.queued_bytes = 0  # what the images waiting (or in the model call) hold
        self.n_batches = 0   # model calls so far (for /health and the tests)
        self.n_images = 0

    @property
    def queued(self) -> int:
        """Images waiting for the model now."""
        return self._queue.qsize() if self._queue is not None else 0

    def _ensure_worker(self) -> asyncio.Queue:
        """Start the worker on the running loop (again, if an earlier loop has gone: test clients make new ones)."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='learner-model')
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue), name='learner-batcher')
        return self._queue

    async def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(len(images), C) probabilities; the images may share model calls with other requests'."""
        queue = self._ensure_worker()
        if queue.qsize() + len(images) > self.max_queue:
            raise QueueFull(f'{queue.qsize()} images are already waiting (max_queue={self.max_queue}); retry shortly')
        size = sum(_nbytes(image) for image in images)
        if self.max_queue_bytes is not None and self.queued_bytes + size > self.max_queue_bytes:
            raise QueueFull(f'the images waiting for the model hold {self.queued_bytes} bytes and these {size} more '
                            f'(max_queue_bytes={self.max_queue_bytes}); retry shortly')
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in images]
        self.queued_bytes += size
        try:
            for image, future in zip(images, futures):
                queue.put_nowait((image, future))
            rows = await asyncio.gather(*futures)
        finally:
            self.queued_bytes -= size
        return np.stack(rows)

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(image, future) for image, future in batch if not future.done()]  # skip cancelled callers
            if not live:
                continue
            try:
                probs = await loop.run_in_executor(self._executor, self._call, [image for image, _ in live])
            except Exception as err:  # noqa: BLE001 - the worker must outlive any model error
                for _, future in live:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.n_batches += 1
            self.n_images += len(live)
            for (_, future), row in zip(live, probs):
                if not future.done():
                    future.set_result(row)

    def _call(self, images: List[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():  # thread-local: entered in the model thread itself
            probs = np.asarray(self._predict(images), dtype=np.float64)
        if probs.shape[0] != len(images):
            raise RuntimeError(f'the model returned {probs.shape[0]} rows for {len(images)} images')
        return probs

    async def aclose(self) -> None:
        """Stop the worker and the model thread (pending requests are cancelled)."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
