"""ConvLearner: a pretrained backbone cut and topped with a new head, with freezing, BatchNorm policy,
the precompute activation cache, progressive resizing and test-time augmentation."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .learner import Learner
from .metrics import accuracy, accuracy_thresh
from .models.backbones import BackboneSpec, body_groups, create_body, get_backbone, num_features
from .models.heads import HEAD_POOL_LAYERS, create_head
from .precompute import ActivationCache
from .export import export_learner
from .tta import tta_log_preds, tta_probs

__all__ = ['ConvLearner']

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class CachedFeatureLoader:
    """Batches of precomputed body features `(x (B, F) float, y)` on the learner's device.

    The training split is reshuffled every epoch and, like the image loaders, drops a last batch of one item
    (BatchNorm in the head cannot train on a single row).
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, bs: int, shuffle: bool, device: torch.device):
        self.features, self.labels = features, labels
        self.bs, self.shuffle, self.device = bs, shuffle, device

    def __len__(self) -> int:
        n_batches = -(-len(self.features) // self.bs)
        return n_batches - int(self.shuffle and len(self.features) % self.bs == 1 and n_batches > 1)

    def __iter__(self) -> Iterator:
        n = len(self.features)
        order = np.random.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.bs, self.bs):
            idx = np.sort(order[start:start + self.bs]) if self.shuffle else order[start:start + self.bs]
            x = torch.from_numpy(np.ascontiguousarray(self.features[idx], dtype=np.float32))
            y = torch.from_numpy(np.asarray(self.labels[idx]))
            yield x.to(self.device), y.to(self.device)


class ConvLearner(Learner):
    """A Learner for convolutional classifiers; build one with `ConvLearner.pretrained` (or `from_model_data`).

    BatchNorm policy, in one place: by default (fastai 1+) the BatchNorm layers inside frozen layer groups keep
    training their affine parameters and running statistics. `bn_freeze(True)` (fastai 0.7) instead holds every
    backbone BatchNorm in eval mode at the start of each training phase, so its statistics stay fixed and its
    output is the same in train and eval mode.

    Precompute: with `precompute=True` the frozen body runs once over train, valid and test (with the
    *validation* transforms: augmentation has no effect while it is on), its pooled activations are cached on
    disk (memory-mapped) and only the head trains on them. `learn.precompute = False` goes back to the whole
    model with augmentation and keeps the head's weights.
    """

    def __init__(self, data: Any, model: nn.Module, spec: Optional[BackboneSpec] = None, **learner_kwargs: Any):
        if learner_kwargs.get('metrics') is None:
            learner_kwargs['metrics'] = [accuracy_thresh(0.5)] if getattr(data, 'is_multi', False) else [accuracy]
        super().__init__(data, model, **learner_kwargs)
        self.spec = spec
        self.custom_head = False
        self.head_config: Optional[dict] = None
        self.pretrained_weights = spec is not None
        self.xtra_cut = 0
        self.bn_frozen = False
        self.precompute_cache_dir: Optional[Path] = None
        self._precompute = False
        self._feature_loaders: dict = {}

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def pretrained(cls, f: Union[Callable, str, BackboneSpec], data: Any, ps: Union[float, Sequence[float], None] = None,
                   xtra_fc: Optional[Sequence[int]] = None, xtra_cut: int = 0, custom_head: Optional[nn.Module] = None,
                   precompute: bool = False, pretrained: bool = True, **learner_kwargs: Any) -> 'ConvLearner':
        """A pretrained backbone `f` cut before its classifier, with a new head for `data.c` classes; starts frozen.

        Args:
            f: a torchvision builder (`resnet34`), its name (`'resnet34'`, 0.7 aliases such as `'dn121'`) or a
                registered BackboneSpec.
            data: a DataBunch.
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
        spec = get_backbone(f)
        body = create_body(spec, pretrained=pretrained, xtra_cut=xtra_cut)
        if custom_head is not None:
            head = custom_head
        else:
            head = create_head(num_features(body), data.c, xtra_fc=xtra_fc, ps=ps)
        model = nn.Sequential(body, head)
        groups = list(body_groups(spec, body)) + [head]
        learn = cls(data, model, spec=spec, layer_groups=groups, **learner_kwargs)
        learn.pretrained_weights = pretrained
        learn.xtra_cut = xtra_cut
        learn.custom_head = custom_head is not None
        learn.head_config = {'xtra_fc': None if xtra_fc is None else list(xtra_fc),
                             'ps': ps if not isinstance(ps, (list, tuple)) else list(ps)}
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

    # ---------------------------------------------------------------------------------- freezing / BN
    def _body_is_frozen(self) -> bool:
        """True when no non-BatchNorm parameter of the body would receive gradients."""
        for module in self.body.modules():
            if isinstance(module, _BN_TYPES):
                continue
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                return False
        return True

    def freeze_to(self, n: int) -> None:
        """Freeze the layer groups before `n`; unfreezing body groups turns precompute off (and says so)."""
        if self._precompute and n < len(self.layer_groups) - 1:
            warnings.warn('unfreezing the body turns precompute off: the whole model now trains on augmented images',
                          stacklevel=2)
            self.precompute = False
        super().freeze_to(n)

    def unfreeze(self) -> None:
        """Make every layer group trainable (turns precompute off, with a warning, when it was on)."""
        self.freeze_to(0)

    def bn_freeze(self, do_freeze: bool = True) -> None:
        """Hold every backbone BatchNorm in eval mode while training (fixed statistics, as fastai 0.7) or release it."""
        self.bn_frozen = bool(do_freeze)

    def before_train_mode(self) -> None:
        """Called after `model.train()` at each training phase: puts the body's BatchNorms back in eval mode when frozen."""
        super().before_train_mode()
        if self.bn_frozen and self.spec is not None:
            for module in self.body.modules():
                if isinstance(module, _BN_TYPES):
                    module.eval()

    # -------------------------------------------------------------------------------------- precompute
    @property
    def precompute(self) -> bool:
        """Whether the head trains on cached body activations (see the class docstring)."""
        return self._precompute

    @precompute.setter
    def precompute(self, value: bool) -> None:
        value = bool(value)
        if value and self.spec is None:
            raise ValueError('precompute=True needs a backbone/head model: build the learner with ConvLearner.pretrained')
        if value and (self.custom_head or not self._body_is_frozen()):
            reason = 'a custom head' if self.custom_head else 'an unfrozen body'
            raise ValueError(f'precompute=True cannot be used with {reason}: the cached activations would go stale. '
                             'Call learn.freeze() first (and use the default head)')
        self._precompute = value
        self._feature_loaders = {}
        if value:
            self._build_feature_loaders()

    def _cache_root(self) -> Path:
        """`<data.path>/tmp/precompute` when writable (fastai 0.7's place), else the user's cache folder."""
        if self.precompute_cache_dir is not None:
            return Path(self.precompute_cache_dir)
        preferred = Path(self.data.path) / 'tmp'
        try:
            preferred.mkdir(parents=True, exist_ok=True)
            if os.access(preferred, os.W_OK):
                return preferred / 'precompute'
        except OSError:
            pass
        return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'learner' / 'precompute'

    def _body_digest(self) -> str:
        """A hash of the body's parameters and buffers, so a cache never outlives the weights it came from."""
        digest = hashlib.sha256()
        for name, tensor in self.body.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:24]

    def _precompute_key(self) -> dict:
        splits = ['train', 'valid'] + (['test'] if self.data.test_dl is not None else [])
        return {'backbone': self.spec.name, 'pretrained': bool(getattr(self, 'pretrained_weights', True)),
                'xtra_cut': int(getattr(self, 'xtra_cut', 0)), 'body': self._body_digest(),
                'tfms': self.data.tfms_signature(), 'data': {s: self.data.fingerprint(s) for s in splits}}

    def _feature_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        pool = self.head[:HEAD_POOL_LAYERS]
        body = self.body

        def features(x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 2 * n_features)
            return pool(body(x))
        return features

    def _build_feature_loaders(self) -> None:
        """Compute (or reuse) the cached activations of every split and wrap them as loaders."""
        key = self._precompute_key()
        cache = ActivationCache(self._cache_root(), key)
        self.activation_cache = cache
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for split in key['data']:
                    loader = self.data.loader(split)
                    feats, labels = cache.get_or_build(split, self._feature_fn(), loader, len(loader.dataset),
                                                       self.device)
                    self._feature_loaders[split] = CachedFeatureLoader(
                        feats, labels, self.data.bs, shuffle=(split == 'train'), device=self.device)
        finally:
            self.model.train(was_training)

    def get_loader(self, split: str):
        """The (x, y) batches of a split: cached features while precompute is on, else the DataBunch's loader."""
        if self._precompute:
            if split not in self._feature_loaders:
                return None
            return self._feature_loaders[split]
        return super().get_loader(split)

    @property
    def active_model(self) -> nn.Module:
        """The head after pooling while precompute is on, else the whole model."""
        if self._precompute:
            return self.head[HEAD_POOL_LAYERS:]
        return self.model

    # ------------------------------------------------------------------------- data swap, TTA
    def set_data(self, data: Any, precompute: Optional[bool] = None) -> None:
        """Swap in another DataBunch (progressive resizing); freeze state is kept, the cache follows the new data."""
        self.data = data
        if hasattr(data, 'to'):
            data.to(self.device)
        turn_on = self._precompute if precompute is None else precompute
        self._precompute = False
        self._feature_loaders = {}
        if turn_on:
            self.precompute = True

    def export(self, path: Union[str, Path, None] = None) -> Path:
        """Write weights, backbone name, head settings, classes and normalization as plain data (default
        `<path>/models/export.pth`); `load_learner(path)` rebuilds it for inference."""
        target = Path(path) if path is not None else Path(self.path) / self.model_dir / 'export.pth'
        return export_learner(self, target)

    def TTA(self, n_aug: int = 4, is_test: bool = False) -> tuple:
        """Test-time augmentation: `(log_preds (n_aug + 1, N, C), y)` numpy, pass 0 plain, the rest with the
        training transforms on the valid (or test) images. Average with `np.mean(np.exp(log_preds), 0)`."""
        return tta_log_preds(self, n_aug=n_aug, is_test=is_test)

    def tta(self, n_aug: int = 4, beta: float = 0.4, is_test: bool = False) -> tuple:
        """fastai 1+ style TTA: `(probs (N, C), y)` = (1 - beta) * plain + beta * mean of the augmented passes."""
        return tta_probs(self, n_aug=n_aug, beta=beta, is_test=is_test)
