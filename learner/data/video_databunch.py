"""VideoClassifierData (= VideoDataBunch): video files or frame folders in the same API as images: `from_paths`
(train/<class>/<video>), `from_csv` (a labels CSV), loaders of clips, `show_batch`, TTA and precompute loaders.

Building one probes every video's header (frame count, rate, size; about a millisecond a file, in threads) and
refuses, in one `VideoError` that lists them all, the files that cannot be used: missing, empty, not a video, no
video stream, no frames. `skip_bad=True` instead decodes the first and last frames of each video and leaves the bad
ones out with a warning. Videos shorter than a clip (looped) and videos with a variable frame rate (sampled evenly
in time) are named in one `VideoWarning` each. Frames that break later (a truncated or corrupt stream) never end an
epoch: see `VideoDataset`.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .databunch import DataBunch
from .duplicates import warn_duplicates
from .sources import csv_splits, folder_source, require_two_classes, test_folder_files
from .video import ClipSampling, VideoDataset, warn_about_videos
from .video_files import verify_videos, video_files
from .video_io import VideoError, probe_video

__all__ = ['VideoDataBunch', 'VideoClassifierData']

_WHAT = 'videos (video files such as .mp4, .webm, or folders of frames)'


def _probe_all(files: Sequence[Path], root: Path) -> tuple[list, list[str]]:
    """(VideoInfo or None per file, the reasons of those that failed), probing in threads."""
    def probe(f: Path):
        try:
            return probe_video(f, name=_shown_name(f, root)), None
        except VideoError as err:
            return None, str(err)
    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        results = list(pool.map(probe, files))
    return [info for info, _ in results], [why for _, why in results if why is not None]


def _shown_name(f: Path, root: Path) -> str:
    """A video's name in messages: relative to the data folder when inside it (messages never show machine paths
    the user did not type)."""
    try:
        return f.relative_to(root.absolute()).as_posix()
    except ValueError:
        return f.as_posix()


def _refuse_or_drop(splits: dict, root: Path, skip_bad: bool) -> dict:
    """split -> (infos, labels), with unusable videos refused (VideoError listing them) or, with skip_bad, dropped."""
    probed, problems = {}, []
    for name, (files, labels) in splits.items():
        infos, why = _probe_all(files, root)
        probed[name] = (infos, labels, files)
        problems += why
    if problems and not skip_bad:
        shown = '\n'.join(f'  {p}' for p in problems[:20])
        more = f'\n  ... and {len(problems) - 20} more' if len(problems) > 20 else ''
        raise VideoError(f'{len(problems)} unusable video(s):\n{shown}{more}\nremove them, or pass skip_bad=True '
                         f'to leave them out with a warning')
    out = {}
    for name, (infos, labels, files) in probed.items():
        keep = [i for i, info in enumerate(infos) if info is not None]
        if skip_bad:  # also decode the first and last frames: truncated and corrupt streams
            bad = {b.path for b in verify_videos([files[i] for i in keep])}
            keep = [i for i in keep if files[i] not in bad]
        dropped = len(infos) - len(keep)
        if dropped:
            names = [_shown_name(files[i], root) for i in range(len(infos)) if i not in set(keep)]
            warnings.warn(f'skipping {dropped} unusable video(s) in the {name} set: {", ".join(names[:20])}'
                          + (' ...' if dropped > 20 else '') + '; verify_videos(PATH) says why', stacklevel=4)
        out[name] = ([infos[i] for i in keep], labels[keep])
    return out


class VideoDataBunch(DataBunch):
    """Train, validation and optional test videos, with loaders of clips (B, 3, T, H, W) normalized on `device`.

    Build one with `from_paths` or `from_csv` (alias `VideoClassifierData`). Everything a DataBunch does works the
    same: `trn_dl`/`val_dl`/`test_dl`, `aug_dl`, `fix_dl`, `classes`, `c`, `sz`, `with_size`, `show_batch`, and
    through them `ConvLearner`, precompute, predictions, TTA and interpretation.

    Training batches hold one random clip per video. Validation and test batches hold `clips_per_video` clips per
    video, evenly spaced, and every prediction, metric and loss on them is per video: the mean of its clips'
    predictions. `bs` counts clips, so a validation batch holds bs // clips_per_video videos.
    """
    is_video = True

    frames_per_clip = property(lambda self: self.trn_ds.sampling.frames_per_clip)
    stride = property(lambda self: self.trn_ds.sampling.stride)
    clips_per_video = property(lambda self: self.val_ds.sampling.n_clips)

    def _pass_dataset(self, ds, split: str, augment: bool):
        """What `loader(split, augment)` iterates (TTA's `loader('valid', augment=True)`, precompute's
        `loader('train')`): the validation transforms and clips, or the training transforms with random clips for
        'train' and the evaluation clips for 'valid'/'test'."""
        sampling = ds.sampling if (augment and split == 'train') else self.val_ds.sampling
        return super()._pass_dataset(ds, split, augment).with_sampling(sampling)

    def tfms_signature(self) -> str:
        """The validation transforms, size, stats and evaluation clips (precompute's cache key)."""
        return f'{super().tfms_signature()}; clips={self.val_ds.sampling!r}'

    def resize(self, targ_sz: int, new_path='tmp', resume: bool = True, fn=None):
        """Not for videos: they are resized as they are decoded (to the transforms' size), so smaller copies on
        disk would save little. Raises TypeError saying so."""
        raise TypeError('resize() writes smaller copies of image files; videos are already resized by the decoder '
                        'to the transforms\' size as they are read: use data.with_size(sz) to change that size')

    def show_batch(self, rows: int = 3, split: str = 'train', seed: int = 0, n_frames: int = 8):
        """`rows` clips of `split` with their training transforms, one row of `n_frames` evenly spaced frames each,
        titled with their labels (a Figure)."""
        from .video_plots import clip_strips
        ds = self._ds(split).with_sampling(self.trn_ds.sampling)
        gen = torch.Generator().manual_seed(seed)
        idxs = torch.randperm(len(ds), generator=gen)[:min(rows, len(ds))].tolist()
        clips = [ds.item_uint8(i)[0] for i in idxs]
        return clip_strips(clips, [self._label_text(ds._yt[i]) for i in idxs], n_frames=n_frames)

    def __repr__(self) -> str:
        return f'{super().__repr__()[:-1]}, clips: {self.trn_ds.sampling.frames_per_clip} frames, stride ' \
               f'{self.stride}, {self.clips_per_video} per video to evaluate)'

    # --- constructors ----------------------------------------------------------------------------
    @classmethod
    def from_paths(cls, path, bs: int = 16, tfms=(None, None), trn_name: str = 'train', val_name: str = 'valid',
                   test_name: Optional[str] = None, test_with_labels: bool = False, frames_per_clip: int = 16,
                   stride: int = 1, clips_per_video: int = 5, num_workers: Optional[int] = None,
                   skip_bad: bool = False, device=None) -> 'VideoDataBunch':
        """From folders of videos: path/trn_name/<class>/<video>, path/val_name/<class>/<video>, path/test_name/.

        A video is a file (.mp4, .webm, .mkv, .avi, .mov, ...; decoded with PyAV) or a folder of its frames
        (`<video>/00001.jpg, 00002.jpg, ...`, as UCF101 and HMDB51 are often extracted); both may be mixed.

        Args:
            path: the root folder.
            bs: clips per batch (a validation batch holds bs // clips_per_video videos).
            tfms: (train_tfms, valid_tfms) from `tfms_from_stats`/`tfms_from_model` (`kinetics_stats` for the
                torchvision video networks, which `tfms_from_model(r3d_18, 112)` picks); each transform draws once
                per clip. Frames are decoded straight to the transforms' size.
            frames_per_clip: frames in a clip (T; 16 for C3D and the torchvision networks).
            stride: step between a clip's frames.
            clips_per_video: evenly spaced clips per video for validation and test; their predictions are averaged.
            skip_bad: decode the first and last frames of every video first and leave the bad ones out with a
                warning (otherwise unusable files raise one `VideoError` listing them).
            Others: as `DataBunch.from_paths`.

        Example:
            >>> data = VideoClassifierData.from_paths('data/motion', tfms=tfms_from_stats(kinetics_stats, 112),
            ...                                       frames_per_clip=16, bs=8)
        """
        path = Path(path)
        trn_files, trn_y, classes = folder_source(path / trn_name, lister=video_files, what=_WHAT)
        require_two_classes(classes, f'{path / trn_name}', f'add a sub-folder of videos for each other class '
                                                           f'({path / trn_name}/<class>/...)')
        val_files, val_y, _ = folder_source(path / val_name, classes, lister=video_files, what=_WHAT)
        test = None
        if test_name:
            if test_with_labels:
                test = folder_source(path / test_name, classes, lister=video_files, what=_WHAT)[:2]
            else:
                test_files = test_folder_files(path / test_name, video_files, 'videos')
                test = (test_files, np.zeros(len(test_files), dtype=np.int64))
        return cls._from_videos(path, classes, (trn_files, trn_y), (val_files, val_y), test, bs, tfms,
                                ClipSampling(frames_per_clip, stride, clips_per_video), num_workers, skip_bad, device)

    @classmethod
    def from_csv(cls, path, folder: str, csv_fname, bs: int = 16, tfms=(None, None), val_idxs=None, suffix: str = '',
                 test_name: Optional[str] = None, continuous: bool = False, skip_header: bool = True,
                 cat_separator: str = ' ', frames_per_clip: int = 16, stride: int = 1, clips_per_video: int = 5,
                 num_workers: Optional[int] = None, skip_bad: bool = False, device=None) -> 'VideoDataBunch':
        """From a labels CSV (`id,labels`): video = path/folder/(id + suffix), a file or a frame folder.

        Labels, `val_idxs`, `suffix`, multi-label and `continuous` mean what they mean in `DataBunch.from_csv`;
        clip arguments as `from_paths`.
        """
        path = Path(path)
        classes, trn, val, test, is_multi = csv_splits(path, folder, csv_fname, val_idxs, suffix, test_name,
                                                       continuous, skip_header, cat_separator, video_files, 'video')
        return cls._from_videos(path, classes, trn, val, test, bs, tfms,
                                ClipSampling(frames_per_clip, stride, clips_per_video), num_workers, skip_bad,
                                device, is_multi=is_multi, is_reg=continuous)

    @classmethod
    def _from_videos(cls, path: Path, classes, trn, val, test, bs, tfms, sampling: ClipSampling, num_workers,
                     skip_bad: bool, device, is_multi: bool = False, is_reg: bool = False) -> 'VideoDataBunch':
        trn_tfms, val_tfms = tfms
        splits = {'training': trn, 'validation': val, 'test': test}
        splits = {k: ([Path(f).absolute() for f in v[0]], np.asarray(v[1])) for k, v in splits.items() if v is not None}
        # identical video files within a class, across classes or across splits (bytes only: cheap)
        labelled = {k: ([f for f in v[0] if f.is_file()], None if k == 'test' or is_reg else
                        [y for f, y in zip(*v) if f.is_file()]) for k, v in splits.items()}
        warn_duplicates(labelled, classes, stacklevel=4)
        usable = _refuse_or_drop(splits, path, skip_bad)
        warn_about_videos([v for infos, _ in usable.values() for v in infos], sampling, stacklevel=4)
        kw = dict(classes=classes, is_multi=is_multi, is_reg=is_reg, path=path)
        training = ClipSampling(sampling.frames_per_clip, sampling.stride, 1, random=True)
        trn_ds = VideoDataset(*usable['training'], tfms=trn_tfms, sampling=training, **kw)
        val_ds = VideoDataset(*usable['validation'], tfms=val_tfms, sampling=sampling, **kw)
        test_ds = VideoDataset(*usable['test'], tfms=val_tfms, sampling=sampling, **kw) if 'test' in usable else None
        return cls(path, trn_ds, val_ds, test_ds, bs=bs, num_workers=num_workers, device=device)


VideoClassifierData = VideoDataBunch
