"""docs/fastai07_coverage.md stays true: every name its "here" column gives exists, every keyword it calls the same
is accepted by the call, and no name a classification notebook uses is missing."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

from conftest import vector_learner

DOC = Path(__file__).resolve().parents[1] / 'docs' / 'fastai07_coverage.md'
STATUSES = {'same', 'different', 'not applicable', 'missing'}
NS: dict = {}
exec('from learner import *', NS)


def _rows(n_cells: int) -> list:
    rows = []
    for line in DOC.read_text(encoding='utf-8').splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.startswith('| `') and len(cells) == n_cells:
            rows.append(cells)
    return rows


def _code(cell: str) -> list:
    return re.findall(r'`([^`]+)`', cell)


OPTIONAL = {'pd': 'pandas', 'FileLink': 'IPython'}   # exported when their package is installed


def _resolve(path: str, learn):
    """`name`, `Class.attr`, `learn.attr`, `nn.Module`, or a full `learner.module.name`."""
    head, *rest = path.split('.')
    if head in OPTIONAL and importlib.util.find_spec(OPTIONAL[head]) is None:
        return None
    if head == 'learn':
        obj = learn
    elif head in NS:
        obj = NS[head]
    elif head == 'learner':
        for i in range(len(rest), 0, -1):   # the longest importable module, then attributes
            try:
                obj = importlib.import_module('.'.join(['learner', *rest[:i - 1]]))
                rest = rest[i - 1:]
                break
            except ImportError:
                continue
    else:
        raise AssertionError(f'{path}: {head!r} is not a star-import name')
    for attr in rest:
        assert hasattr(obj, attr), f'{path}: no {attr!r}'
        obj = getattr(obj, attr)
    return obj


def test_the_name_tables_are_complete_and_true(tmp_path):
    rows = _rows(5)
    assert len(rows) > 400, 'every public name of the 13 modules is listed'
    names = [_code(r[0])[0] for r in rows]
    assert len(names) == len(set(names)), 'a name is listed twice'
    learn = vector_learner(tmp_path)
    for name_cell, status, here, notebooks, note in rows:
        assert status in STATUSES, (name_cell, status)
        if notebooks:
            assert status != 'missing', f'{name_cell} is used by {notebooks} but missing'
        if status == 'missing':
            assert not here, f'{name_cell}: a missing name points nowhere'
        for target in _code(here)[:1]:
            _resolve(target, learn)
    for name in ('TrainingPhase', 'DecayType', 'Learner.fit_opt_sched', 'WeightDecaySchedule', 'children', 'num_cpus',
                 'FilesIndexArrayDataset', 'FileLink', 'Learner.freeze_to', 'OptimScheduler.plot_lr'):
        assert name in names


def test_the_keyword_table_is_accepted_by_each_call(tmp_path):
    rows = _rows(6)
    assert len(rows) > 50
    learn = vector_learner(tmp_path)
    for call, keyword, declared, notebooks, status, note in rows:
        assert status in STATUSES - {'missing'}, (call, keyword, status)
        target = _resolve((_code(declared) or _code(call))[0], learn)
        params = inspect.signature(target).parameters
        assert _code(keyword)[0] in params, f'{call} does not accept {keyword}'


@pytest.mark.parametrize('call, keyword', [('Learner.fit', 'use_wd_sched'), ('Learner.fit_opt_sched', 'data_list'),
                                           ('Recorder.plot', 'linear'), ('Recorder.plot_lr', 'show_text')])
def test_the_issues_keywords_are_in_the_table(call, keyword):
    assert any(_code(r[0])[0] == call and _code(r[1])[0] == keyword for r in _rows(6))
