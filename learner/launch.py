"""`launch(fn, n_procs)`: run a function on N local processes as torchrun would, from a notebook or a script."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import socket
import time
import traceback
from typing import Any, Callable, Dict, Optional, TypeVar

import torch

from .distributed import shutdown

__all__ = ['launch']

T = TypeVar('T')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run_launched(fn: Callable, args: tuple, kwargs: dict, rank_: int, n_procs: int, port: int,
                  results: Any, threads: Optional[int]) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE=str(n_procs), RANK=str(rank_),
                      LOCAL_RANK=str(rank_), LOCAL_WORLD_SIZE=str(n_procs), GROUP_RANK='0')
    if threads:
        torch.set_num_threads(threads)
    clean = False
    try:
        value = fn(*args, **kwargs)
        try:
            payload = pickle.dumps(value if rank_ == 0 else None)
        except Exception as err:  # noqa: BLE001 - reported to the parent instead
            raise TypeError(f'launch: the value fn returned on process 0 cannot be pickled ({err}); return plain data '
                            '(numbers, lists, dicts, numpy arrays, CPU tensors)') from err
        results.put((rank_, True, payload))
        clean = True
    except BaseException:  # noqa: BLE001 - the parent raises it
        results.put((rank_, False, traceback.format_exc()))
    finally:
        shutdown(clean)  # atexit does not run in a multiprocessing child


def launch(fn: Callable[..., T], n_procs: int, *args: Any, timeout: Optional[float] = None,
           start_method: Optional[str] = None, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` on `n_procs` local processes as torchrun would (a notebook launcher); returns what
    `fn` returned on process 0.

    Each process gets torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so a Learner
    built inside `fn` trains with DDP. On CPU each process gets `cpu_count // n_procs` threads (unless
    OMP_NUM_THREADS is set). Processes are forked where possible, so `fn` may be defined in the notebook; with CUDA
    already initialised in this process they must be spawned instead, and `fn` must then be importable.

    Args:
        fn: the training function (build the data and the learner inside it).
        n_procs: number of processes (on GPUs: at most one per GPU).
        timeout: seconds before every process is stopped and TimeoutError raised (None: no limit).
        start_method: 'fork' or 'spawn' (default: fork when CUDA is not initialised here and fork exists).

    Raises:
        RuntimeError: a process failed (its traceback is in the message); the others are stopped.

    Example:
        >>> def train():
        ...     learn = ConvLearner.pretrained(resnet34, get_data(), precompute=False)
        ...     return learn.fit_one_cycle(1, 1e-2)
        >>> launch(train, 2)
    """
    if n_procs < 1:
        raise ValueError(f'n_procs must be at least 1, got {n_procs}')
    if start_method is None:
        can_fork = 'fork' in multiprocessing.get_all_start_methods()
        start_method = 'fork' if can_fork and not torch.cuda.is_initialized() else 'spawn'
    if start_method == 'fork' and torch.cuda.is_initialized():
        raise RuntimeError("launch: CUDA is already initialised in this process, so it cannot be forked: restart the "
                           "kernel and call launch before using the GPU, or pass start_method='spawn' with a function "
                           'importable from a module')
    threads = None if 'OMP_NUM_THREADS' in os.environ else max(1, (os.cpu_count() or 1) // n_procs)
    ctx = multiprocessing.get_context(start_method)
    results, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_run_launched, args=(fn, args, kwargs, r, n_procs, port, results, threads))
             for r in range(n_procs)]
    for p in procs:
        p.start()
    try:
        return _collect(procs, results, timeout)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)


def _collect(procs: list, results: Any, timeout: Optional[float]) -> Any:
    deadline = None if timeout is None else time.monotonic() + timeout
    done: Dict[int, bytes] = {}
    while len(done) < len(procs):
        try:
            rank_, ok, payload = results.get(timeout=0.2)
        except queue.Empty:
            for r, p in enumerate(procs):
                if r not in done and p.exitcode not in (None, 0):
                    raise RuntimeError(f'launch: process {r} died with exit code {p.exitcode} without reporting '
                                       '(killed, out of memory, or a crash in native code)')
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f'launch: the processes did not finish within {timeout} s '
                                   f'(finished: {sorted(done)}); all were stopped')
            continue
        if not ok:
            raise RuntimeError(f'launch: process {rank_} failed; the others were stopped. Its traceback:\n{payload}')
        done[rank_] = payload
    return pickle.loads(done[0])
