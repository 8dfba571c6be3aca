"""learner: fastai-style image classification on PyTorch and torchvision.

`from learner import *` gives exactly the names in `__all__` below: the data pipeline, the learners, callbacks,
metrics, the architecture names course code types (`resnet34`, `dn121`, `efficientnet_lite0`, ...) and
interpretation. Everything else lives in the submodules.

Example:
    >>> from learner import *
    >>> tfms = tfms_from_model(resnet34, 224, aug_tfms=transforms_side_on, max_zoom=1.1)
    >>> data = ImageClassifierData.from_paths(PATH, tfms=tfms, bs=64)
    >>> learn = ConvLearner.pretrained(resnet34, data, precompute=True)
    >>> learn.fit(1e-2, 3, cycle_len=1)
"""

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
)
from .learner import (
    Learner,
    NonFiniteLossError,
)
from .conv_learner import (
    ConvLearner,
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
    Flatten,
)
from .models.archs import (
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50,
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
from .interpret import (
    ClassificationInterpretation,
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

__version__ = '0.1.0'

__all__ = [
    # data
    'open_image', 'verify_images', 'image_files', 'ImageError', 'BadImageWarning', 'Transforms', 'CropType', 'Scale',
    'RandomScale', 'RandomZoom', 'RandomStretch', 'AddPadding', 'RandomCrop', 'CenterCrop', 'NoCrop',
    'GoogleNetResize', 'RandomRotate', 'RandomLighting', 'RandomFlip', 'RandomDihedral', 'RandomBlur', 'Cutout',
    'transforms_basic', 'transforms_side_on', 'transforms_top_down', 'imagenet_stats', 'inception_stats',
    'cifar_stats', 'tfms_from_stats', 'tfms_from_model', 'DeviceDataLoader', 'default_num_workers',
    'get_cv_idxs', 'DataBunch', 'ImageClassifierData', 'URLs', 'DownloadError', 'download_data', 'untar_data',
    'FilesDataset', 'ArrayDataset',
    # learner
    'Learner', 'NonFiniteLossError',
    # conv_learner
    'ConvLearner',
    # callbacks.base
    'Callback', 'CancelFit', 'CancelValidate', 'CancelBatch',
    # callbacks.schedule
    'sched_lin', 'sched_cos', 'sched_exp', 'sched_no',
    # callbacks.tracking
    'SaveBest', 'EarlyStopping', 'CycleSnapshot', 'SaveEvery', 'CheckpointMismatchError',
    # callbacks.recorder
    'Recorder',
    # metrics
    'accuracy', 'accuracy_np', 'error_rate', 'accuracy_thresh', 'fbeta', 'log_loss', 'precision', 'recall',
    'f1', 'accuracy_multi',
    # models
    'BackboneSpec', 'PretrainedWeightsMissing', 'register_backbone', 'get_backbone', 'registered_backbones',
    'create_body', 'create_head', 'AdaptiveConcatPool2d', 'Flatten',
    # models.archs
    'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50', 'resnext101_32', 'resnext101_64',
    'resnext50_32x4d', 'resnext101_32x8d', 'resnext101_64x4d', 'wrn', 'wide_resnet50_2', 'wide_resnet101_2',
    'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn', 'dn121', 'dn161', 'dn169', 'dn201',
    'densenet121', 'densenet161', 'densenet169', 'densenet201', 'mobilenet_v2', 'mobilenet_v3_large',
    'mobilenet_v3_small', 'efficientnet_b0', 'efficientnet_b1', 'efficientnet_b2', 'efficientnet_b3',
    'efficientnet_b4', 'efficientnet_b5', 'efficientnet_b6', 'efficientnet_b7', 'efficientnet_v2_s',
    'efficientnet_v2_m', 'efficientnet_v2_l', 'regnet_y_400mf', 'regnet_y_800mf', 'regnet_y_1_6gf',
    'regnet_y_3_2gf', 'regnet_y_8gf', 'regnet_y_16gf', 'regnet_y_32gf', 'regnet_x_400mf', 'regnet_x_800mf',
    'regnet_x_1_6gf', 'regnet_x_3_2gf', 'regnet_x_8gf', 'regnet_x_16gf', 'regnet_x_32gf', 'convnext_tiny',
    'convnext_small', 'convnext_base', 'convnext_large', 'efficientnet_lite0',
    # interpret
    'ClassificationInterpretation',
    # export
    'load_learner', 'InferenceLearner',
    # persistence
    'UnsafeCheckpointError',
    # core
    'default_device',
]
