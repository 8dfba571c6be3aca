"""ConvLearner: a pretrained backbone cut and topped with a new head, starting frozen, with fastai 0.7's
`precompute` switch (the cache itself is a data source in precompute.py) and export."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple, Union

from torch import nn

from .export import export_learner
from .freeze import BN_TYPES
from .learner import Learner
from .metrics import accuracy, accuracy_thresh
from .models.backbones import BackboneSpec, body_groups, create_body, get_backbone, num_features
from .models.heads import HEAD_POOL_LAYERS, create_head
from .models.video import FramesBody, takes_clips
from .precompute import PrecomputedFeatures, check_precomputable

__all__ = ['ConvnetBuilder', 'ConvLearner']


class ConvnetBuilder:
    """A backbone cut before its classifier with a new head for `c` outputs, and its layer groups (fastai 0.7's
    `ConvnetBuilder`, which the ImageNet notebook passes to `ConvLearner(data, models)`). `ConvLearner.pretrained`
    builds its model with it.

    Args:
        f: a backbone builder, name or BackboneSpec (see `ConvLearner.pretrained`).
        c: outputs of the head.
        is_multi, is_reg: kept for 0.7's signature; the head outputs logits, and the data decide how they are read.
        ps, xtra_fc, xtra_cut, custom_head, pretrained: as `ConvLearner.pretrained`.
        video: the model takes clips (B, 3, T, H, W): a video network as it is, a 2D one over every frame
            (`FramesBody`), with a head that pools over time too.
    """

    def __init__(self, f: Union[Callable, str, BackboneSpec], c: int, is_multi: bool = False, is_reg: bool = False,
                 ps: Union[float, Sequence[float], None] = None, xtra_fc: Optional[Sequence[int]] = None,
                 xtra_cut: int = 0, custom_head: Optional[nn.Module] = None, pretrained: bool = True,
                 video: bool = False):
        self.spec, self.c, self.is_multi, self.is_reg = get_backbone(f), c, is_multi, is_reg
        self.xtra_cut, self.pretrained, self.custom_head = xtra_cut, pretrained, custom_head is not None
        self.video = video
        body = create_body(self.spec, pretrained=pretrained, xtra_cut=xtra_cut)
        if takes_clips(body) and not video:
            raise ValueError(f'{self.spec.name} is a video network: it takes (B, 3, T, H, W) clips; give it video data '
                             f'(VideoClassifierData.from_paths), or pick an image backbone such as resnet34')
        frames = video and not takes_clips(body)
        body = FramesBody(body) if frames else body   # a 2D body over every frame
        head = custom_head if custom_head is not None else create_head(num_features(body), c, xtra_fc=xtra_fc, ps=ps,
                                                                      video=video)
        self.model = nn.Sequential(body, head)
        self.layer_groups = list(body_groups(self.spec, body.body if frames else body)) + [head]
        self.head_config = {'xtra_fc': None if xtra_fc is None else list(xtra_fc),
                            'ps': ps if not isinstance(ps, (list, tuple)) else list(ps)}

    @property
    def name(self) -> str:
        return f'{self.spec.name}_{self.xtra_cut}'

    def get_layer_groups(self, do_fc: bool = False) -> list:
        """The body's layer groups and the head (`do_fc` is kept for 0.7's signature)."""
        return self.layer_groups


class ConvLearner(Learner):
    """A Learner for convolutional classifiers; build one with `ConvLearner.pretrained` (or `from_model_data`).

    Precompute: with `precompute=True` the frozen body runs once over train, valid and test (with the
    *validation* transforms: augmentation has no effect while it is on), its pooled activations are cached on
    disk (memory-mapped, see `precompute.PrecomputedFeatures`) and only the head trains on them. Setting it records
    the wish; the cache is built when first needed (the next fit, prediction or lr_find). `learn.precompute = False`
    goes back to the whole model with augmentation and keeps the head's weights.

    BatchNorm: see `freeze.py` (frozen groups hold their BatchNorm in eval mode; `bn_freeze(True)` holds every
    backbone BatchNorm; `train_bn=True` trains them).
    """

    def __init__(self, data: Any, model: Union[nn.Module, ConvnetBuilder], spec: Optional[BackboneSpec] = None,
                 **learner_kwargs: Any):
        if learner_kwargs.get('metrics') is None:
            learner_kwargs['metrics'] = [accuracy_thresh(0.5)] if getattr(data, 'is_multi', False) else [accuracy]
        built = model if isinstance(model, ConvnetBuilder) else None   # 0.7's ConvLearner(data, models)
        if built is not None and built.video != bool(getattr(data, 'is_video', False)):
            raise ValueError(f'ConvnetBuilder(video={built.video}) with {"video" if not built.video else "image"} data: '
                             f'build it with video={not built.video}')
        super().__init__(data, model, **learner_kwargs)
        self.spec = built.spec if built is not None else spec
        self.custom_head = built.custom_head if built is not None else False
        self.head_config: Optional[dict] = built.head_config if built is not None else None
        self.pretrained_weights = built.pretrained if built is not None else spec is not None
        self.xtra_cut = built.xtra_cut if built is not None else 0
        self.precompute_cache_dir: Optional[Path] = None

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def pretrained(cls, f: Union[Callable, str, BackboneSpec], data: Any, ps: Union[float, Sequence[float], None] = None,
                   xtra_fc: Optional[Sequence[int]] = None, xtra_cut: int = 0, custom_head: Optional[nn.Module] = None,
                   precompute: bool = False, pretrained: bool = True, **learner_kwargs: Any) -> 'ConvLearner':
        """A pretrained backbone `f` cut before its classifier, with a new head for `data.c` classes; starts frozen.

        Args:
            f: a torchvision builder (`resnet34`), its name (`'resnet34'`, 0.7 aliases such as `'dn121'`) or a
                registered BackboneSpec; with video data, a video network (`r3d_18`, `mc3_18`, `r2plus1d_18`) or a
                2D one, which then runs on every frame (`models.video.FramesBody`, the baseline).
            data: a DataBunch (or a VideoClassifierData).
            ps: dropout probabilities of the head, one per Linear (default `[0.25, 0.5]`); a float is repeated.
            xtra_fc: sizes of the extra hidden Linear layers of the head (default `[512]`).
            xtra_cut: how many more layers to cut off the end of the body.
            custom_head: a module replacing the default head (it receives the body's (B, C, H, W) output).
            precompute: train the head on cached body activations (see the class docstring).
            pretrained: load the backbone's ImageNet weights (offline: from TORCH_HOME or the weights package).
            **learner_kwargs: passed to `Learner` (opt_fn, loss_func, metrics, wd, clip, precision, ...).

        Example:
            >>> learn = ConvLearner.pretrained(resnet34, data, precompute=True)
        """
        learn = cls(data, ConvnetBuilder(f, data.c, ps=ps, xtra_fc=xtra_fc, xtra_cut=xtra_cut, custom_head=custom_head,
                                         pretrained=pretrained, video=bool(getattr(data, 'is_video', False))),
                  **learner_kwargs)
        learn.freeze()
        if precompute:
            learn.precompute = True
        return learn

    @property
    def body(self) -> nn.Module:
        """The cut backbone (the first child of the model)."""
        return self.model[0]

    @property
    def head(self) -> nn.Module:
        """The new classifier head (the last child of the model)."""
        return self.model[-1]

    # ------------------------------------------------------------------------------- precompute
    def _body_is_frozen(self) -> bool:
        """True when no non-BatchNorm parameter of the body would receive gradients."""
        for module in self.body.modules():
            if not isinstance(module, BN_TYPES) and any(p.requires_grad for p in module.parameters(recurse=False)):
                return False
        return True

    def freeze_to(self, n: int) -> None:
        """Freeze the layer groups before `n`; unfreezing body groups turns precompute off (and says so)."""
        if self.precompute and (n if n >= 0 else len(self.layer_groups) + n) < len(self.layer_groups) - 1:
            warnings.warn('unfreezing the body turns precompute off: the whole model now trains on augmented images',
                          stacklevel=2)
            self.precompute = False
        super().freeze_to(n)

    @property
    def precompute(self) -> bool:
        """Whether the head trains on cached body activations (see the class docstring)."""
        return self.precomputed is not None

    @precompute.setter
    def precompute(self, value: bool) -> None:
        if not value:
            self.precomputed = None
            return
        if self.spec is None:
            raise ValueError('precompute=True needs a backbone/head model: build the learner with ConvLearner.pretrained')
        if self.custom_head or not self._body_is_frozen():
            reason = 'a custom head' if self.custom_head else 'an unfrozen body'
            raise ValueError(f'precompute=True cannot be used with {reason}: the cached activations would go stale. '
                             'Call learn.freeze() first (and use the default head)')
        check_precomputable(self.data)
        if self.precomputed is None:
            self.precomputed = PrecomputedFeatures(self)

    def feature_parts(self) -> Tuple[nn.Module, nn.Module, nn.Module, dict]:
        """What precompute caches and trains, read from the model as it is now: (the body, the head's pooling and
        flattening, the rest of the head, what names the body besides its weights)."""
        identity = {'backbone': self.spec.name, 'pretrained': bool(self.pretrained_weights),
                    'xtra_cut': int(self.xtra_cut)}
        return self.body, self.head[:HEAD_POOL_LAYERS], self.head[HEAD_POOL_LAYERS:], identity

    def set_data(self, data: Any, precompute: Optional[bool] = None) -> None:
        """Swap in another DataBunch (progressive resizing); the freeze state is kept and so is precompute unless
        `precompute` says otherwise (the cache follows the new data, size and batch size: it reads `learn.data`)."""
        super().set_data(data)
        if precompute is not None:
            self.precompute = precompute

    def export(self, path: Union[str, Path, None] = None) -> Path:
        """Write weights, backbone name, head settings, classes and normalization as plain data (default
        `<path>/models/export.pth`); `load_learner(path)` rebuilds it for inference."""
        target = Path(path) if path is not None else Path(self.path) / self.model_dir / 'export.pth'
        return export_learner(self, target)
