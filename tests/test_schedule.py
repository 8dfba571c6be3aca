"""Schedules against closed-form values: 1cycle start/peak/end, SGDR restarts at epochs 1, 3, 7, use_clr_beta."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.callbacks.base import Callback
from learner.callbacks.schedule import (clr_beta, one_cycle_factor, sched_cos, sched_exp, sched_lin,
                                        sgdr_cycle_starts)

from conftest import vector_learner as _learner


def test_pure_schedules_endpoints():
    assert sched_lin(1, 3, 0) == 1 and sched_lin(1, 3, 1) == 3 and sched_lin(1, 3, .5) == 2
    assert sched_cos(1, 3, 0) == pytest.approx(1) and sched_cos(1, 3, 1) == pytest.approx(3)
    assert sched_cos(1, 3, .5) == pytest.approx(2)
    assert sched_exp(1e-4, 1e-2, .5) == pytest.approx(1e-3)
    assert sgdr_cycle_starts(1, 2, 3) == [0, 1, 3, 7]


def test_one_cycle_lr_and_mom_closed_form(tmp_path):
    learn = _learner(tmp_path)
    max_lr, div, pct = 0.1, 25., 0.25
    learn.fit_one_cycle(5, max_lr, div_factor=div, pct_start=pct)  # 20 iterations, peak at iteration 5
    lrs, moms, n = np.array(learn.recorder.lrs), np.array(learn.recorder.moms), 20
    assert len(lrs) == n
    assert lrs[0] == pytest.approx(max_lr / div)
    assert moms[0] == pytest.approx(0.95)
    assert lrs[5] == pytest.approx(max_lr) and lrs.argmax() == 5
    assert moms[5] == pytest.approx(0.85) and moms.argmin() == 5
    final_div = div * 1e4
    expected_last = max_lr * sched_cos(1, 1 / final_div, (19 / 20 - pct) / (1 - pct))
    assert lrs[-1] == pytest.approx(expected_last)
    assert max_lr * one_cycle_factor(1.0, div, pct, final_div) == pytest.approx(max_lr / final_div)
    assert np.all(np.diff(lrs[:6]) > 0) and np.all(np.diff(lrs[5:]) < 0)


def test_sgdr_restarts_at_1_3_7(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(0.2, 3, cycle_len=1, cycle_mult=2)
    lrs, nb = np.array(learn.recorder.lrs), 4
    assert len(lrs) == 7 * nb and len(learn.recorder.valid_losses) == 7
    for epoch in (0, 1, 3):
        assert lrs[epoch * nb] == pytest.approx(0.2)  # restart: back to the base lr, no warm-up
    # inside the third cycle (epochs 3..7, 16 iterations): closed-form cosine
    for k in (1, 8, 15):
        assert lrs[3 * nb + k] == pytest.approx(0.2 * sched_cos(1, 0, k / 16))
    assert lrs[nb - 1] == pytest.approx(0.2 * sched_cos(1, 0, 3 / 4))
    assert np.all(np.array(learn.recorder.moms) == 0.9)  # SGDR leaves momentum alone


def test_fit_sgdr_cycle_mult_one(tmp_path):
    learn = _learner(tmp_path)
    learn.fit_sgdr(2, 1, 0.1, cycle_mult=1)
    lrs = np.array(learn.recorder.lrs)
    assert len(lrs) == 8 and lrs[0] == lrs[4] == pytest.approx(0.1)


def test_constant_fit_has_no_hidden_warmup(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(0.05, 2)
    assert np.allclose(learn.recorder.lrs, 0.05)


def test_use_clr_beta_closed_form(tmp_path):
    learn = _learner(tmp_path)
    lr, div, pct = 0.1, 10, 20
    learn.fit(lr, 1, cycle_len=5, use_clr_beta=(div, pct, 0.95, 0.85))  # 20 iterations; half-cycle 8
    lrs, moms = np.array(learn.recorder.lrs), np.array(learn.recorder.moms)
    assert lrs[0] == pytest.approx(lr / div) and moms[0] == pytest.approx(0.95)
    assert lrs[8] == pytest.approx(lr) and moms[8] == pytest.approx(0.85)
    assert lrs[16] == pytest.approx(lr / div)
    f, m = clr_beta(19, 20, div, pct, 0.95, 0.85)
    assert lrs[19] == pytest.approx(lr * f) and f == pytest.approx((1 - 0.75 * 0.99) / div)
    assert moms[19] == pytest.approx(0.95)


def test_adam_beta1_is_cycled(tmp_path):
    learn = _learner(tmp_path, opt_fn=torch.optim.AdamW)
    learn.fit_one_cycle(2, 1e-2, pct_start=0.5)
    assert learn.recorder.moms[0] == pytest.approx(0.95) and learn.recorder.moms[4] == pytest.approx(0.85)
    assert learn.opt.param_groups[0]['betas'][1] == 0.999
    assert all(g['weight_decay'] == 0 for g in learn.opt.param_groups)  # decay is the learner's, decoupled


def test_differential_lrs_land_in_their_groups(tmp_path):
    learn = _learner(tmp_path)
    assert len(learn.layer_groups) == 3
    learn.fit(slice(1e-3, 1e-1), 1)
    by_group = {g['layer_group']: g['lr'] for g in learn.opt.param_groups}
    assert by_group[0] == pytest.approx(1e-3) and by_group[2] == pytest.approx(1e-1)
    learn.fit(np.array([1e-4, 1e-3, 1e-2]), 1)
    by_group = {g['layer_group']: g['lr'] for g in learn.opt.param_groups}
    assert by_group == {0: pytest.approx(1e-4), 2: pytest.approx(1e-2)}  # group 1 (ReLU) has no parameters
    seen = []

    class GroupLrs(Callback):
        def after_batch(self):
            seen.append({g['layer_group']: g['lr'] for g in self.learn.opt.param_groups})
    learn.fit_one_cycle(1, slice(1e-2), callbacks=[GroupLrs()])
    assert all(lrs[0] == pytest.approx(lrs[2] / 10) for lrs in seen)  # during the fit (it restores them after)
    with pytest.raises(ValueError, match='3 layer groups'):
        learn.fit([1e-3, 1e-2], 1)
