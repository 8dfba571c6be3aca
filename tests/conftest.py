"""Shared test fixtures: where ../shared lives, and the acceptance data generator."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'


def _load_make_data():
    path = SHARED / 'acceptance' / 'make_data.py'
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location('make_data', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def shared_dir() -> Path:
    """The read-only ../shared folder beside the repo (skips the test when it is absent)."""
    if not SHARED.exists():
        pytest.skip(f'{SHARED} is absent: tests that read shared data need the ../shared checkout')
    return SHARED


@pytest.fixture(scope='session')
def make_data():
    """The acceptance scripts' deterministic shape-drawing data generator (../shared/acceptance/make_data.py)."""
    module = _load_make_data()
    if module is None:
        pytest.skip('../shared/acceptance/make_data.py is absent')
    return module


@pytest.fixture(scope='session')
def hymenoptera(shared_dir) -> Path:
    """The ants/bees photos in ../shared/data/hymenoptera."""
    path = shared_dir / 'data' / 'hymenoptera'
    if not path.exists():
        pytest.skip(f'{path} is absent')
    return path
