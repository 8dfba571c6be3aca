"""Clips from videos as a data set: which frames a clip takes (`ClipSampling`), and `VideoDataset`, whose items are
decoded, transformed and stacked clips, uint8, shaped (C, T, H, W) as 3D networks take them ((B, C, T, H, W) per
batch: C3D_BN, torchvision's r3d_18, mc3_18, r2plus1d_18).

The transforms are fastai 0.7's own (`tfms_from_stats`, `RandomCrop`, `RandomFlip`, `RandomRotate`,
`RandomLighting`, ...): each is called once on the whole clip, a (T, C, H, W) tensor, so it draws its random
parameters once and applies them to every frame. A crop or flip that changed from frame to frame would invent
motion that is not there.

Training items are one clip per video at a random start, a new one each epoch. Evaluation items (validation, test)
are `n_clips` clips per video, evenly spaced, stacked (K, C, T, H, W): a loader over them yields the K clips of each
video one after the other, (B*K, C, T, H, W), tells the loop so (`clips_per_item`), and the loop averages the K
predictions of each video into one (the C3D paper's protocol; a test-time augmentation over time).
"""
from __future__ import annotations

import copy
import hashlib
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .datasets import BaseDataset, _Batch, _one_thread, _relative_name
from .transforms import Transforms, kinetics_stats
from .video_io import BadVideoWarning, VideoError, VideoInfo, VideoWarning, read_frames

__all__ = ['ClipSampling', 'VideoDataset', 'kinetics_stats', 'warn_about_videos', 'clip_indices']



@dataclass(frozen=True)
class ClipSampling:
    """Which frames a clip takes.

    Args:
        frames_per_clip: frames in a clip (T): 16 for C3D and torchvision's video networks.
        stride: step between the frames of a clip (2 takes every other frame: twice the time at the same cost).
        n_clips: clips per video for evaluation (K), evenly spaced: the centre of each of K equal parts of the
            positions a clip can start at. 1 takes the middle clip.
        random: one clip per video at a uniformly random start (training); `n_clips` is then ignored.

    A video shorter than a clip's span, (frames_per_clip - 1) * stride + 1 frames, is looped to fill it.
    """
    frames_per_clip: int = 16
    stride: int = 1
    n_clips: int = 1
    random: bool = False

    def __post_init__(self):
        for name in ('frames_per_clip', 'stride', 'n_clips'):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f'{name} must be an integer >= 1, got {value!r}')

    @property
    def span(self) -> int:
        """Frames from a clip's first to its last: (frames_per_clip - 1) * stride + 1."""
        return (self.frames_per_clip - 1) * self.stride + 1

    @property
    def clips_per_item(self) -> int:
        """Clips a data-set item holds: 1 for random (training) sampling, else n_clips."""
        return 1 if self.random else self.n_clips

    def starts(self, n_frames: int) -> list[int]:
        """First frame of each clip of a video of `n_frames` frames (random: drawn from torch's generator)."""
        room = max(n_frames - self.span, 0)      # starts 0..room keep the whole clip inside the video
        if self.random:
            return [int(torch.randint(room + 1, ()))]
        return [room * (2 * j + 1) // (2 * self.n_clips) for j in range(self.n_clips)]   # integer centres

    def describe(self) -> str:
        how = 'random' if self.random else f'{self.n_clips} evenly spaced'
        return f'{self.frames_per_clip} frames, stride {self.stride}, {how}'


def clip_indices(n_frames: int, start: int, sampling: ClipSampling) -> np.ndarray:
    """Frame numbers of the clip starting at `start`; past the end of a short video it loops to the start."""
    return (start + np.arange(sampling.frames_per_clip) * sampling.stride) % max(n_frames, 1)


def warn_about_videos(infos: Sequence[VideoInfo], sampling: ClipSampling, stacklevel: int = 3) -> None:
    """One `VideoWarning` each for the videos shorter than a clip (looped) and those with a variable frame rate."""
    short = [v for v in infos if v.n_frames < sampling.span]
    if short:
        shown = ', '.join(f'{v.name} ({v.n_frames})' for v in short[:5])
        more = f' and {len(short) - 5} more' if len(short) > 5 else ''
        warnings.warn(f'{len(short)} video(s) have fewer frames than a clip spans ({sampling.span}: '
                      f'{sampling.frames_per_clip} frames, stride {sampling.stride}); their clips loop back to their '
                      f'first frame: {shown}{more}. Lower frames_per_clip or stride to avoid it.', VideoWarning,
                      stacklevel=stacklevel)
    variable = [v for v in infos if v.variable_rate]
    if variable:
        shown = ', '.join(f'{v.name} ({v.fps:.3g} fps on average, {v.nominal_fps:.3g} nominal)' for v in variable[:5])
        more = f' and {len(variable) - 5} more' if len(variable) > 5 else ''
        warnings.warn(f'{len(variable)} video(s) have a variable frame rate; their frames are taken evenly in time at '
                      f'the average rate, so a stride is a time step, not a count of stored frames: {shown}{more}. '
                      f'Re-encode at a constant rate (ffmpeg -i in.mp4 -fps_mode cfr out.mp4) for exact frame steps.',
                      VideoWarning, stacklevel=stacklevel)


class VideoDataset(BaseDataset):
    """Videos (files or frame folders) with labels; items are transformed clips, uint8.

    Args:
        videos: `probe_video` results, one per video.
        y: labels: class indices (int), multi-hot rows (float) or regression targets (float).
        classes: class names (index order).
        tfms: the item pipeline (`tfms_from_stats`/`tfms_from_model`), applied once per clip.
        sampling: which frames each item takes.
        strict: raise `VideoError` for frames that cannot be decoded. By default (False) an epoch never dies on a
            bad video: missing frames are filled (the last good frame, or gray) and a `BadVideoWarning` names the
            file (once per file and process).
        path: the folder `fnames` are relative to.

    Items: `item_uint8(i)` gives (clip, label), the clip (C, T, H, W), or (K, C, T, H, W) for K > 1 clips per item;
    `ds[i]` the same normalized as a numpy array (fastai 0.7). Loaders fetch through `__getitems__`, which puts the
    K clips of each video one after the other: (B*K, C, T, H, W).
    """
    is_video = True

    def __init__(self, videos: Sequence[VideoInfo], y, classes: Sequence, tfms: Optional[Transforms] = None,
                 sampling: ClipSampling = ClipSampling(), is_multi: bool = False, is_reg: bool = False,
                 strict: bool = False, path=None):
        if len(videos) != len(y):
            raise ValueError(f'{len(videos)} videos but {len(y)} labels: give one label per video')
        self.videos = list(videos)
        self.path = Path(path) if path is not None else None
        root = self.path.absolute() if self.path is not None else Path.cwd()
        self.paths = [Path(v.path) for v in self.videos]
        self.fnames = [_relative_name(p, root) for p in self.paths]
        self.sampling, self.strict = sampling, strict
        self._warned: set = set()
        super().__init__(y, classes, tfms, is_multi, is_reg)

    @property
    def clips_per_item(self) -> int:
        """Clips each item holds (1 in training); loaders put them one after the other and the loop averages them."""
        return self.sampling.clips_per_item

    def with_sampling(self, sampling: ClipSampling) -> 'VideoDataset':
        """The same videos and transforms taking other clips (evaluation clips of the training videos, ...)."""
        new = copy.copy(self)
        new.sampling = sampling
        return new

    def read_clips(self, i: int) -> torch.Tensor:
        """Video i's clips, decoded and before transforms: uint8 (K, T, 3, H, W), K = clips_per_item."""
        info = self.videos[i]
        starts = self.sampling.starts(info.n_frames)
        indices = np.concatenate([clip_indices(info.n_frames, s, self.sampling) for s in starts])
        frames, problem = read_frames(info, indices.tolist(), size=self.tfms.decode_size or self.tfms.sz)
        if problem is not None:
            if self.strict:
                raise VideoError(f'{info.name}: {problem}')
            if i not in self._warned:
                self._warned.add(i)
                warnings.warn(f'{info.name}: {problem}; filled the missing frames so the epoch goes on. '
                              f'verify_videos() lists such files; skip_bad=True leaves them out', BadVideoWarning,
                              stacklevel=3)
        clips = torch.from_numpy(frames).permute(0, 3, 1, 2)                   # (K*T, 3, H, W)
        return clips.reshape(len(starts), self.sampling.frames_per_clip, *clips.shape[1:])

    def _clips_uint8(self, i: int) -> torch.Tensor:
        """(K, C, T, H, W): each clip through the pipeline once, so one random draw for all its frames."""
        return torch.stack([self.tfms(clip).permute(1, 0, 2, 3) for clip in self.read_clips(i)])

    def item_uint8(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 clip (C, T, H, W), or (K, C, T, H, W) for K > 1 clips per item; label tensor)."""
        with _one_thread():
            clips = self._clips_uint8(i)
        return (clips[0] if len(clips) == 1 else clips), self._yt[i]

    def __getitems__(self, idxs: Sequence[int]):
        """Items for a loader: (uint8 (B*K, C, T, H, W), labels (B, ...)), each video's K clips together."""
        with _one_thread():
            clips = [self._clips_uint8(int(i)) for i in idxs]
        shapes = {tuple(c.shape[1:]) for c in clips}
        if len(shapes) > 1:
            raise ValueError(f'clips in one batch have different sizes {sorted(shapes)[:4]}: give the data '
                             f'transforms with a size, e.g. tfms=tfms_from_stats(kinetics_stats, 112)')
        idx = torch.as_tensor([int(i) for i in idxs], dtype=torch.long)
        return _Batch((torch.cat(clips), self._yt.index_select(0, idx)))

    def __getitem__(self, i):
        if isinstance(i, slice):
            xs, ys = zip(*(self[k] for k in range(*i.indices(len(self)))))
            return np.stack(xs), np.stack(ys)
        x, _ = self.item_uint8(i)
        single = x.dim() == 4
        x = self.tfms.normalize(x[None] if single else x)                     # (B, C, T, H, W): one normalization
        return (x[0] if single else x).numpy(), self.y[i]

    def denorm(self, x) -> np.ndarray:
        """Normalized clips (B, C, T, H, W) or one (C, T, H, W) -> (B, T, H, W, C) float numpy in [0, 1]."""
        if (isinstance(x, torch.Tensor) and x.dim() == 4) or (isinstance(x, np.ndarray) and x.ndim == 4):
            x = x[None]
        return self.tfms.denorm(x)

    def fingerprint(self) -> str:
        """sha256 of every video's name, size and mtime (a frame folder: its frame count and mtime), and labels."""
        h = hashlib.sha256()
        for v in self.videos:
            st = os.stat(v.path)
            h.update(f'{v.path}\0{st.st_size}\0{st.st_mtime_ns}\0{v.n_frames}\n'.encode())
        self._hash_labels(h)
        return h.hexdigest()

    def __repr__(self) -> str:
        return f'{type(self).__name__}(n={len(self)}, clips: {self.sampling.describe()}, sz={self.sz})'


def evaluation_sampling(sampling: ClipSampling, n_clips: int) -> ClipSampling:
    """`sampling` taking `n_clips` evenly spaced clips (the evaluation counterpart of a training sampling)."""
    return replace(sampling, n_clips=n_clips, random=False)
