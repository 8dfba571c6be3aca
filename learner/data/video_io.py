"""Video decoding: what a video holds (`probe_video`) and the frames a clip needs (`read_frames`), as RGB uint8.

Files are decoded with PyAV (the optional `video` extra: `pip install "learner[video]"`), whose wheels bundle
FFmpeg, so pip alone is enough on Linux, macOS and Windows for Python 3.10-3.12; torchcodec needs FFmpeg's shared
libraries installed on the system, which pip cannot provide. Folders of extracted frames (`<video>/00001.jpg ...`,
the layout UCF101 and HMDB51 users extract to) are read with `open_image`, so they need nothing more.

How a clip is read (only what it needs):
  * frame `i` means the frame shown at time `i / fps` (fps: the stream's average rate), so a variable frame rate
    video is sampled evenly in time, and frame indices and seconds agree for the usual constant rate;
  * the decoder seeks to the keyframe before the first wanted frame and decodes forward until the last one; a gap
    of more than `SEEK_GAP_S` seconds between wanted frames seeks again rather than decoding through it;
  * each wanted frame is converted to RGB and resized in the same swscale pass (`size`: its smaller side), never
    enlarged, then turned upright by the stream's rotation (phones store portrait video sideways with a display
    matrix, as they store photos with an EXIF orientation).

Errors name the file and say what to do: `VideoError` for a file that cannot be used at all (missing, empty, not a
video, no video stream, no frames), raised when a data set is built; `read_frames` reports frames it could not
decode (a truncated or corrupt stream) instead of raising, so the caller can warn and go on.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .images import IMAGE_EXTENSIONS, ImageError, open_image
from .resample import scaled_size

__all__ = ['VIDEO_EXTENSIONS', 'VideoError', 'VideoWarning', 'BadVideoWarning', 'VideoInfo', 'require_av',
           'probe_video', 'read_frames', 'frame_files', 'SEEK_GAP_S']

#: Suffixes (lower case) treated as video files when folders are listed.
VIDEO_EXTENSIONS = frozenset({'.mp4', '.m4v', '.mov', '.avi', '.webm', '.mkv', '.mpg', '.mpeg', '.ogv', '.wmv'})

#: Wanted frames further apart than this (seconds) are reached by a new seek instead of decoding every frame between
#: them (a seek costs one keyframe interval of decoding at most; 1 s of 25 fps video is 25 frames).
SEEK_GAP_S = 1.0

#: A video whose average frame rate differs from its nominal one by more than this fraction has a variable rate.
VFR_TOLERANCE = 0.02

Source = Union[str, os.PathLike, bytes]


class VideoError(ValueError):
    """A video that cannot be used: the message names the file and the reason."""


class VideoWarning(UserWarning):
    """Something about the videos of a data set worth knowing (short videos looped, variable frame rates)."""


class BadVideoWarning(UserWarning):
    """A video whose frames could not all be decoded mid-epoch (truncated or corrupt): missing frames were filled
    (the last good frame, or gray), so the epoch goes on. The message names the file."""


def require_av():
    """The PyAV module, or an ImportError saying how to install it."""
    try:
        import av
    except ImportError as err:
        raise ImportError('decoding video files needs PyAV: pip install "learner[video]" (or pip install av); '
                          'folders of extracted frames need nothing more') from err
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own log lines; errors reach us as exceptions
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read from its header (files) or its listing (frame folders).

    Attributes:
        path: the file, or the folder of frames; `name` is how messages call it.
        n_frames: frames in the video (for a file without a frame count in its header: duration x fps, and
            `estimated` is True).
        fps: the average frame rate (frame folders: 0, they have none).
        width, height: the stored frame size in pixels (before rotation).
        variable_rate: the average rate differs from the nominal one by more than VFR_TOLERANCE.
        is_folder: a folder of extracted frames.
    """
    path: Optional[Path]
    n_frames: int
    fps: float
    width: int
    height: int
    variable_rate: bool = False
    is_folder: bool = False
    estimated: bool = False
    name: str = ''
    nominal_fps: float = 0.0


def _natural_key(name: str):
    """'frame_2.jpg' before 'frame_10.jpg' (extractors do not always zero-pad)."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def frame_files(folder: Union[str, os.PathLike]) -> list[Path]:
    """The image files of a frame folder in frame order (natural sort of their names)."""
    folder = Path(folder)
    names = [n for n in os.listdir(folder) if Path(n).suffix.lower() in IMAGE_EXTENSIONS and not n.startswith('.')]
    return [folder / n for n in sorted(names, key=_natural_key)]


def _open(av, source: Source, name: str, formats: Optional[str] = None):
    """An opened PyAV input container, or VideoError naming `name`."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise VideoError(f'{name}: empty (0 bytes); send the bytes of a video file')
        target = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise VideoError(f'{name}: no such file')
        if path.stat().st_size == 0:
            raise VideoError(f'{name}: an empty file (0 bytes); remove it or pass skip_bad=True')
        target = str(path)
    try:
        return av.open(target, format=formats, metadata_errors='ignore')
    except av.error.EOFError as err:
        raise VideoError(f'{name}: ends before its first frame (zero frames, or a truncated file); remove it or pass '
                         f'skip_bad=True') from err
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        raise VideoError(f'{name}: not a video file FFmpeg can read ({_reason(err)}); the file may be truncated or '
                         f'corrupt; remove it or pass skip_bad=True') from err


def _reason(err: BaseException) -> str:
    """FFmpeg's reason without the path PyAV appends (messages name files as the user gave them)."""
    return getattr(err, 'strerror', None) or type(err).__name__


def probe_video(source: Source, name: Optional[str] = None, formats: Optional[str] = None) -> VideoInfo:
    """What a video file (or folder of frames, or bytes) holds, from its header; nothing is decoded.

    Args:
        source: a video file, a folder of extracted frames, or a video's bytes.
        name: how messages call it (default: the path; 'upload' for bytes).
        formats: FFmpeg demuxer name(s) to allow (e.g. 'mov,mp4,m4a,3gp,3g2,mj2'); None lets FFmpeg detect it.

    Raises:
        VideoError: missing, empty, not a video, no video stream, no frame rate, or no frames.
    """
    if not isinstance(source, (bytes, bytearray)) and Path(source).is_dir():
        return _probe_folder(Path(source), name or str(source))
    name = name or ('upload' if isinstance(source, (bytes, bytearray)) else str(source))
    av = require_av()
    with _open(av, source, name, formats) as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            holds = f'its streams: {", ".join(kinds)}' if kinds else 'no streams at all: zero frames, or unfinished'
            raise VideoError(f'{name}: no video stream ({holds}); remove it or pass skip_bad=True')
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0)
        nominal = float(stream.base_rate or stream.guessed_rate or fps or 0)
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        if fps <= 0 or width <= 0 or height <= 0:
            raise VideoError(f'{name}: its video stream has no frame rate or size ({fps} fps, {width}x{height}); '
                             f'the file may be corrupt')
        n_frames, estimated = int(stream.frames or 0), False
        if n_frames <= 0:  # WebM/MKV headers carry no frame count: the video stream's duration x rate
            n_frames, estimated = _frames_from_duration(container, stream, fps), True
        if n_frames <= 0:
            raise VideoError(f'{name}: zero frames (its video stream is empty); remove it or pass skip_bad=True')
    variable = nominal > 0 and abs(fps - nominal) / nominal > VFR_TOLERANCE
    return VideoInfo(None if isinstance(source, (bytes, bytearray)) else Path(source), n_frames, fps, width, height,
                     variable, False, estimated, name, nominal)


def _tag_seconds(value: str) -> Optional[float]:
    """'HH:MM:SS.fffffffff' (Matroska's per-track DURATION tag) in seconds, or None."""
    try:
        hours, minutes, seconds = value.strip().split(':')
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (ValueError, AttributeError):
        return None


def _frames_from_duration(container, stream, fps: float) -> int:
    """The frame count of a video stream whose header has none (WebM/MKV): its own frame-count or duration tag
    (written by FFmpeg and mkvmerge), its duration, else its packets counted. Never the container's duration when
    other streams are there: an audio track longer than the video would make it read as truncated."""
    tags = {k.upper().split('-')[0]: v for k, v in (stream.metadata or {}).items()}
    if str(tags.get('NUMBER_OF_FRAMES', '')).isdigit():
        return int(tags['NUMBER_OF_FRAMES'])
    seconds = _tag_seconds(tags.get('DURATION', ''))
    if seconds is None and stream.duration:
        seconds = float(stream.duration * stream.time_base)
    if seconds is None and len(container.streams) == 1:
        seconds = (container.duration or 0) / 1_000_000
    if seconds is not None:
        return int(round(seconds * fps))
    n_packets = sum(1 for packet in container.demux(stream) if packet.size)   # read, not decoded
    container.seek(0)
    return n_packets


def _probe_folder(folder: Path, name: str) -> VideoInfo:
    files = frame_files(folder)
    if not files:
        raise VideoError(f'{name}: a folder with no frames (expected image files such as 00001.jpg); remove it or '
                         f'pass skip_bad=True')
    from PIL import Image
    try:
        with Image.open(files[0]) as img:
            width, height = img.size
    except (OSError, SyntaxError, ValueError) as err:
        raise VideoError(f'{name}: its first frame {files[0].name} is not an image Pillow can read ({err})') from err
    return VideoInfo(folder, len(files), 0.0, width, height, is_folder=True, name=name)


def _decode_size(width: int, height: int, size: Optional[int]) -> tuple[int, int]:
    """(width, height) to convert a stored frame to: smaller side `size` (fastai 0.7's scale rule), never larger."""
    if not size or min(width, height) <= size:
        return width, height
    h, w = scaled_size(height, width, int(size))
    return w, h


def _rotation(frame, stream) -> int:
    """Counter-clockwise quarter turns that make a decoded frame upright (display matrix, or the old 'rotate' tag)."""
    degrees = getattr(frame, 'rotation', 0) or 0
    if not degrees:
        tag = (stream.metadata or {}).get('rotate')  # older FFmpeg: clockwise degrees
        degrees = -float(tag) if tag and tag.lstrip('-').isdigit() else 0
    return int(round(float(degrees) / 90)) % 4


def _to_rgb(frame, stream, width: int, height: int, reformatter) -> np.ndarray:
    """One decoded frame -> RGB uint8 (H, W, 3), resized by swscale in the same pass and turned upright.

    One `reformatter` serves a whole read: it keeps its swscale context, which `frame.to_ndarray(width=...)` would
    build anew for every frame (1.0 vs 0.08 ms a 64 px frame, measured).
    """
    arr = reformatter.reformat(frame, width, height, 'rgb24', interpolation='AREA').to_ndarray()
    turns = _rotation(frame, stream)
    return np.ascontiguousarray(np.rot90(arr, turns)) if turns else arr


class _Decoded:
    """Frames of one read, by target time index; what went wrong, if anything; how many frames were decoded and
    seeks made (`counts`, for benchmarks and tests)."""

    def __init__(self, n_targets: int, counts: Optional[dict] = None):
        self.frames: list = [None] * n_targets
        self.problem: Optional[str] = None
        self.counts = counts if counts is not None else {}
        self.counts.setdefault('decoded', 0)
        self.counts.setdefault('seeks', 0)


def _decode_targets(av, container, times: list[float], fps: float, out: _Decoded, width: int, height: int) -> None:
    """Fill `out.frames[k]` with the frame shown at `times[k]` (seconds from the stream start, ascending)."""
    stream = container.streams.video[0]
    reformatter = av.video.reformatter.VideoReformatter()
    stream.codec_context.thread_count = 1  # a clip is a few frames: threads cost more than they give (workers)
    base = stream.start_time or 0
    tb = float(stream.time_base)
    tolerance = 0.5 / fps  # frame i is shown at i / fps: accept it for a target up to half a frame before it
    # AVI stores no presentation times (what FFmpeg reports are decode-order stamps, wrong with B-frames): its frames
    # are counted from the first one, in the order the decoder gives them, never sought
    counted = 'avi' in container.format.name.split(',')
    k, last_time, n_seen = 0, None, 0
    while k < len(times):
        if not counted and (times[k] > 0.5 / fps or k > 0):
            container.seek(base + int(times[k] / tb), stream=stream, backward=True, any_frame=False)
            out.counts['seeks'] += 1
        previous, sought = None, k
        for frame in container.decode(stream):
            n_seen += 1
            out.counts['decoded'] += 1
            t = (frame.pts - base) * tb if frame.pts is not None and not counted else (n_seen - 1) / fps
            while k < len(times) and t > times[k] + tolerance:
                # previous None: the seek landed late, so the first frame we have stands in
                out.frames[k] = _to_rgb(previous or frame, stream, width, height, reformatter)
                k += 1
            last_time, previous = t, frame
            if k == len(times) or (not counted and k > sought and times[k] - t > SEEK_GAP_S):
                break
        else:  # the end of the stream: what is left is shown by the last frame
            if previous is None:
                break
            while k < len(times):
                if times[k] > last_time + 1.5 / fps and out.problem is None:
                    out.problem = (f'decoded frames up to {last_time:.2f} s only, but its header says '
                                   f'{times[-1] + 1 / fps:.2f} s or more (the file may be truncated)')
                out.frames[k] = _to_rgb(previous, stream, width, height, reformatter)
                k += 1
        if previous is None:  # the seek landed past every frame
            break


def read_frames(info: VideoInfo, indices: Sequence[int], size: Optional[int] = None,
                source: Optional[Source] = None, counts: Optional[dict] = None) -> tuple[np.ndarray, Optional[str]]:
    """The frames at `indices` (any order, repeats allowed) as RGB uint8 (T, H, W, 3), and what went wrong.

    Args:
        info: the video's `probe_video` result.
        indices: frame numbers in 0..info.n_frames - 1 (see the module docstring for what a number means).
        size: decode so the smaller side is `size` pixels (never enlarged); None keeps the stored size.
        source: the bytes the video was probed from (uploads); default `info.path`.
        counts: a dict to add the numbers of decoded frames ('decoded') and seeks ('seeks') to.

    Returns:
        (frames, problem): problem is None, or a sentence naming what could not be decoded (a truncated or corrupt
        file); missing frames are then filled with the nearest decoded one, or gray when none decoded.
    """
    indices = [min(max(int(i), 0), info.n_frames - 1) for i in indices]
    if info.is_folder:
        return _read_folder(info, indices, size)
    av = require_av()
    wanted = sorted(set(indices))
    fps = info.fps
    out = _Decoded(len(wanted), counts)
    width, height = _decode_size(info.width, info.height, size)
    try:
        with _open(av, source if source is not None else info.path, info.name) as container:
            _decode_targets(av, container, [i / fps for i in wanted], fps, out, width, height)
    except VideoError as err:
        out.problem = str(err).split(': ', 1)[-1]
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:
        out.problem = f'cannot decode ({_reason(err)}); the file may be truncated or corrupt'
    frames = _fill_missing(out, width, height)
    if out.problem is None and all(f is None for f in out.frames):
        out.problem = (f'no frame could be decoded from {wanted[0] / fps:.2f} s on (the file may be truncated or '
                       f'corrupt)')
    position = {i: k for k, i in enumerate(wanted)}
    return np.stack([frames[position[i]] for i in indices]), out.problem


def _fill_missing(out: _Decoded, width: int, height: int) -> list[np.ndarray]:
    """Every target's frame: decoded ones, else the nearest decoded one before (or after) it, else gray."""
    frames = list(out.frames)
    good = [k for k, f in enumerate(frames) if f is not None]
    if not good:
        gray = np.full((height, width, 3), 128, dtype=np.uint8)
        return [gray] * len(frames)
    if len(good) < len(frames) and out.problem is None:
        out.problem = f'decoded {len(good)} of {len(frames)} wanted frames (the file may be truncated or corrupt)'
    for k in range(len(frames)):
        if frames[k] is None:
            before = [g for g in good if g < k]
            frames[k] = frames[before[-1] if before else good[0]]
    shape = frames[good[0]].shape
    return [f if f.shape == shape else _resized(f, shape) for f in frames]


def _resized(frame: np.ndarray, shape: tuple) -> np.ndarray:
    """A frame of another size (a resolution change mid-stream, a stray frame in a folder) brought to `shape`."""
    from PIL import Image
    return np.asarray(Image.fromarray(frame).resize((shape[1], shape[0]), Image.BILINEAR))


def _read_folder(info: VideoInfo, indices: list[int], size: Optional[int]) -> tuple[np.ndarray, Optional[str]]:
    try:
        files = frame_files(info.path)
    except OSError:  # the folder went away since the data was built
        files = []
    problem = None
    if len(files) != info.n_frames:
        problem = f'now holds {len(files)} frames, {info.n_frames} when the data was built'
        if not files:
            gray = np.full((size or info.height, size or info.width, 3), 128, dtype=np.uint8)
            return np.stack([gray] * len(indices)), problem
    cache: dict = {}
    for i in sorted(set(indices)):
        f = files[min(i, len(files) - 1)]
        try:
            cache[i] = open_image(f, target_size=size)
        except ImageError as err:
            problem = problem or f'frame {f.name}: {str(err).split(";")[0]}'
    out = _Decoded(0)
    out.frames, out.problem = [cache.get(i) for i in sorted(set(indices))], problem
    frames = _fill_missing(out, size or info.width, size or info.height)
    position = {i: k for k, i in enumerate(sorted(set(indices)))}
    if size:  # JPEG draft decoding gives a smaller side between size and 2 x size: bring it to size, as files are
        frames = [_scaled(f, size) for f in frames]
    return np.stack([frames[position[i]] for i in indices]), out.problem


def _scaled(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if min(h, w) <= size:
        return frame
    nh, nw = scaled_size(h, w, size)
    return _resized(frame, (nh, nw))
