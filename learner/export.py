"""Export a trained ConvLearner as plain data (weights + names + numbers, no pickled code) and load it back
for inference with `load_learner`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch import nn

from .persistence import atomic_torch_save, safe_torch_load
from .models.backbones import create_body, get_backbone, num_features
from .models.heads import create_head

__all__ = ['export_learner', 'load_learner', 'InferenceLearner', 'EXPORT_FORMAT']

EXPORT_FORMAT = 'learner-export-v1'


def export_learner(learn: Any, path: Union[str, Path]) -> Path:
    """Write `learn`'s weights, backbone name, head settings, classes, size and normalization to `path`.

    Only tensors, strings, numbers and lists are stored, so `load_learner` can read it with
    `torch.load(weights_only=True)`: an export can never run code when it is opened.
    """
    if getattr(learn, 'spec', None) is None or getattr(learn, 'custom_head', False):
        raise ValueError('export needs a ConvLearner.pretrained model with the default head '
                         '(a user model or custom head cannot be rebuilt from plain data); use learn.save instead')
    data = learn.data
    mean, std = (np.asarray(s, dtype=np.float64).tolist() for s in data.stats)
    meta = {
        'format': EXPORT_FORMAT,
        'arch': learn.spec.name,
        'xtra_cut': int(getattr(learn, 'xtra_cut', 0)),
        'xtra_fc': None if learn.head_config['xtra_fc'] is None else [int(v) for v in learn.head_config['xtra_fc']],
        'ps': learn.head_config['ps'] if not isinstance(learn.head_config['ps'], (list, tuple))
        else [float(p) for p in learn.head_config['ps']],
        'classes': [str(c) for c in data.classes],
        'is_multi': bool(data.is_multi),
        'sz': int(data.sz),
        'mean': mean,
        'std': std,
    }
    state = {k: v.detach().cpu() for k, v in learn.model.state_dict().items()}
    return atomic_torch_save({'meta': meta, 'state_dict': state}, path)


class InferenceLearner:
    """A rebuilt model plus what it needs to classify new images: classes, size and normalization."""

    def __init__(self, model: nn.Module, meta: dict, device: Union[str, torch.device, None] = None):
        from .data.transforms import tfms_from_stats
        self.meta = meta
        self.classes: list = list(meta['classes'])
        self.is_multi: bool = bool(meta['is_multi'])
        self.sz: int = int(meta['sz'])
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        self.model = model.to(self.device).eval()
        self.valid_tfms = tfms_from_stats((np.array(meta['mean']), np.array(meta['std'])), self.sz)[1]

    def _batch(self, images: Sequence[Any]) -> torch.Tensor:
        from .data.images import open_image
        tensors = []
        for image in images:
            if isinstance(image, (str, Path)):
                array = open_image(image, target_size=self.sz)
            else:
                array = np.asarray(image.convert('RGB') if hasattr(image, 'convert') else image, dtype=np.uint8)
            chw = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
            tensors.append(self.valid_tfms(chw))
        return self.valid_tfms.normalize(torch.stack(tensors).to(self.device))  # (B, 3, sz, sz) float

    def predict_probs(self, images: Sequence[Any]) -> np.ndarray:
        """(N, C) probabilities (softmax, or per-class sigmoid for multi-label) for image paths, PIL images or arrays."""
        with torch.no_grad():
            out = self.model(self._batch(list(images))).float()
        probs = torch.sigmoid(out) if self.is_multi else torch.softmax(out, dim=-1)
        return probs.cpu().numpy()

    def predict_image(self, image: Any) -> tuple:
        """`(class name, probabilities (C,))` for one image path, PIL image or HxWx3 uint8 array."""
        probs = self.predict_probs([image])[0]
        return self.classes[int(probs.argmax())], probs


def load_learner(path: Union[str, Path], device: Union[str, torch.device, None] = None) -> InferenceLearner:
    """Rebuild an exported learner for inference (weights-only loading: a pickle that would run code is refused)."""
    path = Path(path)
    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or not isinstance(blob.get('meta'), dict) or blob['meta'].get('format') != EXPORT_FORMAT:
        raise ValueError(f'{path} is not a learner export (expected a dict with meta.format == {EXPORT_FORMAT!r}); '
                         'create one with learn.export(path)')
    meta = blob['meta']
    spec = get_backbone(meta['arch'])
    body = create_body(spec, pretrained=False, xtra_cut=meta['xtra_cut'])
    head = create_head(num_features(body), len(meta['classes']), xtra_fc=meta['xtra_fc'], ps=meta['ps'])
    model = nn.Sequential(body, head)
    model.load_state_dict(blob['state_dict'])
    return InferenceLearner(model, meta, device)
