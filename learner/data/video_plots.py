"""Clips drawn as strips of frames: one row per clip, its frames left to right (show_batch, top losses)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ['clip_strips', 'strip_frames']


def strip_frames(clip, n_frames: int = 8) -> list[np.ndarray]:
    """`n_frames` evenly spaced frames (first and last included) of a uint8 clip (C, T, H, W), or the first clip of
    (K, C, T, H, W), as (H, W, C) arrays; every frame when the clip has fewer."""
    clip = torch.as_tensor(clip)
    if clip.dim() == 5:
        clip = clip[0]
    if clip.dim() != 4:
        raise ValueError(f'expected a clip (C, T, H, W), got shape {tuple(clip.shape)}')
    n_time = clip.shape[1]
    picks = np.unique(np.linspace(0, n_time - 1, min(n_frames, n_time)).round().astype(int))
    return [clip[:, t].permute(1, 2, 0).numpy() for t in picks]


def clip_strips(clips: Sequence, titles: Optional[Sequence[str]] = None, n_frames: int = 8, frame_inches: float = 1.2):
    """A Figure with one row per clip, `n_frames` evenly spaced frames each (frame numbers above the first row),
    each row titled on its left.

    Args:
        clips: uint8 clips (C, T, H, W) (the first of (K, C, T, H, W)), as `ds.item_uint8(i)[0]` gives them.
        titles: one per clip (e.g. 'predicted/actual').
        n_frames: frames shown per clip.
        frame_inches: the width of one frame in the figure.
    """
    from ..plotting import new_figure
    strips = [strip_frames(c, n_frames) for c in clips]
    n_cols = max((len(s) for s in strips), default=1)
    fig = new_figure(figsize=(frame_inches * n_cols + 1.2, frame_inches * max(len(strips), 1) + 0.3))
    axes = fig.subplots(max(len(strips), 1), n_cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([]); ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    for row, frames in enumerate(strips):
        for col, frame in enumerate(frames):
            axes[row, col].imshow(frame)
        if titles is not None:
            axes[row, 0].set_ylabel(titles[row], fontsize=8, rotation=0, ha='right', va='center')
    fig.tight_layout()
    return fig
