"""The event protocol: golden order, where each cancel exception lands, errors naming the callback, tracking."""
from __future__ import annotations

import math

import pytest
import torch

from learner.callbacks.base import EVENTS, CancelBatch, CancelFit, CancelValidate, Callback
from learner.callbacks.tracking import EarlyStopping, SaveBest

from conftest import vector_learner as _learner  # noqa: E402  (tiny 4-batch learner)


class Log(Callback):
    def __init__(self):
        self.seen = []


for _event in EVENTS:  # a callback listening to every event, recording (event, training?)
    setattr(Log, _event, (lambda e: lambda self: self.seen.append(e))(_event))

GOLDEN_ONE_EPOCH = (['before_fit', 'before_epoch', 'before_train']
                    + ['before_batch', 'after_loss', 'before_step', 'after_batch'] * 4
                    + ['after_train', 'before_validate'] + ['before_batch', 'after_loss', 'after_batch'] * 4
                    + ['after_validate', 'after_epoch', 'after_fit'])


def test_golden_event_order(tmp_path):
    learn, log = _learner(tmp_path), Log()
    learn.fit(0.01, 1, callbacks=[log])
    assert log.seen == GOLDEN_ONE_EPOCH


def test_misspelled_event_fails_at_class_definition():
    with pytest.raises(TypeError, match="after_epoc.*after_epoch"):
        class Typo(Callback):
            def after_epoc(self): pass

    class Helper(Callback):  # helpers with other names are fine
        def _after_epoch_helper(self): pass


def test_error_in_callback_names_callback_and_event(tmp_path):
    class Broken(Callback):
        def after_loss(self):
            raise ValueError('boom')

    learn, log = _learner(tmp_path), Log()
    with pytest.raises(ValueError, match='boom') as info:
        learn.fit(0.01, 1, callbacks=[Broken(), log])
    told = [str(info.value), *getattr(info.value, '__notes__', [])]  # a note on 3.11+, the message on 3.10
    assert any('Broken' in n and 'after_loss' in n for n in told)
    assert log.seen[-1] == 'after_fit'


def test_cancel_fit_lands_in_fit_and_after_fit_runs(tmp_path):
    class StopAtBatch2(Callback):
        def after_batch(self):
            if self.learn.training and self.learn.iter == 2:
                raise CancelFit()

    learn, log = _learner(tmp_path), Log()
    assert learn.fit(0.01, 3, callbacks=[StopAtBatch2(), log]) == []  # no epoch finished
    assert log.seen.count('before_batch') == 3 and log.seen[-1] == 'after_fit'
    assert 'after_train' not in log.seen and len(learn.recorder.losses) == 3


def test_cancel_validate_skips_validation_only(tmp_path):
    class NoValid(Callback):
        def before_validate(self):
            raise CancelValidate()

    learn, log = _learner(tmp_path), Log()
    learn.fit(0.01, 2, callbacks=[NoValid(), log])
    assert log.seen.count('after_validate') == 2 and log.seen.count('after_epoch') == 2
    assert all(math.isnan(v) for v in learn.recorder.valid_losses)
    assert not math.isnan(learn.recorder.train_losses[0])


def test_cancel_batch_skips_the_step(tmp_path):
    class SkipAll(Callback):
        def after_loss(self):
            if self.learn.training:
                raise CancelBatch()

    learn, log = _learner(tmp_path), Log()
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(0.5, 1, callbacks=[SkipAll(), log])
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    assert log.seen.count('before_step') == 0 and log.seen.count('after_batch') == 8
    assert all(p.grad is None for p in learn.model.parameters())


def test_show_training_loop_lists_callbacks(tmp_path, capsys):
    learn = _learner(tmp_path)
    text = learn.show_training_loop([Log()])
    assert 'after_batch' in text and 'Recorder' in text and 'Log' in capsys.readouterr().out


def test_early_stopping_and_save_best(tmp_path):
    learn = _learner(tmp_path)
    stopper = EarlyStopping(monitor='valid_loss', patience=1, min_delta=10.0)  # nothing improves by 10
    learn.fit(0.01, 10, callbacks=[stopper])
    assert stopper.stopped_epoch == 1 and len(learn.recorder.valid_losses) == 2
    best = SaveBest('best', monitor='valid_loss')
    learn.fit(0.05, 3, callbacks=[best])
    assert (tmp_path / 'models' / 'best.pth').exists()
    assert best.best == pytest.approx(min(learn.recorder.valid_losses))
    with pytest.raises(KeyError, match='nope'):
        learn.fit(0.01, 1, callbacks=[SaveBest('x', monitor='nope')])


def test_fit_cycle_and_best_save_names(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(0.05, 2, cycle_len=1, cycle_mult=2, cycle_save_name='snap', best_save_name='top')
    names = sorted(p.name for p in (tmp_path / 'models').iterdir())
    assert names == ['snap_cyc_0.pth', 'snap_cyc_1.pth', 'top.pth']


@pytest.mark.parametrize('exc', [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize('event', EVENTS)
def test_interrupt_or_error_at_any_event_leaves_the_learner_usable(tmp_path, event, exc):
    class Raise(Callback):
        pass
    setattr(Raise, event, lambda self: (_ for _ in ()).throw(exc('stop here')))

    learn = _learner(tmp_path)
    with pytest.raises(exc):
        learn.fit(0.01, 1, callbacks=[Raise()])
    assert not learn.training and learn.dl is None
    assert learn.callbacks == [] and learn.fit_stage is None  # the fit's callbacks are gone
    weights = [p.detach().clone() for p in learn.model.parameters()]
    result = learn.fit(0.05, 1)  # the next fit runs normally, from the weights that were left
    assert len(result) == 1 + len(learn.metric_names) and math.isfinite(result[0])
    assert any(not torch.equal(a, b) for a, b in zip(weights, learn.model.parameters()))
    assert len(learn.predict()) == sum(len(y) for _, y in learn.stage().valid)


def _regression_metric(name: str, higher=None):
    def metric(preds, targs):
        return float(torch.as_tensor(preds).float().mean())
    metric.__name__ = name
    if higher is not None:
        metric.higher_is_better = higher
    return metric


def test_monitor_direction_is_declared_never_guessed_from_the_name(tmp_path):
    from functools import partial
    from learner.callbacks.tracking import monitor_direction
    from learner.metrics import accuracy, error_rate, fbeta, mae, mse, rmse
    assert [monitor_direction(f.__name__, [f]) for f in (mae, mse, rmse, error_rate)] == ['min'] * 4
    assert [monitor_direction(n, [f]) for n, f in (('accuracy', accuracy), ('fbeta', fbeta(beta=1)),
                                                    ('fbeta', partial(fbeta, beta=1)))] == ['max'] * 3
    learn = _learner(tmp_path, metrics=[error_rate, _regression_metric('mae', higher=False)])
    stoppers = [EarlyStopping('mae', patience=5), EarlyStopping('error_rate', patience=5),
                EarlyStopping('valid_loss', patience=5)]
    learn.fit(0.01, 1, callbacks=stoppers)
    assert [s.direction for s in stoppers] == ['min', 'min', 'min']   # 'mae' was maximised before
    learn.metrics = [_regression_metric('rmse_of_mine')]
    with pytest.raises(ValueError, match="rmse_of_mine.*mode='min'"):
        learn.fit(0.01, 1, callbacks=[SaveBest('x', monitor='rmse_of_mine')])
    learn.metrics = [_regression_metric('score', higher=True)]
    best = SaveBest('x', monitor='score')
    learn.fit(0.01, 1, callbacks=[best])
    assert best.direction == 'max'


def test_without_a_validation_set_tracking_warns_and_never_stops_the_fit(tmp_path):
    learn = _learner(tmp_path)
    learn.data.val_dl = None
    stopper, saver = EarlyStopping(patience=1), SaveBest('best')
    with pytest.warns(UserWarning, match='no validation set') as caught:
        learn.fit(0.01, 4, callbacks=[stopper, saver])
    assert len(learn.recorder.train_losses) == 4 and stopper.stopped_epoch is None
    assert len([w for w in caught if 'no validation set' in str(w.message)]) == 2   # once each, not per epoch
    assert not (tmp_path / 'models' / 'best.pth').exists()
    with pytest.raises(ValueError, match='strict=True'):
        learn.fit(0.01, 1, callbacks=[EarlyStopping(strict=True)])
    on_train = EarlyStopping('train_loss', patience=1, min_delta=10.0)   # training loss needs no validation
    learn.fit(0.01, 4, callbacks=[on_train])
    assert on_train.stopped_epoch == 1


def test_early_stopping_remembers_its_patience_across_a_resume(tmp_path):
    class StopAt(Callback):   # Ctrl-C as epoch 2 begins, after epoch 1's checkpoint
        def before_epoch(self):
            if self.learn.epoch == 2:
                raise KeyboardInterrupt

    uninterrupted = EarlyStopping(patience=3, min_delta=10.0)   # nothing improves by 10: stops at epoch 3
    _learner(tmp_path).fit(0.01, 6, callbacks=[uninterrupted])
    assert uninterrupted.stopped_epoch == 3
    learn = _learner(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        learn.fit(0.01, 6, callbacks=[EarlyStopping(patience=3, min_delta=10.0), StopAt()], checkpoint_every=1)
    resumed = EarlyStopping(patience=3, min_delta=10.0)
    learn.fit(0.01, 6, callbacks=[resumed], checkpoint_every=1, resume=True)
    assert (resumed.best_epoch, resumed.stopped_epoch) == (0, 3), 'a fresh counter would stop at epoch 5'
    assert len(learn.recorder.valid_losses) == 4
