"""Video data in the image API: clip sampling, one random draw per clip for the 0.7 transforms, VideoClassifierData
from folders, frame folders and a CSV, loaders of clips, and the warnings and errors about bad videos."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from learner import (C3D_BN, CenterCrop, ClipSampling, Cutout, RandomBlur, RandomCrop, RandomDihedral, RandomFlip,
                     RandomLighting, RandomRotate, RandomRotateZoom, RandomScale, RandomZoom, Transforms,
                     VideoClassifierData, VideoError, VideoWarning, BadVideoWarning, kinetics_stats, r3d_18,
                     tfms_from_model, tfms_from_stats, transforms_side_on)
from learner.data.normalize import Normalize
from learner.data.video import clip_indices

from _video_helpers import frame_numbers, numbered_frames, tiny_motion, write_video


def test_clip_sampling_evenly_spaced_random_and_looped():
    s = ClipSampling(frames_per_clip=4, stride=2, n_clips=3)
    assert s.span == 7 and s.clips_per_item == 3
    assert s.starts(37) == [5, 15, 25]                     # centres of 3 equal parts of the 31 possible starts
    assert ClipSampling(4, 2, 1).starts(37) == [15]        # one clip: the middle one
    torch.manual_seed(0)
    random = ClipSampling(4, 2, 3, random=True)
    starts = {random.starts(37)[0] for _ in range(300)}
    assert random.clips_per_item == 1 and starts == set(range(31))   # every start that keeps the clip inside
    assert clip_indices(5, 0, s).tolist() == [0, 2, 4, 1]  # a short video loops
    for bad in ({'frames_per_clip': 0}, {'stride': 1.5}, {'n_clips': True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ClipSampling(**bad)


AUGMENTS = [RandomScale(40, 1.3), RandomRotate(15), RandomLighting(0.2, 0.2), RandomFlip(), RandomDihedral(),
            RandomZoom(0.3), RandomRotateZoom(10, 0.2, 0.2), RandomBlur([2, 4], 0.5), Cutout(2, 8, p=1.0),
            RandomCrop(32)]


@pytest.mark.parametrize('tfm', AUGMENTS, ids=lambda t: type(t).__name__)
def test_each_0_7_transform_draws_once_per_clip(tfm):
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    clip = image.expand(6, 3, 40, 40).clone()             # 6 identical frames
    outs = [tfm(clip) for _ in range(8)]
    for out in outs:
        assert out.shape[0] == 6 and all(torch.equal(out[0], out[t]) for t in range(6))   # the same for every frame
    assert any(not torch.equal(outs[0], o) for o in outs[1:])   # and a new draw for the next clip


def test_a_pipeline_from_tfms_from_stats_keeps_frames_aligned_and_normalizes_with_kinetics_stats():
    trn, val = tfms_from_model(r3d_18, 32, aug_tfms=transforms_side_on, max_zoom=1.2)
    assert np.allclose(trn.stats[0], kinetics_stats[0]) and np.allclose(trn.stats[1], kinetics_stats[1])
    assert np.allclose(tfms_from_model(C3D_BN, 112)[1].stats[1], kinetics_stats[1])      # the seed's network too
    torch.manual_seed(1)
    frames = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8).expand(5, 3, 48, 64).clone()
    out = trn(frames)
    assert out.shape == (5, 3, 32, 32) and all(torch.equal(out[0], out[t]) for t in range(5))
    clips = torch.stack([out.permute(1, 0, 2, 3)] * 2)   # (B, C, T, H, W)
    normalized = trn.normalize(clips)
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1, 1) for v in kinetics_stats)
    assert torch.allclose(normalized, (clips.float() / 255 - mean) / std, atol=1e-5)
    back = Normalize(kinetics_stats).denorm(normalized)
    assert back.shape == (2, 5, 32, 32, 3) and np.allclose(back * 255, clips.permute(0, 2, 3, 4, 1).numpy(), atol=1e-3)


@pytest.fixture(scope='module')
def motion(tmp_path_factory):
    return tiny_motion(tmp_path_factory.mktemp('video_data'), n_train=4, n_valid=3, n_frames=20)


def test_from_paths_loaders_give_clips_and_one_row_per_video_in_validation(motion):
    data = VideoClassifierData.from_paths(motion, tfms=tfms_from_stats(kinetics_stats, 24), bs=6,
                                          frames_per_clip=8, stride=2, clips_per_video=3, num_workers=0)
    assert data.classes == ['down', 'left', 'right', 'up'] and data.c == 4 and data.sz == 24
    assert (data.frames_per_clip, data.stride, data.clips_per_video) == (8, 2, 3)
    assert len(data.trn_ds) == 16 and len(data.val_ds) == 12
    assert data.trn_ds.fnames[0] == 'train/down/down_0000.mp4' and data.trn_ds.fnames[1].endswith('.webm')
    x, y = next(iter(data.trn_dl))
    assert x.shape == (6, 3, 8, 24, 24) and x.dtype == torch.float32 and y.shape == (6,)
    assert data.trn_dl.clips_per_item == 1 and data.val_dl.clips_per_item == 3
    x, y = next(iter(data.val_dl))
    assert x.shape == (6, 3, 8, 24, 24) and y.tolist() == [0, 0]   # bs counts clips: 2 videos of 3 clips
    assert abs(float(x.mean())) < 1.5                               # normalized
    first, _ = data.val_ds.item_uint8(0)
    assert first.shape == (3, 3, 8, 24, 24) and first.dtype == torch.uint8
    fixed = [data.fix_dl.dataset.item_uint8(5)[0] for _ in range(2)]   # training videos, evaluation clips
    assert fixed[0].shape == (3, 3, 8, 24, 24) and torch.equal(*fixed)
    assert data.aug_dl.clips_per_item == 3
    fig = data.show_batch(rows=2, n_frames=4)
    assert len(fig.axes) == 8


def test_frame_folders_and_files_mix_and_from_csv_reads_both(tmp_path):
    for k, (split, cls) in enumerate([(s, c) for s in ('train', 'valid') for c in ('a', 'b')]):
        folder = tmp_path / split / cls
        folder.mkdir(parents=True)
        write_video(folder / 'v0.mp4', np.roll(numbered_frames(12, 32, 32), k, axis=2))   # different files
        frames = folder / 'v1'
        frames.mkdir()
        for i, frame in enumerate(numbered_frames(12, 32, 32)):
            Image.fromarray(frame).save(frames / f'{i + 1:05d}.jpg', quality=95)
    data = VideoClassifierData.from_paths(tmp_path, tfms=tfms_from_stats(kinetics_stats, 32), bs=4,
                                          frames_per_clip=4, clips_per_video=1, num_workers=0)
    assert data.trn_ds.fnames == ['train/a/v0.mp4', 'train/a/v1', 'train/b/v0.mp4', 'train/b/v1']
    clip, _ = data.val_ds.item_uint8(1)                     # the frame folder: the middle 4 frames, in order
    assert frame_numbers(clip.permute(1, 2, 3, 0).numpy()) == [4, 5, 6, 7]
    (tmp_path / 'labels.csv').write_text('id,label\ntrain/a/v0.mp4,a\ntrain/a/v1,a\ntrain/b/v0.mp4,b\n'
                                         'train/b/v1,b\nvalid/a/v1,a\nvalid/b/v0.mp4,b\n')
    csv = VideoClassifierData.from_csv(tmp_path, '.', tmp_path / 'labels.csv', val_idxs=[4, 5], bs=10,
                                       tfms=tfms_from_stats(kinetics_stats, 32), frames_per_clip=4, num_workers=0)
    assert len(csv.trn_ds) == 4 and csv.val_ds.fnames == ['valid/a/v1', 'valid/b/v0.mp4']
    assert next(iter(csv.val_dl))[0].shape == (10, 3, 4, 32, 32)   # 5 clips of each of the 2 videos
    with pytest.raises(FileNotFoundError, match='line 2'):
        (tmp_path / 'bad.csv').write_text('id,label\nnope.mp4,a\n')
        VideoClassifierData.from_csv(tmp_path, '.', tmp_path / 'bad.csv', num_workers=0)


def _two_class_tree(root, bad: dict):
    for k, (split, cls) in enumerate([(s, c) for s in ('train', 'valid') for c in ('a', 'b')]):
        folder = root / split / cls
        folder.mkdir(parents=True)
        write_video(folder / 'good.mp4', np.roll(numbered_frames(24, 32, 32), k, axis=2))   # 4 different files
    for name, content in bad.items():
        (root / 'train' / 'a' / name).write_bytes(content)
    return root


def test_one_class_is_refused_as_for_images(tmp_path):
    folder = tmp_path / 'train' / 'only'
    folder.mkdir(parents=True)
    write_video(folder / 'v.mp4', numbered_frames(8, 32, 32))
    with pytest.raises(ValueError, match='only the class .only.*at least 2 classes'):
        VideoClassifierData.from_paths(tmp_path, num_workers=0)


def test_unusable_videos_are_all_listed_before_training_or_skipped(tmp_path):
    root = _two_class_tree(tmp_path, {'empty.mp4': b'', 'junk.webm': b'\x00junk' * 40})
    with pytest.raises(VideoError) as info:
        VideoClassifierData.from_paths(root, tfms=tfms_from_stats(kinetics_stats, 32), num_workers=0)
    message = str(info.value)
    assert '2 unusable video(s)' in message and 'train/a/empty.mp4' in message and 'train/a/junk.webm' in message
    assert 'skip_bad=True' in message and str(tmp_path) not in message   # names as the user typed them
    with pytest.warns(UserWarning, match='skipping 2 unusable'):
        data = VideoClassifierData.from_paths(root, tfms=tfms_from_stats(kinetics_stats, 32), num_workers=0,
                                              skip_bad=True)
    assert data.trn_ds.fnames == ['train/a/good.mp4', 'train/b/good.mp4']


def test_short_videos_loop_with_one_warning_naming_them(tmp_path):
    root = _two_class_tree(tmp_path, {})
    write_video(root / 'train' / 'b' / 'short.mp4', numbered_frames(5, 32, 32))
    with pytest.warns(VideoWarning, match='1 video.* fewer frames than a clip spans .16.*short.mp4 .5.'):
        data = VideoClassifierData.from_paths(root, tfms=tfms_from_stats(kinetics_stats, 32), num_workers=0,
                                              clips_per_video=1)
    clip, _ = data.fix_dl.dataset.item_uint8(2)
    assert frame_numbers(clip.permute(1, 2, 3, 0).numpy()) == [i % 5 for i in range(16)]


def test_a_truncated_video_never_ends_an_epoch_and_is_named(tmp_path):
    root = _two_class_tree(tmp_path, {})
    whole = write_video(tmp_path / 'whole.mp4', numbered_frames(48, 32, 32), faststart=True).read_bytes()
    (root / 'train' / 'b' / 'cut.mp4').write_bytes(whole[:len(whole) // 2])
    data = VideoClassifierData.from_paths(root, tfms=tfms_from_stats(kinetics_stats, 32), bs=3, num_workers=0,
                                          frames_per_clip=8, clips_per_video=2)
    data.trn_ds.sampling = ClipSampling(8, 1, 1, random=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.manual_seed(0)
        batches = [x for _ in range(4) for x, _ in data.trn_dl]   # late clips of the cut file hit its end
    assert all(x.shape[1:] == (3, 8, 32, 32) for x in batches)
    bad = [w for w in caught if issubclass(w.category, BadVideoWarning)]
    assert len(bad) == 1 and 'train/b/cut.mp4' in str(bad[0].message) and 'truncated' in str(bad[0].message)
    data.strict = True
    with pytest.raises(VideoError, match='cut.mp4'):
        for _ in range(4):
            for _ in data.trn_dl:
                pass


def test_strict_counts_in_worker_processes_that_already_ran(tmp_path):
    """Persistent loader workers hold copies of the data sets: `data.strict = True` after a pass must reach them."""
    root = _two_class_tree(tmp_path, {})
    whole = write_video(tmp_path / 'whole.mp4', numbered_frames(48, 32, 32), faststart=True).read_bytes()
    (root / 'train' / 'b' / 'cut.mp4').write_bytes(whole[:len(whole) // 2])
    data = VideoClassifierData.from_paths(root, tfms=tfms_from_stats(kinetics_stats, 32), bs=3, num_workers=2,
                                          frames_per_clip=8, clips_per_video=2)
    data.trn_ds.sampling = ClipSampling(8, 1, 1, random=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for x, _ in data.trn_dl:        # the workers start, with strict off
            pass
    data.strict = True
    with pytest.raises(VideoError, match='cut.mp4'):
        for _ in range(4):
            for _ in data.trn_dl:
                pass
    data.close()


def test_variable_frame_rate_videos_are_named_in_one_warning(tmp_path):
    root = _two_class_tree(tmp_path, {})
    times = np.cumsum([0] + [80 if i % 2 else 40 for i in range(29)]).tolist()
    write_video(root / 'valid' / 'a' / 'phone.mp4', numbered_frames(30, 32, 32), frame_ms=times)
    with pytest.warns(VideoWarning, match='1 video.* variable frame rate.*valid/a/phone.mp4'):
        VideoClassifierData.from_paths(root, tfms=tfms_from_stats(kinetics_stats, 32), num_workers=0,
                                       frames_per_clip=8)


def test_videos_have_no_on_disk_resize_and_images_are_refused_by_video_networks(motion):
    data = VideoClassifierData.from_paths(motion, tfms=tfms_from_stats(kinetics_stats, 24), frames_per_clip=8,
                                          num_workers=0)
    with pytest.raises(TypeError, match='with_size'):
        data.resize(16)
    smaller = data.with_size(16)
    assert next(iter(smaller.trn_dl))[0].shape[-3:] == (8, 16, 16)
    assert isinstance(smaller, VideoClassifierData) and smaller.clips_per_video == data.clips_per_video
    center = Transforms([CenterCrop(16)], 16)
    assert center(torch.zeros(4, 3, 24, 30, dtype=torch.uint8)).shape == (4, 3, 16, 16)
