"""Video networks for `ConvLearner.pretrained`: torchvision's Kinetics-400 video ResNets as registered backbones, and
`FramesBody`, any 2D backbone run on every frame of a clip (the cheap baseline).

The seed post's `C3D_BN` lives with the posts' other networks in `zoo.py`; train it with `Learner(data, C3D_BN(c))`.

torchvision's video ResNets (Tran et al. 2018) take (B, 3, T, H, W) clips normalized with the Kinetics statistics
(`kinetics_stats`, which `tfms_from_model(r3d_18, 112)` picks up from their weights):
  * `r3d_18`: 3D convolutions throughout;
  * `mc3_18`: 3D convolutions in the stem and first stage, 2D above (mixed convolutions);
  * `r2plus1d_18`: every 3D convolution split into a 2D spatial and a 1D temporal one.
Their weights load as torchvision loads them, from `$TORCH_HOME/hub/checkpoints/<file>` (r3d_18-b3b3357e.pth,
mc3_18-a90a0ba3.pth, r2plus1d_18-91a641e6.pth), downloading when absent; offline without the file,
`PretrainedWeightsMissing` names the file, as for images. The body is the stem and the four stages; its layer
groups split as an image ResNet's: [stem, layer1, layer2] and [layer3, layer4], then the head.

`FramesBody`: with video data, `ConvLearner.pretrained(resnet34, data)` runs the 2D body on each of the T frames and
hands the head a (B, F, T, h, w) volume; the head's `AdaptiveConcatPool3d` then pools over time as well as space
(max and mean), so the model sees which things appear, not in which order. It is the baseline a 3D network has to
beat, and with `frames_per_clip=1` it is a one-frame image model.

Example:
    >>> data = VideoClassifierData.from_paths(PATH, tfms=tfms_from_model(r3d_18, 112), frames_per_clip=16)
    >>> learn = ConvLearner.pretrained(r3d_18, data)
"""
from __future__ import annotations

import torch
import torchvision
import torchvision.models.video as _tvv
from torch import nn

from .backbones import BackboneSpec, is_video_body, register_backbone

__all__ = ['r3d_18', 'mc3_18', 'r2plus1d_18', 'FramesBody', 'takes_clips', 'video_resnet_split']

r3d_18, mc3_18, r2plus1d_18 = _tvv.r3d_18, _tvv.mc3_18, _tvv.r2plus1d_18


class FramesBody(nn.Module):
    """A 2D body run on every frame: (B, C, T, H, W) clips -> (B, F, T, h, w) feature volumes.

    Args:
        body: the 2D body (its only child, so it keeps its own layer groups and feature count).
    """

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)               # (B*T, C, H, W)
        out = self.body(frames)                                           # (B*T, F, h, w)
        return out.reshape(b, t, *out.shape[1:]).transpose(1, 2)           # (B, F, T, h, w)


def takes_clips(body: nn.Module) -> bool:
    """True for a body that takes (B, C, T, H, W) clips: a 3D network's, or a `FramesBody`."""
    return isinstance(body, FramesBody) or is_video_body(body)


def video_resnet_split(body: nn.Module) -> list[nn.Sequential]:
    """[stem, layer1, layer2] and [layer3, layer4]: the split of an image ResNet, for torchvision's video ResNets."""
    children = list(body.children())
    if len(children) != 5:
        raise ValueError(f'expected a video ResNet body of 5 children (stem, layer1..layer4), got {len(children)}')
    return [nn.Sequential(*children[:3]), nn.Sequential(*children[3:])]


for _builder in (r3d_18, mc3_18, r2plus1d_18):
    register_backbone(BackboneSpec(_builder.__name__, _builder, torchvision.models.get_model_weights(_builder).KINETICS400_V1,
                                   cut=-2, split=video_resnet_split))
