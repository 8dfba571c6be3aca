"""Precompute as a data source: a frozen body's activations, cached on disk, memory-mapped, and served as batches.

`PrecomputedFeatures` owns everything about it: the key, the folder, the build and the loaders; the training loop
only asks it for a `Stage` (the head to train and the loaders of cached features). `ActivationCache` is the store
underneath, keyed by everything that shapes the activations.

Why: with a frozen body, training the head on stored activations is many times faster than running the body
every epoch (fastai 0.7's `precompute=True`). 0.7 keyed its cache by architecture and size only, so changed
files or transforms silently reused stale activations; here the key is a dict the caller fills with every
part that matters (backbone, weights, xtra_cut, size, transforms, a fingerprint of the files...), hashed with
sha256 into the name of a subfolder, so any change lands in a new folder and is built afresh.

Under torchrun the first process builds the cache and the others wait, then read it (`distributed.main_first`);
nodes that do not share its file system build their own copy, once per node.

Layout of `cache_dir/<digest>/`: `key.json` (the key, for humans), and per split `<split>.features.f32`
(raw (N, F) array), `<split>.labels.npy`, and `<split>.done` (JSON: shape and dtype). Files are written
under temporary names (tagged with host and pid), fsynced, renamed, and the `.done` marker is written last, so a
crash mid-build never leaves a split that reads as built; the next `get_or_build` rebuilds it, removing only the
temporary files of processes that are gone. Two processes (two notebooks, two jobs) asking for the same split take
turns on `<split>.lock`: the second waits and reads what the first built.

Example:
    >>> cache = ActivationCache('~/.cache/learner', {'backbone': 'resnet34', 'sz': 224, 'files': fingerprint})
    >>> feats, labels = cache.get_or_build('train', feature_fn, loader, n_items=len(ds), device='cpu')
    >>> feats.shape                                      # np.memmap, read-only
    (245, 1024)
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from .core import Stage, is_writable, lone_last_batch, rng_state, set_rng_state, user_cache_dir
from .distributed import main_first
from .inference import clips_in

__all__ = ['ActivationCache', 'PrecomputedFeatures', 'check_precomputable', 'CachedFeatureLoader', 'key_digest', 'cache_root']

_DTYPES = {'float32': ('f32', np.float32), 'float16': ('f16', np.float16)}


def _temp_tag() -> str:
    """Suffix of this process's temporary files: host and pid, so a cleanup can tell a live writer's from a dead one's."""
    return f'.tmp-{socket.gethostname()}-{os.getpid()}'


def _writer_alive(temp_file: str) -> bool:
    """Whether the process that writes `temp_file` may still be running: True for another host's files (which this
    host cannot check) and for live local processes; False for a dead local process or an unreadable tag."""
    tag = temp_file.rsplit('.tmp', 1)[-1].lstrip('-')
    host, _, pid = tag.rpartition('-')
    if host and host != socket.gethostname():
        return True
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_file` (POSIX `flock`): processes building the same split of the
    same cache take turns, and the later ones find it built. Where `fcntl` is missing (Windows) nothing is locked;
    temporary files are still per process, so concurrent builds cannot break each other there either."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_file, 'a+') as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def key_digest(key: dict) -> str:
    """sha256 hex digest of a key dict (sorted JSON; values that are not JSON types are written with str())."""
    text = json.dumps(key, sort_keys=True, default=str, separators=(',', ':'))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def _fsync_path(path: Union[str, Path]) -> None:
    """fsync a file or directory so a rename after it is durable."""
    flags = os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # some platforms cannot open directories; durability is best effort there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ActivationCache:
    """Cached (N, F) activations and labels per split ('train', 'valid', 'test') for one key.

    Args:
        cache_dir: parent folder; the cache lives in `cache_dir/<first 20 hex digits of sha256(key)>`.
        key: a JSON-able dict naming everything the activations depend on. Any change gives a new folder.
        dtype: 'float32' (default) or 'float16' (half the disk, for large data sets); part of the key.
    """

    def __init__(self, cache_dir: Union[str, Path], key: dict, dtype: str = 'float32'):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if not isinstance(key, dict):
            raise TypeError(f'key must be a dict of what the activations depend on, got {type(key).__name__}')
        self.key = dict(key)
        self.dtype = dtype
        self.digest = key_digest({'key': self.key, 'dtype': dtype})
        self.path = Path(cache_dir).expanduser() / self.digest[:20]

    def __repr__(self) -> str:
        built = [s for s in ('train', 'valid', 'test') if self.is_built(s)]
        return f'ActivationCache({str(self.path)!r}, built={built})'

    def _files(self, split: str) -> tuple[Path, Path, Path]:
        if not split or not split.replace('_', '').isalnum():
            raise ValueError(f"split must be a plain name such as 'train', 'valid' or 'test', got {split!r}")
        suffix = _DTYPES[self.dtype][0]
        return (self.path / f'{split}.features.{suffix}', self.path / f'{split}.labels.npy',
                self.path / f'{split}.done')

    def is_built(self, split: str) -> bool:
        """True when the split was completely written (its completion marker and data files exist)."""
        return all(p.exists() for p in self._files(split))

    def clear(self) -> None:
        """Delete this key's folder (every split)."""
        shutil.rmtree(self.path, ignore_errors=True)

    def load(self, split: str) -> tuple[np.memmap, np.ndarray]:
        """(features memmap opened read-only, labels) of a built split; FileNotFoundError when not built."""
        features_path, labels_path, done_path = self._files(split)
        if not self.is_built(split):
            raise FileNotFoundError(f'no complete {split!r} activations in {self.path}: call get_or_build first')
        meta = json.loads(done_path.read_text())
        features = np.memmap(features_path, dtype=_DTYPES[self.dtype][1], mode='r', shape=tuple(meta['shape']))
        return features, np.load(labels_path, allow_pickle=False)

    def get_or_build(self, split: str, feature_fn: Callable[[torch.Tensor], torch.Tensor],
                     loader: Iterable, n_items: int, device: Union[str, torch.device, None] = None
                     ) -> tuple[np.memmap, np.ndarray]:
        """The split's cached activations, computing them first when they are not (completely) on disk.

        Args:
            split: 'train', 'valid' or 'test' (any plain name).
            feature_fn: maps an input batch to (B, F) activations (more dims are flattened); run under no_grad.
                The caller puts the model in eval mode.
            loader: yields (x, y) batches in data-set order, with no augmentation. When x holds K rows per label (the
                K clips of a video), an item's K activations are stored side by side: (n_items, K * F).
            n_items: number of items the loader yields in all (checked).
            device: where x goes before feature_fn (None: left where the loader put it).
        Returns:
            (features, labels): np.memmap (n_items, F) of float32/float16, read-only; labels as an ndarray.
        """
        if self.is_built(split):
            return self.load(split)
        if n_items < 1:
            raise ValueError(f'nothing to cache for {split!r}: n_items={n_items} (an empty split has no activations)')
        self.path.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.path / f'{split}.lock'):  # another process building this split: wait, then read its work
            if not self.is_built(split):
                self._build(split, feature_fn, loader, n_items, device)
        return self.load(split)

    def _build(self, split, feature_fn, loader, n_items: int, device) -> None:
        features_path, labels_path, done_path = self._files(split)
        tag = _temp_tag()
        key_tmp = self.path / f'key.json{tag}'
        key_tmp.write_text(json.dumps(self.key, sort_keys=True, default=str, indent=1))
        os.replace(key_tmp, self.path / 'key.json')
        for stale in glob.glob(str(self.path / f'{split}.*.tmp*')):  # left by a crashed build, never a live one's
            if not _writer_alive(stale):
                Path(stale).unlink(missing_ok=True)
        done_path.unlink(missing_ok=True)
        tmp_features = features_path.with_name(features_path.name + tag)
        tmp_labels = labels_path.with_name(labels_path.name + tag)
        np_dtype = _DTYPES[self.dtype][1]
        features, labels, n_done = None, [], 0
        try:
            with torch.no_grad():
                for x, y in loader:
                    if device is not None:
                        x = x.to(device)
                    out = feature_fn(x)
                    out = out.reshape(len(y), -1).detach().float().cpu().numpy()  # (B, F), or (B, K*F) for K clips
                    if features is None:
                        features = np.memmap(tmp_features, dtype=np_dtype, mode='w+', shape=(n_items, out.shape[1]))
                    if n_done + len(out) > n_items:
                        raise ValueError(f'the {split} loader yielded more than n_items={n_items} items')
                    features[n_done:n_done + len(out)] = out
                    labels.append(torch.as_tensor(y).detach().cpu().numpy())
                    n_done += len(out)
            if n_done != n_items:
                raise ValueError(f'the {split} loader yielded {n_done} items, expected n_items={n_items}')
            features.flush()
            shape = features.shape
            del features
            _fsync_path(tmp_features)
            with open(tmp_labels, 'wb') as f:
                np.save(f, np.concatenate(labels) if labels else np.zeros(0))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_features, features_path)
            os.replace(tmp_labels, labels_path)
            tmp_done = done_path.with_name(done_path.name + tag)
            tmp_done.write_text(json.dumps({'shape': list(shape), 'dtype': self.dtype, 'n_items': n_items}))
            _fsync_path(tmp_done)
            os.replace(tmp_done, done_path)  # the marker last: only now does the split read as built
            _fsync_path(self.path)
        except BaseException:
            features = None  # drop the memory map before removing its file
            for path in (tmp_features, tmp_labels):
                path.unlink(missing_ok=True)
            raise

    def describe(self) -> dict[str, Any]:
        """The key and which splits are built (for logs and `learn.summary()`)."""
        return {'path': str(self.path), 'key': self.key, 'dtype': self.dtype,
                'built': {s: self.is_built(s) for s in ('train', 'valid', 'test')}}


class CachedFeatureLoader:
    """Batches of cached features `(x (B, F) float32, y)` on `device`.

    Video evaluation features hold K clips per item, stored (N, K*F): they come out as (B*K, F), each item's K rows
    together, and `clips_per_item` = K tells the loop to average their predictions, as for the clips themselves.

    The training split is reshuffled every epoch from torch's global generator, as every loader here (so
    `torch.manual_seed` fixes it), and, like the image loaders, drops a last batch of one item (BatchNorm in the
    head cannot train on a single row). With a
    `sampler` (under torchrun, this process's `ShardSampler`) the indices come from it instead.
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, bs: int, shuffle: bool, device: torch.device,
                 sampler=None, drop_last: bool = False, clips_per_item: int = 1):
        self.features, self.labels = features, labels
        self.bs, self.shuffle, self.device = bs, shuffle and sampler is None, device
        self.sampler, self.drop_last, self.clips_per_item = sampler, drop_last, int(clips_per_item)

    @property
    def batch_size(self) -> int:
        return self.bs

    @property
    def n_items(self) -> int:
        """Items of the whole split (not of this process's shard)."""
        return len(self.features)

    def with_sampler(self, sampler, drop_last: bool = False) -> 'CachedFeatureLoader':
        """The same features read in the order `sampler` yields (sharding over processes)."""
        return CachedFeatureLoader(self.features, self.labels, self.bs, False, self.device, sampler, drop_last,
                                   self.clips_per_item)

    def __len__(self) -> int:
        if self.sampler is not None:
            n = len(self.sampler)
            return n // self.bs if self.drop_last else -(-n // self.bs)
        n_batches = -(-len(self.features) // self.bs)
        return n_batches - int(self.shuffle and lone_last_batch(len(self.features), self.bs))

    def __iter__(self) -> Iterator:
        n = len(self.features)
        if self.sampler is not None:
            order = np.fromiter(self.sampler, dtype=np.int64)
        else:
            order = torch.randperm(n).numpy() if self.shuffle else np.arange(n)  # torch's generator, as every loader
        for start in range(0, len(self) * self.bs, self.bs):
            idx = order[start:start + self.bs]
            rows = np.sort(idx) if self.shuffle or self.sampler is not None else idx  # sorted reads of the memmap
            x = torch.from_numpy(np.ascontiguousarray(self.features[rows], dtype=np.float32))
            x = x.view(len(rows) * self.clips_per_item, -1)     # (B, K*F) -> (B*K, F): each item's clips together
            y = torch.from_numpy(np.asarray(self.labels[rows]))
            yield x.to(self.device), y.to(self.device)


def cache_root(data_path: Union[str, Path]) -> Path:
    """`<data path>/tmp/precompute` when writable (fastai 0.7's place), else `$XDG_CACHE_HOME/learner/precompute`."""
    preferred = Path(data_path) / 'tmp'
    if is_writable(preferred):
        try:
            preferred.mkdir(parents=True, exist_ok=True)
            return preferred / 'precompute'
        except OSError:
            pass
    return user_cache_dir('precompute')


def _weights_digest(module: nn.Module) -> str:
    """A hash of a module's parameters and buffers, so a cache never outlives the weights it came from."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def check_precomputable(data: Any) -> None:
    """Refuse data the cache cannot be keyed by (a 0.7 `ModelData` over any loaders), saying what to use instead."""
    missing = [name for name in ('loader', 'fingerprint', 'tfms_signature') if not callable(getattr(data, name, None))]
    if missing:
        raise TypeError(f"precompute=True caches activations keyed by the data's files and transforms, but this "
                        f'{type(data).__name__} has no {", ".join(missing)}: build the data with '
                        'ImageClassifierData.from_paths/from_csv/from_arrays, or train without precompute')


class PrecomputedFeatures:
    """The activations of `features = pool(body(x))` for every split of the learner's data, with the validation
    transforms (augmentation has no effect on cached features), and the head that trains on them.

    Nothing here is a copy: the data, the cache folder and the model's parts are read from `owner` (the ConvLearner)
    each time a stage is asked for, so `learn.data = other`, `set_data`, a new batch size or a new
    `learn.precompute_cache_dir` all take effect at the next fit. `stage()` builds (or finds on disk) what the key
    names whenever it changes (other body weights, files, labels, size or transforms) and makes new loaders when
    anything that shapes them changes (batch size, device).

    Args:
        owner: has `data` (a DataBunch: `loader(split)`, `fingerprint(split)`, `tfms_signature()`, `bs`, `path`),
            `precompute_cache_dir` (None: `cache_root(data.path)`) and `feature_parts()` -> (body, pool, head,
            identity): the frozen body, what flattens its output, the trainable rest, and what names the body beyond
            its weights (backbone name, pretrained flag, xtra_cut).
    """

    def __init__(self, owner: Any):
        self.owner = owner
        self.cache: Optional[ActivationCache] = None
        self._stage: Optional[Stage] = None
        self._stage_key: Optional[tuple] = None

    @property
    def data(self) -> Any:
        return self.owner.data

    def key(self) -> dict:
        """Everything the cached activations depend on (hashing the body's weights takes ~10 ms per 4M params)."""
        check_precomputable(self.data)
        body, _, _, identity = self.owner.feature_parts()
        splits = ['train', 'valid'] + (['test'] if getattr(self.data, 'test_dl', None) is not None else [])
        return {**identity, 'body': _weights_digest(body), 'tfms': self.data.tfms_signature(),
                'data': {s: self.data.fingerprint(s) for s in splits}}

    def stage(self) -> Stage:
        """The head and loaders of cached features, building the cache first when the key has changed."""
        key = self.key()
        root = self._root()
        _, _, head, _ = self.owner.feature_parts()
        device = next(head.parameters()).device
        loader_key = (key_digest(key), str(root), int(self.data.bs), str(device), tuple(map(id, head.parameters())))
        if self._stage is None or self._stage_key != loader_key:
            self._stage, self._stage_key = self._build(key, root, device), loader_key
        return self._stage

    def _root(self) -> Path:
        chosen = self.owner.precompute_cache_dir
        return Path(chosen) if chosen is not None else cache_root(self.data.path)

    def _build(self, key: dict, root: Path, device: torch.device) -> Stage:
        body, pool, head, _ = self.owner.feature_parts()
        self.cache = ActivationCache(root, key)
        modules = (body, pool)
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        loaders = {}
        rng = rng_state()  # iterating loaders draws from the generators: building must not change the fit that follows
        try:
            for split in key['data']:
                loader = self.data.loader(split)
                # under torchrun process 0 builds while the others wait, then they read the files it wrote
                feats, labels = main_first(lambda: self.cache.get_or_build(
                    split, lambda x: pool(body(x)), loader, len(loader.dataset), device),
                    f'building the precompute cache of the {split} set')
                loaders[split] = CachedFeatureLoader(feats, labels, max(1, self.data.bs // clips_in(loader)),
                                                     split == 'train', device, clips_per_item=clips_in(loader))
        finally:
            set_rng_state(rng)
            for m, mode in zip(modules, modes):
                m.train(mode)
        return Stage(head, loaders['train'], loaders['valid'], loaders.get('test'))
