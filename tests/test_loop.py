"""The loop's contracts: cancelling a validation batch, what lr_find runs, weight decay only for steps taken, the
precompute stage built lazily, errors named on every Python version."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from learner.callbacks.base import Callback, CallbackRunner, CancelBatch, CancelFit
from learner.core import Stage

from conftest import vector_learner


class CountBatches(Callback):
    def before_fit(self):
        self.train, self.valid = 0, 0

    def after_batch(self):
        if self.learn.training:
            self.train += 1
        else:
            self.valid += 1


def test_cancel_batch_in_validation_skips_only_that_batch(tmp_path):
    class SkipFirstValidBatch(Callback):
        def after_loss(self):
            if not self.learn.training and self.learn.iter == 0:
                raise CancelBatch()

    learn = vector_learner(tmp_path)
    counter = CountBatches()
    learn.fit(0.0, 1, callbacks=[SkipFirstValidBatch(), counter])   # lr 0: the weights stay where they are
    valid_loss = learn.recorder.valid_losses[-1]
    losses = [F.cross_entropy(learn.model(x), y).item() for x, y in learn.data.val_dl]
    assert valid_loss == pytest.approx(np.mean(losses[1:]), rel=1e-6)   # batch 0 counted in nothing
    assert counter.valid == 4, 'after_batch still runs for the cancelled batch'


def test_lr_find_runs_only_the_finder_and_the_recorder_unless_given_callbacks(tmp_path):
    counter = CountBatches()
    learn = vector_learner(tmp_path, cbs=[counter])
    learn.lr_find(num_it=8, end_lr=1.0)
    assert not hasattr(counter, 'train'), "the learner's own callbacks must not see the sweep"
    mine = CountBatches()
    learn.lr_find(num_it=8, end_lr=1.0, callbacks=[mine])
    assert mine.train == 7 and mine.valid == 0   # the finder (earlier in order) cancels at the 8th batch's end
    learn.fit(0.01, 1)
    assert counter.train == 4, 'and they run in fits as before'


def test_a_step_the_fp16_scaler_skips_does_not_decay_the_weights(tmp_path):
    def loss_func(out, y):  # infinite on the first batch: the scaler finds inf gradients and skips that step
        loss = F.cross_entropy(out, y)
        return loss * float('inf') if state['batches'] == 0 else loss

    class Count(Callback):
        def after_batch(self):
            state['batches'] += 1

    state = {'batches': 0}
    learn = vector_learner(tmp_path, wd=0.1, loss_func=loss_func, on_nan='ignore')
    learn.scaler = torch.amp.GradScaler('cpu', enabled=True)   # the fp16 path, on the CPU
    weight = learn.model[0].weight.detach().clone()

    class OneBatch(Callback):
        order = 100

        def after_batch(self):
            raise CancelFit()

    learn.fit(0.5, 1, callbacks=[Count(), OneBatch()])
    assert torch.equal(learn.model[0].weight, weight), 'a skipped step must leave the weights as they were'
    learn.fit(0.5, 1, callbacks=[Count(), OneBatch()])
    assert not torch.equal(learn.model[0].weight, weight)


def test_precompute_stage_is_built_when_first_needed(tmp_path, make_data):
    from learner import ConvLearner, ImageClassifierData, tfms_from_model
    path = make_data.folder(str(tmp_path / 'shapes'), size=32, per_class=3, valid_per_class=2, test=0)
    data = ImageClassifierData.from_paths(path, tfms=tfms_from_model('efficientnet_lite0', 32), bs=8, num_workers=0)
    learn = ConvLearner.pretrained('efficientnet_lite0', data, precompute=True, progress=False)
    assert learn.precomputed is not None and learn.precomputed.cache is None, 'setting precompute builds nothing'
    stage = learn.stage()
    assert isinstance(stage, Stage) and stage.model is not learn.model
    assert learn.precomputed.cache.is_built('train') and learn.precomputed.cache.is_built('valid')
    assert learn.stage() is stage, 'an unchanged key reuses the stage'
    assert next(iter(stage.train))[0].shape[1] == 2 * 1280   # pooled features, max and average


def test_an_error_in_a_callback_names_it_on_every_python(tmp_path):
    class Broken(Callback):
        def before_epoch(self):
            raise ValueError('boom')

    runner = CallbackRunner([Broken()], learn=None)
    with pytest.raises(ValueError) as info:
        runner('before_epoch')
    text = str(info.value) + ''.join(getattr(info.value, '__notes__', []))
    assert 'Broken' in text and 'before_epoch' in text
    assert sys.version_info >= (3, 11) or 'boom (raised by callback Broken' in str(info.value)


def test_torch_manual_seed_alone_fixes_a_precompute_fit(tmp_path, make_data):
    """Every loader draws its order from torch's generator, and building the cache draws nothing: neither numpy's
    state nor whether the cache was already on disk changes a fit (the second run finds the first one's cache)."""
    from learner import ConvLearner, ImageClassifierData, tfms_from_model
    path = make_data.folder(str(tmp_path / 'shapes'), size=32, per_class=4, valid_per_class=2, test=0)

    def head_after_fit(numpy_seed: int):
        np.random.seed(numpy_seed)
        torch.manual_seed(0)
        data = ImageClassifierData.from_paths(path, tfms=tfms_from_model('efficientnet_lite0', 32), bs=8,
                                              num_workers=0)
        learn = ConvLearner.pretrained('efficientnet_lite0', data, precompute=True, progress=False)
        learn.fit(1e-2, 2)
        return [p.detach().clone() for p in learn.head.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(head_after_fit(1), head_after_fit(2)))
