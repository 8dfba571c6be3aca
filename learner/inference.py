"""The one inference path: an eval loop over batches, the conversion of outputs to predictions, test-time
augmentation and single-image input. `Learner.predict*`, `get_preds`, `TTA`, interpretation, the exported learner
and the prediction service all run through here, so they agree to the last bit.

What a prediction is depends on the task (fastai 0.7's conventions; the model itself outputs logits):
- single-label: log-probabilities (N, C), so `np.exp(learn.predict())` gives probabilities;
- multi-label: probabilities (N, C) (0.7's multi-label models ended in a sigmoid; `f2`, `opt_th` expect them);
- regression: the outputs as they are.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['KINDS', 'task_kind', 'default_loss', 'collect_outputs', 'to_predictions', 'to_probabilities', 'tta_predictions',
           'blend_tta', 'image_pixels', 'image_batch', 'average_clips', 'clips_in']

KINDS = ('single', 'multi', 'regression')


def task_kind(data: Any) -> str:
    """'multi' (multi-label), 'regression' or 'single' (single-label classification) for a DataBunch."""
    if getattr(data, 'is_multi', False):
        return 'multi'
    if getattr(data, 'is_reg', False):
        return 'regression'
    return 'single'


def default_loss(kind: str) -> Callable:
    """The loss for a task kind: cross-entropy (single-label; log_softmax is idempotent, so models returning
    log-probabilities work too), BCE with logits (multi-label), MSE (regression)."""
    return {'single': F.cross_entropy, 'multi': F.binary_cross_entropy_with_logits, 'regression': F.mse_loss}[kind]


def clips_in(batches: Any) -> int:
    """How many consecutive rows of each batch belong to one item: K for a loader of video evaluation clips (its
    `clips_per_item`), else 1."""
    return int(getattr(batches, 'clips_per_item', 1) or 1)


def average_clips(out: torch.Tensor, n_clips: int, kind: str) -> torch.Tensor:
    """Outputs of K consecutive clips per video, (B*K, C), -> one output per video, (B, C), whose prediction is the
    mean of the clips' predictions: log of the mean softmax (single-label; `to_predictions` and cross-entropy take it
    as it is), logit of the mean sigmoid (multi-label), the mean value (regression). K = 1 returns `out`."""
    if n_clips == 1:
        return out
    if out.shape[0] % n_clips:
        raise ValueError(f'{out.shape[0]} outputs are not whole groups of {n_clips} clips per video')
    grouped = out.float().reshape(out.shape[0] // n_clips, n_clips, *out.shape[1:])      # (B, K, C)
    if kind == 'single':
        return torch.logsumexp(F.log_softmax(grouped, dim=-1), dim=1) - math.log(n_clips)
    if kind == 'multi':
        return torch.logit(torch.sigmoid(grouped).mean(1), eps=1e-7)
    if kind == 'regression':
        return grouped.mean(1)
    raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')


def collect_outputs(model: nn.Module, batches: Iterable, amp_dtype: Optional[torch.dtype] = None,
                    gather: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, kind: str = 'single',
                    n_clips: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run `model` in eval mode, without gradients and under the same autocast as training, over `(x, y)` batches.

    Returns `(outputs, targets)`: float32 outputs and the targets, on the CPU, in batch order. `gather` (used under
    torch.distributed) turns this process's rows into every process's rows in data-set order. The model's train/eval
    mode is restored afterwards. When each item is K clips (`n_clips`, default the loader's `clips_per_item`), the
    K outputs of an item are averaged into one (`average_clips`, which needs the task `kind`).
    """
    n_clips = clips_in(batches) if n_clips is None else n_clips
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    device_type = next((p.device.type for p in model.parameters()), 'cpu')
    try:
        with torch.inference_mode(), torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
            for xb, yb in batches:
                outputs.append(average_clips(model(xb).float(), n_clips, kind))
                targets.append(torch.as_tensor(yb))
    finally:
        model.train(was_training)
    if not outputs:
        raise ValueError('nothing to predict: the loader yielded no batches')
    out, y = torch.cat(outputs), torch.cat([t.to(outputs[0].device) for t in targets])
    if gather is not None:
        out, y = gather(out), gather(y)
    return out.cpu(), y.cpu()


def to_predictions(out: torch.Tensor, kind: str) -> torch.Tensor:
    """Outputs -> predictions as the module docstring defines them (log-probs, probabilities or values)."""
    out = out.float()
    if kind == 'single':
        return F.log_softmax(out, dim=-1)  # idempotent: a model that already returns log-probabilities is unchanged
    if kind == 'multi':
        return torch.sigmoid(out)
    if kind == 'regression':
        return out
    raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')


def to_probabilities(preds: np.ndarray, kind: str) -> np.ndarray:
    """Predictions (as `to_predictions` gives them) -> probabilities; regression values pass unchanged."""
    return np.exp(preds) if kind == 'single' else preds


def tta_predictions(model: nn.Module, plain: Iterable, augmented: Iterable, n_aug: int, kind: str,
                    amp_dtype: Optional[torch.dtype] = None, gather=None) -> Tuple[np.ndarray, np.ndarray]:
    """`(preds (n_aug + 1, N, C), y)`: pass 0 over `plain` batches, then `n_aug` passes over `augmented` ones."""
    if n_aug < 0:
        raise ValueError(f'n_aug must be >= 0, got {n_aug}')
    out, y = collect_outputs(model, plain, amp_dtype, gather, kind)
    passes = [to_predictions(out, kind)]
    for _ in range(n_aug):
        passes.append(to_predictions(collect_outputs(model, augmented, amp_dtype, gather, kind)[0], kind))
    return torch.stack(passes).numpy(), y.numpy()


def blend_tta(preds: np.ndarray, kind: str, beta: float = 0.4) -> np.ndarray:
    """fastai 1+'s TTA blend of `tta_predictions` output: `(1 - beta) * plain + beta * mean(augmented)`, as
    probabilities (regression: values)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f'beta must be in [0, 1], got {beta}')
    probs = to_probabilities(preds, kind)
    if len(probs) == 1:
        return probs[0]
    return (1 - beta) * probs[0] + beta * probs[1:].mean(0)


def image_pixels(image: Any, tfms: Any) -> torch.Tensor:
    """One image (a path, a PIL image or an HxWx3 uint8 array) through a validation pipeline `tfms` (a `Transforms`)
    -> uint8 (3, sz, sz), not yet normalized (what a prediction service queues: small and of known size)."""
    from PIL import Image
    from .data.images import open_image
    if isinstance(image, (str, os.PathLike)):
        arr = open_image(image, target_size=tfms.decode_size)
    elif isinstance(image, Image.Image):
        arr = np.asarray(image.convert('RGB'), dtype=np.uint8)
    else:
        arr = np.asarray(image, dtype=np.uint8)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f'expected an RGB image of shape (H, W, 3), got an array of shape {arr.shape}')
    return tfms(arr)


def image_batch(image: Any, tfms: Any, device: torch.device) -> torch.Tensor:
    """One image through `image_pixels` and the pipeline's normalization -> a (1, 3, sz, sz) float batch on
    `device`."""
    return tfms.normalize(image_pixels(image, tfms)[None].to(device))
