"""The embedded data set: layout and size as documented, loadable, and its generator deterministic."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from learner.data import ImageClassifierData, imagenet_stats, tfms_from_stats

DATA = Path(__file__).resolve().parents[1] / 'data'


def _generator():
    spec = importlib.util.spec_from_file_location('make_shapes', DATA / 'make_shapes.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_embedded_shapes_layout_and_loading():
    if not (DATA / 'shapes').exists():
        pytest.skip('data/shapes absent: run python data/make_shapes.py')
    # the images only: a precompute cache under shapes/tmp (gitignored, written by the CLI and notebook) is not data
    files = [f for split in ('train', 'valid') for f in (DATA / 'shapes' / split).rglob('*') if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 3_000_000
    data = ImageClassifierData.from_paths(DATA / 'shapes', bs=16, num_workers=0,
                                          tfms=tfms_from_stats(imagenet_stats, 64))
    assert data.classes == sorted(_generator().CLASSES) and len(data.trn_ds) == 400 and len(data.val_ds) == 100
    xb, _ = next(iter(data.val_dl))
    assert xb.shape == (16, 3, 64, 64)


def test_generator_is_deterministic(tmp_path):
    gen = _generator()
    a = gen.make(tmp_path / 'a', size=16, n_train=2, n_valid=1, seed=3)
    b = gen.make(tmp_path / 'b', size=16, n_train=2, n_valid=1, seed=3)
    fa = sorted(p.relative_to(a) for p in a.rglob('*.jpg'))
    assert len(fa) == 30 and fa == sorted(p.relative_to(b) for p in b.rglob('*.jpg'))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)
