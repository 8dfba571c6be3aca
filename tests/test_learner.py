"""Learner: learning on make_data shapes, interrupts, NaN, weight decay, freezing, precision, progress, predict."""
from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from learner.callbacks.base import Callback
from learner.learner import Learner, NonFiniteLossError
from learner.metrics import accuracy

from conftest import ArrayData, tiny_cnn
from conftest import vector_learner as _learner


@pytest.fixture(scope='module')
def shapes(make_data):
    """1000 training and 150 validation 32 px images of the 10 make_data shape classes."""
    return make_data.arrays(100, size=32, seed=0), make_data.arrays(15, size=32, seed=1)


@pytest.fixture
def one_thread():
    """Single-threaded torch: steadier timings on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize('how', ['fit', 'fit_one_cycle', 'sgdr'])
def test_tiny_cnn_learns_well_above_chance(how, shapes, tmp_path, one_thread):
    trn, val = shapes
    data = ArrayData(trn, val, tmp_path, bs=16)
    learn = Learner.from_model_data(tiny_cnn(), data, metrics=[accuracy], progress=False)
    if how == 'fit':
        result = learn.fit(3e-2, 7)
    elif how == 'fit_one_cycle':
        result = learn.fit_one_cycle(7, 0.1)
    else:
        result = learn.fit(3e-2, 3, cycle_len=1, cycle_mult=2)
    valid_loss, acc = result
    assert len(learn.recorder.valid_losses) == 7 and valid_loss == learn.recorder.valid_losses[-1]
    assert acc > 0.4, f'{how}: accuracy {acc} (chance is 0.1)'  # observed 0.52-0.53 on this data
    assert valid_loss < learn.recorder.valid_losses[0]
    log_preds, y = learn.predict_with_targs()
    assert accuracy(torch.from_numpy(log_preds), torch.from_numpy(y)) == pytest.approx(acc)
    assert np.allclose(np.exp(log_preds).sum(1), 1, atol=1e-5) and np.array_equal(y, val[1])


def test_keyboard_interrupt_stops_at_batch_boundary(tmp_path):
    class CtrlC(Callback):
        def after_loss(self):
            if self.learn.training and self.learn.train_iter == 5:
                signal.raise_signal(signal.SIGINT)

        def after_fit(self):
            self.ran_after_fit = True

    learn, cb = _learner(tmp_path), CtrlC()
    with pytest.raises(KeyboardInterrupt):
        learn.fit(0.05, 3, callbacks=[cb])
    assert cb.ran_after_fit
    assert len(learn.recorder.losses) == 6  # batch 5 finished (stepped) before stopping
    assert len(learn.recorder.valid_losses) == 1
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert len(learn.fit(0.05, 1)) == 1  # still usable


def test_nan_loss_stops_naming_epoch_and_batch(tmp_path):
    class Poison(Callback):
        def before_batch(self):
            if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 2:
                self.learn.xb = self.learn.xb * float('nan')

    learn = _learner(tmp_path)
    with pytest.raises(NonFiniteLossError, match='epoch 1, batch 2'):
        learn.fit(0.01, 3, callbacks=[Poison()])
    assert len(learn.recorder.valid_losses) == 1
    learn = _learner(tmp_path, on_nan='stop')
    with pytest.warns(UserWarning, match='epoch 1, batch 2'):
        learn.fit(0.01, 3, callbacks=[Poison()])


def test_decoupled_weight_decay_skips_bias_and_bn(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    from conftest import VectorData as _Data
    learn = Learner(_Data(tmp_path), model, progress=False, wd=0.1)

    class ZeroGrads(Callback):  # leaves only the weight decay to change the weights
        def before_step(self):
            for p in self.learn.model.parameters():
                p.grad.zero_()

    w, b, bn = model[0].weight.detach().clone(), model[0].bias.detach().clone(), model[1].weight.detach().clone()
    learn.opt_fn = torch.optim.SGD  # no momentum: one step is w * (1 - lr * wd) exactly
    learn.create_opt()
    learn.fit(0.5, 1, callbacks=[ZeroGrads()])
    assert torch.allclose(model[0].weight, w * (1 - 0.5 * 0.1) ** 4)
    assert torch.equal(model[0].bias, b) and torch.equal(model[1].weight, bn)


def test_freeze_keeps_frozen_params_and_the_bn_policy(tmp_path, shapes):
    trn, val = shapes
    data = ArrayData((trn[0][:64], trn[1][:64]), (val[0][:32], val[1][:32]), tmp_path, bs=16)
    learn = Learner.from_model_data(tiny_cnn(), data, progress=False, train_bn=True)
    learn.freeze()
    assert learn.n_frozen == 3
    conv = learn.model[0][0].weight.detach().clone()
    bn_w, bn_mean = learn.model[0][1].weight.detach().clone(), learn.model[0][1].running_mean.clone()
    learn.fit(0.05, 1)
    assert torch.equal(learn.model[0][0].weight, conv)
    assert not torch.equal(learn.model[0][1].weight, bn_w)  # train_bn: BN inside frozen groups still learns
    learn2 = Learner.from_model_data(tiny_cnn(), data, progress=False)  # default: fastai 0.7's policy
    learn2.freeze()
    bn_w, bn_mean = learn2.model[0][1].weight.detach().clone(), learn2.model[0][1].running_mean.clone()
    learn2.fit(0.05, 1)
    assert torch.equal(learn2.model[0][1].running_mean, bn_mean)  # frozen BN kept in eval mode
    assert torch.equal(learn2.model[0][1].weight, bn_w)  # and its parameters frozen
    learn.unfreeze()
    learn.fit(0.05, 1)
    assert not torch.equal(learn.model[0][0].weight, conv)


def test_progress_lines_and_switches(tmp_path, capsys):
    learn = _learner(tmp_path, metrics=[accuracy], progress=True)
    learn.fit(0.01, 2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time']
    assert [l.split()[0] for l in lines[1:]] == ['0', '1'] and len(lines) == 3
    with learn.no_bar():
        learn.fit(0.01, 1)
    assert capsys.readouterr().out == '' and learn.progress
    learn.progress = False
    learn.fit(0.01, 1)
    assert capsys.readouterr().out == ''


def test_recorder_history_and_plots(tmp_path):
    learn = _learner(tmp_path, metrics=[accuracy])
    learn.fit_one_cycle(2, 0.05)
    rec = learn.recorder
    assert len(rec.losses) == len(rec.lrs) == len(rec.moms) == len(rec.smooth_losses) == 8
    assert rec.smooth_losses[0] == pytest.approx(rec.losses[0])  # debiased: no pull towards 0
    assert rec.train_losses[0] == pytest.approx(np.mean(rec.losses[:4]), rel=1e-5)
    assert len(rec.metrics) == 2 and rec.metric_names == ['accuracy'] and len(rec.times) == 2
    loss_ax = rec.plot_loss().axes[0]
    lines = {l.get_label(): l for l in loss_ax.get_lines()}
    assert np.allclose(lines['train (batch)'].get_ydata(), rec.losses)
    assert np.allclose(lines['valid'].get_ydata(), rec.valid_losses)
    assert list(lines['valid'].get_xdata()) == rec.epoch_iters == [4, 8]
    lr_ax, mom_ax = rec.plot_lr(show_moms=True).axes
    assert np.allclose(lr_ax.get_lines()[0].get_ydata(), rec.lrs) and lr_ax.get_ylabel() == 'learning rate'
    assert np.allclose(mom_ax.get_lines()[0].get_ydata(), rec.moms)
    assert len(rec.plot_lr(show_moms=False).axes) == 1
    metric_ax = rec.plot_metrics().axes[0]
    assert metric_ax.get_title() == 'accuracy'
    assert np.allclose(metric_ax.get_lines()[0].get_ydata(), [row[0] for row in rec.metrics])


def test_predict_variants_and_summary(tmp_path, capsys):
    learn = _learner(tmp_path)
    log_preds = learn.predict()
    probs, y = learn.get_preds('valid')
    assert log_preds.shape == (20, 2) and np.allclose(np.exp(log_preds), probs)
    x = torch.cat([xb for xb, _ in learn.data.val_dl]).numpy()
    assert np.allclose(learn.predict_array(x), log_preds, atol=1e-6)
    with pytest.raises(ValueError, match='test'):
        learn.predict(is_test=True)
    text = learn.summary()
    assert 'Linear' in text and '(2, 8)' in text and 'trainable 58' in capsys.readouterr().out
    learn.freeze()
    assert 'trainable 18  frozen 40' in learn.summary()


def test_predict_image_uses_size_and_stats(tmp_path, shapes):
    trn, val = shapes
    data = ArrayData((trn[0][:32], trn[1][:32]), (val[0][:16], val[1][:16]), tmp_path, bs=16)
    learn = Learner.from_model_data(tiny_cnn(), data, progress=False)
    cls, probs = learn.predict_image(val[0][3])
    expected = np.exp(learn.predict()[3])
    assert np.allclose(probs, expected, atol=1e-5) and cls == data.classes[int(expected.argmax())]


def test_constructor_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match='mixed_precision'):
        _learner(tmp_path, mixed_precision='fp8')
    with pytest.raises(ValueError, match='on_nan'):
        _learner(tmp_path, on_nan='maybe')
    with pytest.warns(DeprecationWarning, match='mixed_precision'):   # the old name still works, and says so
        assert _learner(tmp_path, precision='bf16').mixed_precision == 'bf16'
    learn = _learner(tmp_path, mixed_precision='bf16')  # on CPU: fp32, one code path
    learn.fit(0.01, 1)
    assert learn.recorder.losses and all(np.isfinite(learn.recorder.losses))


def test_learns_from_a_real_databunch(shapes, tmp_path, one_thread):
    databunch = pytest.importorskip('learner.data.databunch')
    trn, val = shapes
    data = databunch.DataBunch.from_arrays(tmp_path, trn, val, bs=16)
    learn = Learner.from_model_data(tiny_cnn(), data, metrics=[accuracy], progress=False)
    valid_loss, acc = learn.fit_one_cycle(7, 0.1)
    assert acc > 0.4, acc  # observed 0.63
    log_preds, y = learn.predict_with_targs()
    assert log_preds.shape == (150, 10) and np.array_equal(y, val[1])


def test_summary_of_a_model_that_only_runs_in_training_mode(tmp_path, capsys):
    class TrainOnlyNorm(torch.nn.Module):  # like the course's BnLayer: statistics exist only after a training pass
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x):
            x = self.lin(x)
            if self.training:
                self.means = x.mean(0)
            return x - self.means

    from conftest import VectorData as _Data
    learn = Learner(_Data(tmp_path), TrainOnlyNorm(), progress=False)
    text = learn.summary()
    assert 'lin' in text and '(2, 2)' in text
    assert not hasattr(learn.model, 'means')  # the original model did not run in training mode


def test_predict_image_with_a_databunch_pipeline(shapes, tmp_path):
    databunch = pytest.importorskip('learner.data.databunch')
    trn, val = shapes
    data = databunch.DataBunch.from_arrays(tmp_path, (trn[0][:32], trn[1][:32]), (val[0][:16], val[1][:16]), bs=16)
    learn = Learner.from_model_data(tiny_cnn(), data, progress=False)
    cls, probs = learn.predict_image(val[0][5])
    assert np.allclose(probs, np.exp(learn.predict()[5]), atol=1e-5) and probs.shape == (10,)
