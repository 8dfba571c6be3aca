"""DDP scaling: the same total work (items x epochs, global batch) trained by 1 and by N processes with
`learner.launch`, reporting training images/s, the speed-up over one process and the final validation loss.

    python benchmarks/ddp_scaling.py                          # CPU: 1 and 2 processes (gloo), cores split evenly
    python benchmarks/ddp_scaling.py --device cuda --arch resnet18 --sz 64 --n-items 8192
                                                              # GPUs: 1 .. torch.cuda.device_count() processes (NCCL)

On CPU each process gets cpu_count // n torch threads (`--threads` to fix it), so 1 and 2 processes use the same
cores: on a 2-core machine expect little gain (the point is that the path is real and measured), and on a machine
shared with other work, intra-op threads that wait for each other can make the 1-process figure much worse. On GPUs DDP needs one GPU per process, so a
machine with one GPU measures one process only. Each run does one warm-up epoch (not timed), then `--epochs` timed
epochs of training with validation; images/s counts training images only.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

from learner import distributed
from learner.launch import launch


def arrays(n_items: int, sz: int, n_classes: int = 10, seed: int = 0):
    """Seeded uint8 images whose mean brightness depends on the class: learnable, no files needed."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_items) % n_classes
    x = rng.normal(y[:, None, None, None] * (200 / n_classes) + 30, 40, (n_items, sz, sz, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def make_model(arch: str, n_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    if arch == 'resnet18':
        import torchvision
        return torchvision.models.resnet18(num_classes=n_classes)

    def block(ni, nf):
        return nn.Sequential(nn.Conv2d(ni, nf, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())
    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128),
                         nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), nn.Linear(128, n_classes))


def train(args, global_bs: int) -> dict:
    """One process's part (launched on every process): build the data and learner, warm up, time the epochs."""
    from learner import ImageClassifierData
    from learner.learner import Learner
    from learner.metrics import accuracy
    if args.threads:
        torch.set_num_threads(args.threads)
    n_procs = distributed.world_size()
    bs = global_bs // n_procs                       # per process: the global batch stays the same
    x, y = arrays(args.n_items + args.n_valid, args.sz)
    trn, val = (x[:args.n_items], y[:args.n_items]), (x[args.n_items:], y[args.n_items:])
    device = torch.device('cuda') if args.device == 'cuda' else torch.device('cpu')
    data = ImageClassifierData.from_arrays('.', trn, val, bs=bs, num_workers=0, device=device)
    learn = Learner(data, make_model(args.arch), metrics=[accuracy], progress=False,
                    mixed_precision='bf16' if args.device == 'cuda' else 'fp32')
    learn.fit_one_cycle(1, args.lr)                 # warm-up: allocations, DDP buckets, cudnn autotuning
    distributed.barrier()
    start = time.perf_counter()
    result = learn.fit_one_cycle(args.epochs, args.lr)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {'elapsed': elapsed, 'valid_loss': result[0], 'accuracy': result[1], 'bs': bs,
            'threads': torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    ap.add_argument('--procs', type=int, nargs='+', default=None, help='process counts (default: 1 and 2 on CPU, '
                    '1 .. GPU count on CUDA)')
    ap.add_argument('--arch', choices=['small', 'resnet18'], default='small')
    ap.add_argument('--sz', type=int, default=32)
    ap.add_argument('--n-items', type=int, default=2048, help='training images')
    ap.add_argument('--n-valid', type=int, default=256)
    ap.add_argument('--bs', type=int, default=64, help='global batch (split over processes)')
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--lr', type=float, default=0.05, help='max lr of 1cycle, for the global batch')
    ap.add_argument('--threads', type=int, default=None, help='torch threads per process (default: CPUs // processes; '
                    'on a busy machine 1 is steadier)')
    ap.add_argument('--timeout', type=float, default=1800)
    args = ap.parse_args()
    if args.procs is None:
        args.procs = [1, 2] if args.device == 'cpu' else list(range(1, max(torch.cuda.device_count(), 1) + 1))
    if args.device == 'cuda' and max(args.procs) > torch.cuda.device_count():
        raise SystemExit(f'{max(args.procs)} processes need as many GPUs; this machine has '
                         f'{torch.cuda.device_count()} (DDP runs one process per GPU)')
    print(f'torch {torch.__version__}, {args.device}, {os.cpu_count()} CPUs, arch {args.arch} at {args.sz} px, '
          f'{args.n_items} train / {args.n_valid} valid images, global bs {args.bs}, {args.epochs} timed epochs')
    print(f'{"processes":>9s} {"bs/process":>10s} {"threads":>7s} {"images/s":>9s} {"speed-up":>8s} '
          f'{"valid_loss":>10s} {"accuracy":>8s}')
    base = None
    for n in args.procs:
        got = launch(train, n, args, args.bs, timeout=args.timeout)
        rate = args.n_items * args.epochs / got['elapsed']
        base = base or rate
        print(f'{n:9d} {got["bs"]:10d} {got["threads"]:7d} {rate:9.0f} {rate / base:8.2f}x '
              f'{got["valid_loss"]:10.4f} {got["accuracy"]:8.3f}', flush=True)


if __name__ == '__main__':
    main()
