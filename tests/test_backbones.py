"""Backbone registry: torchvision weights through TORCH_HOME, the offline error, cut/split/num_features per family."""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from learner.models import (BackboneSpec, PretrainedWeightsMissing, body_groups, create_body, get_backbone,
                            num_features, register_backbone, registered_backbones, weights_folder)
from learner.models import archs as zoo

from conftest import require

SHARED = Path(__file__).resolve().parents[1].parent / 'shared'


def test_resnet18_checkpoint_in_torch_home_arrives_bit_exactly(torch_home):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().state_dict()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    torch.save(reference, torch_home / os.path.basename(url))
    body = create_body(torchvision.models.resnet18, pretrained=True)
    body_state = body.state_dict()
    # body children = conv1, bn1, relu, maxpool, layer1..layer4 -> indices 0, 1, 4..7
    renames = {'conv1.': '0.', 'bn1.': '1.', 'layer1.': '4.', 'layer2.': '5.', 'layer3.': '6.', 'layer4.': '7.'}
    n_checked = 0
    for key, value in reference.items():
        if key.startswith('fc.'):
            continue
        prefix = next(p for p in renames if key.startswith(p))
        assert torch.equal(body_state[renames[prefix] + key[len(prefix):]], value), key
        n_checked += 1
    assert n_checked == len(body_state)
    fresh = create_body('resnet18', pretrained=False)
    assert not torch.equal(fresh[0].weight, body[0].weight)


def test_missing_weights_offline_fail_with_file_folder_and_advice(torch_home, monkeypatch):
    def offline(url, *args, **kwargs):  # what torch.hub's download meets on a machine without network
        raise urllib.error.URLError(f'offline: cannot reach {url}')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    with pytest.raises(PretrainedWeightsMissing) as info:
        create_body('resnet34', pretrained=True)
    message = str(info.value)
    assert 'resnet34-b627a593.pth' in message
    assert str(torch_home) in message and weights_folder() == str(torch_home)
    assert 'pretrained=False' in message
    assert 'https://download.pytorch.org/models/resnet34-b627a593.pth' in message
    assert isinstance(info.value, RuntimeError)


def test_real_mobilenet_v2_weights_load_through_torchvision(torch_home):
    source = require(SHARED / 'data' / 'weights' / 'mobilenet_v2-b0353104.pth', 'the shared mobilenet_v2 weights')
    os.symlink(source, torch_home / source.name)
    spec = get_backbone('mobilenet_v2')
    body = create_body(spec, pretrained=True)
    reference = torch.load(source, map_location='cpu', weights_only=True)
    assert torch.equal(body[0][0].weight, reference['features.0.0.weight'])
    assert torch.equal(body[18][1].running_var, reference['features.18.1.running_var'])
    assert spec.stats == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert num_features(body) == 1280


# the smallest member of each family, and how many top-level children the early group must hold
FAMILIES = [('resnet18', 6, 512), ('resnext50', 6, 2048), ('wrn', 6, 2048), ('vgg11_bn', 21, 512),
            ('dn121', 7, 1024), ('mobilenet_v2', 7, 1280), ('mobilenet_v3_small', 4, 576),
            ('mobilenet_v3_large', 7, 960), ('efficientnet_b0', 4, 1280), ('efficientnet_v2_s', 4, 1280),
            ('regnet_y_400mf', 3, 440), ('regnet_x_400mf', 3, 400), ('convnext_tiny', 4, 768),
            ('efficientnet_lite0', 4, 1280)]


@pytest.mark.parametrize('name,n_early,n_features', FAMILIES)
def test_every_family_builds_splits_and_measures_features(name, n_early, n_features):
    torch.manual_seed(0)
    spec = get_backbone(name)
    body = create_body(spec, pretrained=False)
    assert isinstance(body, nn.Sequential)
    early, late = body_groups(spec, body)
    assert len(early) == n_early and len(early) + len(late) == len(body)
    group_params = {id(p) for g in (early, late) for p in g.parameters()}
    assert group_params == {id(p) for p in body.parameters()}  # the groups share the body's parameters
    body.eval()
    with torch.no_grad():
        out = body(torch.randn(2, 3, 64, 64))
        stride8 = early(torch.randn(1, 3, 64, 64))
    assert num_features(body) == out.shape[1] == n_features
    assert stride8.shape[-1] == 8  # the early group ends at 1/8 of the input


def test_aliases_and_builders_resolve_to_the_0_7_models():
    assert get_backbone('resnext101_64').name == 'resnext101_64x4d'
    assert get_backbone('resnext101_32').name == 'resnext101_32x8d'
    assert get_backbone('resnext50').name == 'resnext50_32x4d'
    assert get_backbone('dn121').name == 'densenet121' and get_backbone('dn201').name == 'densenet201'
    assert get_backbone('vgg16').name == 'vgg16_bn' and get_backbone('vgg19').name == 'vgg19_bn'
    assert get_backbone('wrn').name == 'wide_resnet50_2'
    assert get_backbone(torchvision.models.resnet34).name == 'resnet34'
    assert get_backbone(torchvision.models.vgg16).name == 'vgg16'  # the builder itself: the plain model
    assert get_backbone(zoo.vgg16).name == 'vgg16_bn'
    for name in zoo.__all__:
        assert get_backbone(getattr(zoo, name)) is not None
    spec = get_backbone('resnet50')
    assert get_backbone(spec) is spec
    assert spec.weights_name == 'ResNet50_Weights.IMAGENET1K_V1'
    assert get_backbone('efficientnet_lite0').stats == ((127 / 255,) * 3, (128 / 255,) * 3)
    with pytest.raises(KeyError, match='register_backbone'):
        get_backbone('resnet35')
    with pytest.raises(KeyError, match='register_backbone'):
        get_backbone(lambda: nn.Conv2d(3, 3, 1))


def test_register_a_user_backbone_with_xtra_cut():
    def tiny():
        return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=4),
                             nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(32, 10))
    name = 'tiny_test_net'
    spec = register_backbone(BackboneSpec(name, tiny, weights=None, cut=-3), overwrite=True)
    assert name in registered_backbones() and get_backbone(tiny) is spec
    with pytest.raises(ValueError, match='already registered'):
        register_backbone(BackboneSpec(name, tiny, cut=-3))
    body = create_body(name, pretrained=False)
    assert len(body) == 5 and num_features(body) == 32
    assert [len(g) for g in body_groups(spec, body)] == [4, 1]
    assert num_features(create_body(name, pretrained=False, xtra_cut=1)) == 16
    with pytest.raises(ValueError, match='xtra_cut'):
        create_body(name, pretrained=False, xtra_cut=5)
    with pytest.raises(ValueError, match='pretrained=False'):
        create_body(name, pretrained=True)


def test_densenet_old_checkpoint_keys_are_renamed(torch_home):
    torch.manual_seed(0)
    state = torchvision.models.densenet121().state_dict()
    old = {k.replace('norm1.', 'norm.1.').replace('conv2.', 'conv.2.') if 'denselayer' in k else k: v
           for k, v in state.items()}
    assert any('norm.1.' in k for k in old)
    url = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url
    torch.save(old, torch_home / os.path.basename(url))
    body = create_body('dn121', pretrained=True)
    assert torch.equal(body[4].denselayer1.norm1.weight, state['features.denseblock1.denselayer1.norm1.weight'])
    assert torch.equal(body[4].denselayer1.conv2.weight, state['features.denseblock1.denselayer1.conv2.weight'])
    assert isinstance(body[-1], nn.ReLU)
