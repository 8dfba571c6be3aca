"""The architecture names users type (`arch = resnext101_64`), as in fastai 0.7's `from fastai.conv_learner import *`.

Why: the seeds pass these names to `tfms_from_model(arch, ...)` and `ConvLearner.pretrained(arch, ...)`.
Each name is a model builder (torchvision's own, or learner's `efficientnet_lite0`) that
`learner.models.get_backbone` recognises; the 0.7 short names point at the torchvision model they meant:
`resnext50` -> resnext50_32x4d, `resnext101_32` and `resnext101` -> resnext101_32x8d (0.7's was 32x4d, which
torchvision does not have), `resnext101_64` -> resnext101_64x4d,
`wrn` -> wide_resnet50_2, `vgg16`/`vgg19` -> the BatchNorm variants, `dn121` ... `dn201` -> densenet.
Calling one builds the full ImageNet model: `resnet34()` randomly initialised (torchvision's keywords pass through,
`resnet34(weights=None)`), and as fastai 0.7 called them, `resnet34(True)` with the pretrained weights (loaded
offline like `ConvLearner.pretrained`'s; the CAM notebook's `m = arch(True)`). 0.7's `dn121(True)`/`vgg16(True)` gave
only the convolutional part; here it is the whole model (`children(m)[0]` is that part).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torchvision.models as _tv
from torch import nn

from .backbones import build_pretrained
from .efficientnet_lite import efficientnet_lite0


class CourseArch:
    """A torchvision model builder that also takes fastai 0.7's positional `pre`: `arch(True)` is the pretrained
    model, `arch()` / `arch(weights=...)` torchvision's own call. `get_backbone` sees the builder it wraps."""

    def __init__(self, builder: Callable[..., nn.Module]):
        functools.update_wrapper(self, builder)

    def __call__(self, pre: bool = False, **kwargs: Any) -> nn.Module:
        if pre:
            if kwargs:
                raise TypeError(f'{self.__name__}(True) builds the pretrained model and takes no other arguments, '
                                f'got {sorted(kwargs)}')
            return build_pretrained(self.__wrapped__)
        return self.__wrapped__(**kwargs)

    def __repr__(self) -> str:
        return f'<model builder {self.__name__}>'

__all__ = [
    'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152',
    'resnext50', 'resnext101', 'resnext101_32', 'resnext101_64', 'resnext50_32x4d', 'resnext101_32x8d', 'resnext101_64x4d',
    'wrn', 'wide_resnet50_2', 'wide_resnet101_2',
    'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn',
    'dn121', 'dn161', 'dn169', 'dn201', 'densenet121', 'densenet161', 'densenet169', 'densenet201',
    'mobilenet_v2', 'mobilenet_v3_large', 'mobilenet_v3_small',
    'efficientnet_b0', 'efficientnet_b1', 'efficientnet_b2', 'efficientnet_b3', 'efficientnet_b4',
    'efficientnet_b5', 'efficientnet_b6', 'efficientnet_b7',
    'efficientnet_v2_s', 'efficientnet_v2_m', 'efficientnet_v2_l',
    'regnet_y_400mf', 'regnet_y_800mf', 'regnet_y_1_6gf', 'regnet_y_3_2gf', 'regnet_y_8gf', 'regnet_y_16gf',
    'regnet_y_32gf', 'regnet_x_400mf', 'regnet_x_800mf', 'regnet_x_1_6gf', 'regnet_x_3_2gf', 'regnet_x_8gf',
    'regnet_x_16gf', 'regnet_x_32gf',
    'convnext_tiny', 'convnext_small', 'convnext_base', 'convnext_large',
    'efficientnet_lite0',
]

resnet18, resnet34, resnet50 = _tv.resnet18, _tv.resnet34, _tv.resnet50
resnet101, resnet152 = _tv.resnet101, _tv.resnet152

resnext50_32x4d, resnext101_32x8d, resnext101_64x4d = _tv.resnext50_32x4d, _tv.resnext101_32x8d, _tv.resnext101_64x4d
resnext50, resnext101_32, resnext101_64 = resnext50_32x4d, resnext101_32x8d, resnext101_64x4d
resnext101 = resnext101_32x8d

wide_resnet50_2, wide_resnet101_2 = _tv.wide_resnet50_2, _tv.wide_resnet101_2
wrn = wide_resnet50_2

vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn = _tv.vgg11_bn, _tv.vgg13_bn, _tv.vgg16_bn, _tv.vgg19_bn
vgg16, vgg19 = vgg16_bn, vgg19_bn  # fastai 0.7's vgg16/vgg19 were the BatchNorm variants

densenet121, densenet161, densenet169, densenet201 = _tv.densenet121, _tv.densenet161, _tv.densenet169, _tv.densenet201
dn121, dn161, dn169, dn201 = densenet121, densenet161, densenet169, densenet201

mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small = _tv.mobilenet_v2, _tv.mobilenet_v3_large, _tv.mobilenet_v3_small

efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3 = (
    _tv.efficientnet_b0, _tv.efficientnet_b1, _tv.efficientnet_b2, _tv.efficientnet_b3)
efficientnet_b4, efficientnet_b5, efficientnet_b6, efficientnet_b7 = (
    _tv.efficientnet_b4, _tv.efficientnet_b5, _tv.efficientnet_b6, _tv.efficientnet_b7)
efficientnet_v2_s, efficientnet_v2_m, efficientnet_v2_l = _tv.efficientnet_v2_s, _tv.efficientnet_v2_m, _tv.efficientnet_v2_l

regnet_y_400mf, regnet_y_800mf, regnet_y_1_6gf, regnet_y_3_2gf = (
    _tv.regnet_y_400mf, _tv.regnet_y_800mf, _tv.regnet_y_1_6gf, _tv.regnet_y_3_2gf)
regnet_y_8gf, regnet_y_16gf, regnet_y_32gf = _tv.regnet_y_8gf, _tv.regnet_y_16gf, _tv.regnet_y_32gf
regnet_x_400mf, regnet_x_800mf, regnet_x_1_6gf, regnet_x_3_2gf = (
    _tv.regnet_x_400mf, _tv.regnet_x_800mf, _tv.regnet_x_1_6gf, _tv.regnet_x_3_2gf)
regnet_x_8gf, regnet_x_16gf, regnet_x_32gf = _tv.regnet_x_8gf, _tv.regnet_x_16gf, _tv.regnet_x_32gf

convnext_tiny, convnext_small, convnext_base, convnext_large = (
    _tv.convnext_tiny, _tv.convnext_small, _tv.convnext_base, _tv.convnext_large)

# every torchvision name also accepts 0.7's `arch(True)` (efficientnet_lite0 takes `pretrained` positionally already)
for _name in __all__:
    if _name != 'efficientnet_lite0':
        globals()[_name] = CourseArch(globals()[_name])
