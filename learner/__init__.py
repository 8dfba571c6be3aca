"""learner: fastai-style image (and video) classification on PyTorch and torchvision.

`from learner import *` gives exactly the names in `__all__` below: the data pipeline (images and videos), the learners, callbacks,
metrics, the architecture names course code types (`resnet34`, `dn121`, `efficientnet_lite0`, ...), the posts'
networks, interpretation, and what `from fastai.conv_learner import *` gave fastai 0.7's course notebooks: the
names `np`, `os`, `torch`, `nn`, `F`, `optim` (torch.optim), `plt`, `PIL`, `Image`, `Path`, `glob` (the function, as
0.7's `from glob import glob`), `partial`, `Variable`, `metrics` (scikit-learn's, imported on first use), `pd` when
pandas is installed and `FileLink` when IPython is, and the helpers `to_np`, `V`, `T`, `VV`, `children`,
`num_cpus`, `plots`, `plots_from_files`, `plots_raw`, `plot_confusion_matrix`, `load_img_id`, ... (the full list,
with what differs from 0.7, is docs/fastai07_coverage.md). Everything else lives in the submodules.

How the Learner is put together (one way, everywhere): `learner.py` holds the configuration, the fit entry points
and the training loop. Every other Learner method belongs to one job, and each job is a mixin class whose methods
are all in its class body, in the module of that job, reading only the Learner attributes its docstring names:
`optim.OptimizerMixin` (layer groups, lrs, wds, momentum), `freeze.FreezeMixin` (freezing, BatchNorm policy),
`callbacks.lr_finder.LRFindMixin` (the LR range test), `prediction.PredictionMixin` (predictions and TTA through
`inference.py`), `persistence.PersistenceMixin` (save/load), `summary.SummaryMixin`, `callbacks.progress.ProgressMixin`.
`ConvLearner` adds the backbone, the head and the precompute switch; the cache itself is a data source
(`precompute.PrecomputedFeatures`) the loop asks for a `Stage`. No free function reaches into a Learner's privates.

Example:
    >>> from learner import *
    >>> tfms = tfms_from_model(resnet34, 224, aug_tfms=transforms_side_on, max_zoom=1.1)
    >>> data = ImageClassifierData.from_paths(PATH, tfms=tfms, bs=64)
    >>> learn = ConvLearner.pretrained(resnet34, data, precompute=True)
    >>> learn.fit(1e-2, 3, cycle_len=1)
"""

import importlib.util as _importlib_util
import os
from functools import partial
from glob import glob
from pathlib import Path

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.autograd import Variable

from .data import (
    open_image,
    verify_images,
    image_files,
    ImageError,
    BadImageWarning,
    Transforms,
    CropType,
    Scale,
    RandomScale,
    RandomZoom,
    RandomStretch,
    AddPadding,
    RandomCrop,
    CenterCrop,
    NoCrop,
    GoogleNetResize,
    RandomRotate,
    RandomLighting,
    RandomFlip,
    RandomDihedral,
    RandomRotateZoom,
    RandomBlur,
    Cutout,
    transforms_basic,
    transforms_side_on,
    transforms_top_down,
    imagenet_stats,
    inception_stats,
    cifar_stats,
    tfms_from_stats,
    tfms_from_model,
    DeviceDataLoader,
    default_num_workers,
    get_cv_idxs,
    DataBunch,
    ImageClassifierData,
    URLs,
    DownloadError,
    download_data,
    untar_data,
    FilesDataset,
    ArrayDataset,
    FilesArrayDataset,
    FilesIndexArrayDataset,
    FilesNhotArrayDataset,
    FilesIndexArrayRegressionDataset,
    ArraysDataset,
    ArraysIndexDataset,
    ArraysNhotDataset,
    DataLoader,
    ModelData,
    split_by_idx,
    VideoClassifierData,
    VideoDataBunch,
    ClipSampling,
    kinetics_stats,
    VideoError,
    VideoWarning,
    BadVideoWarning,
    probe_video,
    verify_videos,
)
from .learner import (
    Learner,
    NonFiniteLossError,
)
from .conv_learner import (
    ConvLearner,
    ConvnetBuilder,
)
from .callbacks.base import (
    Callback,
    CancelFit,
    CancelValidate,
    CancelBatch,
)
from .callbacks.schedule import (
    sched_lin,
    sched_cos,
    sched_exp,
    sched_no,
    sched_poly,
)
from .callbacks.phases import (
    DecayType,
    TrainingPhase,
)
from .callbacks.tracking import (
    SaveBest,
    EarlyStopping,
    CycleSnapshot,
)
from .callbacks.checkpoint import (
    SaveEvery,
    CheckpointMismatchError,
)
from .callbacks.recorder import (
    Recorder,
)
from .metrics import (
    f2,
    opt_th,
    accuracy,
    accuracy_np,
    error_rate,
    accuracy_thresh,
    fbeta,
    log_loss,
    precision,
    recall,
    f1,
    accuracy_multi,
    mae,
    mse,
    rmse,
    accuracy_multi_np,
)
from .models import (
    BackboneSpec,
    PretrainedWeightsMissing,
    register_backbone,
    get_backbone,
    registered_backbones,
    create_body,
    create_head,
    AdaptiveConcatPool2d,
    AdaptiveConcatPool3d,
    Flatten,
    Lambda,
    FramesBody,
    r3d_18,
    mc3_18,
    r2plus1d_18,
)
from .models.archs import (
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50,
    resnext101,
    resnext101_32,
    resnext101_64,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
    wrn,
    wide_resnet50_2,
    wide_resnet101_2,
    vgg16,
    vgg19,
    vgg11_bn,
    vgg13_bn,
    vgg16_bn,
    vgg19_bn,
    dn121,
    dn161,
    dn169,
    dn201,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    mobilenet_v2,
    mobilenet_v3_large,
    mobilenet_v3_small,
    efficientnet_b0,
    efficientnet_b1,
    efficientnet_b2,
    efficientnet_b3,
    efficientnet_b4,
    efficientnet_b5,
    efficientnet_b6,
    efficientnet_b7,
    efficientnet_v2_s,
    efficientnet_v2_m,
    efficientnet_v2_l,
    regnet_y_400mf,
    regnet_y_800mf,
    regnet_y_1_6gf,
    regnet_y_3_2gf,
    regnet_y_8gf,
    regnet_y_16gf,
    regnet_y_32gf,
    regnet_x_400mf,
    regnet_x_800mf,
    regnet_x_1_6gf,
    regnet_x_3_2gf,
    regnet_x_8gf,
    regnet_x_16gf,
    regnet_x_32gf,
    convnext_tiny,
    convnext_small,
    convnext_base,
    convnext_large,
    efficientnet_lite0,
)
from .models.zoo import (
    SimpleNet,
    ConvNet,
    ConvLayer,
    ConvNet2,
    BnLayer,
    ConvBnNet,
    ConvBnNet2,
    ResnetLayer,
    Resnet,
    Resnet2,
    LeNet5,
    ResNet9,
    C3D_BN,
)
from .interpret import (
    ClassificationInterpretation,
)
from .data.duplicates import (
    find_duplicates,
    DuplicateReport,
    DuplicateWarning,
)
from .course import (
    to_np,
    T,
    V,
    VV,
    to_gpu,
    children,
    num_cpus,
    SGD_Momentum,
    save_model,
    load_model,
    LazyModule,
    cond_init,
    apply_init,
    plots,
    plots_from_files,
    plots_raw,
    plot_confusion_matrix,
    load_img_id,
    BasicModel,
    SingleModel,
)
from .export import (
    load_learner,
    InferenceLearner,
)
from .persistence import (
    UnsafeCheckpointError,
)
from .core import (
    default_device,
)
from .distributed import (
    is_main_process,
)
from .launch import (
    launch,
)
from .freeze import (
    set_trainable,
    apply_leaf,
)

# Bound after the submodule imports on purpose: importing `learner.optim` (and `learner.metrics`) sets the package
# attribute of that name to the submodule, and the star import reads package attributes. Course code means what
# fastai 0.7's star import gave: torch's optimizers (`optim.Adam`) and scikit-learn's metrics (`metrics.log_loss`).
# Our submodules stay importable by their full names (`from learner.optim import ...`).
optim = torch.optim
metrics = LazyModule('sklearn.metrics', 'scikit-learn')

__version__ = '0.1.0'

# Importing the submodule learner.optim (above, through .learner) bound the package attribute `optim` to it; course
# code's `optim` is torch's (`opt_fn=optim.Adam`), as `from torch import optim` gave before that import.
optim = torch.optim

__all__ = [
    # data
    'open_image', 'verify_images', 'image_files', 'ImageError', 'BadImageWarning', 'Transforms', 'CropType', 'Scale',
    'RandomScale', 'RandomZoom', 'RandomStretch', 'AddPadding', 'RandomCrop', 'CenterCrop', 'NoCrop',
    'GoogleNetResize', 'RandomRotate', 'RandomLighting', 'RandomFlip', 'RandomDihedral', 'RandomRotateZoom',
    'RandomBlur', 'Cutout',
    'transforms_basic', 'transforms_side_on', 'transforms_top_down', 'imagenet_stats', 'inception_stats',
    'cifar_stats', 'tfms_from_stats', 'tfms_from_model', 'DeviceDataLoader', 'default_num_workers',
    'get_cv_idxs', 'DataBunch', 'ImageClassifierData', 'URLs', 'DownloadError', 'download_data', 'untar_data',
    'FilesDataset', 'ArrayDataset', 'FilesArrayDataset', 'FilesIndexArrayDataset', 'FilesNhotArrayDataset',
    'FilesIndexArrayRegressionDataset', 'ArraysDataset', 'ArraysIndexDataset', 'ArraysNhotDataset', 'DataLoader',
    'ModelData', 'split_by_idx',
    # video data
    'VideoClassifierData', 'VideoDataBunch', 'ClipSampling', 'kinetics_stats', 'VideoError', 'VideoWarning',
    'BadVideoWarning', 'probe_video', 'verify_videos',
    # learner
    'Learner', 'NonFiniteLossError',
    # conv_learner
    'ConvLearner', 'ConvnetBuilder',
    # callbacks.base
    'Callback', 'CancelFit', 'CancelValidate', 'CancelBatch',
    # callbacks.schedule, callbacks.phases
    'sched_lin', 'sched_cos', 'sched_exp', 'sched_no', 'sched_poly', 'DecayType', 'TrainingPhase',
    # callbacks.tracking
    'SaveBest', 'EarlyStopping', 'CycleSnapshot', 'SaveEvery', 'CheckpointMismatchError',
    # callbacks.recorder
    'Recorder',
    # metrics
    'accuracy', 'accuracy_np', 'error_rate', 'accuracy_thresh', 'fbeta', 'log_loss', 'precision', 'recall',
    'f1', 'accuracy_multi', 'accuracy_multi_np', 'f2', 'opt_th', 'mae', 'mse', 'rmse',
    # models
    'BackboneSpec', 'PretrainedWeightsMissing', 'register_backbone', 'get_backbone', 'registered_backbones',
    'create_body', 'create_head', 'AdaptiveConcatPool2d', 'AdaptiveConcatPool3d', 'Flatten', 'Lambda',
    # models.video
    'FramesBody', 'r3d_18', 'mc3_18', 'r2plus1d_18',
    # models.archs
    'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50', 'resnext101', 'resnext101_32', 'resnext101_64',
    'resnext50_32x4d', 'resnext101_32x8d', 'resnext101_64x4d', 'wrn', 'wide_resnet50_2', 'wide_resnet101_2',
    'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn', 'dn121', 'dn161', 'dn169', 'dn201',
    'densenet121', 'densenet161', 'densenet169', 'densenet201', 'mobilenet_v2', 'mobilenet_v3_large',
    'mobilenet_v3_small', 'efficientnet_b0', 'efficientnet_b1', 'efficientnet_b2', 'efficientnet_b3',
    'efficientnet_b4', 'efficientnet_b5', 'efficientnet_b6', 'efficientnet_b7', 'efficientnet_v2_s',
    'efficientnet_v2_m', 'efficientnet_v2_l', 'regnet_y_400mf', 'regnet_y_800mf', 'regnet_y_1_6gf',
    'regnet_y_3_2gf', 'regnet_y_8gf', 'regnet_y_16gf', 'regnet_y_32gf', 'regnet_x_400mf', 'regnet_x_800mf',
    'regnet_x_1_6gf', 'regnet_x_3_2gf', 'regnet_x_8gf', 'regnet_x_16gf', 'regnet_x_32gf', 'convnext_tiny',
    'convnext_small', 'convnext_base', 'convnext_large', 'efficientnet_lite0',
    # models.zoo: the posts' networks
    'SimpleNet', 'ConvNet', 'ConvLayer', 'ConvNet2', 'BnLayer', 'ConvBnNet', 'ConvBnNet2', 'ResnetLayer', 'Resnet',
    'Resnet2', 'LeNet5', 'ResNet9', 'C3D_BN',
    # interpret, duplicates
    'ClassificationInterpretation', 'find_duplicates', 'DuplicateReport', 'DuplicateWarning',
    # course: fastai 0.7's helpers and the modules its star import gave
    'to_np', 'T', 'V', 'VV', 'plots', 'plots_from_files', 'plots_raw', 'plot_confusion_matrix', 'load_img_id',
    'BasicModel', 'SingleModel', 'to_gpu', 'children', 'num_cpus', 'SGD_Momentum', 'save_model', 'load_model',
    'set_trainable', 'apply_leaf', 'cond_init', 'apply_init',
    'np', 'os', 'torch', 'nn', 'F', 'optim', 'plt', 'PIL', 'Image', 'Path', 'glob', 'partial', 'Variable', 'metrics',
    # export
    'load_learner', 'InferenceLearner',
    # persistence
    'UnsafeCheckpointError',
    # core, distributed
    'default_device', 'is_main_process', 'launch',
]

COURSE_MODULES = ('np', 'os', 'torch', 'nn', 'F', 'optim', 'plt', 'PIL', 'Image', 'metrics') + (
    ('pd',) if _importlib_util.find_spec('pandas') is not None else ())
if 'pd' in COURSE_MODULES:
    __all__.append('pd')
HAS_IPYTHON = _importlib_util.find_spec('IPython') is not None
if HAS_IPYTHON:
    __all__.append('FileLink')   # fastai 0.7's star import re-exported IPython's (a link to a file in a notebook)


def __getattr__(name: str):
    """`plt`, `pd` and `FileLink` are imported on first use (pyplot, pandas and IPython take a while to import and
    are not always needed); `from learner import *` asks for them, so course code gets them."""
    if name == 'plt':
        import matplotlib.pyplot as plt
        return plt
    if name == 'pd' and 'pd' in COURSE_MODULES:
        import pandas as pd
        return pd
    if name == 'FileLink' and HAS_IPYTHON:
        from IPython.display import FileLink
        return FileLink
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
