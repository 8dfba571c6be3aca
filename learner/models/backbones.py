"""The backbone registry: how to build, load, cut and split each supported architecture.

Why: fastai 0.7 kept this knowledge in a dict of magic numbers (`model_meta = {resnet34: [8, 6]}`); here
each architecture is a named `BackboneSpec` holding its builder, its weights (a torchvision weights enum, or
a loader function), where the body ends, how the body splits into the two body layer groups, and the input
normalisation the weights expect.

Layer groups: the body splits into an *early* group (every top-level child whose output is still at
1/8 of the input resolution or finer: for resnet conv1..layer2, densenet up to denseblock2, mobilenet/
efficientnet/regnet/convnext up to their stride-8 stage) and a *late* group (the rest). With the head
that ConvLearner adds, that gives fastai 0.7's three layer groups.

Weights: torchvision's IMAGENET1K_V1 for each model where it exists (the weights fastai 0.7 used),
otherwise the enum's DEFAULT. They are loaded the torchvision way: `weights.get_state_dict()` reads
`$TORCH_HOME/hub/checkpoints/<file>` (see `torch.hub.get_dir()`), downloading it if absent. With no file
and no network, `PretrainedWeightsMissing` says which file to put where, or to pass `pretrained=False`.

Example:
    >>> spec = get_backbone('resnet34')
    >>> body = create_body(spec, pretrained=False)
    >>> early, late = body_groups(spec, body)
    >>> num_features(body)
    512
"""
from __future__ import annotations

import os
import re
import socket
import weakref
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from . import efficientnet_lite

__all__ = ['BackboneSpec', 'PretrainedWeightsMissing', 'register_backbone', 'get_backbone', 'build_pretrained', 'create_body',
           'body_groups', 'num_features', 'split_by_stride', 'registered_backbones', 'weights_folder',
           'IMAGENET_STATS', 'is_video_body']

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DOWNLOAD_TIMEOUT_S = 20  # bound on a stalled connection while looking for weights (no network must fail fast)
PROBE_SIZE = 64          # px of the dummy input used to measure strides and channel counts

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]


class PretrainedWeightsMissing(RuntimeError):
    """Pretrained weights are requested, absent from the torchvision cache, and could not be downloaded."""


@dataclass
class BackboneSpec:
    """Everything learner needs to know about one architecture.

    Args:
        name: registry name (torchvision's name for torchvision models, e.g. 'resnet34').
        builder: callable with no required arguments returning the full (ImageNet) model, randomly initialised.
        weights: a torchvision `WeightsEnum` member, a callable `loader(model) -> None` that loads weights
            into the built model, or None when no pretrained weights exist.
        cut: int (keep `list(model.children())[:cut]`) or callable `cut(model) -> nn.Module` giving the body.
        split: callable `split(body) -> [early, late]`, the two body layer groups (default: `split_by_stride`).
        stats: (mean, std) per RGB channel, on inputs scaled to 0..1; default: the weights' transforms, else ImageNet.
        aliases: other names `get_backbone` accepts (fastai 0.7's names, e.g. 'dn121').
        state_dict_hook: optional `hook(state_dict) -> state_dict` applied to the checkpoint before loading
            (densenet's old checkpoints use keys like 'norm.1' that torchvision renames).
    """

    name: str
    builder: Callable[[], nn.Module]
    weights: Union[WeightsEnum, Callable[[nn.Module], None], None] = None
    cut: Union[int, Callable[[nn.Module], nn.Module]] = -2
    split: Optional[Callable[[nn.Module], list]] = None
    stats: Optional[Stats] = None
    aliases: Sequence[str] = field(default_factory=tuple)
    state_dict_hook: Optional[Callable[[dict], dict]] = None

    def __post_init__(self):
        if self.stats is None:
            self.stats = _stats_of(self.weights)
        if self.split is None:
            self.split = split_by_stride

    @property
    def weights_name(self) -> str:
        """A stable text naming the pretrained weights (for cache keys and messages)."""
        if self.weights is None:
            return 'none'
        if isinstance(self.weights, WeightsEnum):
            return f'{type(self.weights).__name__}.{self.weights.name}'
        return getattr(self.weights, 'weights_name', getattr(self.weights, '__qualname__', repr(self.weights)))


def _stats_of(weights) -> Stats:
    """Normalisation stats from a torchvision weights enum's transforms, ImageNet's otherwise."""
    if isinstance(weights, WeightsEnum):
        transforms = weights.transforms()
        return tuple(float(v) for v in transforms.mean), tuple(float(v) for v in transforms.std)
    return IMAGENET_STATS


_REGISTRY: dict[str, BackboneSpec] = {}
_ALIASES: dict[str, str] = {}
_BY_BUILDER: dict[Callable, str] = {}


def register_backbone(spec: BackboneSpec, overwrite: bool = False) -> BackboneSpec:
    """Add `spec` to the registry so `get_backbone` finds it by name, alias or builder.

    Args:
        spec: the backbone description.
        overwrite: replace an existing spec of the same name (otherwise that is an error).
    """
    if not isinstance(spec, BackboneSpec):
        raise TypeError(f'register_backbone expects a BackboneSpec, got {type(spec).__name__}')
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f'a backbone named {spec.name!r} is already registered: pass overwrite=True to replace it')
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    _BY_BUILDER[spec.builder] = spec.name
    return spec


def registered_backbones() -> list[str]:
    """Names of every registered backbone (aliases not included)."""
    return sorted(_REGISTRY)


def get_backbone(f: Union[str, Callable, BackboneSpec]) -> BackboneSpec:
    """The spec for a registered name or alias ('resnet34', 'dn121'), a builder (`torchvision.models.resnet34`,
    `learner.models.archs.resnext101_64`) or a spec (returned as is).

    String lookup tries fastai 0.7 aliases first, so 'vgg16' means vgg16_bn as it did in 0.7; the plain
    torchvision vgg16 is reached through its builder, `torchvision.models.vgg16`.
    """
    if isinstance(f, BackboneSpec):
        return f
    if isinstance(f, str):
        name = _ALIASES.get(f, f)
        if name in _REGISTRY:
            return _REGISTRY[name]
        raise KeyError(f'unknown backbone {f!r}: expected one of {registered_backbones()} or an alias '
                       f'{sorted(_ALIASES)}; register your own with register_backbone(BackboneSpec(...))')
    if callable(f) and f not in _BY_BUILDER:  # a wrapper of a builder (`learner.models.archs.resnet34`) is the builder
        f = getattr(f, '__wrapped__', f)
    if callable(f) and f in _BY_BUILDER:
        return _REGISTRY[_BY_BUILDER[f]]
    raise KeyError(f'{getattr(f, "__name__", f)!r} is not a registered backbone builder: pass a name such as '
                   f"'resnet34', or register it with register_backbone(BackboneSpec(name, builder, ...))")


def weights_folder() -> str:
    """The folder torchvision reads cached checkpoints from: `$TORCH_HOME/hub/checkpoints` (resolved now)."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


def _torchvision_state_dict(name: str, weights: WeightsEnum) -> dict:
    """`weights.get_state_dict()`, turning "file absent and no network" into PretrainedWeightsMissing."""
    folder = weights_folder()
    file_name = os.path.basename(weights.url)
    present = os.path.exists(os.path.join(folder, file_name))
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # check_hash stays off: checkpoints placed by hand (tests, air-gapped machines) need not match the hash.
        return weights.get_state_dict(progress=False)
    except OSError as err:  # URLError, socket timeouts, refused connections, unwritable cache folder
        if present:
            raise
        raise PretrainedWeightsMissing(
            f'no pretrained weights for {name} in {folder} and the download failed ({err}): put {file_name} '
            f'there (from {weights.url}), or pass pretrained=False to start from random weights') from err
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _load_weights(spec: BackboneSpec, model: nn.Module) -> None:
    """Load the spec's pretrained weights into the full model (strict: every key must match)."""
    if spec.weights is None:
        raise ValueError(f'{spec.name} has no pretrained weights registered: pass pretrained=False')
    if not isinstance(spec.weights, WeightsEnum):
        spec.weights(model)
        return
    state = _torchvision_state_dict(spec.name, spec.weights)
    if spec.state_dict_hook is not None:
        state = spec.state_dict_hook(state)
    model.load_state_dict(state, strict=True)


def build_pretrained(spec: Union[str, Callable, BackboneSpec]) -> nn.Module:
    """The whole model (classifier included) with the spec's pretrained weights, loaded offline as `create_body`
    loads them (fastai 0.7's `arch(True)`, e.g. `m = resnet34(True)` in the CAM notebook)."""
    spec = get_backbone(spec)
    model = spec.builder()
    _load_weights(spec, model)
    return model


def create_body(spec: Union[str, Callable, BackboneSpec], pretrained: bool = True, xtra_cut: int = 0) -> nn.Sequential:
    """Build the model, load its weights, and keep the convolutional body (an nn.Sequential).

    Args:
        spec: anything `get_backbone` accepts.
        pretrained: load the spec's weights (raises PretrainedWeightsMissing when offline without the file).
        xtra_cut: number of extra top-level children to drop from the end of the body (fastai 0.7's xtra_cut).
    """
    spec = get_backbone(spec)
    model = spec.builder()
    if pretrained:
        _load_weights(spec, model)
    body = spec.cut(model) if callable(spec.cut) else nn.Sequential(*list(model.children())[:spec.cut])
    if not isinstance(body, nn.Sequential):
        body = nn.Sequential(body)
    if xtra_cut < 0 or xtra_cut >= len(body):
        raise ValueError(f'xtra_cut must be in 0..{len(body) - 1} for {spec.name} (its body has {len(body)} '
                         f'top-level children), got {xtra_cut}')
    if xtra_cut:
        body = nn.Sequential(*list(body.children())[:-xtra_cut])
    return body


def body_groups(spec: Union[str, Callable, BackboneSpec], body: nn.Module) -> list[nn.Module]:
    """The body's two layer groups [early, late] (nn.Sequentials sharing the body's modules, not copies)."""
    groups = list(get_backbone(spec).split(body))
    if len(groups) != 2:
        raise ValueError(f'the split of {get_backbone(spec).name} returned {len(groups)} groups, expected 2')
    return [g if isinstance(g, nn.Module) else nn.Sequential(*g) for g in groups]


PROBE_FRAMES = 4  # frames of the dummy clip a video body is probed with: (1, 3, 4, size, size)


def is_video_body(body: nn.Module) -> bool:
    """True when the body's first convolution is 3D: it takes (B, 3, T, H, W) clips."""
    first = next((m for m in body.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    return isinstance(first, nn.Conv3d)


def _probe(body: nn.Module, size: int = PROBE_SIZE) -> list[torch.Tensor]:
    """Run a (1, 3, size, size) dummy input ((1, 3, 4, size, size) for a 3D body) through each top-level child, in
    eval mode; return each output."""
    param = next(body.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = body.training
    body.eval()
    outputs = []
    try:
        with torch.no_grad():
            shape = (1, 3, PROBE_FRAMES, size, size) if is_video_body(body) else (1, 3, size, size)
            x = torch.zeros(shape, device=device, dtype=dtype)
            for child in body.children():
                x = child(x)
                outputs.append(x)
    finally:
        body.train(was_training)
    return outputs


def split_by_stride(body: nn.Module, stride: int = 8) -> list[nn.Sequential]:
    """Split a body after its last top-level child whose output is still at 1/`stride` of the input or finer.

    Both groups always hold at least one child. Works for any convolutional nn.Sequential body.
    """
    children = list(body.children())
    if len(children) < 2:
        raise ValueError(f'cannot split a body with {len(children)} top-level children into 2 layer groups: '
                         'give the BackboneSpec a split function')
    outputs = _probe(body)
    n_early = sum(1 for out in outputs if out.dim() in (4, 5) and out.shape[-1] * stride >= PROBE_SIZE)
    n_early = min(max(n_early, 1), len(children) - 1)
    return [nn.Sequential(*children[:n_early]), nn.Sequential(*children[n_early:])]


_FEATURES_CACHE: 'weakref.WeakKeyDictionary[nn.Module, int]' = weakref.WeakKeyDictionary()


def num_features(body: nn.Module) -> int:
    """Channels of the body's output (dim 1), measured by a dummy forward at 64 px and cached per body."""
    if body not in _FEATURES_CACHE:
        try:
            out = _probe(body)[-1] if len(list(body.children())) else None
        except RuntimeError:  # too small an input for this body: measure at the ImageNet size
            out = _probe(body, 224)[-1]
        if out is None:  # a leaf module: run it whole
            out = _probe(nn.Sequential(body))[-1]
        _FEATURES_CACHE[body] = int(out.shape[1])
    return _FEATURES_CACHE[body]


# ---------------------------------------------------------------- the torchvision families and Lite0

_TV = torchvision.models


def _features(model: nn.Module) -> nn.Module:
    """`model.features` (vgg, mobilenet, efficientnet, efficientnet_lite)."""
    return model.features


def _densenet_body(model: nn.Module) -> nn.Sequential:
    """densenet's features end in a BatchNorm; the model applies ReLU after it in forward, so the body does too."""
    return nn.Sequential(*model.features.children(), nn.ReLU(inplace=True))


def _regnet_body(model: nn.Module) -> nn.Sequential:
    """regnet's stem then each stage of its trunk as top-level children (so the stride split can see them)."""
    return nn.Sequential(model.stem, *model.trunk_output.children())


def _convnext_body(model: nn.Module) -> nn.Sequential:
    """convnext's features plus the LayerNorm2d that opens its classifier (trained on those features)."""
    return nn.Sequential(*model.features.children(), model.classifier[0])


_DENSENET_OLD_KEY = re.compile(r'^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$')


def _densenet_keys(state: dict) -> dict:
    """Rename the old densenet checkpoint keys ('denselayer1.norm.1.weight' -> 'denselayer1.norm1.weight')."""
    renamed = {}
    for key, value in state.items():
        match = _DENSENET_OLD_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def _lite0_loader(model: nn.Module) -> None:
    efficientnet_lite.load_lite0_weights(model)


_lite0_loader.weights_name = efficientnet_lite.LITE0_WEIGHTS_FILE


def _register_torchvision(names: Sequence[str], cut, aliases: dict[str, Sequence[str]] = None, hook=None) -> None:
    for name in names:
        builder = getattr(_TV, name)
        enum = _TV.get_model_weights(builder)
        # IMAGENET1K_V1 where it exists: the weights fastai 0.7 used, whose cache file names are stable
        # (the shared mobilenet_v2-b0353104.pth is V1); newer recipes (V2) stay reachable via register_backbone.
        weights = getattr(enum, 'IMAGENET1K_V1', enum.DEFAULT)
        register_backbone(BackboneSpec(name, builder, weights, cut=cut, aliases=tuple((aliases or {}).get(name, ())),
                                       state_dict_hook=hook))


_register_torchvision(['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152'], cut=-2)
_register_torchvision(['resnext50_32x4d', 'resnext101_32x8d', 'resnext101_64x4d'], cut=-2,
                      aliases={'resnext50_32x4d': ['resnext50'], 'resnext101_32x8d': ['resnext101_32', 'resnext101'],
                               'resnext101_64x4d': ['resnext101_64']})
_register_torchvision(['wide_resnet50_2', 'wide_resnet101_2'], cut=-2, aliases={'wide_resnet50_2': ['wrn']})
_register_torchvision(['vgg11', 'vgg13', 'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn'],
                      cut=_features, aliases={'vgg16_bn': ['vgg16'], 'vgg19_bn': ['vgg19']})
_register_torchvision(['densenet121', 'densenet161', 'densenet169', 'densenet201'], cut=_densenet_body,
                      aliases={f'densenet{n}': [f'dn{n}'] for n in (121, 161, 169, 201)}, hook=_densenet_keys)
_register_torchvision(['mobilenet_v2', 'mobilenet_v3_large', 'mobilenet_v3_small'], cut=_features)
_register_torchvision([f'efficientnet_b{i}' for i in range(8)] + ['efficientnet_v2_s', 'efficientnet_v2_m',
                                                                   'efficientnet_v2_l'], cut=_features)
# regnet_y_128gf is left out: torchvision only has SWAG weights for it (384 px, other transforms).
_register_torchvision([f'regnet_{kind}_{size}' for kind in 'xy'
                       for size in ('400mf', '800mf', '1_6gf', '3_2gf', '8gf', '16gf', '32gf')], cut=_regnet_body)
_register_torchvision(['convnext_tiny', 'convnext_small', 'convnext_base', 'convnext_large'], cut=_convnext_body)
register_backbone(BackboneSpec('efficientnet_lite0', efficientnet_lite.efficientnet_lite0, _lite0_loader,
                               cut=_features, stats=efficientnet_lite.LITE0_STATS, aliases=('lite0',)))
