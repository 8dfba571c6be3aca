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


class RecordHypers(Callback):
    """The lr and momentum of the last parameter group at every training batch."""

    def before_fit(self):
        self.lrs, self.moms = [], []

    def after_batch(self):
        if self.learn.training:
            self.lrs.append(self.learn.opt.param_groups[-1]['lr'])
            self.moms.append(self.learn.get_mom())


def test_a_schedule_leaves_no_momentum_or_lr_behind_for_the_next_fit(tmp_path):
    learn = vector_learner(tmp_path)   # SGD, momentum 0.9 (fastai 0.7)
    learn.fit_one_cycle(2, max_lr=0.1)
    assert learn.get_mom() == pytest.approx(0.9), 'the 1cycle momentum must not outlive its fit'
    seen = RecordHypers()
    learn.fit(0.01, 1, callbacks=[seen])
    assert seen.moms == [pytest.approx(0.9)] * 4 and seen.lrs == [pytest.approx(0.01)] * 4


def test_a_fit_interrupted_by_an_error_also_puts_the_hyper_parameters_back(tmp_path):
    class Boom(Callback):
        def after_batch(self):
            if self.learn.train_iter == 2:
                raise RuntimeError('boom')

    learn = vector_learner(tmp_path)
    with pytest.raises(RuntimeError, match='boom'):
        learn.fit_one_cycle(2, max_lr=0.1, callbacks=[Boom()])
    assert learn.get_mom() == pytest.approx(0.9)


@pytest.mark.parametrize('cycle_len, n_batches', [(0.5, 2), (1.5, 6), (2.5, 10)])
def test_a_fractional_cycle_len_runs_the_whole_cycle_and_anneals_to_zero(tmp_path, cycle_len, n_batches):
    learn = vector_learner(tmp_path)   # 4 batches per epoch
    seen = RecordHypers()
    result = learn.fit(0.1, 1, cycle_len=cycle_len, callbacks=[seen])
    assert len(seen.lrs) == n_batches, 'round(cycle_len * 4) batches, the last epoch stopping part-way'
    assert result and len(learn.recorder.valid_losses) == -(-n_batches // 4), 'the partial epoch validates too'
    assert seen.lrs[0] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(seen.lrs, seen.lrs[1:])), 'a single cycle never climbs back up'
    expected = [0.1 * (1 + np.cos(np.pi * i / n_batches)) / 2 for i in range(n_batches)]   # one cosine, 0.1 -> 0
    assert seen.lrs == pytest.approx(expected), 'and anneals over exactly its length'


def test_fractional_sgdr_cycles_restart_where_they_should(tmp_path):
    learn = vector_learner(tmp_path)
    seen = RecordHypers()
    learn.fit(0.1, 3, cycle_len=0.5, callbacks=[seen], cycle_save_name='half')   # 3 cycles of 2 batches
    assert len(seen.lrs) == 6
    assert [i for i, lr in enumerate(seen.lrs) if lr == pytest.approx(0.1)] == [0, 2, 4]
    assert sorted(p.name for p in (tmp_path / 'models').iterdir()) == [f'half_cyc_{i}.pth' for i in range(3)]


def test_a_fit_too_short_for_one_batch_says_so(tmp_path):
    learn = vector_learner(tmp_path)
    with pytest.raises(ValueError, match='not a single batch'):
        learn.fit(0.1, 1, cycle_len=0.1)


def test_a_training_batch_cancelled_after_its_loss_counts_nowhere(tmp_path):
    class SkipFirstTrainBatch(Callback):
        def after_loss(self):
            if self.learn.training and self.learn.iter == 0:
                self.loss_skipped = float(self.learn.loss)
                raise CancelBatch()

    class TrainLosses(Callback):
        def before_fit(self):
            self.values = []

        def after_batch(self):
            if self.learn.training and self.learn.loss is not None:
                self.values.append(float(self.learn.loss))

    learn = vector_learner(tmp_path)
    skip, kept = SkipFirstTrainBatch(), TrainLosses()
    learn.fit(0.0, 1, callbacks=[skip, kept])
    assert len(kept.values) == 3 and len(learn.recorder.losses) == 3
    assert learn.recorder.train_losses[-1] == pytest.approx(np.mean(kept.values), rel=1e-6)


def test_batchnorm_and_biases_outside_every_layer_group_get_no_weight_decay(tmp_path):
    from learner.learner import Learner
    from conftest import VectorData
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    learn = Learner(VectorData(tmp_path), model, layer_groups=[model[0], model[3]], wd=0.1, progress=False)
    learn.create_opt(0.1)
    decayed = {id(p) for g in learn.opt.param_groups if g['apply_wd'] for p in g['params']}
    assert id(model[1].weight) not in decayed and id(model[1].bias) not in decayed
    assert id(model[0].bias) not in decayed and id(model[3].bias) not in decayed
    assert id(model[0].weight) in decayed and id(model[3].weight) in decayed
