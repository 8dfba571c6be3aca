"""The small helpers fastai 0.7's course notebooks call by name: tensor/array conversion (`to_np`, `T`, `V`, `VV`,
`to_gpu`), image grids (`plots`, `plots_from_files`, `plots_raw`), `plot_confusion_matrix`, `load_img_id`, the model
wrappers `BasicModel`/`SingleModel` that `Learner(data, models)` accepts, and 0.7's `children`, `num_cpus`,
`SGD_Momentum`, `save_model`/`load_model`, and `LazyModule` (how the star import gives scikit-learn's `metrics`).

Why: `from fastai.conv_learner import *` gave the course these; with `from learner import *` the same cells run.
The plotting helpers return their Figure, which a notebook shows once, also mid-cell (see `plotting.py`).
"""
from __future__ import annotations

import importlib
import os
import types
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .core import default_device, to_numpy
from .plotting import confusion_matrix_figure, new_figure

__all__ = ['to_np', 'T', 'V', 'VV', 'to_gpu', 'plots', 'plots_from_files', 'plots_raw', 'plot_confusion_matrix',
           'load_img_id', 'BasicModel', 'SingleModel', 'children', 'num_cpus', 'SGD_Momentum', 'save_model',
           'load_model', 'LazyModule', 'cond_init', 'apply_init']


def to_np(x: Any) -> Any:
    """A tensor as a numpy array (lists and tuples of tensors element-wise), half precision as float32, as fastai
    0.7's `to_np`."""
    if isinstance(x, (list, tuple)):
        return type(x)(to_np(o) for o in x)
    if isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return to_numpy(x)


def T(a: Any, half: bool = False, cuda: bool = True) -> torch.Tensor:
    """An array as a tensor: integers as int64, floats as float32 (float16 with `half`), on the default device
    unless `cuda=False` (fastai 0.7's `T(a, half=False, cuda=True)`)."""
    if not isinstance(a, torch.Tensor):
        arr = np.ascontiguousarray(a)
        if np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.int64)
        elif np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float16 if half else np.float32)
        a = torch.from_numpy(arr)
    return a.to(default_device()) if cuda else a


def V(x: Any, requires_grad: bool = False, volatile: bool = False) -> Any:
    """fastai 0.7's `V`: `T(x)` (lists element-wise), optionally tracking gradients. Variables are plain tensors
    in today's PyTorch; `volatile` (0.7's "no gradients") is accepted and means what requires_grad=False means."""
    if isinstance(x, (list, tuple)):
        return type(x)(V(o, requires_grad, volatile) for o in x)
    t = T(x)
    return t.float().requires_grad_() if requires_grad and not volatile else t


def VV(x: Any) -> Any:
    """fastai 0.7's `VV` (a volatile Variable): `V(x)` without gradients."""
    return V(x, requires_grad=False, volatile=True)


def to_gpu(x: Any) -> Any:
    """A tensor or module on the default device (fastai 0.7's `to_gpu`: the GPU when there is one, else as it is)."""
    return x.to(default_device()) if isinstance(x, (torch.Tensor, nn.Module)) else x


def children(m: Union[nn.Module, Sequence]) -> List:
    """The direct sub-modules of `m` as a list (a list or tuple is returned as it is), as fastai 0.7's `children`:
    `nn.Sequential(*children(resnet34())[:-2], ...)` keeps a backbone's convolutional part."""
    return m if isinstance(m, (list, tuple)) else list(m.children())


def num_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one), as fastai 0.7's
    `num_cpus` (course code sizes `num_workers` with it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def SGD_Momentum(momentum: float) -> Callable:
    """An `opt_fn` building SGD with this momentum (fastai 0.7's default optimizer was `SGD_Momentum(0.9)`)."""
    def sgd_momentum(params, *args: Any, **kwargs: Any) -> torch.optim.SGD:
        return torch.optim.SGD(params, *args, momentum=momentum, **kwargs)
    return sgd_momentum


def save_model(m: nn.Module, path: Union[str, Path]) -> Path:
    """Write `m`'s state dict to `path` atomically (fastai 0.7's `save_model`; read it back with `load_model`)."""
    from .persistence import atomic_torch_save
    return atomic_torch_save(m.state_dict(), path)


def load_model(m: nn.Module, path: Union[str, Path]) -> nn.Module:
    """Load a state dict file (or a learner checkpoint) into `m` with `weights_only=True` (fastai 0.7's
    `load_model`); a file that holds anything but tensors and plain containers is refused."""
    from .persistence import safe_torch_load
    state = safe_torch_load(path)
    if not isinstance(state, dict):
        raise ValueError(f'{path} holds a {type(state).__name__}, expected a state dict')
    m.load_state_dict(state['model'] if 'model' in state and isinstance(state['model'], dict) else state)
    return m


def cond_init(m: nn.Module, init_fn: Callable) -> None:
    """Initialise `m`'s own `weight` with `init_fn` and zero its `bias`, unless it is a BatchNorm layer (fastai 0.7's
    `cond_init`)."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return
    if isinstance(getattr(m, 'weight', None), torch.Tensor):
        init_fn(m.weight)
    if isinstance(getattr(m, 'bias', None), torch.Tensor):
        with torch.no_grad():
            m.bias.zero_()


def apply_init(m: nn.Module, init_fn: Callable) -> None:
    """`cond_init` on every module of `m` (fastai 0.7: `apply_init(model, nn.init.kaiming_normal_)`)."""
    m.apply(lambda sub: cond_init(sub, init_fn))


class LazyModule(types.ModuleType):
    """A stand-in for an optional module, imported on first attribute access.

    Why: fastai 0.7's star import gave course code modules such as scikit-learn's `metrics`
    (`metrics.log_loss(y, probs)`); importing them eagerly would make `import learner` slow and would make them
    required. An absent package raises an ImportError saying what to install.

    Args:
        name: the module's import name ('sklearn.metrics').
        install: the pip requirement that provides it ('scikit-learn').
    """

    def __init__(self, name: str, install: str):
        super().__init__(name)
        self.__dict__['_install'] = install

    def _module(self) -> types.ModuleType:
        try:
            return importlib.import_module(self.__name__)
        except ImportError as err:
            raise ImportError(f'{self.__name__} is not installed: pip install {self._install} (fastai 0.7 course code '
                              f'uses it through the star import)') from err

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith('__'):
            raise AttributeError(attr)
        return getattr(self._module(), attr)

    def __dir__(self) -> List[str]:
        return dir(self._module())

    def __repr__(self) -> str:
        return f"<module {self.__name__!r} (imported on first use)>"


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
