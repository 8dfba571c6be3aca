"""Video loading throughput: clips per second of the training loader against the decoder alone and a torchvision
`VideoClips` pipeline, on the same files in the same run.

    python benchmarks/video_throughput.py [--n-videos 64] [--side 240] [--frames 96] [--repeats 3] [--workers 2]

The videos: `data/make_motion.py` frames at `--side` x `--side` (240: UCF101's height), `--frames` frames at 25 fps
(about 4 s), H.264 in MP4 with a keyframe every 12 frames. Every pipeline gives one random 16-frame clip per video
per epoch at 112 x 112:
(a) learner: `VideoClassifierData.from_paths(..., tfms=tfms_from_stats(kinetics_stats, 112,
    aug_tfms=transforms_side_on), frames_per_clip=16)`, `--workers` worker processes, batches of 8 clips normalized
    (what `learn.fit` reads);
(b) the decoder alone: `read_frames` of the same kind of clip (seek, decode, resize in swscale), one process, no
    transforms: the most the loader could deliver on one core;
(c) naive PyAV: decode from the first frame to the clip's last, convert every frame at full size, then resize with
    torch (what a hand-written loop over `container.decode()` does), one process;
(d) torchvision's `VideoClips` (torchcodec underneath; it needs FFmpeg's shared libraries on the system, so it is
    skipped where they are missing) with `RandomClipSampler(1 clip per video)` and a `transforms.v2` pipeline (resize
    to 112, random crop, flip, normalize), `--workers` worker processes; its set-up (indexing every frame's
    timestamp) is timed apart.
Epochs are interleaved; medians of `--repeats`. Not a test.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from learner import VideoClassifierData, kinetics_stats, tfms_from_stats, transforms_side_on  # noqa: E402
from learner.data.video_io import probe_video, read_frames  # noqa: E402

CLIP = 16
SIZE = 112


def make_videos(root: Path, n: int, side: int, n_frames: int) -> list[Path]:
    spec = importlib.util.spec_from_file_location('make_motion', ROOT / 'data' / 'make_motion.py')
    motion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(motion)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        cls = motion.CLASSES[i % len(motion.CLASSES)]
        folder = root / 'train' / cls
        folder.mkdir(parents=True, exist_ok=True)
        files.append(folder / f'{i:04d}.mp4')
        motion.write_video(files[-1], motion.frames(cls, side, n_frames, rng))
    for cls in motion.CLASSES:  # a validation split is required: one short video per class
        (root / 'valid' / cls).mkdir(parents=True, exist_ok=True)
        motion.write_video(root / 'valid' / cls / 'v.mp4', motion.frames(cls, 32, CLIP, rng))
    return files


def rate(loop) -> float:
    start = time.perf_counter()
    n = loop()
    return n / (time.perf_counter() - start)


def learner_loop(root: Path, workers: int):
    trn, _ = tfms_from_stats(kinetics_stats, SIZE, aug_tfms=transforms_side_on)
    data = VideoClassifierData.from_paths(root, tfms=(trn, trn), bs=8, frames_per_clip=CLIP, num_workers=workers,
                                          clips_per_video=1)

    def loop():
        n = 0
        for x, _ in data.trn_dl:
            n += len(x)
        return n
    return loop


def decoder_loop(files: list[Path]):
    infos = [probe_video(f) for f in files]
    rng = np.random.default_rng(1)

    def loop():
        for info in infos:
            start = int(rng.integers(0, info.n_frames - CLIP + 1))
            read_frames(info, list(range(start, start + CLIP)), size=SIZE)
        return len(infos)
    return loop


def naive_loop(files: list[Path]):
    import av
    import torch.nn.functional as F
    infos = [probe_video(f) for f in files]
    rng = np.random.default_rng(2)

    def loop():
        for info in infos:
            start = int(rng.integers(0, info.n_frames - CLIP + 1))
            frames = []
            with av.open(str(info.path)) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    if i >= start:
                        frames.append(torch.from_numpy(frame.to_ndarray(format='rgb24')))
                    if i == start + CLIP - 1:
                        break
            clip = torch.stack(frames).permute(0, 3, 1, 2).float()
            F.interpolate(clip, size=(SIZE, SIZE), mode='bilinear', antialias=True)
        return len(infos)
    return loop


def videoclips_loop(files: list[Path], workers: int):
    """torchvision's VideoClips pipeline, or the reason it cannot run here."""
    try:
        import torchcodec.decoders  # noqa: F401  (fails without FFmpeg's shared libraries)
    except Exception as err:  # noqa: BLE001 - any import failure means: not available here
        return None, f'{type(err).__name__}: {str(err).splitlines()[0][:120]}'
    from torch.utils.data import DataLoader, Dataset
    from torchvision.datasets.samplers import RandomClipSampler
    from torchvision.datasets.video_utils import VideoClips
    from torchvision.transforms import v2
    started = time.perf_counter()
    clips = VideoClips([str(f) for f in files], clip_length_in_frames=CLIP, frames_between_clips=1,
                       output_format='TCHW')
    setup_s = time.perf_counter() - started
    mean, std = (list(map(float, s)) for s in kinetics_stats)
    tfms = v2.Compose([v2.Resize(SIZE, antialias=True), v2.RandomCrop(SIZE), v2.RandomHorizontalFlip(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    class Clips(Dataset):
        def __len__(self):
            return clips.num_clips()

        def __getitem__(self, idx):
            video, _, _, video_idx = clips.get_clip(idx)
            return tfms(video).transpose(0, 1), video_idx % 4     # (C, T, H, W)

    loader = DataLoader(Clips(), batch_size=8, sampler=RandomClipSampler(clips, 1), num_workers=workers,
                        persistent_workers=workers > 0)

    def loop():
        n = 0
        for x, _ in loader:
            n += len(x)
        return n
    return loop, f'set-up (frame timestamps of every video) {setup_s:.1f} s'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--n-videos', type=int, default=64)
    parser.add_argument('--side', type=int, default=240)
    parser.add_argument('--frames', type=int, default=96)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        files = make_videos(root, args.n_videos, args.side, args.frames)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f'{len(files)} videos of {args.frames} frames at {args.side}x{args.side} ({size_mb:.1f} MB), written in '
              f'{time.perf_counter() - started:.1f} s; clips of {CLIP} frames at {SIZE}x{SIZE}')
        loops = {f'(a) learner training loader, {args.workers} workers': learner_loop(root, args.workers),
                 '(b) read_frames alone, 1 process': decoder_loop(files),
                 '(c) naive PyAV decode from the start + torch resize, 1 process': naive_loop(files)}
        baseline, note = videoclips_loop(files, args.workers)
        if baseline is not None:
            loops[f'(d) torchvision VideoClips + transforms.v2, {args.workers} workers'] = baseline
        for loop in loops.values():  # warm-up: worker start, first file opens
            loop()
        rates = {name: [] for name in loops}
        for _ in range(args.repeats):
            for name, loop in loops.items():
                rates[name].append(rate(loop))
        ours = statistics.median(rates[next(iter(loops))])
        for name, values in rates.items():
            median = statistics.median(values)
            print(f'{name:72s} {median:7.1f} clips/s  ({median / ours:.2f}x the loader)')
        print(f'(d) torchvision VideoClips: {note}' if baseline is not None else f'(d) torchvision VideoClips: not run '
              f'here ({note})')


if __name__ == '__main__':
    main()
