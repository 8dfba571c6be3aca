"""Loop overhead: the same small CNN, in-memory data and 1cycle schedule trained by
(a) a hand-written PyTorch loop, (b) `learn.fit_one_cycle` with progress bars on, (c) with them off,
(d) fastai 2.x when it is importable. Variants are interleaved over the repeats; prints the median seconds per
epoch, the ratio to (a) and the final validation accuracy.

    python benchmarks/loop_overhead.py [--epochs 3] [--repeats 3] [--per-class 100] [--bs 64]

Run it with a Python that has fastai installed (e.g. a venv with --system-site-packages) to include (d).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learner.callbacks import progress as progress_module
from learner.learner import Learner
from learner.metrics import accuracy

MAX_LR, DIV, PCT, MOMS = 0.1, 25.0, 0.3, (0.95, 0.85)


def load_arrays(per_class: int):
    """make_data shapes from ../shared when present (uint8 NHWC), else seeded random images with learnable means."""
    path = Path(__file__).resolve().parents[1].parent / 'shared' / 'acceptance' / 'make_data.py'
    if path.exists():
        spec = importlib.util.spec_from_file_location('make_data', path)
        md = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(md)
        return md.arrays(per_class, 32, seed=0), md.arrays(max(per_class // 5, 4), 32, seed=1)
    rng = np.random.default_rng(0)
    def fake(n):
        y = np.arange(n * 10) % 10
        x = np.clip(rng.normal(y[:, None, None, None] * 20 + 40, 40, (len(y), 32, 32, 3)), 0, 255)
        return x.astype(np.uint8), y.astype(np.int64)
    return fake(per_class), fake(max(per_class // 5, 4))


def to_tensors(x: np.ndarray, y: np.ndarray):
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # (N, 3, 32, 32)
    return (xt - 0.5) / 0.25, torch.from_numpy(y)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    def block(ni, nf):
        return nn.Sequential(nn.Conv2d(ni, nf, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())
    return nn.Sequential(block(3, 16), block(16, 32), block(32, 64),
                         nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), nn.Linear(64, 10))


def loaders(trn, val, bs):
    gen = torch.Generator().manual_seed(0)
    return (DataLoader(TensorDataset(*trn), batch_size=bs, shuffle=True, generator=gen),
            DataLoader(TensorDataset(*val), batch_size=bs * 2))


def valid_accuracy(model, val_dl) -> float:
    model.eval()
    with torch.no_grad():
        preds = torch.cat([model(x) for x, _ in val_dl])
    return accuracy(preds, torch.cat([y for _, y in val_dl]))


def run_plain(trn, val, bs, epochs):
    trn_dl, val_dl = loaders(trn, val, bs)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=MAX_LR / DIV, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, MAX_LR, total_steps=epochs * len(trn_dl), pct_start=PCT,
                                                div_factor=DIV, final_div_factor=1e4, base_momentum=MOMS[1],
                                                max_momentum=MOMS[0])
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in trn_dl:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        model.eval()  # validation each epoch, as the libraries do
        with torch.no_grad():
            valid_loss = sum(F.cross_entropy(model(x), y, reduction='sum') for x, y in val_dl).item() / len(val[1])
        assert valid_loss == valid_loss, 'NaN valid loss'
    return time.perf_counter() - start, valid_accuracy(model, val_dl)


class _Data:
    def __init__(self, trn_dl, val_dl):
        self.trn_dl, self.val_dl, self.test_dl = trn_dl, val_dl, None
        self.c, self.classes, self.is_multi, self.path = 10, [str(i) for i in range(10)], False, Path('.')
        self.device = torch.device('cpu')


def run_learner(trn, val, bs, epochs, bars: bool):
    trn_dl, val_dl = loaders(trn, val, bs)
    model = make_model()
    learn = Learner(_Data(trn_dl, val_dl), model, metrics=[accuracy], progress=bars)
    live = progress_module._live_display
    progress_module._live_display = lambda: True  # draw the bars even when stdout is a pipe (worst case)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            learn.fit_one_cycle(epochs, MAX_LR, moms=MOMS, div_factor=DIV, pct_start=PCT)
            elapsed = time.perf_counter() - start
    finally:
        progress_module._live_display = live
    return elapsed, valid_accuracy(model, val_dl)


def run_fastai(trn, val, bs, epochs):
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner as FastaiLearner
    from fastai.optimizer import SGD
    import fastai.callback.schedule  # noqa: F401  (adds fit_one_cycle)
    trn_dl, val_dl = loaders(trn, val, bs)
    model = make_model()
    learn = FastaiLearner(DataLoaders(trn_dl, val_dl, device='cpu'), model, loss_func=F.cross_entropy,
                          opt_func=partial(SGD, mom=0.9), wd=0.0, metrics=[])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        start = time.perf_counter()
        learn.fit_one_cycle(epochs, MAX_LR, div=DIV, pct_start=PCT, moms=(MOMS[0], MOMS[1], MOMS[0]), wd=0.0)
        elapsed = time.perf_counter() - start
    return elapsed, valid_accuracy(model, val_dl)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--per-class', type=int, default=100)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--threads', type=int, default=1, help='torch threads (1: steadier on a shared machine)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    (xt, yt), (xv, yv) = load_arrays(args.per_class)
    trn, val = to_tensors(xt, yt), to_tensors(xv, yv)
    variants = {'(a) plain PyTorch': run_plain,
                '(b) learner, bars on': partial(run_learner, bars=True),
                '(c) learner, bars off': partial(run_learner, bars=False)}
    try:
        import fastai
        variants[f'(d) fastai {fastai.__version__}'] = run_fastai
    except ImportError:
        print('(d) skipped: fastai is not importable here (pip install fastai in a separate venv to include it)')
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, {len(yt)} train / {len(yv)} valid items, '
          f'bs {args.bs}, {args.epochs} epochs, {args.repeats} interleaved repeats (order rotated)')
    times = {k: [] for k in variants}
    accs = {k: [] for k in variants}
    names = list(variants)
    for rep in range(args.repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:  # rotate: no variant always runs first
            seconds, acc = variants[name](trn, val, args.bs, args.epochs)
            times[name].append(seconds / args.epochs)
            accs[name].append(acc)
    base = statistics.median(times['(a) plain PyTorch'])
    print(f'{"variant":26s} {"s/epoch (median)":>17s} {"min":>7s} {"ratio to (a)":>13s} {"accuracy":>9s}')
    for name in variants:
        med = statistics.median(times[name])
        print(f'{name:26s} {med:17.4f} {min(times[name]):7.4f} {med / base:13.3f} {np.mean(accs[name]):9.3f}')


if __name__ == '__main__':
    main()
