"""Motion only: the validation accuracy of one-frame, frame-pooling and 3D networks on `data/make_motion.py` videos.

    python benchmarks/video_motion.py [--only frame,pool,c3d,r3d] [--epochs 8] [--side 32] [--train 150]
                                      [--valid 25] [--seeds 0]

No single frame of these videos says which way the shapes move (they wrap around a torus, so they can be anywhere in
any frame), so:
  * `frame`: a 2D network on one frame (resnet18 through `FramesBody`, `frames_per_clip=1`) stays at chance, 25%;
  * `pool`: the same 2D network on 16 frames, its features max- and mean-pooled over time (order-blind), can at best
    tell horizontal from vertical: 50%;
  * `c3d`: the seed's C3D_BN (width 8, 128 hidden units), 16 frames;
  * `r3d`: torchvision's r3d_18 (random weights, every layer trained), 8 frames 2 apart (the same 15 frames of time
    at half the cost);
the 3D networks see the order of the frames and learn the direction. Every model starts from random weights and
trains with the course's calls (`fit_one_cycle`, Adam, the learner's defaults otherwise) on one random clip per
video per epoch; validation accuracy is per video, 3 clips averaged. Prints a table with the training time.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from learner import (C3D_BN, ConvLearner, Learner, VideoClassifierData, accuracy, accuracy_np,  # noqa: E402
                     kinetics_stats, r3d_18, resnet18, tfms_from_stats)

MODELS = {  # name: (what it is, frames per clip, stride)
    'frame': ('resnet18 on 1 frame (FramesBody)', 1, 1),
    'pool': ('resnet18 on 16 frames, pooled over time', 16, 1),
    'c3d': ('C3D_BN (width 8, 128 hidden)', 16, 1),
    'r3d': ('r3d_18, random init, every other frame', 8, 2),
}


def make_data(root: Path, side: int, n_frames: int, n_train: int, n_valid: int) -> Path:
    spec = importlib.util.spec_from_file_location('make_motion', ROOT / 'data' / 'make_motion.py')
    motion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(motion)
    return motion.make(root / 'motion', size=side, n_frames=n_frames, n_train=n_train, n_valid=n_valid)


def build(name: str, path: Path, sz: int, bs: int, workers: int):
    _, frames, stride = MODELS[name]
    data = VideoClassifierData.from_paths(path, tfms=tfms_from_stats(kinetics_stats, sz), bs=bs,
                                          frames_per_clip=frames, stride=stride, clips_per_video=3,
                                          num_workers=workers)
    adam = torch.optim.Adam
    if name == 'c3d':
        return Learner(data, C3D_BN(data.c, width=8, n_hidden=128, n_frames=frames, sz=sz), opt_fn=adam,
                       metrics=[accuracy], progress=False)
    learn = ConvLearner.pretrained(r3d_18 if name == 'r3d' else resnet18, data, pretrained=False, opt_fn=adam,
                                   progress=False)
    learn.unfreeze()  # random weights: every layer trains
    return learn


def run(name: str, path: Path, args, seed: int) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    learn = build(name, path, args.side, args.bs, args.workers)
    n_params = sum(p.numel() for p in learn.model.parameters())
    started = time.perf_counter()
    learn.fit_one_cycle(args.epochs, max_lr=args.lr)
    seconds = time.perf_counter() - started
    log_preds, y = learn.predict_with_targs()
    per_epoch = [round(float(m[0]), 3) for m in learn.recorder.metrics]
    return {'accuracy': float(accuracy_np(np.exp(log_preds), y)), 'seconds': seconds, 'params': n_params,
            'per_epoch': per_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', default='frame,pool,c3d,r3d')
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--side', type=int, default=32, help='frame side of the generated videos and the clips')
    parser.add_argument('--frames', type=int, default=24, help='frames per generated video')
    parser.add_argument('--train', type=int, default=100, help='training videos per class')
    parser.add_argument('--valid', type=int, default=25, help='validation videos per class')
    parser.add_argument('--bs', type=int, default=16)
    parser.add_argument('--lr', type=float, default=3e-3)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seeds', default='0')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter('ignore')
    with tempfile.TemporaryDirectory() as tmp:
        path = make_data(Path(tmp), args.side, args.frames, args.train, args.valid)
        print(f'motion: 4 classes, {args.train} training and {args.valid} validation videos per class, '
              f'{args.frames} frames of {args.side}x{args.side}; {args.epochs} epochs of 1cycle (Adam, max_lr '
              f'{args.lr}), bs {args.bs}, {args.threads} threads')
        print('| model | frames per clip (stride) | parameters | validation accuracy (3 clips averaged) | '
              'training time |')
        print('|---|---:|---:|---:|---:|')
        for name in args.only.split(','):
            results = [run(name, path, args, int(seed)) for seed in args.seeds.split(',')]
            accs = [r['accuracy'] for r in results]
            secs = [r['seconds'] for r in results]
            spread = f' ± {np.std(accs):.3f}' if len(accs) > 1 else ''
            print(f'| {MODELS[name][0]} | {MODELS[name][1]} ({MODELS[name][2]}) | {results[0]["params"]:,} | '
                  f'{np.mean(accs):.3f}{spread} | '
                  f'{np.mean(secs) / 60:.1f} min |', flush=True)
            print(f'<!-- {name}: accuracy per epoch {[r["per_epoch"] for r in results]} -->', flush=True)


if __name__ == '__main__':
    main()
