"""fastai 0.7's weight decay as the AdamW/SGDW notebook ran it (`fit(..., wds=, use_wd_sched=True, norm_wds=,
wds_sched_mult=)`), and stochastic weight averaging (`use_swa=`, `swa_start=`, `swa_eval_freq=`), against closed
forms: the weight decay of each batch, and the averaged weights of the epochs averaged."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from learner import Callback, ImageClassifierData, Learner, accuracy, optim
from learner.callbacks.base import ORDER_EPOCH_VALUES

from conftest import tiny_cnn, vector_learner

N_BATCHES = 4  # VectorData


class WdSpy(Callback):
    """The decoupled weight decay and lr of the last layer group's decaying parameters, before each step."""

    def before_fit(self):
        self.wds, self.lrs = [], []

    def before_step(self):
        g = next(g for g in reversed(self.learn.opt.param_groups) if g['apply_wd'])
        self.wds.append(g['wd'])
        self.lrs.append(g['lr'])


def _fit(learn, *args, **kwargs):
    spy = WdSpy()
    learn.fit(*args, callbacks=[spy], **kwargs)
    return spy


def test_use_wd_sched_keeps_the_given_decay_per_batch(tmp_path):
    learn = vector_learner(tmp_path)
    spy = _fit(learn, 1e-2, 2, wds=0.025, use_wd_sched=True)
    assert spy.wds == [pytest.approx(0.025)] * 2 * N_BATCHES
    assert all(g['wd'] == 0 for g in learn.opt.param_groups), "fit's wds are for that fit (0.7): the learner's own after"


def test_norm_wds_divides_by_the_cycle_length(tmp_path):
    learn = vector_learner(tmp_path)
    spy = _fit(learn, 1e-2, 2, wds=0.04, cycle_len=1, cycle_mult=2, use_wd_sched=True, norm_wds=True)
    # epoch 0 is a cycle of 1 epoch, epochs 1-2 one of 2 epochs: wd / sqrt(batches per epoch * cycle epochs)
    expected = [0.04 / math.sqrt(N_BATCHES * 1)] * N_BATCHES + [0.04 / math.sqrt(N_BATCHES * 2)] * 2 * N_BATCHES
    assert np.allclose(spy.wds, expected)


def test_wds_sched_mult_follows_the_lr_as_the_adamw_notebook_does(tmp_path):
    learn = vector_learner(tmp_path, opt_fn=optim.Adam)
    lrs = np.array([1e-3, 2e-3, 1e-2])

    def f(x): return np.array(x.layer_opt.lrs) / x.init_lrs    # the notebook's multiplier

    spy = _fit(learn, lrs, 2, wds=[0.0, 0.0, 0.025], cycle_len=1, use_wd_sched=True, wds_sched_mult=f)
    assert np.allclose(spy.wds, 0.025 * np.array(spy.lrs) / 1e-2)
    assert spy.wds[0] == pytest.approx(0.025) and spy.wds[-1] < 0.025 * 0.2


class AddIdle(nn.Module):
    """Adds 0 * a weight: its gradient is 0, so only weight decay moves it."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x + 0 * self.weight.sum()


def test_the_scheduled_decay_is_what_the_weights_get(tmp_path):
    learn = vector_learner(tmp_path, opt_fn=optim.SGD)     # plain SGD: a zero gradient moves nothing
    learn.model = nn.Sequential(learn.model, AddIdle())
    learn.layer_groups = list(learn.model.children())
    spy = _fit(learn, 0.1, 1, cycle_len=1, wds=0.5, use_wd_sched=True, norm_wds=True)
    expected = np.prod([1 - lr * wd for lr, wd in zip(spy.lrs, spy.wds)])
    assert spy.wds == [pytest.approx(0.5 / math.sqrt(N_BATCHES))] * N_BATCHES
    assert torch.allclose(learn.model[1].weight, torch.full((3,), float(expected)))


def test_bad_weight_decay_arguments_are_refused(tmp_path):
    learn = vector_learner(tmp_path)
    with pytest.raises(ValueError, match='use_wd_sched=True'):
        learn.fit(1e-2, 1, wds=0.1, norm_wds=True)
    with pytest.warns(UserWarning, match='weight decay is 0'):
        learn.fit(1e-2, 1, use_wd_sched=True)


class EpochWeights(Callback):
    order = ORDER_EPOCH_VALUES - 1   # before SWA averages them

    def before_fit(self):
        self.weights = []

    def after_epoch(self):
        self.weights.append({k: v.detach().clone() for k, v in self.learn.model.named_parameters()})


def _array_data(tmp_path, n=32, size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 100, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    x[y == 1, :, : size // 2] = 250
    return ImageClassifierData.from_arrays(str(tmp_path), (x, y), (x[:16], y[:16]), bs=8, num_workers=0)


def test_swa_averages_the_weights_of_the_epochs_from_swa_start(tmp_path):
    data = _array_data(tmp_path)
    learn = Learner.from_model_data(tiny_cnn(2), data, metrics=[accuracy], progress=False)
    spy = EpochWeights()
    learn.fit(0.05, 4, use_swa=True, swa_start=2, swa_eval_freq=2, callbacks=[spy])
    for name, p in learn.swa_model.named_parameters():
        expected = torch.stack([w[name] for w in spy.weights[1:]]).mean(0)   # epochs 2, 3, 4 (1-based)
        assert torch.allclose(p, expected, atol=1e-6), name
    # evaluated at epoch 2 (swa_start), epoch 4 (every 2 after, and the last): BN statistics recomputed
    assert math.isfinite(learn.log['swa_loss']) and 0 <= learn.log['swa_accuracy'] <= 1
    bn = next(m for m in learn.swa_model.modules() if isinstance(m, nn.BatchNorm2d))
    model_bn = next(m for m in learn.model.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.equal(bn.running_mean, model_bn.running_mean)
    swa_preds, plain = learn.predict(use_swa=True), learn.predict()
    assert swa_preds.shape == plain.shape and not np.allclose(swa_preds, plain)
    expected_loss = float(torch.nn.functional.nll_loss(torch.as_tensor(swa_preds), torch.as_tensor(data.val_y)))
    assert learn.log['swa_loss'] == pytest.approx(expected_loss, rel=1e-4)


def test_swa_values_join_the_epoch_line(tmp_path, capsys):
    learn = Learner.from_model_data(tiny_cnn(2), _array_data(tmp_path), metrics=[accuracy])
    learn.fit(0.05, 2, use_swa=True, swa_start=1, swa_eval_freq=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    header = lines[0].split()
    assert header[-3:] == ['swa_loss', 'swa_accuracy', 'time']
    first, last = lines[1].split(), lines[2].split()
    assert first[header.index('swa_loss')] != 'nan' and last[header.index('swa_loss')] != 'nan'


def test_predict_use_swa_needs_an_averaging_fit(tmp_path):
    learn = Learner.from_model_data(tiny_cnn(2), _array_data(tmp_path), progress=False)
    with pytest.raises(ValueError, match='use_swa=True'):
        learn.predict(use_swa=True)
