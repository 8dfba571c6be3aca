"""fastai 0.7's training phases (`TrainingPhase`, `DecayType`, `learn.fit_opt_sched`), written from the
training-phase notebook's own calls: each decay against its closed form, momentum, differential lrs, switching
optimizers, weight decay in and out of the loss, `cut`, `stop_div` as an LR range test, cycle snapshots, and a
schedule of two phases with a data switch, plotted."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn, optim

from learner import Callback, DecayType, Learner, TrainingPhase
from learner.callbacks.phases import plan_phases

from conftest import ArrayData, tiny_cnn, vector_learner

N_BATCHES = 4  # VectorData: 20 items, batches of 5


class Spy(Callback):
    """Records, before each step, the lr of every layer group, the momentum/betas, wd and the optimizer class."""

    def before_fit(self):
        self.lrs, self.moms, self.opts, self.groups, self.sizes = [], [], [], [], []

    def before_step(self):
        opt = self.learn.opt
        by_group = {}
        for g in opt.param_groups:
            by_group[g['layer_group']] = g['lr']
        self.lrs.append([by_group[k] for k in sorted(by_group)])
        g = opt.param_groups[-1]
        self.moms.append(g['betas'] if 'betas' in g else g.get('momentum'))
        self.opts.append(type(opt))
        self.groups.append([(g['apply_wd'], round(g['wd'], 9), round(g['weight_decay'], 9)) for g in opt.param_groups])
        self.sizes.append(self.learn.xb.shape[-1])


def _fit(learn, phases, **kwargs):
    spy = Spy()
    learn.fit_opt_sched(phases, callbacks=[spy], **kwargs)
    return spy


def test_each_decay_follows_its_formula(tmp_path):
    start, end, n = 1e-2, 1e-3, N_BATCHES
    i = np.arange(n)
    expected = {
        DecayType.LINEAR: start + (end - start) * i / n,
        DecayType.COSINE: end + (start - end) / 2 * (1 + np.cos(np.pi * i / n)),
        DecayType.EXPONENTIAL: start * (end / start) ** (i / n),
        (DecayType.POLYNOMIAL, 2): end + (start - end) * (1 - i / n) ** 2,
        (DecayType.POLYNOMIAL, 0.5): end + (start - end) * (1 - i / n) ** 0.5,
    }
    for decay, middle in expected.items():
        learn = vector_learner(tmp_path)
        # the notebook's shape: constant, a decay over one epoch, constant
        learn.fit_opt_sched([TrainingPhase(epochs=1, opt_fn=optim.SGD, lr=start),
                             TrainingPhase(epochs=1, opt_fn=optim.SGD, lr=(start, end), lr_decay=decay),
                             TrainingPhase(epochs=1, opt_fn=optim.SGD, lr=end)])
        assert np.allclose(learn.sched.lrs, [start] * n + list(middle) + [end] * n), decay
    learn = vector_learner(tmp_path)   # no end: towards 0
    learn.fit_opt_sched([TrainingPhase(epochs=1, lr=1e-2, lr_decay=DecayType.COSINE)])
    assert np.allclose(learn.sched.lrs, 1e-2 / 2 * (1 + np.cos(np.pi * i / n)))


def test_one_cycle_made_of_phases_moves_momentum(tmp_path):
    def phases_1cycle(cycle_len, lr, div, pct, max_mom, min_mom):   # the notebook's function
        tri_cyc = (1 - pct / 100) * cycle_len
        return [TrainingPhase(epochs=tri_cyc / 2, opt_fn=optim.SGD, lr=(lr / div, lr), lr_decay=DecayType.LINEAR,
                              momentum=(max_mom, min_mom), momentum_decay=DecayType.LINEAR),
                TrainingPhase(epochs=tri_cyc / 2, opt_fn=optim.SGD, lr=(lr, lr / div), lr_decay=DecayType.LINEAR,
                              momentum=(min_mom, max_mom), momentum_decay=DecayType.LINEAR),
                TrainingPhase(epochs=cycle_len - tri_cyc, opt_fn=optim.SGD, lr=(lr / div, lr / (100 * div)),
                              lr_decay=DecayType.LINEAR, momentum=max_mom)]
    learn = vector_learner(tmp_path)
    spy = _fit(learn, phases_1cycle(5, 1e-2, 10, 20, 0.95, 0.85))   # 20 batches: 8 up, 8 down, 4 annealing
    lrs, moms = np.array(spy.lrs)[:, -1], np.array(spy.moms)
    assert len(lrs) == 20 and np.argmax(lrs) == 8 and lrs[8] == pytest.approx(1e-2)
    assert moms[0] == pytest.approx(0.95) and moms[8] == pytest.approx(0.85) and moms[-1] == pytest.approx(0.95)
    assert np.allclose(moms[:8], 0.95 - 0.1 * np.arange(8) / 8)
    assert lrs[-1] == pytest.approx(1e-3 + (1e-5 - 1e-3) * 3 / 4)


def test_differential_lrs_per_layer_group(tmp_path):
    learn = vector_learner(tmp_path)
    learn.layer_groups = [learn.model[0], learn.model[2]]   # two layer groups with parameters
    lrs = np.array([1e-3, 1e-2])
    spy = _fit(learn, [TrainingPhase(epochs=1, opt_fn=optim.Adam, lr=(lrs / 10, lrs), lr_decay=DecayType.LINEAR),
                       TrainingPhase(epochs=1, opt_fn=optim.Adam, lr=lrs, lr_decay=DecayType.COSINE)])
    got = np.array(spy.lrs)
    assert np.allclose(got[0], lrs / 10) and np.allclose(got[2], lrs / 10 + (lrs - lrs / 10) * 2 / 4)
    assert np.allclose(got[4], lrs)
    assert np.allclose(learn.sched.lrs, got[:, -1]), 'the plotted lr is the last layer group\'s'


def test_switching_optimizers_and_putting_the_learners_back(tmp_path):
    learn = vector_learner(tmp_path)
    learn.fit(0.05, 1)
    own = learn.opt
    before = [{k: v for k, v in g.items() if k != 'params'} for g in own.param_groups]
    spy = _fit(learn, [TrainingPhase(epochs=1, opt_fn=optim.SGD, lr=1e-2, momentum=0.8),
                       TrainingPhase(epochs=1, opt_fn=optim.Adam, lr=1e-3, momentum=0.9, beta=0.99),
                       TrainingPhase(epochs=1, opt_fn=optim.RMSprop, lr=1e-3, beta=0.95)])
    assert spy.opts == [optim.SGD] * 4 + [optim.Adam] * 4 + [optim.RMSprop] * 4
    assert spy.moms[0] == pytest.approx(0.8) and spy.moms[4] == (0.9, 0.99)
    assert spy.moms[8] == pytest.approx(0.9)   # RMSprop's momentum
    assert learn.opt is own, 'the learner gets its own optimizer back'
    assert [{k: v for k, v in g.items() if k != 'params'} for g in own.param_groups] == before
    assert learn.sched.phases['labels'] == ['SGD', 'Adam\nbeta=0.99', 'RMSprop\nbeta=0.95']


def test_same_optimizer_class_keeps_its_state_across_phases(tmp_path):
    learn = vector_learner(tmp_path, opt_fn=optim.Adam)
    learn.fit(1e-3, 1)
    own = learn.opt
    spy = _fit(learn, [TrainingPhase(epochs=1, opt_fn=optim.Adam, lr=1e-3)] * 2)
    assert set(spy.opts) == {optim.Adam} and learn.opt is own
    assert all(int(s['step']) == 3 * N_BATCHES for s in own.state.values()), 'one Adam state through both phases'


def test_weight_decay_in_the_loss_or_decoupled(tmp_path):
    learn = vector_learner(tmp_path, wd=0.01)
    spy = _fit(learn, [TrainingPhase(epochs=1, lr=1e-2, wds=0.1),                 # 0.7's default: L2 in the loss
                       TrainingPhase(epochs=1, lr=1e-2, wds=0.2, wd_loss=False),  # decoupled
                       TrainingPhase(epochs=1, lr=1e-2)])                         # the learner's own
    assert set(spy.groups[0]) == {(True, 0.0, 0.1), (False, 0.0, 0.0)}
    assert set(spy.groups[4]) == {(True, 0.2, 0.0), (False, 0.2, 0.0)}
    assert set(spy.groups[8]) == {(True, 0.01, 0.0), (False, 0.01, 0.0)}
    assert all(g['weight_decay'] == 0 and g['wd'] == pytest.approx(0.01) for g in learn.opt.param_groups)


def test_cut_stops_early_and_keeps_the_decay(tmp_path):
    learn = vector_learner(tmp_path)
    learn.fit_opt_sched([TrainingPhase(epochs=2, lr=(1e-2, 0.0), lr_decay=DecayType.LINEAR)], cut=[1])
    assert np.allclose(learn.sched.lrs, 1e-2 * (1 - np.arange(4) / 8))


def test_stop_div_makes_a_range_test_and_plot_draws_it(tmp_path):
    learn = vector_learner(tmp_path)
    learn.save('tmp')
    phases = [TrainingPhase(epochs=25, opt_fn=optim.SGD, lr=(1e-3, 1e4), lr_decay=DecayType.EXPONENTIAL, momentum=0.9)]
    learn.fit_opt_sched(phases, stop_div=True)
    learn.load('tmp')
    lrs = learn.sched.lrs
    assert 10 < len(lrs) < 100, 'stopped when the loss blew up'
    assert np.allclose(lrs, 1e-3 * (1e7) ** (np.arange(len(lrs)) / 100))
    ax = learn.sched.plot().axes[0]
    assert ax.get_xscale() == 'log' and len(ax.lines[0].get_xdata()) == len(lrs) - 15
    assert np.allclose(ax.lines[0].get_ydata(), learn.sched.smooth_losses[10:-5])
    assert learn.sched.plot(linear=True).axes[0].get_xscale() == 'linear'
    learn.fit_opt_sched([TrainingPhase(epochs=5, lr=(1e-3, 0.1), lr_decay=DecayType.LINEAR)], stop_div=True)
    assert learn.sched.plot().axes[0].get_xscale() == 'linear', 'a LINEAR sweep plots on a linear axis'


def test_cycle_save_name_saves_each_phase_end(tmp_path):
    learn = vector_learner(tmp_path)
    learn.fit_opt_sched([TrainingPhase(epochs=0.5, lr=1e-2), TrainingPhase(epochs=1.5, lr=1e-2)],
                        cycle_save_name='ph')
    final = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.load_cycle('ph', 0)
    assert any(not torch.equal(v, final[k]) for k, v in learn.model.state_dict().items())
    learn.load_cycle('ph', 1)
    assert all(torch.equal(v, final[k]) for k, v in learn.model.state_dict().items())


def test_plan_cuts_epochs_where_data_changes():
    # one data: phases share epochs, boundaries rounded up (0.25 of 782 batches -> 196)
    plan = plan_phases([0.25, 1.0], [0.25, 1.0], [782, 782], [True, True])
    assert plan.starts == [0, 196] and plan.ends == [196, 978] and plan.epochs == [(0, 782), (1, 196)]
    # new data: the epoch in progress ends at the switch and is validated
    plan = plan_phases([0.5, 1, 0.5], [0.5, 1, 0.5], [4, 6, 4], [True, False, False])
    assert plan.epochs == [(0, 2), (1, 6), (2, 2)] and plan.ends == [2, 8, 10]


def _image_data(tmp_path, size, n, bs, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    x[y == 1, :, : size // 2] = 255   # a bright left half: class 1
    return ArrayData((x, y), (x[:8], y[:8]), tmp_path, bs=bs, seed=seed)


def test_two_phases_with_a_data_switch_train_and_plot(tmp_path):
    """The notebook's last cell: smaller images for the first phase, bigger ones after; then plot_lr."""
    data1, data2 = _image_data(tmp_path, 16, 24, 8, 0), _image_data(tmp_path, 24, 32, 8, 1)   # 3 and 4 batches
    torch.manual_seed(0)
    learn = Learner.from_model_data(tiny_cnn(2), data1, progress=False)
    phases = [TrainingPhase(epochs=1, opt_fn=optim.Adam, lr=1e-2, lr_decay=DecayType.COSINE),
              TrainingPhase(epochs=2, opt_fn=optim.Adam, lr=1e-2, lr_decay=DecayType.COSINE)]
    spy = _fit(learn, phases, data_list=[data1, data2])
    assert spy.sizes == [16] * 3 + [24] * 8, 'phase 1 reads data1, phase 2 data2'
    assert len(learn.sched.valid_losses) == 3 and all(math.isfinite(v) for v in learn.sched.valid_losses)
    assert learn.data is data1, 'the learner keeps its own data afterwards'
    assert np.allclose(learn.sched.lrs[:3], 1e-2 / 2 * (1 + np.cos(np.pi * np.arange(3) / 3)))
    assert np.allclose(learn.sched.lrs[3:], 1e-2 / 2 * (1 + np.cos(np.pi * np.arange(8) / 8)))
    fig = learn.sched.plot_lr(show_moms=False)
    ax = fig.axes[0]
    dashed = [line for line in ax.lines if line.get_linestyle() == '--']
    assert len(fig.axes) == 1 and len(dashed) == 1 and list(dashed[0].get_xdata()) == [3, 3]
    assert [t.get_text() for t in ax.texts] == ['Adam', 'Adam']
    assert not learn.sched.plot_lr(show_text=False).axes[0].texts


def test_fractional_phase_before_a_data_switch(tmp_path):
    data1, data2 = _image_data(tmp_path, 16, 32, 8, 0), _image_data(tmp_path, 24, 16, 8, 1)   # 4 and 2 batches
    learn = Learner.from_model_data(tiny_cnn(2), data1, progress=False)
    spy = _fit(learn, [TrainingPhase(epochs=0.5, lr=1e-2), TrainingPhase(epochs=1, lr=1e-2)], data_list=[data1, data2])
    assert spy.sizes == [16, 16, 24, 24] and len(learn.sched.valid_losses) == 2


def test_bad_phases_are_refused_with_what_to_do(tmp_path):
    learn = vector_learner(tmp_path)
    with pytest.raises(ValueError, match='one per phase'):
        learn.fit_opt_sched([TrainingPhase(), TrainingPhase()], data_list=[learn.data])
    with pytest.raises(ValueError, match=r'EXPONENTIAL needs lr=\(start, end\)'):
        TrainingPhase(lr=1e-2, lr_decay=DecayType.EXPONENTIAL)
    with pytest.raises(ValueError, match='needs its power'):
        TrainingPhase(lr=(1e-2, 1e-3), lr_decay=DecayType.POLYNOMIAL)
    with pytest.raises(ValueError, match='DecayType'):
        TrainingPhase(lr_decay='cosine')
    with pytest.raises(ValueError, match='epochs'):
        TrainingPhase(epochs=0)
    with pytest.raises(TypeError, match='TrainingPhase'):
        learn.fit_opt_sched([dict(epochs=1)])


class _StopAtEpoch(Callback):
    def __init__(self, epoch):
        self.stop_epoch = epoch

    def before_epoch(self):
        if self.learn.epoch == self.stop_epoch:
            raise KeyboardInterrupt


def _weights(learn):
    return [p.detach().clone() for p in learn.model.parameters()]


@pytest.mark.parametrize('kind', ['fractional', 'switch optimizer', 'switch data'])
def test_an_interrupted_phased_fit_resumes_to_the_uninterrupted_weights(tmp_path, kind):
    """Phases of 1.5 and 1 epochs (one sharing an epoch), SGD then Adam (resumed inside the Adam phase, its state
    restored), and two data sets: interrupted after a checkpoint, resumed, they end where one run ends."""
    from learner.callbacks.checkpoint import ResumeFromCheckpoint, SaveEvery
    second = optim.Adam if kind == 'switch optimizer' else optim.SGD
    phases = [TrainingPhase(epochs=1.5, opt_fn=optim.SGD, lr=(1e-2, 1e-3), lr_decay=DecayType.COSINE),
              TrainingPhase(epochs=2 if kind == 'switch optimizer' else 1, opt_fn=second, lr=1e-3,
                            lr_decay=DecayType.LINEAR, momentum=0.9 if second is optim.SGD else None)]

    def run(callbacks, learn=None):   # fresh data each time: its loader's generator starts from its seed
        data1, data2 = _image_data(tmp_path, 16, 24, 8, 0), _image_data(tmp_path, 16, 32, 8, 1)   # 3, 4 batches
        if learn is None:
            torch.manual_seed(0)
            learn = Learner.from_model_data(tiny_cnn(2), data1, progress=False, path=tmp_path)
        else:
            learn.set_data(data1)
        torch.manual_seed(1)
        try:
            learn.fit_opt_sched(phases, data_list=[data1, data2] if kind == 'switch data' else None,
                                callbacks=callbacks)
        except KeyboardInterrupt:
            pass
        return learn

    whole = _weights(run([]))
    learn = run([SaveEvery(1, name='ckpt'), _StopAtEpoch(2)])
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, _weights(learn))), 'it was interrupted'
    run([ResumeFromCheckpoint('ckpt')], learn)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, _weights(learn))), kind


def test_a_phased_fit_that_fails_before_it_starts_shows_the_real_error(tmp_path):
    from learner.callbacks.checkpoint import ResumeFromCheckpoint
    learn = vector_learner(tmp_path)
    with pytest.raises(FileNotFoundError, match='checkpoint_every'):
        learn.fit_opt_sched([TrainingPhase(epochs=1, lr=1e-2)], callbacks=[ResumeFromCheckpoint('missing')])
