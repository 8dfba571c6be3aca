"""Reproduce the seed posts' experiments on real data and write benchmarks/RESULTS.md.

Three sections, each run with the library the way the posts' code uses it:

    cifar        post 003's four networks on the whole CIFAR-10 (50k train / 10k test) from
                 ../shared/data/cifar10.tgz, each with the post's own learning rates, epochs and data
                 recipe (bs 256, RandomFlip, symmetric pad 4, the post's normalization stats, SGD momentum 0.9).
                 A row more than 2 points under the post's figure gets a referee: a plain PyTorch replica of
                 the same run (same model class, same seed so the same initial weights, same augmentation and
                 per-batch lr schedule, no learner code).
    resnets      the course Resnet and ResNet-9 with fit_one_cycle, each given 10 minutes of training on this
                 CPU: the throughput is measured first, then the epochs and images are chosen to fill the budget.
    hymenoptera  efficientnet_lite0 on the ants/bees photos, as ../shared/acceptance/seed_transfer.py does it:
                 feature extraction vs fine-tuning (post 000) and fixed lr with step decay vs 1cycle (post 004),
                 3 seeds each.

Raw results go to benchmarks/results/results.json (one entry per section, so sections can be rerun on their own);
RESULTS.md and the plots are rendered from it after every section.

Usage:
    python benchmarks/reproduce_seeds.py                       # everything: 40-90 minutes on 2 shared CPU cores
    python benchmarks/reproduce_seeds.py --only cifar          # or resnets, hymenoptera (several allowed)
    python benchmarks/reproduce_seeds.py --quick               # smoke test on small subsets, into a temp folder
    python benchmarks/reproduce_seeds.py --replica always      # referee every CIFAR row (+13 min), not only short ones
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from learner import (ConvLearner, ImageClassifierData, Learner, RandomFlip, ResNet9, Resnet, SimpleNet, ConvNet,
                     ConvBnNet, ConvBnNet2, accuracy, accuracy_np, efficientnet_lite0, tfms_from_model,
                     tfms_from_stats, transforms_side_on)

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / 'shared'
CIFAR_TGZ = SHARED / 'data' / 'cifar10.tgz'
HYMENOPTERA = SHARED / 'data' / 'hymenoptera'
# post 003's normalization (per-channel mean and std of CIFAR-10's training pixels, 0..1 units)
CIFAR_STATS = (np.array([0.4914, 0.48216, 0.44653]), np.array([0.24703, 0.24349, 0.26159]))
TOLERANCE = 2.0  # points of accuracy a reproduction may fall under the post's figure

# post 003, verbatim: the model, the LR range test it ran first, and its fits as (lr, n_cycle, cycle_len)
POST_NETS = {
    'SimpleNet': dict(make=lambda: SimpleNet([32 * 32 * 3, 40, 10]), arch='SimpleNet([3072, 40, 10])',
                      lr_find={}, fits=[(1e-2, 2, None), (1e-2, 2, 1)], post=47.24),
    'ConvNet': dict(make=lambda: ConvNet([3, 20, 40, 80], 10), arch='ConvNet([3, 20, 40, 80], 10)',
                    lr_find={'end_lr': 100}, fits=[(1e-1, 2, None), (1e-1, 4, 1)], post=58.17),
    'ConvBnNet': dict(make=lambda: ConvBnNet([10, 20, 40, 80, 160], 10), arch='ConvBnNet([10, 20, 40, 80, 160], 10)',
                      lr_find=None, fits=[(3e-2, 2, None), (1e-1, 4, 1)], post=70.16),
    'ConvBnNet2': dict(make=lambda: ConvBnNet2([10, 20, 40, 80, 160], 10),
                       arch='ConvBnNet2([10, 20, 40, 80, 160], 10)',
                       lr_find=None, fits=[(1e-2, 2, None), (1e-2, 2, 1)], post=66.4),
}

# the 10-minute rows. Peak lr: about half the lr at the minimum of an LR range test over 40 (Resnet, bs 256) and 30
# (ResNet9, bs 128) batches of this data (minima at 0.037 and 0.42; Page's ResNet-9 recipe peaks at 0.4). Weight decay:
# the course's 1e-5 and Page's 5e-4 (decoupled here, the same step as their L2 with plain SGD).
BUDGET_NETS = {
    'Resnet': dict(make=lambda: Resnet([10, 20, 40, 80, 160], 10), arch='Resnet([10, 20, 40, 80, 160], 10)',
                   max_lr=2e-2, wd=1e-5, bs=256, note='the course ResNet (fastai 0.7 lesson 7), hand-written BN'),
    'ResNet9': dict(make=lambda: ResNet9(10), arch='ResNet9(10)', max_lr=0.2, wd=5e-4, bs=128,
                    note="David Page's DAWNBench ResNet-9"),
}


# ----------------------------------------------------------------------------------------------- helpers

def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (the library draws shuffles and augmentation from torch's generator)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_checksum(model: torch.nn.Module) -> float:
    """Sum of every parameter (float64): equal for two models built the same way after the same seed."""
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def minutes(seconds: float) -> str:
    return f'{seconds / 60:.1f} min' if seconds >= 60 else f'{seconds:.0f} s'


def load_cifar(workdir: Path, n_train: int | None, n_valid: int | None) -> dict:
    """CIFAR-10 from the archive as uint8 (N, 32, 32, 3) arrays, decoded once (the same pixels `from_paths` reads).

    Args:
        workdir: the archive is unpacked here (`cifar10/train/<class>/*.jpg`, `cifar10/test/<class>/*.jpg`).
        n_train, n_valid: images per class to keep (None: all, 5000 and 1000).
    """
    root = workdir / 'cifar10'
    if not (root / 'test').is_dir():
        with tarfile.open(CIFAR_TGZ) as archive:
            archive.extractall(workdir, filter='data')
    out = {}
    for split, limit in (('train', n_train), ('test', n_valid)):
        classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        xs, ys = [], []
        for label, name in enumerate(classes):
            for f in sorted((root / split / name).iterdir())[:limit]:
                xs.append(np.asarray(Image.open(f).convert('RGB')))
                ys.append(label)
        out[split] = (np.stack(xs), np.array(ys, dtype=np.int64))
        out['classes'] = classes
    return out


def same_pixels_as_from_paths(workdir: Path, arrays: dict, n_check: int = 200) -> bool:
    """True when `from_paths` on the unpacked folder gives the arrays' pixels and labels for `n_check` random test
    images (its validation transforms, pad 4 then a centre crop, return the image as it is)."""
    tfms = tfms_from_stats(CIFAR_STATS, 32, aug_tfms=[RandomFlip()], pad=4)
    data = ImageClassifierData.from_paths(workdir / 'cifar10', val_name='test', tfms=tfms, bs=256, num_workers=0)
    x, y = arrays['test']
    if len(data.val_ds) != len(x):  # a subset (--quick): nothing to compare item by item
        return False
    picks = np.random.RandomState(0).choice(len(x), min(n_check, len(x)), replace=False)
    return all(np.array_equal(data.val_ds.item_uint8(int(i))[0].permute(1, 2, 0).numpy(), x[i])
               and int(data.val_ds.y[i]) == int(y[i]) for i in picks)


def cifar_data(arrays: dict, bs: int = 256, n_images: int | None = None, seed: int = 0) -> ImageClassifierData:
    """Post 003's `get_data(32, bs)` on the arrays: RandomFlip, pad sz//8 = 4 (symmetric), random crop 32.

    `n_images`: a random subset of the training images (the same for a given seed), for the budget rows.
    """
    tfms = tfms_from_stats(CIFAR_STATS, 32, aug_tfms=[RandomFlip()], pad=32 // 8)
    x, y = arrays['train']
    if n_images is not None and n_images < len(x):
        keep = np.sort(np.random.RandomState(seed).permutation(len(x))[:n_images])
        x, y = x[keep], y[keep]
    return ImageClassifierData.from_arrays(tempfile.gettempdir(), (x, y), arrays['test'], bs=bs, tfms=tfms,
                                           classes=arrays['classes'])


# ----------------------------------------------------------------------------------------------- CIFAR: the posts

def run_post_net(name: str, arrays: dict, seed: int, max_epochs: int | None, plots: Path) -> dict:
    """Post 003's code for one network, through the library; returns the row (accuracy in %, curve, times)."""
    spec = POST_NETS[name]
    data = cifar_data(arrays)
    seed_everything(seed)
    learn = ConvLearner.from_model_data(spec['make'](), data)
    initial = weights_checksum(learn.model)
    lr_find_s = 0.0
    if spec['lr_find'] is not None:  # the post looked first; on arrays it changes nothing later (see lr_find)
        start = time.perf_counter()
        learn.lr_find(**spec['lr_find'])
        lr_find_s = time.perf_counter() - start
        fig = learn.sched.plot()
        fig.suptitle(f'{name}: lr_find({", ".join(f"{k}={v}" for k, v in spec["lr_find"].items())})')
        fig.savefig(plots / f'lr_find_{name.lower()}.png', dpi=70, bbox_inches='tight')
    curve, start, epochs = [], time.perf_counter(), 0
    for lr, n_cycle, cycle_len in spec['fits']:
        n_cycle = n_cycle if max_epochs is None else min(n_cycle, max_epochs)
        learn.fit(lr, n_cycle, cycle_len=cycle_len)
        curve += [100 * m[0] for m in learn.recorder.metrics]
        epochs += n_cycle * (cycle_len or 1)
    return {'name': name, 'arch': spec['arch'], 'params': n_params(learn.model), 'epochs': epochs, 'seed': seed,
            'recipe': recipe_text(spec), 'train_s': time.perf_counter() - start, 'lr_find_s': lr_find_s,
            'accuracy': curve[-1], 'curve': curve, 'post': spec['post'], 'n_train': len(data.trn_ds),
            'n_valid': len(data.val_ds), 'initial_weights': initial}


def recipe_text(spec: dict) -> str:
    parts = [] if spec['lr_find'] is None else [
        'lr_find(' + ', '.join(f'{k}={v}' for k, v in spec['lr_find'].items()) + ')']
    for lr, n_cycle, cycle_len in spec['fits']:
        parts.append(f'fit({lr:g}, {n_cycle}' + (f', cycle_len={cycle_len})' if cycle_len else ')'))
    return '; '.join(parts)


def symmetric_pad_crop_flip(xb: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """The post's augmentation on a uint8 (B, C, H, W) batch, written out: symmetric (edge-repeating) padding by
    `pad`, a random H x W crop per image, a horizontal flip with probability 0.5 per image."""
    n, _, h, w = xb.shape
    def padded_index(size):  # e.g. pad 2, size 4: [1, 0, 0, 1, 2, 3, 3, 2]
        return torch.cat([torch.arange(pad - 1, -1, -1), torch.arange(size),
                          torch.arange(size - 1, size - 1 - pad, -1)])
    rows = torch.randint(0, 2 * pad + 1, (n, 1)) + torch.arange(h)  # (B, H) rows of the padded image
    cols = torch.randint(0, 2 * pad + 1, (n, 1)) + torch.arange(w)  # (B, W)
    flip = torch.rand(n) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    rows, cols = padded_index(h)[rows], padded_index(w)[cols]  # -> rows/cols of the original image
    batch = torch.arange(n)[:, None, None]
    return xb.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)


def normalize(xb: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(s, dtype=torch.float32).view(1, 3, 1, 1) for s in CIFAR_STATS)
    return (xb.float() / 255 - mean) / std


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 256) -> float:
    """Accuracy in % of `model` in eval mode on uint8 (N, C, H, W) images."""
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(normalize(x[i:i + bs])).argmax(1) == y[i:i + bs]).sum())
                      for i in range(0, len(x), bs))
    return 100 * correct / len(x)


def plain_replica(name: str, arrays: dict, seed: int, max_epochs: int | None) -> dict:
    """The same run as `run_post_net` with no learner code: torch DataLoader over a TensorDataset, SGD momentum
    0.9, the lr set per batch (constant for `fit(lr, n)`, a cosine from lr to 0 over each epoch for cycle_len=1)."""
    spec = POST_NETS[name]
    seed_everything(seed)
    model = spec['make']()  # same seed, same constructor: the learner's run started from these weights
    initial = weights_checksum(model)
    x = torch.from_numpy(arrays['train'][0]).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(arrays['train'][1])
    xv = torch.from_numpy(arrays['test'][0]).permute(0, 3, 1, 2).contiguous()
    yv = torch.from_numpy(arrays['test'][1])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=256, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    curve, start = [], time.perf_counter()
    for lr, n_cycle, cycle_len in spec['fits']:
        n_cycle = n_cycle if max_epochs is None else min(n_cycle, max_epochs)
        for _ in range(n_cycle * (cycle_len or 1)):
            model.train()
            for i, (xb, yb) in enumerate(loader):
                pos = i / len(loader)  # position in this one-epoch cycle
                opt.param_groups[0]['lr'] = lr if cycle_len is None else lr * (1 + math.cos(math.pi * pos)) / 2
                loss = F.nll_loss(model(normalize(symmetric_pad_crop_flip(xb))), yb)  # the nets return log-probs
                opt.zero_grad()
                loss.backward()
                opt.step()
            curve.append(evaluate(model, xv, yv))
    return {'accuracy': curve[-1], 'curve': curve, 'train_s': time.perf_counter() - start, 'seed': seed,
            'initial_weights': initial}


def section_cifar(args, plots: Path) -> dict:
    """The four post rows; a plain replica referees each row under the post's figure by more than TOLERANCE."""
    start = time.perf_counter()
    arrays = load_cifar(args.workdir, *((100, 50) if args.quick else (None, None)))
    max_epochs = 1 if args.quick else None
    rows = []
    for name in POST_NETS:
        print(f'--- {name}', flush=True)
        row = run_post_net(name, arrays, args.seed, max_epochs, plots)
        short = row['accuracy'] < row['post'] - TOLERANCE
        if args.replica == 'always' or (args.replica == 'short' and short):
            print(f'--- {name}: plain PyTorch replica (same seed)', flush=True)
            row['replica'] = plain_replica(name, arrays, args.seed, max_epochs)
        print(json.dumps({k: v for k, v in row.items() if k != 'curve'}, default=str), flush=True)
        rows.append(row)
    return {'rows': rows, 'loading': 'decoded once into uint8 arrays, `ImageClassifierData.from_arrays`',
            'same_pixels': same_pixels_as_from_paths(args.workdir, arrays), 'wall_s': time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------- CIFAR: 10 minutes

def images_per_second(spec: dict, arrays: dict, n_batches: int = 4) -> float:
    """Training throughput of a throwaway copy of the network through the library's loader (first batch skipped)."""
    data = cifar_data(arrays, bs=spec['bs'])
    model = spec['make']()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    n_batches = max(1, min(n_batches, len(data.trn_dl) - 1))
    batches = iter(data.trn_dl)
    for i in range(n_batches + 1):
        if i == 1:
            start = time.perf_counter()
        xb, yb = next(batches)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        opt.zero_grad()
    return n_batches * spec['bs'] / (time.perf_counter() - start)


def run_budget_net(name: str, arrays: dict, seed: int, budget_s: float) -> dict:
    """fit_one_cycle sized to `budget_s` for the whole fit (training and each epoch's validation): as many epochs
    over all training images as fit, rounded up, then a random subset small enough that they still fit.

    A validation image is counted as a third of a training image (a forward pass without the backward one).
    """
    spec = BUDGET_NETS[name]
    ips = images_per_second(spec, arrays)
    n_all, n_valid = len(arrays['train'][0]), len(arrays['test'][0])
    n_epochs = max(1, math.ceil(budget_s * ips / (n_all + n_valid / 3)))
    n_images = max(spec['bs'], min(n_all, int(budget_s * ips / n_epochs - n_valid / 3)))
    data = cifar_data(arrays, bs=spec['bs'], n_images=n_images, seed=seed)
    seed_everything(seed)
    learn = Learner.from_model_data(spec['make'](), data, metrics=[accuracy])
    start = time.perf_counter()
    learn.fit_one_cycle(n_epochs, max_lr=spec['max_lr'], wd=spec['wd'])
    curve = [100 * m[0] for m in learn.recorder.metrics]
    return {'name': name, 'arch': spec['arch'], 'params': n_params(learn.model), 'epochs': n_epochs,
            'n_images': len(data.trn_ds), 'n_valid': len(data.val_ds), 'bs': spec['bs'], 'max_lr': spec['max_lr'],
            'wd': spec['wd'], 'measured_ips': ips, 'budget_s': budget_s, 'train_s': time.perf_counter() - start,
            'accuracy': curve[-1], 'curve': curve, 'seed': seed, 'note': spec['note']}


def section_resnets(args, plots: Path) -> dict:
    start = time.perf_counter()
    arrays = load_cifar(args.workdir, *((100, 50) if args.quick else (None, None)))
    budget = 20.0 if args.quick else args.budget_min * 60
    rows = []
    for name in BUDGET_NETS:
        print(f'--- {name}: fit_one_cycle in {minutes(budget)}', flush=True)
        rows.append(run_budget_net(name, arrays, args.seed, budget))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != 'curve'}), flush=True)
    return {'rows': rows, 'wall_s': time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------- hymenoptera

ARCH = efficientnet_lite0
DIFF_LRS = np.array([1e-4, 3e-4, 1e-3])  # body groups and head, as seed_transfer.py


def hymenoptera_data(sz: int, bs: int = 32) -> ImageClassifierData:
    tfms = tfms_from_model(ARCH, sz, aug_tfms=transforms_side_on, max_zoom=1.1)
    return ImageClassifierData.from_paths(HYMENOPTERA, tfms=tfms, bs=bs, val_name='val')


def valid_accuracy(learn) -> float:
    log_preds, y = learn.predict_with_targs()
    return 100 * accuracy_np(np.exp(log_preds), y)


def trained_head(data, seed: int, head_epochs: int) -> ConvLearner:
    """A new head trained on precomputed activations, then the whole network unfrozen (precompute off)."""
    seed_everything(seed)
    learn = ConvLearner.pretrained(ARCH, data, precompute=True)
    learn.fit(1e-2, head_epochs)
    learn.precompute = False
    learn.unfreeze()
    return learn


def history(learn, into: dict) -> None:
    """Append the last fit's per-batch lr and momentum and per-epoch accuracy (%) to `into`."""
    into.setdefault('lrs', []).extend(learn.recorder.lrs)
    into.setdefault('moms', []).extend(learn.recorder.moms)
    into.setdefault('curve', []).extend(100 * m[0] for m in learn.recorder.metrics)


def hymenoptera_seed(data, seed: int, epochs: int) -> dict:
    """seed_transfer.py's experiments for one seed: feature extraction then fine-tuning (post 000), and fixed lr
    with step decay vs 1cycle from the same trained head (post 004). Accuracies in %, per-epoch curves, seconds."""
    out, start = {}, time.perf_counter()
    seed_everything(seed)
    learn = ConvLearner.pretrained(ARCH, data, precompute=True)  # feature extraction: only the head trains
    learn.fit(1e-2, 3 * epochs)
    out['feature extraction'] = {'accuracy': valid_accuracy(learn),
                                 'curve': [100 * m[0] for m in learn.recorder.metrics]}
    learn.precompute = False
    learn.unfreeze()  # fine-tuning: everything trains, earlier layer groups at lower lrs
    learn.fit(DIFF_LRS, epochs)
    out['fine-tuning'] = {'accuracy': valid_accuracy(learn), 'curve': [100 * m[0] for m in learn.recorder.metrics]}
    out['fe_ft_s'] = time.perf_counter() - start

    start, fixed = time.perf_counter(), {}
    learn = trained_head(data, seed, 3 * epochs)
    for epoch in range(epochs):  # the post's fixed lr, divided by 3 after every epoch
        learn.fit(DIFF_LRS / 3 ** epoch, 1)
        history(learn, fixed)
    out['fixed lr, decayed'] = {**fixed, 'accuracy': valid_accuracy(learn)}
    one_cycle = {}
    learn = trained_head(data, seed, 3 * epochs)
    learn.fit_one_cycle(epochs, max_lr=slice(1e-4, 1e-3))
    history(learn, one_cycle)
    out['1cycle'] = {**one_cycle, 'accuracy': valid_accuracy(learn)}
    out['fixed_1cycle_s'] = time.perf_counter() - start
    return out


def section_hymenoptera(args, plots: Path) -> dict:
    start = time.perf_counter()
    sz, epochs = (64, 1) if args.quick else (args.sz, args.epochs)
    data = hymenoptera_data(sz)
    seeds = [args.seed] if args.quick else list(range(args.seed, args.seed + 3))
    runs = {}
    for seed in seeds:
        print(f'--- hymenoptera, seed {seed}', flush=True)
        runs[str(seed)] = hymenoptera_seed(data, seed, epochs)  # str keys: the same after a JSON round trip
        print(json.dumps({k: (v['accuracy'] if isinstance(v, dict) else v) for k, v in runs[str(seed)].items()}),
              flush=True)
    return {'runs': runs, 'sz': sz, 'epochs': epochs, 'seeds': seeds, 'n_train': len(data.trn_ds),
            'n_valid': len(data.val_ds), 'wall_s': time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------- plots

def _figure(n_axes: int, width: float = 4.6, height: float = 3.4):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * n_axes, height))
    return fig, [fig.add_subplot(1, n_axes, i + 1) for i in range(n_axes)]


def plot_cifar(results: dict, path: Path) -> None:
    """Validation accuracy per epoch of every CIFAR row, the posts' figures dashed."""
    posts = results.get('cifar', {}).get('rows', [])
    budget = results.get('resnets', {}).get('rows', [])
    fig, (ax, ax2) = _figure(2, width=5.2)
    for row in posts:
        line, = ax.plot(range(1, len(row['curve']) + 1), row['curve'], 'o-', label=row['name'])
        ax.axhline(row['post'], color=line.get_color(), ls='--', lw=1)
        if 'replica' in row:
            ax.plot(range(1, len(row['replica']['curve']) + 1), row['replica']['curve'], 'x:',
                    color=line.get_color(), label=f"{row['name']} (plain replica)")
    ax.set_title("post 003's code (dashed: the post's figure)", fontsize=9)
    for row in budget:
        ax2.plot(range(1, len(row['curve']) + 1), row['curve'], 'o-',
                 label=f"{row['name']}, {row['n_images']:,} images")
    ax2.set_title('fit_one_cycle, 10 CPU minutes', fontsize=9)
    for a in (ax, ax2):
        a.set_xlabel('epoch'); a.set_ylabel('validation accuracy (%)'); a.grid(alpha=0.3)
    if posts:
        ax.legend(fontsize=6, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    if budget:
        ax2.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=70, bbox_inches='tight')


def plot_hymenoptera(section: dict, path: Path) -> None:
    """Seed 0's lr and momentum schedules, fixed vs 1cycle, and every seed's validation accuracy per epoch."""
    runs = section['runs']
    first_seed = min(runs, key=int)
    first = runs[first_seed]
    fig, axes = _figure(3, width=4.0)
    for key, color in (('fixed lr, decayed', 'C0'), ('1cycle', 'C1')):
        axes[0].plot(first[key]['lrs'], color=color, label=key)
        axes[1].plot([np.nan if m is None else m for m in first[key]['moms']], color=color, label=key)
        for seed, run in runs.items():
            axes[2].plot(range(1, len(run[key]['curve']) + 1), run[key]['curve'], 'o-', color=color, alpha=0.7,
                         label=key if seed == first_seed else None)
    axes[0].set_title('lr of the head group (seed 0)', fontsize=9); axes[0].set_yscale('log')
    axes[1].set_title('momentum (seed 0)', fontsize=9)
    axes[2].set_title('validation accuracy, every seed', fontsize=9); axes[2].set_ylabel('%')
    for a in axes[:2]:
        a.set_xlabel('batch')
    axes[2].set_xlabel('epoch')
    for a in axes:
        a.legend(fontsize=7); a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=70, bbox_inches='tight')


# ----------------------------------------------------------------------------------------------- RESULTS.md

def spread(values) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f'{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:.1f} ({v.min():.1f}–{v.max():.1f})'


def cifar_verdict(row: dict) -> str:
    gap = row['accuracy'] - row['post']
    if gap >= -TOLERANCE:
        return f'{gap:+.2f}: within {TOLERANCE:g} points'
    text = f'{gap:+.2f}: short by {-gap:.2f} points'
    replica = row.get('replica')
    if replica is None:
        return text + '; no replica run'
    rgap = replica['accuracy'] - row['post']
    if rgap < -TOLERANCE:
        return text + f'; the plain replica is short too ({rgap:+.2f}): the recipe, not the library'
    return text + f'; the plain replica is not ({rgap:+.2f}): look at the library'


def render_cifar(section: dict) -> list:
    rows = section['rows']
    lines = ['## CIFAR-10: post 003\'s networks with the post\'s code', '',
             f"{rows[0]['n_train']:,} training / {rows[0]['n_valid']:,} test images (the archive's JPEGs, "
             f"{section['loading']}: the same pixels `from_paths` would decode every epoch"
             f"{', checked on 200 random test images' if section.get('same_pixels') else ''}), 32 px, bs 256, "
             "`tfms_from_stats(stats, 32, aug_tfms=[RandomFlip()], pad=4)` (symmetric padding, random crop), the "
             "post's stats, `ConvLearner.from_model_data` (SGD momentum 0.9, no weight decay), "
             f"seed {rows[0]['seed']}. Time: the fits (training and each epoch's validation), then the LR range test "
             'where the post ran one. The referee is a plain PyTorch loop (no learner code: a DataLoader over the same '
             'uint8 arrays, the same model class built after the same seed, the same pad/crop/flip and '
             'normalization, SGD momentum 0.9, the lr set per batch: constant, or a cosine to 0 over each one-epoch '
             'cycle); it runs for every row with `--replica always`, by default only for rows more than '
             f'{TOLERANCE:g} points under the post.', '',
             '| network | params | the post\'s calls | epochs | time | accuracy | post | vs the post | '
             'plain PyTorch replica (same seed) |', '|---|---:|---|---:|---:|---:|---:|---|---|']
    for r in rows:
        rep = r.get('replica')
        same_start = rep is not None and rep.get('initial_weights') == r.get('initial_weights')
        rep_text = '-' if rep is None else (f"{rep['accuracy']:.2f}% ({minutes(rep['train_s'])}"
                                            f"{', same initial weights' if same_start else ''})")
        lr_find = f" + {minutes(r['lr_find_s'])}" if r['lr_find_s'] else ''
        lines.append(f"| {r['name']} | {r['params']:,} | `{r['recipe']}` | {r['epochs']} | "
                     f"{minutes(r['train_s'])}{lr_find} | **{r['accuracy']:.2f}%** | {r['post']:.2f}% | "
                     f"{cifar_verdict(r)} | {rep_text} |")
    lines += ['', 'Accuracy after each epoch (%): ' + '; '.join(
        f"{r['name']} " + ' '.join(f'{a:.1f}' for a in r['curve']) for r in rows) + '.', '']
    return lines


def render_resnets(section: dict) -> list:
    lines = ['## CIFAR-10: 10 CPU minutes with `fit_one_cycle`', '',
             'Each network gets the budget for its whole fit (training plus each epoch\'s validation on the 10,000 '
             'test images). Its training throughput is measured on a few batches first; the plan is as many '
             'epochs over all 50,000 images as fit, rounded up, then a random subset small enough to still fit. '
             'Same data recipe as above (pad 4, flip, crop); 1cycle with the library defaults (momentum '
             '0.95-0.85, div 25, pct_start 0.3). The time column is what the fit took: the plan rests on a few '
             'batches\' throughput, so on a shared machine it can miss the budget by a tenth either way.', '',
             '| network | params | plan | max_lr, wd | measured | time | accuracy |',
             '|---|---:|---|---|---:|---:|---:|']
    for r in section['rows']:
        lines.append(f"| {r['name']}: {r['note']} | {r['params']:,} | `fit_one_cycle({r['epochs']})` on "
                     f"{r['n_images']:,} images, bs {r['bs']} | {r['max_lr']:g}, {r['wd']:g} | "
                     f"{r['measured_ips']:.0f} images/s | {minutes(r['train_s'])} | **{r['accuracy']:.2f}%** |")
    return lines + ['']


def render_hymenoptera(section: dict) -> list:
    runs = section['runs']
    seeds = ', '.join(str(s) for s in section['seeds'])
    post = {'feature extraction': '90%', 'fine-tuning': '95%', 'fixed lr, decayed': '94.11% (best epoch)',
            '1cycle': '96.07% (best epoch)'}
    lines = ['## hymenoptera (ants/bees): transfer learning with efficientnet_lite0', '',
             f"{section['n_train']} training / {section['n_valid']} validation photos at {section['sz']} px, "
             "`transforms_side_on`, max_zoom 1.1, bs 32, the flows of `../shared/acceptance/seed_transfer.py`: "
             f"feature extraction = the head alone on precomputed activations, `fit(1e-2, {3 * section['epochs']})`; "
             f"fine-tuning = then unfrozen, `fit([1e-4, 3e-4, 1e-3], {section['epochs']})`; fixed lr = from a "
             f"trained head, {section['epochs']} one-epoch fits at those lrs divided by 3 after each epoch; 1cycle = "
             f"from the same head, `fit_one_cycle({section['epochs']}, max_lr=slice(1e-4, 1e-3))`. Seeds {seeds}. "
             'The posts: 000 (its own 120-photo, 2-class set) and 004 (this data, resnet18, best epoch).', '',
             '| experiment | post | final accuracy, mean ± std (min–max) | best epoch, mean | per seed (final) |',
             '|---|---:|---:|---:|---|']
    for key in ('feature extraction', 'fine-tuning', 'fixed lr, decayed', '1cycle'):
        finals = [run[key]['accuracy'] for run in runs.values()]
        best = np.mean([max(run[key]['curve']) for run in runs.values()])
        lines.append(f"| {key} | {post[key]} | **{spread(finals)}%** | {best:.1f}% | "
                     + ', '.join(f'{a:.1f}' for a in finals) + ' |')
    def paired(a, b):  # per seed, a minus b in points
        return ', '.join(f"{run[a]['accuracy'] - run[b]['accuracy']:+.1f}" for run in runs.values())
    photo = 100 / section['n_valid']
    per_seed = np.mean([run['fe_ft_s'] + run['fixed_1cycle_s'] for run in runs.values()])
    ranges = {key: np.ptp([run[key]['accuracy'] for run in runs.values()]) for key in post}
    widest = max(ranges, key=ranges.get)
    lines += ['', f"Paired by seed: fine-tuning minus feature extraction {paired('fine-tuning', 'feature extraction')} "
                  f"points; 1cycle minus fixed lr {paired('1cycle', 'fixed lr, decayed')} points. One validation "
                  f"photo is {photo:.2f} points; the seed alone moves a figure by up to {ranges[widest]:.1f} points "
                  f'({widest}), so single runs, as in the posts, differ by a few photos either way.',
              '', f'Time per seed: {minutes(per_seed)} (all four runs; the precompute cache is built once).', '']
    return lines


def render(results: dict, out: Path) -> None:
    meta = results['meta']
    lines = ['# Reproducing the posts on real data', '',
             f"Written by `python benchmarks/reproduce_seeds.py` from `benchmarks/results/results.json`. Measured on "
             f"this project's machine: {meta['machine']}, torch {meta['torch']}, CPU only (one torch thread by "
             'default: on two cores that other jobs keep busy, two threads ran 2-10x slower than one). The machine '
             'is shared, so the times are wall-clock and noisy: expect ±30% between runs.', '',
             '| section | finished | load average at its start (1, 5, 15 min) | torch threads | wall-clock | '
             'arguments |',
             '|---|---|---|---:|---:|---|']
    for key in SECTIONS:
        if key in results:
            sec = results[key]
            lines.append(f"| {key} | {sec.get('when', '?')} | {sec.get('load', '?')} | {sec.get('threads', '?')} | "
                         f"{minutes(sec['wall_s'])} | `{sec.get('argv') or '(none)'}` |")
    lines.append('')
    if 'cifar' in results:
        lines += render_cifar(results['cifar'])
    if 'resnets' in results:
        lines += render_resnets(results['resnets'])
    if 'cifar' in results or 'resnets' in results:
        plot_cifar(results, out.parent / 'results' / 'cifar_curves.png')
        lines += ['![validation accuracy per epoch on CIFAR-10](results/cifar_curves.png)', '']
        shown = [name for name in POST_NETS if (out.parent / 'results' / f'lr_find_{name.lower()}.png').exists()]
        if shown:
            lines += ['The LR range tests the post ran before training (`learn.sched.plot()`): ' + ' '.join(
                f'![{name}](results/lr_find_{name.lower()}.png)' for name in shown), '']
    if 'hymenoptera' in results:
        lines += render_hymenoptera(results['hymenoptera'])
        plot_hymenoptera(results['hymenoptera'], out.parent / 'results' / 'hymenoptera_schedules.png')
        lines += ['![fixed lr vs 1cycle: schedules and validation accuracy](results/hymenoptera_schedules.png)', '']
    out.write_text('\n'.join(lines))


# ----------------------------------------------------------------------------------------------- main

SECTIONS = {'cifar': section_cifar, 'resnets': section_resnets, 'hymenoptera': section_hymenoptera}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--only', nargs='+', choices=list(SECTIONS), help='run these sections (default: all)')
    ap.add_argument('--quick', action='store_true', help='smoke test: small subsets, 1 epoch, output in a temp folder')
    ap.add_argument('--out', type=Path, help='RESULTS.md to write (default benchmarks/RESULTS.md; --quick: a temp dir)')
    ap.add_argument('--workdir', type=Path, help='where the CIFAR archive is unpacked (default: a temp folder)')
    ap.add_argument('--seed', type=int, default=0, help='seed of the CIFAR rows; the first of the 3 hymenoptera seeds')
    ap.add_argument('--replica', choices=['short', 'always', 'never'], default='short',
                    help='run the plain PyTorch replica for CIFAR rows under the post by more than 2 points (short)')
    ap.add_argument('--budget-min', type=float, default=10.0, help='minutes per network in the resnets section')
    ap.add_argument('--sz', type=int, default=160, help='hymenoptera image size (seed_transfer.py: 160)')
    ap.add_argument('--epochs', type=int, default=3, help='hymenoptera fine-tuning epochs (seed_transfer.py: 3)')
    ap.add_argument('--render-only', action='store_true',
                    help='run nothing: rewrite RESULTS.md and the plots from benchmarks/results/results.json')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads (default 1: on a 2-core machine that other jobs keep busy, 2 threads were '
                         '2-10x slower than 1, measured)')
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or (Path(tempfile.mkdtemp()) / 'RESULTS.md' if args.quick else HERE / 'RESULTS.md')
    plots = out.parent / 'results'
    plots.mkdir(parents=True, exist_ok=True)
    store = plots / 'results.json'
    results = json.loads(store.read_text()) if store.exists() else {}
    if args.render_only:
        render(results, out)
        print(f'wrote {out}')
        return
    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = args.workdir or Path(tmp)
        for name in args.only or list(SECTIONS):
            if name in ('cifar', 'resnets') and not CIFAR_TGZ.exists():
                sys.exit(f'{CIFAR_TGZ} is missing: the CIFAR-10 sections need it')
            if name == 'hymenoptera' and not HYMENOPTERA.is_dir():
                sys.exit(f'{HYMENOPTERA} is missing: the hymenoptera section needs it')
            load = ', '.join(f'{v:.1f}' for v in os.getloadavg())
            results[name] = SECTIONS[name](args, plots)
            results[name].update(when=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), load=load,
                                 threads=torch.get_num_threads(), argv=' '.join(sys.argv[1:]))
            results['meta'] = {'machine': f'{platform.machine()}, {os.cpu_count()} CPU cores',
                               'torch': torch.__version__}
            store.write_text(json.dumps(results, indent=1))
            render(results, out)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
