"""Shared test fixtures and helpers: where ../shared lives (absent: skip, or fail under CI=true), the acceptance
data generator, and tiny duck-typed data and models for the Learner core tests (import them from conftest)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learner.learner import Learner

os.environ.setdefault('MPLBACKEND', 'Agg')

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'


def require(path: Path, what: str) -> Path:
    """`path`, or skip the test saying what is missing; under CI=true a missing input fails the test instead, so
    a CI run can never pass by skipping what it was meant to check."""
    if path.exists():
        return path
    message = f'{path} is absent: {what}'
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(message + ' (CI=true: required)', pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope='session')
def shared_dir() -> Path:
    """The read-only ../shared folder beside the repo."""
    return require(SHARED, 'tests that read shared data need the ../shared checkout beside the repo')


@pytest.fixture(scope='session')
def make_data(shared_dir):
    """The acceptance scripts' deterministic shape-drawing data generator (../shared/acceptance/make_data.py)."""
    path = require(shared_dir / 'acceptance' / 'make_data.py', 'the acceptance data generator')
    spec = importlib.util.spec_from_file_location('make_data', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def hymenoptera(shared_dir) -> Path:
    """The ants/bees photos in ../shared/data/hymenoptera."""
    return require(shared_dir / 'data' / 'hymenoptera', 'the hymenoptera photos')


# ------------------------------------------------------------------ tiny data and models for the core tests
MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)
STD = np.array([0.25, 0.25, 0.25], dtype=np.float32)


def normalise(x_uint8_nhwc: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 normalised NCHW."""
    x = torch.from_numpy(x_uint8_nhwc).permute(0, 3, 1, 2).float() / 255
    return (x - torch.from_numpy(MEAN)[:, None, None]) / torch.from_numpy(STD)[:, None, None]


class ArrayData:
    """What a Learner needs from `data`, over in-memory tensors: trn_dl, val_dl, test_dl, c, classes, path..."""

    def __init__(self, trn, val, path: Path, bs: int = 32, classes=None, seed: int = 0, test=None):
        self.trn_ds = TensorDataset(normalise(trn[0]), torch.as_tensor(trn[1]))
        self.val_ds = TensorDataset(normalise(val[0]), torch.as_tensor(val[1]))
        gen = torch.Generator().manual_seed(seed)
        self.trn_dl = DataLoader(self.trn_ds, batch_size=bs, shuffle=True, generator=gen, drop_last=False)
        self.val_dl = DataLoader(self.val_ds, batch_size=bs * 2)
        self.test_dl = None
        if test is not None:
            self.test_ds = TensorDataset(normalise(test[0]), torch.as_tensor(test[1]))
            self.test_dl = DataLoader(self.test_ds, batch_size=bs * 2)
        self.classes = classes or [str(i) for i in range(int(max(trn[1].max(), val[1].max())) + 1)]
        self.c = len(self.classes)
        self.is_multi = self.is_reg = False
        self.path = Path(path)
        self.device = torch.device('cpu')
        self.bs, self.sz = bs, trn[0].shape[1]
        self.stats = (MEAN, STD)
        self.val_y = np.asarray(val[1])

    def to(self, device):
        self.device = torch.device(device)
        return self


def tiny_cnn(c: int = 10, seed: int = 0) -> nn.Sequential:
    """conv-BN-ReLU x3 -> pool -> linear: 3 children groups of note; learns make_data shapes in a few epochs."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
        nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()),
        nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Linear(64, c))


class VectorData:
    """20 random items, 4 batches of 5 per epoch."""

    def __init__(self, tmp_path, n=20, bs=5):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)
        self.trn_dl = DataLoader(TensorDataset(x, y), batch_size=bs)
        self.val_dl = DataLoader(TensorDataset(x, y), batch_size=bs)
        self.test_dl, self.c, self.classes, self.is_multi, self.path = None, 2, ['a', 'b'], False, tmp_path
        self.device = torch.device('cpu')


def vector_learner(tmp_path, **kw) -> Learner:
    """A Learner over VectorData with a 4-8-2 MLP, seeded, no progress display."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    kw.setdefault('progress', False)
    return Learner(VectorData(tmp_path), model, **kw)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME (torchvision's cache is then tmp/hub/checkpoints)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    folder = tmp_path / 'hub' / 'checkpoints'
    folder.mkdir(parents=True)
    return folder
