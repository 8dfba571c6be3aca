"""ConvLearner: pretrained weights arrive, freezing holds, BatchNorm policy, precompute cache, set_data, TTA, export."""
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from learner.conv_learner import ConvLearner
from learner.data.databunch import ImageClassifierData
from learner.data.transforms import tfms_from_model, transforms_side_on
from learner.export import load_learner
from learner.freeze import apply_train_mode
from learner.persistence import UnsafeCheckpointError
from learner.precompute import cache_root

ARCH = 'efficientnet_lite0'


@pytest.fixture(scope='module')
def shapes(tmp_path_factory, make_data):
    """60 train / 30 valid / 5 test drawn-shape images, 32 px, in a writable folder."""
    return make_data.folder(str(tmp_path_factory.mktemp('shapes')), size=32, per_class=6, valid_per_class=3, test=5)


def get_data(path, sz=32, bs=16):
    tfms = tfms_from_model(ARCH, sz, aug_tfms=transforms_side_on, max_zoom=1.1)
    return ImageClassifierData.from_paths(path, tfms=tfms, bs=bs, test_name='test', num_workers=0)


@pytest.fixture
def learn(shapes):
    torch.manual_seed(0)
    return ConvLearner.pretrained(ARCH, get_data(shapes), progress=False)


def _body_weights(learn):
    """Copies of the body's non-BatchNorm parameters."""
    return {n: p.detach().clone() for n, p in learn.body.named_parameters() if p.dim() > 1}


def test_torchvision_checkpoint_in_torch_home_arrives_in_the_body(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    folder = tmp_path / 'hub' / 'checkpoints'
    folder.mkdir(parents=True)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, folder / os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url))
    learn = ConvLearner.pretrained('resnet18', get_data(shapes), progress=False)
    stem = learn.body[0].weight
    assert torch.equal(stem.detach(), reference['conv1.weight'])
    assert torch.equal(learn.body[1].running_var, reference['bn1.running_var'])


def test_starts_frozen_and_frozen_weights_do_not_move(learn):
    assert all(not p.requires_grad for p in learn.body.parameters() if p.dim() > 1)
    assert all(p.requires_grad for p in learn.head.parameters())
    before_body, before_head = _body_weights(learn), [p.detach().clone() for p in learn.head.parameters()]
    learn.fit(1e-2, 1)
    assert all(torch.equal(before_body[n], p) for n, p in learn.body.named_parameters() if p.dim() > 1)
    assert any(not torch.equal(b, p) for b, p in zip(before_head, learn.head.parameters()))


def _train_mode_output(learn, x):
    apply_train_mode(learn.model, learn.layer_groups, learn.n_frozen, learn.train_bn, learn.bn_frozen)
    with torch.no_grad():
        return learn.body(x)


def test_default_bn_policy_holds_frozen_bn_in_eval_mode(learn):
    """fastai 0.7 / Keras: a frozen group's BatchNorm keeps its statistics and gives eval-mode outputs."""
    bns = [m for m in learn.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats_before = [m.running_mean.clone() for m in bns]
    learn.fit(1e-2, 1)
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats_before, bns))
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    x, _ = next(iter(learn.data.val_dl))
    learn.model.eval()
    with torch.no_grad():
        eval_out = learn.body(x)
    assert torch.allclose(_train_mode_output(learn, x), eval_out, atol=1e-6)
    learn.unfreeze()  # unfrozen: BatchNorm trains again
    assert not torch.allclose(_train_mode_output(learn, x), eval_out, atol=1e-3)


def test_train_bn_trains_bn_in_frozen_groups(shapes):
    learn = ConvLearner.pretrained(ARCH, get_data(shapes), progress=False, train_bn=True)
    bn = next(m for m in learn.body.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats_before = bn.running_mean.clone()
    learn.fit(1e-2, 1)
    assert not torch.equal(stats_before, bn.running_mean), 'fastai 1+: frozen-group BN statistics update'
    assert all(p.requires_grad for p in bn.parameters())


def test_bn_freeze_keeps_stats_and_train_mode_equals_eval_mode_even_unfrozen(learn):
    learn.unfreeze()
    learn.bn_freeze(True)
    bns = [m for m in learn.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats_before = [m.running_mean.clone() for m in bns]
    learn.fit(1e-3, 1)
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats_before, bns))
    x, _ = next(iter(learn.data.val_dl))
    learn.model.eval()
    with torch.no_grad():
        eval_out = learn.body(x)
    assert torch.allclose(_train_mode_output(learn, x), eval_out, atol=1e-6)


def test_precompute_head_gives_the_same_predictions_as_the_full_model(learn):
    learn.precompute = True
    learn.fit(1e-2, 1)
    cached = learn.predict()
    learn.precompute = False
    full = learn.predict()
    assert cached.shape == (30, 10)
    assert np.allclose(cached, full, atol=1e-4)


def _cache_folders(learn):
    learn.stage()  # the cache is built when first needed
    root = cache_root(learn.data.path)
    return {p.name for p in root.iterdir() if p.is_dir()} if root.exists() else set()


def test_precompute_cache_is_reused_then_rebuilt_when_a_file_or_the_size_changes(shapes, tmp_path):
    import shutil
    path = tmp_path / 'copy'
    shutil.copytree(shapes, path, ignore=shutil.ignore_patterns('tmp'))
    learn = ConvLearner.pretrained(ARCH, get_data(path), precompute=True, progress=False)
    first = _cache_folders(learn)
    assert len(first) == 1
    learn.precompute = False; learn.precompute = True  # same key: reused, nothing new
    assert _cache_folders(learn) == first
    victim = next((path / 'train' / 'circle').iterdir())
    Image.new('RGB', (32, 32), (255, 0, 0)).save(victim)  # a changed file (size/mtime) changes the key
    learn.set_data(get_data(path))
    second = _cache_folders(learn)
    assert len(second) == 2
    learn.set_data(get_data(path, sz=40))                 # a new size changes the key
    assert len(_cache_folders(learn)) == 3
    assert learn.precompute, 'set_data keeps precompute on and the cache follows the new size'


def test_precompute_reads_the_learners_data_batch_size_and_cache_folder_never_a_copy(shapes, tmp_path):
    import shutil
    other = tmp_path / 'other'
    shutil.copytree(shapes, other, ignore=shutil.ignore_patterns('tmp'))
    for f in list((other / 'train' / 'circle').iterdir())[:3]:
        f.unlink()                                             # other data: 3 fewer training images
    learn = ConvLearner.pretrained(ARCH, get_data(shapes), precompute=True, progress=False)
    assert len(learn.stage().train.features) == 60
    learn.data = get_data(other)                               # assigned, not set_data: still followed
    assert len(learn.stage().train.features) == 57
    learn.set_data(get_data(other, bs=8))                      # same files and size, another batch size
    assert learn.stage().train.batch_size == 8 and len(learn.stage().train) == 7   # 57 = 7 x 8 + a lone one
    assert learn.stage() is learn.stage(), 'nothing changed: the same stage, not new loaders'
    learn.precompute_cache_dir = tmp_path / 'my_cache'          # chosen after pretrained(): used from now on
    learn.fit(1e-2, 1)
    assert (tmp_path / 'my_cache').is_dir() and any((tmp_path / 'my_cache').iterdir())


def test_precompute_needs_a_frozen_body_and_unfreeze_turns_it_off(learn):
    learn.unfreeze()
    with pytest.raises(ValueError, match='freeze'):
        learn.precompute = True
    learn.freeze()
    learn.precompute = True
    with pytest.warns(UserWarning, match='precompute off'):
        learn.unfreeze()
    assert not learn.precompute


def test_set_data_keeps_the_freeze_state(learn, shapes):
    learn.freeze_to(1)
    flags = [p.requires_grad for p in learn.model.parameters()]
    learn.set_data(get_data(shapes, sz=40, bs=8))
    assert [p.requires_grad for p in learn.model.parameters()] == flags
    assert learn.data.sz == 40
    x, _ = next(iter(learn.data.trn_dl))
    assert tuple(x.shape) == (8, 3, 40, 40)


def test_tta_shape_plain_pass_and_mean(learn):
    log_preds, y = learn.TTA(n_aug=2)
    assert log_preds.shape == (3, 30, 10) and y.shape == (30,)
    assert np.allclose(log_preds[0], learn.predict(), atol=1e-5)
    probs = np.mean(np.exp(log_preds), 0)
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert not np.allclose(log_preds[1], log_preds[0]), 'augmented passes use the training transforms'
    test_preds, _ = learn.TTA(n_aug=1, is_test=True)
    assert test_preds.shape == (2, 5, 10)
    blended, y2 = learn.tta(n_aug=2, beta=0.0)
    assert np.allclose(blended, np.exp(learn.predict()), atol=1e-5) and np.array_equal(y, y2)


def test_export_and_load_learner_predict_the_same_probabilities(learn, tmp_path):
    learn.fit(1e-2, 1)
    path = learn.export(tmp_path / 'export.pth')
    inference = load_learner(path)
    image = next((learn.data.path / 'valid' / 'circle').iterdir())
    name, probs = inference.predict_image(image)
    index = learn.data.val_ds.paths.index(image.absolute())
    expected = np.exp(learn.predict()[index])
    assert np.allclose(probs, expected, atol=1e-4)
    assert name == learn.data.classes[int(expected.argmax())]


def test_a_pickle_posing_as_an_export_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned > ' + str(tmp_path / 'pwned'),))

    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        pickle.dump({'meta': Evil()}, f)
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        load_learner(path)
    assert not (tmp_path / 'pwned').exists()
