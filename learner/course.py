"""The small helpers fastai 0.7's course notebooks call by name: tensor/array conversion (`to_np`, `T`, `V`, `VV`),
image grids (`plots`, `plots_from_files`, `plots_raw`), `plot_confusion_matrix`, `load_img_id`, and the model
wrappers `BasicModel`/`SingleModel` that `Learner(data, models)` accepts.

Why: `from fastai.conv_learner import *` gave the course these; with `from learner import *` the same cells run.
The plotting helpers return their Figure, which a notebook shows once, also mid-cell (see `plotting.py`).
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .core import default_device, to_numpy
from .plotting import confusion_matrix_figure, new_figure

__all__ = ['to_np', 'T', 'V', 'VV', 'plots', 'plots_from_files', 'plots_raw', 'plot_confusion_matrix', 'load_img_id',
           'BasicModel', 'SingleModel']


def to_np(x: Any) -> Any:
    """A tensor as a numpy array (lists and tuples of tensors element-wise), as fastai 0.7's `to_np`."""
    if isinstance(x, (list, tuple)):
        return type(x)(to_np(o) for o in x)
    return to_numpy(x)


def T(a: Any) -> torch.Tensor:
    """An array as a tensor on the default device: integers as int64, floats as float32 (fastai 0.7's `T`)."""
    if isinstance(a, torch.Tensor):
        return a.to(default_device())
    arr = np.ascontiguousarray(a)
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return torch.from_numpy(arr).to(default_device())


def V(x: Any, requires_grad: bool = False) -> Any:
    """fastai 0.7's `V`: `T(x)` (lists element-wise), optionally tracking gradients. Variables are plain tensors
    in today's PyTorch."""
    if isinstance(x, (list, tuple)):
        return type(x)(V(o, requires_grad) for o in x)
    t = T(x)
    return t.float().requires_grad_() if requires_grad else t


def VV(x: Any) -> Any:
    """fastai 0.7's `VV` (a volatile Variable): `V(x)` without gradients."""
    return V(x, requires_grad=False)


def _grid(n: int, rows: int, figsize):
    cols = int(np.ceil(n / rows)) if n else 1
    fig = new_figure(figsize=figsize)
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _hwc(image: Any) -> np.ndarray:
    """One image as HWC (a CHW one is transposed)."""
    image = np.asarray(to_np(image))
    if image.ndim == 3 and image.shape[-1] not in (1, 3) and image.shape[0] in (1, 3):
        image = image.transpose(1, 2, 0)
    return image


def plots(ims: Any, figsize=(12, 6), rows: int = 1, interp: bool = False, titles: Optional[Sequence] = None,
          maxes=None):
    """Show images (a batch NHWC or NCHW, or a list of images of any sizes; floats in [0, 1] or uint8) in `rows`
    rows, with optional titles; returns the Figure (shown once in a notebook). `interp=False` shows pixels as they
    are (no smoothing)."""
    images = [_hwc(image) for image in (to_np(ims) if isinstance(ims, (list, tuple)) else np.asarray(to_np(ims)))]
    fig, axes = _grid(len(images), rows, figsize)
    for i, (ax, image) in enumerate(zip(axes, images)):
        ax.axis('off')
        if titles is not None:
            ax.set_title(titles[i], fontsize=16)
        ax.imshow(np.clip(image, 0, 1) if image.dtype.kind == 'f' else image, interpolation=None if interp else 'none')
    return fig


def plots_from_files(imspaths: Sequence, figsize=(10, 5), rows: int = 1, titles: Optional[Sequence] = None,
                     maintitle: Optional[str] = None):
    """Show image files in `rows` rows, with optional titles and a main title; returns the Figure."""
    from .data.images import open_image
    fig, axes = _grid(len(imspaths), rows, figsize)
    if maintitle is not None:
        fig.suptitle(maintitle, fontsize=16)
    for i, (ax, path) in enumerate(zip(axes, imspaths)):
        ax.axis('off')
        if titles is not None:
            ax.set_title(titles[i], fontsize=16)
        ax.imshow(open_image(path))
    return fig


def plots_raw(ims: Any, figsize=(12, 6), rows: int = 1, titles: Optional[Sequence] = None):
    """Show raw images (already HWC, as read) in `rows` rows; returns the Figure."""
    fig, axes = _grid(len(ims), rows, figsize)
    for i, ax in enumerate(axes):
        ax.axis('off')
        if titles is not None:
            ax.set_title(titles[i], fontsize=16)
        ax.imshow(ims[i])
    return fig


def plot_confusion_matrix(cm: Any, classes: Sequence, normalize: bool = False, title: str = 'Confusion matrix',
                          cmap: Any = None, figsize=None):
    """Draw a confusion matrix (rows actual, columns predicted, e.g. from `sklearn.metrics.confusion_matrix`) with
    its counts (or row fractions with `normalize`) in the cells; returns the Figure."""
    return confusion_matrix_figure(cm, classes, normalize, title, cmap or 'Blues', figsize,
                                   labels=('Predicted label', 'True label'))


def load_img_id(ds: Any, idx: int, path: Any = None) -> np.ndarray:
    """The file behind item `idx` of a files data set as an RGB uint8 array (course: `load_img_id(data.val_ds, i)`).
    `path` is the data folder the names are relative to (default: the data set's own)."""
    from .data.images import open_image
    if path is None:
        paths = getattr(ds, 'paths', None)
        return open_image(paths[idx] if paths is not None else ds.fnames[idx])
    return open_image(os.path.join(str(path), ds.fnames[idx]))


class BasicModel:
    """fastai 0.7's model wrapper: `Learner(data, BasicModel(model))` trains `model` with its children as layer
    groups (`get_layer_groups`)."""

    def __init__(self, model: nn.Module, name: str = 'unnamed'):
        self.model, self.name = model, name

    def get_layer_groups(self, do_fc: bool = False) -> list:
        return list(self.model.children()) or [self.model]


class SingleModel(BasicModel):
    """fastai 0.7's wrapper for a model trained as one layer group."""

    def get_layer_groups(self) -> list:
        return [self.model]
