"""Backbones (registry, weights, body cut and split), the 0.7 classifier head, EfficientNet-Lite0, architecture names."""
from .backbones import (IMAGENET_STATS, BackboneSpec, PretrainedWeightsMissing, body_groups, create_body,
                        get_backbone, num_features, register_backbone, registered_backbones, split_by_stride,
                        weights_folder)
from .efficientnet_lite import EfficientNetLite, efficientnet_lite0
from .heads import HEAD_POOL_LAYERS, AdaptiveConcatPool2d, AdaptiveConcatPool3d, Flatten, Lambda, create_head
from .video import FramesBody, mc3_18, r2plus1d_18, r3d_18, takes_clips

__all__ = ['BackboneSpec', 'PretrainedWeightsMissing', 'register_backbone', 'get_backbone', 'registered_backbones',
           'create_body', 'body_groups', 'num_features', 'split_by_stride', 'weights_folder', 'IMAGENET_STATS',
           'AdaptiveConcatPool2d', 'AdaptiveConcatPool3d', 'Flatten', 'Lambda', 'create_head', 'HEAD_POOL_LAYERS',
           'FramesBody', 'takes_clips', 'r3d_18', 'mc3_18', 'r2plus1d_18',
           'EfficientNetLite', 'efficientnet_lite0']
