"""An exported video learner, rebuilt for inference: videos in, probabilities out, each video's `clips_per_video`
evenly spaced clips averaged (the protocol its validation metrics were measured with).

`load_learner(path)` returns one when the export holds a `video` block; `learner predict` and `learner serve` use
it as they use the image one.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .data.video import ClipSampling, clip_indices
from .data.video_io import VideoError, probe_video, read_frames
from .export import InferenceLearner
from .inference import collect_outputs, to_predictions, to_probabilities

__all__ = ['VideoInferenceLearner', 'MAX_CLIPS_PER_CALL']

#: Clips run through the model in one call (more videos are split into several calls): bounds memory.
MAX_CLIPS_PER_CALL = 32


class VideoInferenceLearner(InferenceLearner):
    """A rebuilt video model plus what it needs to classify new videos: classes, size, normalization and clips.

    Videos may be given as files or frame folders (paths), their bytes, decoded frames (N, H, W, 3) uint8 in time
    order, or ready clips (K, T, H, W, 3) uint8 (`decode_clips` gives them).
    """

    def __init__(self, model: nn.Module, meta: dict, device: Union[str, torch.device, None] = None):
        super().__init__(model, meta, device)
        video = meta['video']
        self.sampling = ClipSampling(int(video['frames_per_clip']), int(video['stride']),
                                     int(video['clips_per_video']))

    def decode_clips(self, video: Any, name: Optional[str] = None, formats: Optional[str] = None,
                     max_pixels: Optional[int] = None) -> np.ndarray:
        """One video's evaluation clips, decoded to the model's size: uint8 (K, T, H, W, 3).

        Args:
            video: a file or frame folder, the file's bytes, or frames (N, H, W, 3) uint8.
            name: how errors call it.
            formats: FFmpeg demuxers allowed for bytes (see `probe_video`).
            max_pixels: refuse frames larger than this (width x height) before decoding any.

        Raises:
            VideoError: not a usable video, frames too large, or frames that cannot be decoded (named).
        """
        if isinstance(video, np.ndarray):
            return self._clips_of_frames(video)
        source = bytes(video) if isinstance(video, (bytes, bytearray)) else os.fspath(video)
        info = probe_video(source, name=name, formats=formats)
        if max_pixels and info.width * info.height > max_pixels:
            raise VideoError(f'{info.name}: {info.width}x{info.height} frames are more than the {max_pixels} pixels '
                             f'allowed; send a smaller video')
        starts = self.sampling.starts(info.n_frames)
        indices = np.concatenate([clip_indices(info.n_frames, s, self.sampling) for s in starts])
        frames, problem = read_frames(info, indices.tolist(), size=self.valid_tfms.decode_size,
                                      source=source if isinstance(source, bytes) else None)
        if problem is not None:
            raise VideoError(f'{info.name}: {problem}')
        return frames.reshape(len(starts), self.sampling.frames_per_clip, *frames.shape[1:])

    def _clips_of_frames(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim == 5:
            return frames
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise ValueError(f'expected video frames as uint8 (N, H, W, 3) (or clips (K, T, H, W, 3)), got '
                             f'{frames.dtype} {frames.shape}')
        starts = self.sampling.starts(len(frames))
        return np.stack([frames[clip_indices(len(frames), s, self.sampling)] for s in starts])

    def prepare(self, video: Any) -> torch.Tensor:
        """One video (path, bytes, frames (N, H, W, 3) or clips (K, T, H, W, 3)) -> its clips after the validation
        transforms, uint8 (K, 3, T, sz, sz): the model's input before normalization (what a service queues)."""
        clips = torch.from_numpy(np.ascontiguousarray(self.decode_clips(video))).permute(0, 1, 4, 2, 3)  # K,T,3,H,W
        return torch.stack([self.valid_tfms(clip).permute(1, 0, 2, 3) for clip in clips])

    def predict_prepared(self, xb: Union[torch.Tensor, Sequence[torch.Tensor]]) -> np.ndarray:
        """(N, C) probabilities for N videos' prepared clips (a list of `prepare` outputs, or (N, K, 3, T, sz, sz)
        uint8), each video's K clips averaged, in calls of at most MAX_CLIPS_PER_CALL clips."""
        videos = list(xb)
        if not videos:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        kind = 'multi' if self.is_multi else 'single'
        n_clips = len(videos[0])
        per_call = max(1, MAX_CLIPS_PER_CALL // n_clips)
        rows = []
        for start in range(0, len(videos), per_call):
            chunk = videos[start:start + per_call]
            x = self.valid_tfms.normalize(torch.cat(chunk).to(self.device))          # (n * K, 3, T, sz, sz)
            out, _ = collect_outputs(self.model, [(x, torch.zeros(len(chunk)))], kind=kind, n_clips=n_clips)
            rows.append(to_probabilities(to_predictions(out, kind).numpy(), kind))
        return np.concatenate(rows)

    def predict_probs(self, videos: Sequence[Any]) -> np.ndarray:
        """(N, C) probabilities (softmax, or per-class sigmoid for multi-label) for N videos, each the mean over its
        clips, through the same eval loop and clip averaging as `learn.get_preds` on video data."""
        return self.predict_prepared([self.prepare(video) for video in videos])

    def predict_video(self, video: Any) -> tuple:
        """`(class name, probabilities (C,))` for one video (path, bytes or frames)."""
        probs = self.predict_probs([video])[0]
        return self.classes[int(probs.argmax())], probs

    def predict_image(self, image: Any) -> tuple:
        """Not for a video model: raises TypeError saying to use `predict_video`."""
        raise TypeError(f'this export classifies videos ({self.sampling.frames_per_clip}-frame clips), not images: '
                        f'use predict_video(path) or predict_probs([paths])')
