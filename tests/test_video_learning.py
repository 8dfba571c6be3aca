"""The acceptance task in small: on videos only motion can tell apart (data/make_motion.py), the seed's C3D_BN learns
the direction while a model that sees one frame stays at chance. (benchmarks/video_motion.py runs it in full, with
the frame-pooling baseline and r3d_18.)"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from learner import (C3D_BN, ClassificationInterpretation, ConvLearner, Learner, VideoClassifierData, accuracy,
                     accuracy_np, kinetics_stats, mobilenet_v3_small, tfms_from_stats)

from _video_helpers import make_motion_module, need_av, tiny_motion


@pytest.fixture(scope='module')
def motion(tmp_path_factory):
    return tiny_motion(tmp_path_factory.mktemp('video_learning'), n_train=50, n_valid=10, size=32, n_frames=20)


def test_every_frame_is_ambiguous_by_construction():
    """Where the shape is in a frame is spread evenly over the frame, the same for every class, at any frame."""
    need_av()
    motion = make_motion_module()
    rng = np.random.default_rng(0)
    occupancy = {}
    for cls in motion.CLASSES:
        masks = np.stack([motion.frames(cls, 32, 6, rng)[[0, 5]].sum(-1) > 400 for _ in range(300)])   # (N, 2, H, W)
        blocks = masks.reshape(300, 2, 4, 8, 4, 8).mean((0, 3, 5))       # mean cover of 8x8 blocks, frames 0 and 5
        occupancy[cls] = blocks
    everything = np.stack(list(occupancy.values()))
    assert everything.std() < 0.25 * everything.mean()                   # flat over the frame, classes, frames
    left = motion.frames('left', 32, 3, np.random.default_rng(1)).astype(np.float64)
    columns = [np.nonzero(f.sum(-1).mean(0) > 150)[0] for f in left]
    assert len(columns[0]) and not np.array_equal(columns[0], columns[2])   # and it does move


@pytest.mark.slow
def test_c3d_bn_learns_the_direction_a_one_frame_model_cannot(motion):
    warnings.simplefilter('ignore')
    torch.manual_seed(0)
    # 32 px videos decoded to 24 px: the shape moves 1 to 1.5 pixels a frame (C3D_BN trains in about a CPU minute)
    data = VideoClassifierData.from_paths(motion, tfms=tfms_from_stats(kinetics_stats, 24), bs=16, frames_per_clip=16,
                                          clips_per_video=2, num_workers=0)
    c3d = Learner(data, C3D_BN(data.c, width=8, n_hidden=32, n_frames=16, sz=24), opt_fn=torch.optim.Adam,
                  metrics=[accuracy], progress=False)
    c3d.fit_one_cycle(3, max_lr=3e-3)
    log_preds, y = c3d.predict_with_targs()
    assert len(y) == 40 and accuracy_np(np.exp(log_preds), y) > 0.9     # per video, 2 clips averaged

    torch.manual_seed(0)
    one_frame = VideoClassifierData.from_paths(motion, tfms=tfms_from_stats(kinetics_stats, 24), bs=16,
                                               frames_per_clip=1, clips_per_video=2, num_workers=0)
    frame = ConvLearner.pretrained(mobilenet_v3_small, one_frame, pretrained=False, opt_fn=torch.optim.Adam,
                                   progress=False)
    frame.unfreeze()
    frame.fit_one_cycle(3, max_lr=3e-3)
    log_preds, y = frame.predict_with_targs()
    assert accuracy_np(np.exp(log_preds), y) < 0.5                       # chance is 0.25

    interp = ClassificationInterpretation.from_learner(c3d)
    fig = interp.plot_top_losses(3)                                       # strips of frames of the worst clips
    assert len(fig.axes) == 3 * 8 and fig.axes[0].images
