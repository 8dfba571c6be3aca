"""Training on N processes with `torch.distributed` and DistributedDataParallel, launched by torchrun (one node,
several nodes, a SLURM allocation) or by `launch(fn, n_procs)` (launch.py) from a notebook, with no change to the
script. Which items each process reads: `sharding.py`.

What happens under torchrun (`WORLD_SIZE` > 1 in the environment), and where:

- `setup` (called by the Learner): joins the process group (NCCL on CUDA, `LOCAL_RANK` picking the GPU; gloo on
  CPU) unless the script already did, and returns this process's device.
- `DistributedContext.shard`: every loader the Learner reads is replaced by this process's part. Training: a
  permutation of the whole set drawn each epoch from one seed that process 0 draws from the generator one process
  would have used (so `torch.manual_seed` decides it, as on one process) and broadcasts; process r takes items
  r, r + N, r + 2N, ... of it, padded by wrapping so every process has as many batches (at most N - 1 items repeat
  per epoch). Batch b of all processes together is then batch b of one process with bs x N. Evaluation: a contiguous
  block per process, nothing dropped or repeated, so gathering the blocks in rank order gives data-set order.
- `DistributedContext.wrap`: the module a fit trains is wrapped in DDP, rebuilt whenever the set of trainable
  parameters changes (`freeze`/`unfreeze`, precompute on/off). DDP averages gradients in `backward`.
- The loop averages each batch's loss over processes (so callbacks, the recorder, lr_find and the NaN check see the
  same number everywhere and decide alike), broadcasts process 0's BatchNorm statistics after each training epoch,
  and sums the validation loss and gathers outputs before the metrics, which thus equal the one-process figures.
- `on_main` / `main_first`: files are written by process 0 only while the others wait (checkpoints, exports, the
  precompute cache, resized images); an error there is raised on every process, so none is left waiting.

Collective calls (every process must make them, as the same script does): fits, `lr_find`, predictions, TTA and
interpretation, `save`, `export`, `DataBunch.resize`. Never put them under `if rank() == 0`: that waits forever.

Example (one script, any number of processes):
    $ torchrun --nproc_per_node 2 train.py
"""
from __future__ import annotations

import atexit
import datetime
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .core import Stage, default_device
from .sharding import ShardSampler, shard_loader

__all__ = ['setup', 'shutdown', 'is_distributed', 'rank', 'local_rank', 'world_size', 'is_main_process', 'barrier',
           'on_main', 'main_first', 'all_gather_object', 'gather_rows', 'broadcast_state', 'unwrap',
           'DistributedContext']

T = TypeVar('T')


# --------------------------------------------------------------------------------------------- the process group
def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, '') else int(value)


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank: the process group's, else torchrun's `RANK` (before the Learner joins the group),
    else 0."""
    return dist.get_rank() if is_distributed() else _env_int('RANK', 0)


def world_size() -> int:
    """Number of processes: the process group's, else torchrun's `WORLD_SIZE`, else 1."""
    return dist.get_world_size() if is_distributed() else _env_int('WORLD_SIZE', 1)


def local_rank() -> int:
    """This process's rank on its node (torchrun's `LOCAL_RANK`; 0 on one process)."""
    return _env_int('LOCAL_RANK', 0)


def is_main_process() -> bool:
    """True on process 0 (and on one process): the one that prints, draws and writes."""
    return rank() == 0


def setup(device: Any = None) -> torch.device:
    """Join the process group torchrun describes (`WORLD_SIZE` > 1) and return the device this process should use.

    A group the script initialised itself is kept as it is. The backend is NCCL when `device` is CUDA, else gloo; on
    CUDA, `LOCAL_RANK` picks the GPU (`torch.cuda.set_device`). With `WORLD_SIZE` unset or 1 nothing happens.

    Raises:
        RuntimeError: WORLD_SIZE > 1 without the rest of torchrun's environment (RANK, MASTER_ADDR, MASTER_PORT).
    """
    device = torch.device(device) if device is not None else default_device()
    if _env_int('WORLD_SIZE', 1) <= 1 and not is_distributed():
        return device
    if not dist.is_initialized():
        missing = [k for k in ('RANK', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
        if missing:
            raise RuntimeError(f'WORLD_SIZE={os.environ["WORLD_SIZE"]} but {", ".join(missing)} not set: start the '
                               'script with torchrun (torchrun --nproc_per_node 2 train.py) or from a notebook with '
                               'learner.launch(fn, n_procs), or unset WORLD_SIZE to run one process')
        if device.type == 'cuda':
            torch.cuda.set_device(_env_int('LOCAL_RANK', 0))
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    _leave_at_exit()
    if device.type == 'cuda':
        device = torch.device('cuda', _env_int('LOCAL_RANK', 0))
        torch.cuda.set_device(device)
    return device


def shutdown(clean: bool = False) -> None:
    """Leave the process group (what happens at exit; `launch` calls it in its processes).

    Args:
        clean: this process got to its end without an error, so every process is expected at the same place: wait
            for them (a barrier, bounded by `EXIT_BARRIER_SECONDS` on gloo) before destroying the group, so that no
            process tears the group's connections down while another still uses them (which aborted processes at
            exit with 'terminate called without an active exception'). After an error no barrier is made: it would
            pair with another process's pending collective and hang, where leaving lets that collective fail.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean and dist.get_world_size() > 1:
        try:
            if dist.get_backend() == 'gloo':
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=EXIT_BARRIER_SECONDS))
            else:
                dist.barrier()
        except Exception:  # noqa: BLE001 - a process that failed never arrives: leave anyway
            pass
    dist.destroy_process_group()


#: How long a process that ended cleanly waits at exit for the others before leaving the group anyway.
EXIT_BARRIER_SECONDS = 120

_exit = {'registered': False, 'failed': False}


def _leave_at_exit() -> None:
    """Once per process: leave the group at interpreter exit, cleanly unless an uncaught exception ended the script
    (noted by a wrapper around `sys.excepthook`, which runs before `atexit`)."""
    if _exit['registered']:
        return
    _exit['registered'] = True
    previous = sys.excepthook

    def note_failure(kind, value, tb):
        _exit['failed'] = True
        previous(kind, value, tb)
    sys.excepthook = note_failure
    atexit.register(lambda: shutdown(clean=not _exit['failed']))


def _comm_device() -> torch.device:
    """Where tensors must be for the group's backend: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def barrier() -> None:
    """Wait until every process gets here (nothing on one process)."""
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> List[Any]:
    """`[obj of process 0, obj of process 1, ...]` (picklable objects); `[obj]` on one process."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _raise_first_failure(messages: List[Optional[str]], own: Optional[BaseException], what: str) -> None:
    if own is not None:
        raise own
    for i, message in enumerate(messages):
        if message is not None:
            raise RuntimeError(f'process {i} failed while {what}, so this process stops too: {message}')


def _join_if_launched() -> None:
    """Under torchrun, join the group now if no Learner did yet (a `data.resize` or a save before the Learner)."""
    if _env_int('WORLD_SIZE', 1) > 1 and not dist.is_initialized():
        setup()


def on_main(fn: Callable[[], T], what: str = 'writing a file') -> Optional[T]:
    """Run `fn` on process 0 only while the others wait; returns its result there (None elsewhere).

    Collective: call it on every process. An error on process 0 is raised on every process.
    """
    _join_if_launched()
    if not is_distributed():
        return fn()
    result, error = None, None
    if rank() == 0:
        try:
            result = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised below, after telling the others
            error = err
    status = [None if error is None else f'{type(error).__name__}: {error}']
    dist.broadcast_object_list(status, src=0)
    _raise_first_failure(status, error, what)
    return result


def main_first(fn: Callable[[], T], what: str = 'building a cache') -> T:
    """Run `fn` on process 0, then on the first process of every other node, then on all the rest; returns each
    process's own result.

    For idempotent build-or-read steps (the precompute cache, resized images): process 0 builds, the others find the
    result; on nodes that do not share process 0's file system, the node's first process builds its own copy.
    Collective: call it on every process. An error anywhere is raised on every process.
    """
    _join_if_launched()
    if not is_distributed():
        return fn()
    me, first_on_node = rank(), _env_int('LOCAL_RANK', 0) == 0
    result: Any = None
    for mine in (me == 0, me != 0 and first_on_node, not first_on_node):
        error = None
        if mine:
            try:
                result = fn()
            except BaseException as err:  # noqa: BLE001 - re-raised below, after telling the others
                error = err
        messages = all_gather_object(None if error is None else f'{type(error).__name__}: {error}')
        _raise_first_failure(messages, error, what)
    return result


def gather_rows(rows: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Every process's rows, concatenated in rank order, on every process (the identity on one process).

    With the evaluation shards (`ShardSampler(even=False)`) rank order is data-set order. A process with no rows
    passes None. Rows must agree in trailing shape and dtype across processes.
    """
    if not is_distributed():
        return rows
    metas = all_gather_object(None if rows is None else (tuple(rows.shape), rows.dtype))
    shapes = {(m[0][1:], m[1]) for m in metas if m is not None}
    if not shapes:
        return None
    if len(shapes) > 1:
        raise ValueError(f'cannot gather rows of different shapes or dtypes across processes: '
                         f'{sorted(map(str, shapes))}')
    (trailing, dtype), = shapes
    counts = [0 if m is None else m[0][0] for m in metas]
    comm = _comm_device()
    wire_dtype = torch.uint8 if dtype == torch.bool else dtype  # gloo has no bool all_gather
    padded = torch.zeros((max(counts), *trailing), dtype=wire_dtype, device=comm)
    if rows is not None and len(rows):
        padded[:len(rows)] = rows.to(comm, wire_dtype)
    chunks = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(chunks, padded)
    out = torch.cat([chunk[:n] for chunk, n in zip(chunks, counts)]).to(dtype)
    return out.to(rows.device) if rows is not None else out


def broadcast_state(module: nn.Module) -> nn.Module:
    """Copy process 0's parameters and buffers into `module` on every process (in place); returns the module."""
    if not is_distributed():
        return module
    comm = _comm_device()
    with torch.no_grad():
        for tensor in module.state_dict().values():  # detached views of the module's own tensors
            wire = tensor if tensor.device == comm else tensor.to(comm)
            dist.broadcast(wire, src=0)
            if wire is not tensor:
                tensor.copy_(wire)
    return module


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


# --------------------------------------------------------------------------------------------- the Learner's view
class DistributedContext:
    """What the Learner does differently on N processes, in one object (`learn.distributed`, None on one process):
    sharded loaders (cached per loader), the DDP wrapper (cached per module and set of trainable parameters),
    each epoch's shuffling seed, and the reductions of the loop.

    Args:
        device: this process's device (from `setup`).

    Attributes:
        ddp_kwargs: extra DistributedDataParallel arguments, e.g. `{'find_unused_parameters': True}` for a model
            with trainable parameters some batches do not use (DDP's error says when that is needed).
    """

    def __init__(self, device: torch.device):
        self.device, self.rank, self.world = device, rank(), world_size()
        self.ddp_kwargs: Dict[str, Any] = {}
        self._shards: Dict[Tuple[int, bool], Tuple[Any, Any]] = {}
        self._samplers: Dict[int, ShardSampler] = {}
        self._ddp: Optional[DistributedDataParallel] = None
        self._ddp_key: Optional[tuple] = None

    def __repr__(self) -> str:
        return f'DistributedContext(rank {self.rank} of {self.world}, {self.device}, backend {dist.get_backend()})'

    # ------------------------------------------------------------------ loaders
    def shard_eval(self, loader: Any) -> Any:
        """This process's contiguous block of an evaluation loader (data-set order once gathered)."""
        return self._shard(loader, train=False)

    def shard(self, stage: Stage) -> Stage:
        """The stage with every loader replaced by this process's part (training: shuffled even shards)."""
        return Stage(stage.model, self._shard(stage.train, True), self._shard(stage.valid, False),
                     self._shard(stage.test, False))

    def _shard(self, loader: Any, train: bool) -> Any:
        if loader is None:
            return None
        key = (id(loader), train)
        hit = self._shards.get(key)
        if hit is not None and hit[0] is loader:
            return hit[1]
        if len(self._shards) > 32:  # loaders of data swapped out long ago (set_data)
            self._shards.clear()
            self._samplers.clear()
        sharded, sampler = shard_loader(loader, self.rank, self.world, train)
        self._shards[key] = (loader, sharded)
        self._samplers[id(sharded)] = sampler
        return sharded

    def set_epoch(self, loader: Any, epoch: int) -> None:
        """Before each training epoch: the sampler's epoch and, when it shuffles, a seed process 0 draws (from the
        generator one process would have used) and broadcasts. Collective."""
        sampler = self._samplers.get(id(loader))
        if sampler is None:
            return
        seed = None
        if sampler.shuffle:
            seed = torch.tensor([sampler.draw_seed() if self.rank == 0 else 0], dtype=torch.int64,
                                device=_comm_device())
            dist.broadcast(seed, src=0)
            seed = int(seed.item())
        sampler.set_epoch(epoch, seed)

    # ------------------------------------------------------------------ the model
    def wrap(self, stage: Stage, sync_bn: bool = False) -> Stage:
        """The stage with its module in DistributedDataParallel, built anew when the module or its trainable
        parameters changed. `sync_bn`: BatchNorm layers become SyncBatchNorm first (CUDA only)."""
        module = stage.model
        if sync_bn:
            _convert_sync_bn(module, self.device)
        trainable = [p for p in module.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError('nothing to train: every parameter of the model is frozen (unfreeze a layer group)')
        key = (id(module), tuple(id(p) for p in trainable), tuple(sorted(self.ddp_kwargs.items())))
        if self._ddp is None or self._ddp_key != key:
            self._ddp = None  # let the old reducer go before the new one is built
            ids = [self.device.index] if self.device.type == 'cuda' else None
            self._ddp, self._ddp_key = DistributedDataParallel(module, device_ids=ids, **self.ddp_kwargs), key
        return Stage(self._ddp, stage.train, stage.valid, stage.test)

    def sync_buffers(self, model: nn.Module) -> None:
        """Process 0's buffers (BatchNorm statistics) everywhere: after a training epoch each process's last batches
        moved its own statistics."""
        comm = _comm_device()
        with torch.no_grad():
            for buffer in unwrap(model).buffers():
                wire = buffer if buffer.device == comm else buffer.to(comm)
                dist.broadcast(wire, src=0)
                if wire is not buffer:
                    buffer.copy_(wire)

    # ------------------------------------------------------------------ reductions
    def average(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over processes (every process gets it)."""
        wire = value.detach().to(_comm_device(), torch.float32, copy=True)
        dist.all_reduce(wire)
        return (wire / self.world).to(value.device, value.dtype)

    def merge_validation(self, total: torch.Tensor, count: int, outs: list, targs: list, rows: bool
                         ) -> Tuple[torch.Tensor, int, list, list]:
        """Summed loss and item count, and (when `rows`) every process's outputs and targets in data-set order."""
        sums = torch.stack([total.detach().to(_comm_device(), torch.float64).reshape(()),
                            torch.tensor(float(count), dtype=torch.float64, device=_comm_device())])
        dist.all_reduce(sums)
        if rows:
            out = gather_rows(torch.cat(outs) if outs and count else None)
            y = gather_rows(torch.cat(targs) if targs and count else None)
            outs, targs = ([out], [y]) if out is not None else ([], [])
        return sums[0].to(total.device, total.dtype), int(round(sums[1].item())), outs, targs


def _convert_sync_bn(module: nn.Module, device: torch.device) -> None:
    from .freeze import BN_TYPES
    plain = [m for m in module.modules() if isinstance(m, BN_TYPES) and not isinstance(m, nn.SyncBatchNorm)]
    if not plain:
        return
    if device.type != 'cuda':
        raise ValueError(f'sync_bn=True needs CUDA devices (PyTorch runs SyncBatchNorm on GPUs only), but this process '
                         f'trains on {device}: pass sync_bn=False (each process then normalises over its own batch)')
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        raise ValueError('sync_bn=True cannot convert a model that is a single BatchNorm layer')
    nn.SyncBatchNorm.convert_sync_batchnorm(module)  # replaces the layers in place; parameters and buffers are kept
