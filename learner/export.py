"""Export a trained ConvLearner as plain data (weights + names + numbers, no pickled code) and load it back
for inference with `load_learner`.

An export also keeps what the prediction server shows about the model (`learner serve`): when it was exported and
how it did on the validation set (per-class precision / recall / average precision, the confusion matrix, the
counts at 101 thresholds, and the validation probabilities themselves when they are small enough).
"""
from __future__ import annotations

import datetime
import warnings
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch import nn

from .inference import collect_outputs, image_pixels, to_predictions, to_probabilities
from .reports import DEFAULT_THRESHOLD, threshold_curve, validation_report
from .persistence import atomic_torch_save, safe_torch_load
from .models.backbones import create_body, get_backbone, num_features
from .models.heads import create_head

__all__ = ['export_learner', 'load_learner', 'InferenceLearner', 'EXPORT_FORMAT', 'validation_summary']

EXPORT_FORMAT = 'learner-export-v1'

#: Validation probabilities are stored in the export only up to this many numbers (N x C; 2M float32 = 8 MB);
#: the per-threshold counts, which is all the server's page needs, are always stored.
MAX_STORED_PROBS = 2_000_000


def validation_summary(probs: np.ndarray, y: np.ndarray, classes: Sequence[str], is_multi: bool,
                       threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The `meta['validation']` block of an export, plain data only: the report at `threshold` (see
    `learner.interpret.validation_report`), the counts at 101 thresholds, and the probabilities and labels as
    tensors when N x C <= MAX_STORED_PROBS."""
    probs = np.asarray(probs, dtype=np.float32)
    block = {'report': validation_report(probs, y, classes, is_multi, threshold),
             'curve': threshold_curve(probs, y, is_multi)}
    if probs.size <= MAX_STORED_PROBS:
        block['probs'] = torch.from_numpy(np.ascontiguousarray(probs))
        y = np.asarray(y)
        block['labels'] = torch.from_numpy(np.ascontiguousarray(y.astype(np.uint8 if is_multi else np.int64)))
    return block


def _validation_block(learn: Any, threshold: float) -> Union[dict, None]:
    """Predict the validation set and summarise it; None (with a warning) when there is nothing to summarise."""
    data = learn.data
    if getattr(data, 'is_reg', False) or getattr(data, 'val_ds', None) is None or not len(data.val_ds):
        return None
    try:
        probs, y = learn.get_preds('valid')
    except Exception as err:  # the export itself must not fail because the metrics could not be computed
        warnings.warn(f'export: validation metrics left out ({type(err).__name__}: {err}); '
                      f'the server will show none for this model', stacklevel=3)
        return None
    return validation_summary(probs, y, data.classes, bool(data.is_multi), threshold)


def export_learner(learn: Any, path: Union[str, Path], validation: bool = True,
                   threshold: float = DEFAULT_THRESHOLD) -> Path:
    """Write `learn`'s weights, backbone name, head settings, classes, size and normalization to `path`.

    Only tensors, strings, numbers and lists are stored, so `load_learner` can read it with
    `torch.load(weights_only=True)`: an export can never run code when it is opened.

    Args:
        learn: a `ConvLearner.pretrained` learner.
        path: the file to write (atomically).
        validation: also predict the validation set once and store `meta['validation']` (see
            `validation_summary`), which `learner serve` shows; False skips that pass.
        threshold: the default probability threshold of the stored per-class precision and recall.
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
        'exported_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'n_train': int(len(data.trn_ds)) if getattr(data, 'trn_ds', None) is not None else None,
    }
    if getattr(data, 'is_video', False):  # clips: how many frames, how far apart, how many per video
        from .models.video import FramesBody
        meta['video'] = {'frames_per_clip': int(data.frames_per_clip), 'stride': int(data.stride),
                         'clips_per_video': int(data.clips_per_video), 'frames_body': isinstance(learn.body, FramesBody)}
    if validation:
        block = _validation_block(learn, threshold)
        if block is not None:
            meta['validation'] = block
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

    def prepare(self, image: Any) -> torch.Tensor:
        """One image (path, PIL image or HxWx3 uint8 array) -> uint8 (3, sz, sz) after the validation transforms:
        the model's input before normalization (what a prediction service queues)."""
        return image_pixels(image, self.valid_tfms)

    def predict_prepared(self, xb: Union[torch.Tensor, Sequence[torch.Tensor]]) -> np.ndarray:
        """(N, C) probabilities for a uint8 (N, 3, sz, sz) batch (or a list of `prepare` outputs), normalized here
        and run through the same eval loop and conversion as `learn.get_preds`."""
        xb = torch.stack(list(xb)) if not isinstance(xb, torch.Tensor) else xb
        if len(xb) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        x = self.valid_tfms.normalize(xb.to(self.device))
        out, _ = collect_outputs(self.model, [(x, torch.zeros(len(x)))])
        kind = 'multi' if self.is_multi else 'single'
        return to_probabilities(to_predictions(out, kind).numpy(), kind)

    def predict_probs(self, images: Sequence[Any]) -> np.ndarray:
        """(N, C) probabilities (softmax, or per-class sigmoid for multi-label) for image paths, PIL images or arrays,
        through the same eval loop and conversion as `learn.get_preds`."""
        return self.predict_prepared([self.prepare(image) for image in images])

    def predict_image(self, image: Any) -> tuple:
        """`(class name, probabilities (C,))` for one image path, PIL image or HxWx3 uint8 array."""
        probs = self.predict_probs([image])[0]
        return self.classes[int(probs.argmax())], probs


def load_learner(path: Union[str, Path], device: Union[str, torch.device, None] = None) -> InferenceLearner:
    """Rebuild an exported learner for inference (weights-only loading: a pickle that would run code is refused).

    A video learner's export gives a `VideoInferenceLearner`, which takes videos (its clips averaged)."""
    path = Path(path)
    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or not isinstance(blob.get('meta'), dict) or blob['meta'].get('format') != EXPORT_FORMAT:
        raise ValueError(f'{path} is not a learner export (expected a dict with meta.format == {EXPORT_FORMAT!r}); '
                         'create one with learn.export(path)')
    meta = blob['meta']
    spec = get_backbone(meta['arch'])
    body = create_body(spec, pretrained=False, xtra_cut=meta['xtra_cut'])
    video = meta.get('video')
    if video and video.get('frames_body'):
        from .models.video import FramesBody
        body = FramesBody(body)
    head = create_head(num_features(body), len(meta['classes']), xtra_fc=meta['xtra_fc'], ps=meta['ps'],
                       video=bool(video))
    model = nn.Sequential(body, head)
    model.load_state_dict(blob['state_dict'])
    if video:
        from .video_inference import VideoInferenceLearner
        return VideoInferenceLearner(model, meta, device)
    return InferenceLearner(model, meta, device)
