"""What `from learner import *` gives course code, by value: the names fastai 0.7's star import gave (each is what
0.7 meant, not only present), `children`, `num_cpus`, the `trainable` flags `freeze_to` sets, `set_trainable`,
`save_model`/`load_model`, and the early-0.7 `Learner.pretrained_convnet`. Written from the CAM, darknet and
dog-breeds notebooks' own calls."""
from __future__ import annotations

import functools
import glob as glob_module
import os
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

import learner
from conftest import vector_learner

NS: dict = {}
exec('from learner import *', NS)


def test_each_course_module_and_function_is_what_0_7_gave():
    import matplotlib.pyplot
    import PIL
    expected = {'np': np, 'os': os, 'torch': torch, 'nn': torch.nn, 'F': torch.nn.functional,
                'optim': torch.optim, 'plt': matplotlib.pyplot, 'PIL': PIL, 'Image': Image, 'Path': pathlib.Path,
                'glob': glob_module.glob, 'partial': functools.partial, 'Variable': torch.autograd.Variable}
    for name, value in expected.items():
        assert NS[name] is value, f'{name} is {NS[name]!r}, expected {value!r}'
    # the notebooks' own uses of the two names that were wrong
    assert NS['optim'].Adam is torch.optim.Adam and NS['optim'].SGD is torch.optim.SGD
    assert NS['glob'](os.path.join(os.path.dirname(learner.__file__), '*.py'))   # glob(f'{path}/*.*') -> a list


def test_metrics_is_scikit_learns_as_in_0_7_and_our_modules_keep_their_full_names():
    y, probs = np.array([0, 1, 1]), np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    expected = -np.mean(np.log([0.8, 0.7, 0.6]))
    assert NS['metrics'].log_loss(y, probs) == pytest.approx(expected)      # lesson7-cifar10's metrics.log_loss
    from learner.metrics import accuracy
    from learner.optim import build_optimizer
    assert accuracy(probs, y) == 1.0 and callable(build_optimizer)


def test_file_link_is_ipythons(tmp_path):
    pytest.importorskip('IPython')
    from IPython.display import FileLink
    assert NS['FileLink'] is FileLink
    (tmp_path / 'subm.gz').write_bytes(b'x')
    assert 'subm.gz' in repr(NS['FileLink'](str(tmp_path / 'subm.gz')))


def test_children_and_num_cpus():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    kids = NS['children'](model)
    assert isinstance(kids, list) and kids[0] is model[0] and len(kids) == 3
    layers = [torch.nn.ReLU()]
    assert NS['children'](layers) is layers
    # the CAM notebook: keep the body, add a new end
    cam = torch.nn.Sequential(*NS['children'](model)[:-1], torch.nn.AdaptiveAvgPool2d(1), NS['Flatten']())
    assert cam(torch.zeros(2, 3, 8, 8)).shape == (2, 4)
    n = NS['num_cpus']()
    assert isinstance(n, int) and 1 <= n <= (os.cpu_count() or n)


def test_freeze_to_sets_the_trainable_flag_cam_reads(tmp_path):
    learn = vector_learner(tmp_path)            # layer groups: Linear, ReLU, Linear
    model = learn.model
    assert all(m.trainable for m in model)      # a from_model_data learner starts unfrozen
    learn.freeze_to(-1)                         # the CAM notebook: learn.freeze_to(-4); m[-4].trainable
    assert [m.trainable for m in model] == [False, False, True]
    assert not model[0].weight.requires_grad and model[2].weight.requires_grad
    learn.unfreeze()
    assert all(m.trainable for m in model) and model[0].weight.requires_grad


def test_set_trainable_by_hand(tmp_path):
    block = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2)))
    NS['set_trainable'](block, False)
    assert not any(p.requires_grad for p in block.parameters())
    assert all(m.trainable is False for m in block.modules())
    NS['set_trainable'](block[1], True)
    assert block[1][0].weight.requires_grad and block[1][0].trainable and not block[0].weight.requires_grad
    seen = []
    NS['apply_leaf'](block, lambda m: seen.append(type(m).__name__))
    assert seen == ['Sequential', 'Linear', 'Sequential', 'Linear']


class _Arbitrary:
    """An object a weights-only load must refuse."""


def test_save_model_and_load_model_round_trip_safely(tmp_path):
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    NS['save_model'](a, tmp_path / 'm.h5')
    NS['load_model'](b, tmp_path / 'm.h5')
    assert torch.equal(a.weight, b.weight)
    torch.save({'weight': torch.zeros(2, 3), 'bias': torch.zeros(2), 'extra': _Arbitrary()}, tmp_path / 'bad.h5')
    with pytest.raises(NS['UnsafeCheckpointError']):
        NS['load_model'](b, tmp_path / 'bad.h5')


def test_sgd_momentum_builds_sgd_with_that_momentum(tmp_path):
    learn = vector_learner(tmp_path, opt_fn=NS['SGD_Momentum'](0.8))
    learn.fit(0.01, 1)
    assert isinstance(learn.opt, torch.optim.SGD) and learn.opt.param_groups[0]['momentum'] == pytest.approx(0.8)


def test_pretrained_convnet_is_the_early_name_of_pretrained(tmp_path):
    data = NS['ImageClassifierData'].from_arrays(
        str(tmp_path), (np.zeros((8, 16, 16, 3), np.uint8), np.arange(8) % 2),
        (np.zeros((4, 16, 16, 3), np.uint8), np.arange(4) % 2), bs=4,
        tfms=NS['tfms_from_model'](NS['resnet18'], 16), num_workers=0)
    learn = NS['Learner'].pretrained_convnet(NS['resnet18'], data, pretrained=False, metrics=[NS['accuracy']],
                                             progress=False)
    assert isinstance(learn, NS['ConvLearner']) and learn.n_frozen == len(learn.layer_groups) - 1
    assert learn.metrics == [NS['accuracy']]


def test_accuracy_of_a_tta_stack_is_that_of_its_mean_probabilities():
    rng = np.random.default_rng(0)
    log_preds = torch.log_softmax(torch.as_tensor(rng.normal(size=(5, 40, 3))), -1).numpy()
    y = rng.integers(0, 3, 40)
    expected = NS['accuracy_np'](np.mean(np.exp(log_preds), 0), y)
    assert NS['accuracy'](log_preds, y) == pytest.approx(expected)     # the CAM notebook: accuracy(*learn.TTA())
    per_pass = np.mean([NS['accuracy_np'](p, y) for p in log_preds])
    assert expected != pytest.approx(per_pass), 'the data tell the mean of passes from the pass mean apart'


def test_arch_true_builds_the_pretrained_model_as_the_cam_notebook_calls_it(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    folder = tmp_path / 'hub' / 'checkpoints'
    folder.mkdir(parents=True)
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, folder / os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url))
    arch = NS['resnet18']
    m = arch(True)                                       # the CAM notebook: m = arch(True)
    assert torch.equal(m.conv1.weight, reference['conv1.weight']) and torch.equal(m.fc.bias, reference['fc.bias'])
    nn = NS['nn']
    cam = nn.Sequential(*NS['children'](m)[:-2], nn.Conv2d(512, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                        NS['Flatten'](), nn.LogSoftmax(dim=-1))
    assert cam(torch.zeros(1, 3, 64, 64)).shape == (1, 2)
    assert not torch.equal(arch().conv1.weight, reference['conv1.weight']), 'arch() is randomly initialised'
    assert arch(weights=None, num_classes=3).fc.out_features == 3       # torchvision's own keywords
    assert NS['get_backbone'](arch).name == 'resnet18' and arch.__name__ == 'resnet18'
    with pytest.raises(TypeError, match='takes no other arguments'):
        arch(True, num_classes=3)


def test_lambda_layer_and_the_resnext101_name():
    layer = NS['Lambda'](lambda x: x.view(x.size(0), -1))
    assert layer(torch.zeros(2, 3, 4)).shape == (2, 12) and not list(layer.parameters())
    assert NS['get_backbone'](NS['resnext101']).name == 'resnext101_32x8d'   # 0.7's 32x4d is not in torchvision


def test_apply_init_and_accuracy_multi_np():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    NS['apply_init'](model, lambda w: torch.nn.init.constant_(w, 0.5))
    assert torch.all(model[0].weight == 0.5) and torch.all(model[0].bias == 0) and torch.all(model[2].weight == 0.5)
    assert torch.all(model[1].weight == 1), 'BatchNorm keeps its own initialisation'
    preds, targs = np.array([[0.9, 0.2], [0.4, 0.7]]), np.array([[1, 0], [1, 1]])
    assert NS['accuracy_multi_np'](preds, targs, 0.5) == pytest.approx(0.75)


def test_convnet_builder_passed_to_conv_learner_as_the_imagenet_notebook_does(tmp_path):
    data = NS['ImageClassifierData'].from_arrays(
        str(tmp_path), (np.zeros((8, 16, 16, 3), np.uint8), np.arange(8) % 2),
        (np.zeros((4, 16, 16, 3), np.uint8), np.arange(4) % 2), bs=4,
        tfms=NS['tfms_from_model'](NS['resnet18'], 16), num_workers=0)
    models = NS['ConvnetBuilder'](NS['resnet18'], data.c, data.is_multi, data.is_reg, pretrained=False)
    assert models.name == 'resnet18_0' and len(models.get_layer_groups()) == 3
    learn = NS['ConvLearner'](data, models, progress=False)
    assert learn.model is models.model and learn.spec.name == 'resnet18' and learn.layer_groups == models.layer_groups
    learn.unfreeze()
    learn.fit(1e-3, 1)
    learn.freeze()
    learn.precompute = True        # the backbone is known, so the cache can be keyed
    assert learn.predict().shape == (4, 2)


def test_the_darknet_notebooks_training_cell(tmp_path):
    from conftest import VectorData
    nn = NS['nn']
    m = nn.DataParallel(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), device_ids=None)
    learn = NS['ConvLearner'].from_model_data(m, VectorData(tmp_path), progress=False)
    learn.crit = nn.CrossEntropyLoss()
    learn.metrics = [NS['accuracy']]
    val_loss, acc = learn.fit(1.3, 1, wds=1e-4, cycle_len=2, use_clr_beta=(20, 20, 0.95, 0.85))
    assert np.isfinite(val_loss) and 0 <= acc <= 1
    assert learn.sched.moms[0] == pytest.approx(0.95) and min(learn.sched.moms) == pytest.approx(0.85, abs=0.01)


def test_V_T_and_to_np_take_the_arguments_0_7_code_passes():
    V, T, to_np = NS['V'], NS['T'], NS['to_np']
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    assert T(x, cuda=False).dtype == torch.float32 and T(x, half=True, cuda=False).dtype == torch.float16
    assert T(np.arange(3), cuda=False).dtype == torch.int64
    assert not V(x, volatile=True).requires_grad and V(x, True).requires_grad and not V(x, True, True).requires_grad
    assert to_np(torch.ones(2, dtype=torch.float16)).dtype == np.float32   # 0.7 turned half into float


def test_sched_plot_loss_skips_at_both_ends_as_0_7(tmp_path):
    learn = vector_learner(tmp_path)
    learn.fit(0.01, 3)   # 12 batches
    ax = learn.sched.plot_loss(2, 3).axes[0]
    assert list(ax.lines[0].get_xdata()) == list(range(2, 9))


def test_denorm_shows_the_pixels_the_transforms_give(tmp_path):
    from learner import DataBunch, imagenet_stats, tfms_from_stats
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    data = DataBunch.from_arrays(tmp_path, (x, np.arange(4) % 2), (x, np.arange(4) % 2),
                                 tfms=tfms_from_stats(imagenet_stats, 16))
    pixels = data.val_ds.tfms(x[0])                       # 0.7 code: val_tfms(open_image(fn))
    assert np.allclose(data.val_ds.denorm(pixels[None])[0], x[0] / 255.0)
    assert np.allclose(data.val_ds.denorm(data.val_ds[0][0])[0], x[0] / 255.0, atol=1e-5)   # normalized: as before


def test_a_0_7_style_callback_object_is_told_what_to_rename(tmp_path):
    class Plain:
        def on_epoch_end(self, metrics):
            pass
    with pytest.raises(TypeError, match='on_epoch_end -> after_epoch'):
        vector_learner(tmp_path).fit(0.01, 1, callbacks=[Plain()])


def test_fit_wds_is_for_that_fit_only_as_in_0_7(tmp_path):
    learn = vector_learner(tmp_path, wd=1e-4)
    seen = []

    class Spy(learner.Callback):
        def after_batch(self):
            if self.learn.training:
                seen.append(self.learn.opt.param_groups[0]['wd'])
    learn.fit(1e-2, 1, wds=1e-2, callbacks=[Spy()])
    learn.fit(1e-2, 1, callbacks=[Spy()])
    assert seen[:4] == [pytest.approx(1e-2)] * 4 and seen[4:] == [pytest.approx(1e-4)] * 4
    learn.fit_one_cycle(1, 1e-2, wd=0.3, callbacks=[Spy()])
    assert seen[8:] == [pytest.approx(0.3)] * 4 and list(learn.wds) == [pytest.approx(1e-4)] * len(learn.wds)


def test_precompute_on_data_it_cannot_key_says_what_to_use(tmp_path):
    from learner import ArraysIndexDataset, ConvLearner, DataLoader, ModelData
    x = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8).astype(np.float32) / 255
    ds = ArraysIndexDataset(x, np.arange(8) % 2)
    data = ModelData(tmp_path, DataLoader(ds, batch_size=4), DataLoader(ds, batch_size=4))
    with pytest.raises(TypeError, match='ModelData has no .*without precompute'):
        ConvLearner.pretrained('efficientnet_lite0', data, precompute=True, progress=False)
