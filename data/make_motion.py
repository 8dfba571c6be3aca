"""Generate `motion`: a video data set only motion can solve (4 classes: a shape moving left, right, up or down).

    python data/make_motion.py [--out data/motion] [--size 32] [--frames 24] [--train 40] [--valid 10] [--seed 0]
                               [--formats mp4,webm]

Each video: a static dark background (a random gray with fixed noise), and one bright shape (a disc or a square,
random colour and size) that moves at a constant random speed (4% to 6% of the frame a frame) in the direction of its
class. The frame is a torus: the shape leaves on one side and comes back on the other, so in every frame its position
is uniform over the whole frame whatever the class, and no single frame says anything about the class: a one-frame
model is at chance (25%), a model that pools frames without their order can at best tell horizontal from vertical
(50%), and only the order of the frames (a 3D network) gives the direction.

Files: out/{train,valid}/{left,right,up,down}/<class>_NNNN.<mp4|webm>, H.264 in MP4 and VP9 in WebM taken in turn
(`--formats`), 25 fps, a keyframe every 12 frames (so reading a clip seeks). Written with PyAV (`pip install av`).
Same arguments -> same pixels before encoding (one `numpy.random.default_rng(seed)` stream).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

CLASSES = ['down', 'left', 'right', 'up']
DIRECTIONS = {'left': (0, -1), 'right': (0, 1), 'up': (-1, 0), 'down': (1, 0)}   # (rows, columns) per frame
FPS = 25
GOP = 12  # frames between keyframes


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A static (size, size, 3) float background: a dark random gray with fixed noise."""
    return np.full((size, size, 3), rng.uniform(20, 80)) + rng.normal(0, 6, (size, size, 3))


def frames(cls: str, size: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """The uint8 frames (n_frames, size, size, 3) of one video of class `cls`."""
    background = _background(size, rng)
    colour = rng.uniform(150, 255, 3)                                     # bright on the dark background
    radius = rng.uniform(0.10, 0.16) * size
    square = rng.random() < 0.5
    speed = rng.uniform(0.04, 0.06) * size                                # 4% to 6% of the frame a frame
    start = rng.uniform(0, size, 2)                                      # (row, column), anywhere: a torus
    step = np.array(DIRECTIONS[cls], dtype=np.float64) * speed
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    out = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    for t in range(n_frames):
        centre = (start + t * step) % size
        d_row = (rows - centre[0] + size / 2) % size - size / 2           # wrapped distance to the centre
        d_col = (cols - centre[1] + size / 2) % size - size / 2
        inside = np.maximum(abs(d_row), abs(d_col)) <= radius if square else d_row ** 2 + d_col ** 2 <= radius ** 2
        frame = background.copy()
        frame[inside] = colour
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def write_video(path: Path, video: np.ndarray, fps: int = FPS) -> None:
    """Encode uint8 (T, H, W, 3) frames: H.264 for .mp4, VP9 for .webm (quality high enough to keep the shapes)."""
    import av
    webm = path.suffix == '.webm'
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libvpx-vp9' if webm else 'libx264', rate=fps,
                                      options={'deadline': 'realtime', 'cpu-used': '8', 'crf': '20', 'b': '0'}
                                      if webm else {'crf': '18', 'preset': 'veryfast', 'threads': '1'})
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], 'yuv420p'
        stream.codec_context.gop_size = GOP
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make(out: Path, size: int = 32, n_frames: int = 24, n_train: int = 40, n_valid: int = 10, seed: int = 0,
         formats: tuple = ('mp4', 'webm')) -> Path:
    """Write out/{train,valid}/<class>/<class>_NNNN.<format>; replaces `out` if it exists. Returns `out`."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for split, count in (('train', n_train), ('valid', n_valid)):
        for cls in CLASSES:
            folder = out / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                video = frames(cls, size, n_frames, rng)
                write_video(folder / f'{cls}_{i:04d}.{formats[i % len(formats)]}', video)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=str(Path(__file__).resolve().parent / 'motion'))
    parser.add_argument('--size', type=int, default=32, help='frame side in pixels (even; default 32)')
    parser.add_argument('--frames', type=int, default=24, help='frames per video (default 24)')
    parser.add_argument('--train', type=int, default=40, help='training videos per class (default 40)')
    parser.add_argument('--valid', type=int, default=10, help='validation videos per class (default 10)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--formats', default='mp4,webm', help='containers taken in turn (default mp4,webm)')
    args = parser.parse_args()
    out = make(Path(args.out), args.size, args.frames, args.train, args.valid, args.seed,
               tuple(args.formats.split(',')))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
