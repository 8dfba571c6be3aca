"""save/load: exact round trip, atomic files, optimizer state, and refusal of a pickle that would run code."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from conftest import vector_learner as _learner


def test_save_load_round_trips_predictions_exactly(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(0.05, 1)
    preds = learn.predict()
    file = learn.save('stage1')
    assert file == tmp_path / 'models' / 'stage1.pth'
    assert [p.name for p in file.parent.iterdir()] == ['stage1.pth']  # no temp file left behind
    momentum = {k: v['momentum_buffer'].clone() for k, v in learn.opt.state_dict()['state'].items()}
    other = _learner(tmp_path)
    torch.manual_seed(5)
    for p in other.model.parameters():
        torch.nn.init.normal_(p)
    assert not np.array_equal(other.predict(), preds)
    other.load('stage1')
    assert np.array_equal(other.predict(), preds)
    loaded = other.opt.state_dict()['state']
    assert all(torch.equal(loaded[k]['momentum_buffer'], momentum[k]) for k in momentum)
    other.fit(0.01, 1)  # still trains after loading


def test_save_without_optimizer_and_missing_file(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(0.05, 1)
    learn.save('w', with_opt=False)
    state = torch.load(tmp_path / 'models' / 'w.pth', weights_only=True)
    assert set(state) == {'model'}
    with pytest.raises(FileNotFoundError, match='nothere'):
        learn.load('nothere')


class _Evil:
    def __reduce__(self):
        return (os.system, (f'touch {_Evil.marker}',))


def test_malicious_pickle_is_refused(tmp_path):
    learn = _learner(tmp_path)
    _Evil.marker = tmp_path / 'pwned'
    (tmp_path / 'models').mkdir()
    with open(tmp_path / 'models' / 'evil.pth', 'wb') as f:
        pickle.dump({'model': _Evil()}, f)
    with pytest.raises(ValueError, match='evil.pth'):
        learn.load('evil')
    assert not _Evil.marker.exists()
