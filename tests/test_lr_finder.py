"""LR range test: exact restore of everything it touches, early stop on divergence, suggestions on the plot."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from learner.learner import Learner

from conftest import VectorData as _Data


def _bn_learner(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU()), nn.Linear(8, 2))
    return Learner(_Data(tmp_path), model, progress=False, wd=1e-2)


def test_lr_find_restores_weights_buffers_optimizer_and_rng(tmp_path):
    learn = _bn_learner(tmp_path)
    learn.fit(0.05, 1)  # momentum buffers exist now
    learn.model.eval()  # a mode to restore, too
    model_state = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_state = learn.opt.state_dict()
    bufs = {k: v['momentum_buffer'].clone() for k, v in opt_state['state'].items()}
    lrs = [g['lr'] for g in learn.opt.param_groups]
    torch.manual_seed(123); np.random.seed(123); random.seed(123)
    expected_draws = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123); np.random.seed(123); random.seed(123)
    learn.lr_find(num_it=12, end_lr=1.0)
    draws = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], expected_draws[0]) and np.array_equal(draws[1], expected_draws[1])
    assert draws[2] == expected_draws[2]
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, model_state[k]), k  # weights and BN running stats / num_batches_tracked
    new_state = learn.opt.state_dict()['state']
    assert all(torch.equal(new_state[k]['momentum_buffer'], bufs[k]) for k in bufs)
    assert [g['lr'] for g in learn.opt.param_groups] == lrs
    assert not learn.model.training
    assert len(learn.recorder.lr_find_lrs) == 12
    assert learn.recorder.lrs == learn.recorder.lr_find_lrs  # like 0.7's sched: the recorder now holds the sweep


def test_lr_find_stops_early_on_divergence_and_suggests(tmp_path):
    learn = _bn_learner(tmp_path)
    sugg = learn.lr_find(start_lr=1e-4, end_lr=1e6, num_it=100)
    n = len(learn.recorder.lr_find_lrs)
    assert 5 < n < 100  # the loss blew up long before 1e6
    assert 1e-4 <= sugg.steep <= 1e6 and 1e-5 <= sugg.min_div10 <= 1e5
    lrs = np.array(learn.recorder.lr_find_lrs)
    assert np.allclose(np.diff(np.log(lrs)), np.log(1e10) / 99)  # exponential sweep
    fig = learn.sched.plot(n_skip=0, n_skip_end=0)
    curve = fig.axes[0].get_lines()[0]
    assert np.allclose(curve.get_xdata(), lrs) and np.allclose(curve.get_ydata(), learn.recorder.lr_find_losses)
    assert fig.axes[0].get_xscale() == 'log'
    sweep = learn.sched.plot_lr(show_moms=False).axes[0].get_lines()[0]   # 0.7: plot_lr after lr_find is the sweep
    assert np.allclose(sweep.get_ydata(), lrs)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(l.startswith('steep') for l in labels) and any(l.startswith('min_div10') for l in labels)


def test_lr_find_linear_sweep_and_bad_range(tmp_path):
    learn = _bn_learner(tmp_path)
    learn.lr_find(start_lr=0.01, end_lr=0.1, num_it=10, linear=True, stop_div=False)
    assert np.allclose(np.diff(learn.recorder.lr_find_lrs), 0.01)
    with pytest.raises(ValueError, match='start_lr'):
        learn.lr_find(start_lr=1, end_lr=0.1)


def test_a_fit_after_lr_find_is_the_fit_without_it_with_worker_processes(tmp_path, make_data):
    """Persistent loader workers keep their own random state (the augmentation's): the sweep must not touch it."""
    from learner import ImageClassifierData, RandomFlip, tfms_from_stats, imagenet_stats
    from conftest import tiny_cnn
    path = make_data.folder(str(tmp_path / 'shapes'), size=16, per_class=4, valid_per_class=1, test=0)
    tfms = tfms_from_stats(imagenet_stats, 16, aug_tfms=[RandomFlip()], pad=2)

    def weights_after_fit(sweep_first: bool):
        torch.manual_seed(0)
        data = ImageClassifierData.from_paths(path, tfms=tfms, bs=8, num_workers=2)
        learn = Learner.from_model_data(tiny_cnn(), data, progress=False)
        if sweep_first:
            learn.lr_find(num_it=5, stop_div=False)
        learn.fit(0.05, 2)
        return [p.detach().clone() for p in learn.model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(weights_after_fit(False), weights_after_fit(True)))
