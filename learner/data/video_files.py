"""Which videos a folder holds (video files and folders of extracted frames), and `verify_videos`, which lists the
ones that cannot be decoded."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

from .images import IMAGE_EXTENSIONS
from .video_io import VIDEO_EXTENSIONS, VideoError, probe_video, read_frames

__all__ = ['is_frame_folder', 'video_files', 'verify_videos']


def is_frame_folder(path: Path) -> bool:
    """A folder holding image files directly (a video extracted to frames)."""
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file())


def video_files(folder: Union[str, os.PathLike]) -> list[Path]:
    """Sorted videos in `folder`: video files (by suffix, any case) and folders of extracted frames."""
    folder = Path(folder)
    found = [p for p in folder.iterdir() if not p.name.startswith('.') and
             ((p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS) or is_frame_folder(p))]
    return sorted(found)


def _walk_videos(root: Path, recurse: bool) -> list[Path]:
    """Video files and frame folders under `root` (a frame folder is one video: its images are not walked)."""
    if is_frame_folder(root):
        return [root]
    found = video_files(root)
    if recurse:
        for d in sorted(q for q in root.iterdir() if q.is_dir() and not q.name.startswith('.')):
            if not is_frame_folder(d):
                found += _walk_videos(d, recurse)
    return sorted(found)


def verify_videos(path: Union[str, os.PathLike, Sequence], recurse: bool = True) -> list:
    """The videos under `path` (a folder, or a list of files and frame folders) that cannot be decoded, without
    raising: each is probed and its first and last frames decoded, which finds unreadable headers, empty streams and
    most truncated files.

    Returns:
        `BadImage(path, reason)` tuples (the same as `verify_images` gives), sorted by path.

    Example:
        >>> for bad in verify_videos('data/motion/train'): print(bad.reason)
    """
    from .images import BadImage
    files = _walk_videos(Path(path), recurse) if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    bad = []
    for f in files:
        try:
            info = probe_video(f)
            _, problem = read_frames(info, [0, info.n_frames - 1], size=32)
            if problem:
                bad.append(BadImage(f, f'{f}: {problem}'))
        except VideoError as err:
            bad.append(BadImage(f, str(err)))
    return sorted(bad)
