"""Video networks through the image API: torchvision's video ResNets loaded from TORCH_HOME (the real loading path),
the offline error, the head swap, layer groups and freezing, a 2D body over frames, clip averaging, precompute."""
from __future__ import annotations

import os
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from learner import (AdaptiveConcatPool3d, ConvLearner, accuracy, FramesBody, ImageClassifierData, Learner,
                     PretrainedWeightsMissing, VideoClassifierData, kinetics_stats, mc3_18, r2plus1d_18, r3d_18,
                     resnet18, tfms_from_model)
from learner.freeze import BN_TYPES
from learner.inference import average_clips

from _video_helpers import tiny_motion


@pytest.fixture(scope='module')
def motion(tmp_path_factory):
    return tiny_motion(tmp_path_factory.mktemp('video_models'), n_train=3, n_valid=2, n_frames=12)


def video_data(root, sz=16, frames=4, **kw):
    kw.setdefault('clips_per_video', 2)
    return VideoClassifierData.from_paths(root, tfms=tfms_from_model(r3d_18, sz), bs=4, frames_per_clip=frames,
                                          num_workers=0, **kw)


@pytest.mark.parametrize('builder', [r3d_18, mc3_18, r2plus1d_18], ids=lambda b: b.__name__)
def test_kinetics_weights_load_from_torch_home_under_torchvision_file_name(builder, torch_home, motion):
    torch.manual_seed(0)
    reference = builder().state_dict()                       # random weights, saved where torchvision looks
    weights = torchvision.models.get_model_weights(builder).KINETICS400_V1
    torch.save(reference, torch_home / os.path.basename(weights.url))
    learn = ConvLearner.pretrained(builder, video_data(motion), progress=False)
    body = learn.body.state_dict()
    assert all(torch.equal(body[key], reference[key.replace('0.', 'stem.', 1) if key.startswith('0.') else
                                               f'layer{key[0]}.{key[2:]}']) for key in body)
    assert isinstance(learn.head[0], AdaptiveConcatPool3d) and learn.head[-1].out_features == 4   # head swapped
    assert len(learn.layer_groups) == 3 and learn.n_frozen == 2
    frozen = [p for g in learn.layer_groups[:2] for m in g.modules() if not isinstance(m, BN_TYPES)
              for p in m.parameters(recurse=False)]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in learn.layer_groups[2].parameters())


def test_missing_video_weights_offline_name_the_file_and_the_alternative(torch_home, monkeypatch, motion):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(f'offline: cannot reach {url}')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    with pytest.raises(PretrainedWeightsMissing) as info:
        ConvLearner.pretrained(r3d_18, video_data(motion), progress=False)
    assert 'r3d_18-b3b3357e.pth' in str(info.value) and 'pretrained=False' in str(info.value)
    assert str(torch_home) in str(info.value)


def test_a_video_network_refuses_image_data_and_tfms_from_model_picks_kinetics_stats(tmp_path, motion):
    from _serve_helpers import make_color_folders
    images = ImageClassifierData.from_paths(make_color_folders(tmp_path / 'img', 2, 1), bs=2, num_workers=0,
                                            tfms=tfms_from_model(resnet18, 32))
    with pytest.raises(ValueError, match='r3d_18 is a video network.*VideoClassifierData'):
        ConvLearner.pretrained(r3d_18, images, pretrained=False)
    assert np.allclose(video_data(motion).stats[0], kinetics_stats[0])


def test_a_2d_backbone_runs_on_every_frame_and_the_head_pools_over_time(motion):
    torch.manual_seed(0)
    data = video_data(motion)
    learn = ConvLearner.pretrained(resnet18, data, pretrained=False, progress=False)
    assert isinstance(learn.body, FramesBody) and len(learn.layer_groups) == 3
    x = torch.randn(2, 3, 4, 16, 16)
    learn.model.eval()
    with torch.no_grad():
        volume = learn.body(x)                                   # (B, F, T, h, w)
        per_frame = torch.stack([learn.body.body(x[:, :, t]) for t in range(4)], 2)
    assert volume.shape == (2, 512, 4, 1, 1) and torch.allclose(volume, per_frame, atol=1e-5)
    shuffled = x[:, :, torch.tensor([2, 0, 3, 1])]               # pooled over time: the order does not count
    with torch.no_grad():
        assert torch.allclose(learn.model(x), learn.model(shuffled), atol=1e-4)


def test_clip_predictions_average_as_probabilities():
    torch.manual_seed(0)
    out = torch.randn(6, 3)                                      # 2 videos x 3 clips
    single = average_clips(out, 3, 'single')
    assert torch.allclose(single.exp(), out.softmax(-1).view(2, 3, 3).mean(1), atol=1e-6)
    assert torch.allclose(torch.sigmoid(average_clips(out, 3, 'multi')), torch.sigmoid(out).view(2, 3, 3).mean(1),
                          atol=1e-5)
    assert torch.allclose(average_clips(out, 3, 'regression'), out.view(2, 3, 3).mean(1))
    assert average_clips(out, 1, 'single') is out
    with pytest.raises(ValueError, match='groups of 4'):
        average_clips(out, 4, 'single')


def test_validation_metrics_and_predictions_are_per_video(motion):
    torch.manual_seed(0)
    data = video_data(motion, clips_per_video=3)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 4))
    learn = Learner(data, model, metrics=[accuracy], progress=False)
    log_preds, y = learn.predict_with_targs()
    assert log_preds.shape == (8, 4) and y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]     # one row per video
    model = learn.model.eval()
    with torch.no_grad():
        clips = torch.cat([torch.as_tensor(data.val_ds[i][0]) for i in range(8)])    # (8*3, C, T, H, W)
        manual = model(clips).softmax(-1).view(8, 3, 4).mean(1)
    assert np.allclose(np.exp(log_preds), manual.numpy(), atol=1e-5)
    loss, acc = learn.fit(1e-3, 1)[0], learn.recorder.metrics[-1][0]
    assert np.isfinite(loss) and acc in {k / 8 for k in range(9)}                    # accuracy over 8 videos
    preds, _ = learn.TTA(n_aug=1)
    assert preds.shape == (2, 8, 4)


def test_precompute_caches_every_clip_and_matches_the_whole_model(motion, tmp_path):
    torch.manual_seed(0)
    data = video_data(motion, clips_per_video=2)
    learn = ConvLearner.pretrained(mc3_18, data, pretrained=False, progress=False, precompute=True)
    learn.precompute_cache_dir = tmp_path / 'cache'
    learn.precompute = False
    learn.precompute = True
    learn.fit(1e-2, 1)                                            # the head trains on cached clip features
    cached, y = learn.predict_with_targs()
    stage = learn.stage()
    assert stage.train.clips_per_item == 2 and next(iter(stage.train))[0].shape == (4, 1024)   # 2 videos x 2 clips
    learn.precompute = False
    whole, y2 = learn.predict_with_targs()
    assert cached.shape == (8, 4) and np.array_equal(y, y2)
    assert np.allclose(cached, whole, atol=1e-4)                  # the same clips through the whole model
