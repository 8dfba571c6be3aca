"""fastai 0.7 course code, as the notebooks type it: multi-label as planet did it, 0.7's training options, the
model wrappers. (File names, `ds[i]`, `aug_dl`, `resize` and transforms: test_course_data.py, test_transforms_07.py;
the BatchNorm policy: test_conv_learner.py; `sched.plot_lr()` after lr_find: test_lr_finder.py.)"""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from learner import *  # noqa: F403  (the way course code imports)
from learner.callbacks.schedule import circular_lr

from conftest import vector_learner


@pytest.fixture(scope='module')
def planet(tmp_path_factory):
    """A planet-style CSV of multi-label images: tags 'red', 'green', 'blue' when that channel is bright (80 rows)."""
    path = tmp_path_factory.mktemp('planet')
    (path / 'train-jpg').mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(80):
        on = rng.random(3) > 0.5
        if not on.any():
            on[i % 3] = True
        pixels = np.where(on, 220, 30)[None, None, :] + rng.integers(-20, 20, (16, 16, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path / 'train-jpg' / f'img_{i}.png')
        rows.append((f'img_{i}', ' '.join(t for t, b in zip(('red', 'green', 'blue'), on) if b)))
    with open(path / 'train_v2.csv', 'w', newline='') as f:
        csv.writer(f).writerows([('image_name', 'tags'), *rows])
    return path


def _planet_data(PATH, sz=16):
    label_csv = f'{PATH}/train_v2.csv'
    n = len(list(open(label_csv))) - 1
    val_idxs = get_cv_idxs(n)
    tfms = tfms_from_stats(imagenet_stats, sz, aug_tfms=transforms_top_down, max_zoom=1.05)
    return ImageClassifierData.from_csv(PATH, 'train-jpg', label_csv, tfms=tfms, suffix='.png', val_idxs=val_idxs,
                                        bs=16, num_workers=0)


def _small_cnn(c):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, c))


def test_multi_label_predictions_and_metrics_are_probabilities_as_in_planet(planet):
    torch.manual_seed(0)
    data = _planet_data(planet)
    assert data.is_multi and data.classes == ['blue', 'green', 'red']
    learn = ConvLearner.from_model_data(_small_cnn(data.c), data, metrics=[f2, accuracy_thresh], progress=False)
    val_loss, f2_score, acc = learn.fit(0.3, 6)
    assert f2_score > 0.6 and acc > 0.6, (f2_score, acc)   # 0.0 when metrics got logits at planet's thresholds
    preds = learn.predict()
    assert preds.min() >= 0 and preds.max() <= 1, 'multi-label predict() returns probabilities (0.7: a sigmoid)'
    y = data.val_y
    assert f2(preds, y) == pytest.approx(f2_score, abs=1e-6)
    multi_preds, y_tta = learn.TTA()
    assert multi_preds.shape == (5, len(y), 3) and (multi_preds >= 0).all() and (multi_preds <= 1).all()
    assert f2(np.mean(multi_preds, 0), y_tta) > 0.5
    assert 0.17 <= opt_th(preds, y) < 0.24
    probs, _ = learn.get_preds()
    assert np.allclose(probs, preds)


def test_lr_find_with_one_start_per_layer_group(tmp_path):
    learn = vector_learner(tmp_path)  # two layer groups? the 3 children of a Sequential
    n_groups = len(learn.layer_groups)
    lrs = np.array([1e-3, 1e-2, 1e-1])[-n_groups:]
    learn.lr_find(lrs / 1000, num_it=6, stop_div=False)   # lesson1's `learn.lr_find(lrs/1000)`
    assert learn.recorder.lr_find_lrs[0] == pytest.approx(lrs[-1] / 1000)
    with pytest.raises(ValueError, match='layer group'):
        learn.lr_find(np.array([1e-5] * (n_groups + 1)))


def test_fit_use_clr_is_0_7_triangle(tmp_path):
    learn = vector_learner(tmp_path)
    learn.fit(0.1, 1, cycle_len=2, use_clr=(10, 4))    # 8 batches: up over 2, down over 6
    assert np.allclose(learn.recorder.lrs, [0.1 * circular_lr(i, 8, 10, 4) for i in range(8)])
    assert learn.recorder.lrs[0] == pytest.approx(0.01) and max(learn.recorder.lrs) == pytest.approx(0.1)
    assert learn.recorder.lrs.index(max(learn.recorder.lrs)) == 2


def test_cycle_snapshots_load_back_with_load_cycle(tmp_path):
    learn = vector_learner(tmp_path)
    learn.fit(0.1, 2, cycle_len=1, cycle_save_name='snap')
    after_second = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.load_cycle('snap', 0)
    assert any(not torch.equal(v, after_second[k]) for k, v in learn.model.state_dict().items())
    learn.load_cycle('snap', 1)
    assert all(torch.equal(v, after_second[k]) for k, v in learn.model.state_dict().items())


def test_crit_reads_and_writes_the_loss(tmp_path):
    learn = vector_learner(tmp_path)
    assert learn.crit is learn.loss_func
    calls = []

    def counting_loss(out, y):
        calls.append(1)
        return F.cross_entropy(out, y)
    learn.crit = counting_loss
    learn.fit(0.01, 1)
    assert calls, 'the loss assigned through learn.crit is the one trained with'


def test_basic_and_single_model_wrappers(tmp_path):
    data = vector_learner(tmp_path).data
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    learn = Learner(data, BasicModel(model), progress=False)
    assert learn.model is model and len(learn.layer_groups) == 3
    single = Learner(data, SingleModel(nn.Sequential(nn.Linear(4, 2))), progress=False, crit=F.cross_entropy)
    assert len(single.layer_groups) == 1 and single.crit is F.cross_entropy
    assert np.isfinite(single.fit(0.1, 1)[0])


def test_freeze_to_beyond_the_layer_groups_names_the_count(tmp_path):
    learn = vector_learner(tmp_path)
    n = len(learn.layer_groups)
    with pytest.raises(ValueError, match=f'{n} layer groups'):
        learn.freeze_to(n + 1)
    learn.freeze_to(-1)
    assert learn.n_frozen == n - 1
