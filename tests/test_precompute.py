"""ActivationCache: build, reuse, key changes, and crash safety."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.precompute import ActivationCache, key_digest


def _loader(n=10, bs=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 4, 4, generator=g)
    y = torch.arange(n) % 3
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)], x, y


class CountingFeatures:
    """(B, 3, 4, 4) -> (B, 3, 2, 2) mean-pooled activations (flattened to 12 by the cache); counts its calls."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, x):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError('simulated crash mid-build')
        return torch.nn.functional.avg_pool2d(x, 2)


def _expected(x):
    return torch.nn.functional.avg_pool2d(x, 2).reshape(len(x), -1).numpy()


KEY = {'backbone': 'resnet18', 'weights': 'ResNet18_Weights.IMAGENET1K_V1', 'sz': 64, 'files': 'abc'}


def test_build_then_reuse_from_disk(tmp_path):
    loader, x, y = _loader()
    cache = ActivationCache(tmp_path, KEY)
    assert not cache.is_built('train')
    fn = CountingFeatures()
    feats, labels = cache.get_or_build('train', fn, loader, n_items=10, device='cpu')
    assert isinstance(feats, np.memmap) and feats.dtype == np.float32 and feats.shape == (10, 12)
    np.testing.assert_allclose(np.asarray(feats), _expected(x), rtol=1e-6)
    np.testing.assert_array_equal(labels, y.numpy())
    assert fn.calls == 3 and cache.is_built('train') and not cache.is_built('valid')
    assert not feats.flags.writeable
    # a new object with the same key (as after a restart) reads the files, never calls feature_fn
    again = ActivationCache(tmp_path, dict(KEY))
    fn2 = CountingFeatures()
    feats2, labels2 = again.get_or_build('train', fn2, loader, n_items=10, device='cpu')
    assert fn2.calls == 0 and np.array_equal(feats2, feats) and np.array_equal(labels2, labels)
    assert again.path == cache.path and (cache.path / 'key.json').exists()


def test_any_key_change_gives_a_new_folder(tmp_path):
    loader, _, _ = _loader()
    base = ActivationCache(tmp_path, KEY)
    base.get_or_build('valid', CountingFeatures(), loader, n_items=10)
    for change in ({'sz': 72}, {'files': 'abd'}, {'backbone': 'resnet34'}, {'xtra_cut': 1}):
        other = ActivationCache(tmp_path, {**KEY, **change})
        assert other.path != base.path and not other.is_built('valid'), change
    assert ActivationCache(tmp_path, KEY, dtype='float16').path != base.path
    assert key_digest({'a': 1, 'b': 2}) == key_digest({'b': 2, 'a': 1})
    base.clear()
    assert not base.is_built('valid') and not base.path.exists()


def test_crash_mid_write_leaves_nothing_readable_and_next_call_rebuilds(tmp_path):
    loader, x, _ = _loader()
    cache = ActivationCache(tmp_path, KEY)
    with pytest.raises(RuntimeError, match='simulated crash'):
        cache.get_or_build('train', CountingFeatures(fail_at=2), loader, n_items=10)
    assert not cache.is_built('train')
    assert sorted(p.name for p in cache.path.iterdir() if p.suffix != '.lock') == ['key.json']  # no half-written data
    with pytest.raises(FileNotFoundError, match='get_or_build'):
        cache.load('train')
    # a crash that killed the process leaves temp files and no marker: still not built, and cleaned up
    (cache.path / 'train.features.f32.tmp999').write_bytes(b'\0' * 8)
    (cache.path / 'train.features.f32').write_bytes(b'\0' * 8)
    assert not cache.is_built('train')
    fn = CountingFeatures()
    feats, _ = cache.get_or_build('train', fn, loader, n_items=10)
    assert fn.calls == 3
    np.testing.assert_allclose(np.asarray(feats), _expected(x), rtol=1e-6)
    assert not list(cache.path.glob('*.tmp*'))


def test_float16_and_count_checks(tmp_path):
    loader, x, _ = _loader()
    cache = ActivationCache(tmp_path, KEY, dtype='float16')
    feats, _ = cache.get_or_build('test', CountingFeatures(), loader, n_items=10)
    assert feats.dtype == np.float16
    np.testing.assert_allclose(feats.astype(np.float32), _expected(x), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match='yielded 10 items, expected n_items=12'):
        ActivationCache(tmp_path, KEY).get_or_build('train', CountingFeatures(), loader, n_items=12)
    with pytest.raises(ValueError, match='n_items=0'):
        ActivationCache(tmp_path, KEY).get_or_build('train', CountingFeatures(), [], n_items=0)
    with pytest.raises(ValueError, match='dtype'):
        ActivationCache(tmp_path, KEY, dtype='int8')
    with pytest.raises(ValueError, match='split'):
        cache.is_built('../etc')


def _build_slowly(path, delay, results, wait_for_other=False):
    import time
    from pathlib import Path

    class Slow(CountingFeatures):
        def __call__(self, x):
            time.sleep(delay)
            return super().__call__(x)
    loader, _, _ = _loader()
    fn = Slow()
    deadline = time.time() + 120
    while wait_for_other and not list(Path(path).glob('*/train.features.f32.tmp*')) and time.time() < deadline:
        time.sleep(0.01)   # start while the other process is half-way through writing
    try:
        feats, _ = ActivationCache(path, KEY).get_or_build('train', fn, loader, n_items=10)
        results.put(('ok', fn.calls, float(np.asarray(feats).sum())))
    except BaseException as err:  # noqa: BLE001 - reported to the test
        results.put(('error', repr(err), 0.0))


def test_two_processes_building_the_same_cache_take_turns(tmp_path):
    import multiprocessing
    ctx = multiprocessing.get_context('spawn')
    results = ctx.Queue()
    workers = [ctx.Process(target=_build_slowly, args=(tmp_path, 1.0, results)),
               ctx.Process(target=_build_slowly, args=(tmp_path, 0.0, results, True))]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=180), results.get(timeout=180)]
    for w in workers:
        w.join(30)
    assert [o[0] for o in outcomes] == ['ok', 'ok'], outcomes
    assert sorted(o[1] for o in outcomes) == [0, 3], 'the second waited and read the first one\'s work'
    assert outcomes[0][2] == pytest.approx(outcomes[1][2])
    assert not list(tmp_path.glob('*/*.tmp*'))


def test_a_dead_builders_temporary_files_are_cleaned_a_live_ones_never(tmp_path):
    import os
    import socket
    loader, _, _ = _loader()
    cache = ActivationCache(tmp_path, KEY)
    cache.path.mkdir(parents=True)
    dead = cache.path / f'train.features.f32.tmp-{socket.gethostname()}-999999999'
    live = cache.path / f'valid.features.f32.tmp-{socket.gethostname()}-{os.getppid()}'
    dead.write_bytes(b'x'); live.write_bytes(b'y')
    cache.get_or_build('train', CountingFeatures(), loader, n_items=10)
    assert not dead.exists() and live.exists()
    cache.get_or_build('valid', CountingFeatures(), loader, n_items=10)
    assert live.exists(), 'a file a running process may still be writing is left alone'
