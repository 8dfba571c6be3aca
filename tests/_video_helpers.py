"""Real video files for the video tests, written with PyAV (the `video` extra, which the `test` extra installs).

`need_av()` skips a test when PyAV is missing, and fails it under CI=true (a CI run must never pass by skipping).
Frames that say which frame they are (`numbered_frames`: the red channel is 8 x the frame number) let a test check
that a decoder returned exactly the frames it was asked for.
"""
from __future__ import annotations

import fractions
import importlib.util
import os
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def need_av():
    """The PyAV module; skip without it (fail under CI=true)."""
    try:
        import av
    except ImportError:
        message = 'PyAV is not installed: pip install -e ".[test]" (or ".[video]") installs it'
        if os.environ.get('CI', '').lower() == 'true':
            pytest.fail(message + ' (CI=true: required)', pytrace=False)
        pytest.skip(message)
    return av


def numbered_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(n, H, W, 3) uint8: frame i is red 8 * i (mod 256) with a white block in its top-left corner."""
    frames = np.zeros((n, height, width, 3), dtype=np.uint8)
    frames[..., 0] = (8 * np.arange(n) % 256)[:, None, None]
    frames[:, :height // 4, :width // 4] = 255
    return frames


def frame_numbers(frames: np.ndarray) -> list[int]:
    """The numbers `numbered_frames` wrote, read back from the red channel of the lower right quarter."""
    h, w = frames.shape[1:3]
    return [int(round(float(v) / 8)) for v in frames[:, h // 2:, w // 2:, 0].mean((1, 2))]


def write_video(path: Path, frames: np.ndarray, fps: int = 25, gop: int = 12, rotation: Optional[int] = None,
                frame_ms: Optional[list] = None, faststart: bool = False) -> Path:
    """Encode uint8 frames (N, H, W, 3): H.264 in .mp4/.mkv, VP9 in .webm.

    Args:
        gop: frames between keyframes (small: reading a clip seeks).
        rotation: a display rotation in degrees (counter-clockwise), as phones write for portrait video.
        frame_ms: each frame's time in milliseconds (a variable frame rate); default every 1000 / fps.
        faststart: put the MP4 index first (a truncated file then still opens).
    """
    av = need_av()
    webm = path.suffix == '.webm'
    options = ({'deadline': 'realtime', 'cpu-used': '8', 'crf': '10', 'b': '0'} if webm
               else {'crf': '10', 'preset': 'veryfast', 'threads': '1'})
    container_options = {'movflags': 'faststart'} if faststart else {}
    with av.open(str(path), 'w', options=container_options) as container:
        stream = container.add_stream('libvpx-vp9' if webm else 'libx264', rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], 'yuv420p'
        stream.codec_context.gop_size = gop
        if rotation is not None and hasattr(stream, 'set_display_rotation'):   # PyAV >= 18
            stream.set_display_rotation(rotation)
        if frame_ms is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format='rgb24')
            if frame_ms is not None:
                frame.pts, frame.time_base = int(frame_ms[i]), fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    if rotation is not None and not hasattr(stream, 'set_display_rotation'):
        set_mp4_rotation(path, rotation)
    return path


def set_mp4_rotation(path: Path, degrees: int) -> None:
    """Write a counter-clockwise display rotation into an MP4's track header (its `tkhd` matrix), as a phone does;
    for PyAV versions that cannot set it while writing (before 18)."""
    data = bytearray(path.read_bytes())
    start = data.index(b'tkhd') - 4                                  # the box: size, 'tkhd', version, flags, ...
    offset = start + (60 if data[start + 8] == 1 else 48)           # the 3x3 matrix of 32-bit fixed-point numbers
    identity = struct.pack('>9i', 1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)
    assert data[offset:offset + 36] == identity, 'unexpected track header'
    radians = np.deg2rad(degrees)                      # the matrix PyAV 18's set_display_rotation has FFmpeg write
    cos, sin = (int(round(v * (1 << 16))) for v in (np.cos(radians), np.sin(radians)))
    data[offset:offset + 36] = struct.pack('>9i', cos, -sin, 0, sin, cos, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


def write_audio_only(path: Path) -> Path:
    """An .mp4 holding one second of AAC audio and no video stream."""
    av = need_av()
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('aac', rate=16000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for _ in range(16):
            frame = av.AudioFrame.from_ndarray(samples, format='fltp', layout='mono')
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_motion_module():
    """data/make_motion.py, the motion data set generator, as a module."""
    spec = importlib.util.spec_from_file_location('make_motion', REPO / 'data' / 'make_motion.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_motion(root: Path, n_train: int = 12, n_valid: int = 4, size: int = 32, n_frames: int = 20,
                seed: int = 0) -> Path:
    """A small motion data set (4 classes, mp4 and webm in turn) under root/motion."""
    need_av()
    return make_motion_module().make(root / 'motion', size=size, n_frames=n_frames, n_train=n_train,
                                     n_valid=n_valid, seed=seed)
