"""Data loading throughput: learner's pipeline against torchvision baselines, in the same run.

    python benchmarks/data_throughput.py [--n-images 400] [--bs 32] [--n-arrays 10000] [--repeats 3] [--workers 2]
                                         [--revs cc472ed,2f208e5]

(a) a folder of photo-like JPEGs of 500x375 at 224 px with `transforms_side_on`, `--workers` worker processes,
    batches of `--bs`, against torchvision `ImageFolder` + an equivalent `transforms.v2` pipeline (resize, rotate
    p=0.75, brightness/contrast, flip, random crop, to float, normalize) on the same files. Every run is a fresh
    process (one warm-up epoch, then `--epochs` timed ones); with `--revs` the same run is made with learner as it
    was at those git revisions (checked out into a temporary folder), as extra columns, for bisecting.
(b) 32 px uint8 arrays through `from_arrays` with the CIFAR recipe (reflect pad 4, flip, random crop)
    against a plain `TensorDataset` loop (no augmentation) with the same per-batch normalization.
(c) `open_image` on a large JPEG with and without draft decoding for a 224 px target.
Runs are interleaved (ours, theirs, ours, ...); the median of `--repeats` runs is reported. Not a test: run it
alone on a quiet machine, or the ratios are noise.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets
from torchvision.transforms import v2

if not os.environ.get('PYTHONPATH'):   # a run for another revision sets PYTHONPATH to that revision's source
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from learner.data import (ImageClassifierData, RandomFlip, cifar_stats, imagenet_stats, open_image,  # noqa: E402
                          tfms_from_stats, transforms_side_on)


REPO = Path(__file__).resolve().parents[1]


def make_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """n smooth photo-like JPEGs of 500x375 (two classes), the size of most hymenoptera photos."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = 500, 375
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        base = rng.uniform(0, 255, 3) * x[..., None] + rng.uniform(0, 255, 3) * y[..., None]
        img = np.clip(base / 1.5 + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = root / f'class{i % 2}'
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f'{i:04d}.jpg', quality=85)
    return root


def epoch_rate(loop) -> float:
    """Images per second of one pass of `loop()` (which returns the number of images it produced)."""
    start = time.perf_counter()
    n = loop()
    return n / (time.perf_counter() - start)


def interleave(named_loops: dict, repeats: int) -> dict:
    rates = {k: [] for k in named_loops}
    for _ in range(repeats):
        for name, loop in named_loops.items():
            rates[name].append(epoch_rate(loop))
    return {k: statistics.median(v) for k, v in rates.items()}


def folder_rate(root: Path, impl: str, workers: int, bs: int, epochs: int) -> float:
    """Images/s of `epochs` epochs (after one warm-up epoch) of one implementation over the folder."""
    if impl == 'torchvision':
        mean, std = imagenet_stats
        tv_tfms = v2.Compose([
            v2.PILToTensor(), v2.Resize(224, antialias=True),
            v2.RandomApply([v2.RandomRotation(10)], p=0.75),
            v2.ColorJitter(brightness=0.05, contrast=0.05),
            v2.RandomHorizontalFlip(), v2.RandomCrop(224),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean.tolist(), std.tolist())])
        loader = DataLoader(datasets.ImageFolder(str(root / 'train'), transform=tv_tfms), batch_size=bs, shuffle=True,
                            num_workers=workers, persistent_workers=workers > 0)
    else:
        tfms = tfms_from_stats(imagenet_stats, 224, aug_tfms=transforms_side_on)
        data = ImageClassifierData.from_paths(root, bs=bs, tfms=tfms, trn_name='train', val_name='train',
                                              num_workers=workers, device='cpu')
        loader = data.trn_dl
    sum(len(x) for x, _ in loader)   # warm up: start the persistent workers, fill caches
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        n += sum(len(x) for x, _ in loader)
    return n / (time.perf_counter() - start)


def checkout(rev: str, into: Path) -> Path:
    """learner's source as it was at git revision `rev`, in `into` (for PYTHONPATH)."""
    target = into / rev
    archive = subprocess.run(['git', '-C', str(REPO), 'archive', rev, 'learner'], capture_output=True, check=True)
    target.mkdir(parents=True)
    subprocess.run(['tar', '-x', '-C', str(target)], input=archive.stdout, check=True)
    return target


def bench_folder(root: Path, workers: int, repeats: int, bs: int, epochs: int, revs: list, tmp: Path) -> dict:
    """Images/s of every run per contender, each run a fresh process, interleaved run by run."""
    contenders = {'learner': (str(REPO), 'learner'), 'torchvision ImageFolder': (str(REPO), 'torchvision')}
    for rev in revs:
        contenders[f'learner@{rev}'] = (str(checkout(rev, tmp / 'revs')), 'learner')
    rates = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, (source, impl) in contenders.items():
            env = {**os.environ, 'PYTHONPATH': source}
            out = subprocess.run([sys.executable, __file__, '--_one', impl, '--root', str(root), '--workers',
                                  str(workers), '--bs', str(bs), '--epochs', str(epochs)],
                                 env=env, capture_output=True, text=True, check=True)
            rates[name].append(float(out.stdout.split()[-1]))
    return rates


def bench_arrays(n: int, repeats: int, bs: int = 128) -> dict:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    data = ImageClassifierData.from_arrays('.', (x, y), (x[:100], y[:100]), bs=bs, device='cpu',
                                           tfms=tfms_from_stats(cifar_stats, 32, aug_tfms=[RandomFlip()], pad=4))
    plain = DataLoader(TensorDataset(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)),
                       batch_size=bs, shuffle=True)
    shift = torch.tensor(cifar_stats[0] * 255, dtype=torch.float32).view(1, 3, 1, 1)
    scale = torch.tensor(1 / (cifar_stats[1] * 255), dtype=torch.float32).view(1, 3, 1, 1)

    def ours():
        return sum(len(xb) for xb, _ in data.trn_dl)

    def theirs():
        n_seen = 0
        for xb, yb in plain:
            xb = xb.to('cpu').to(torch.float32).sub_(shift).mul_(scale)
            n_seen += len(xb)
        return n_seen
    ours(), theirs()
    return interleave({'learner from_arrays (CIFAR recipe)': ours, 'plain TensorDataset loop': theirs}, repeats)


def bench_draft(tmp: Path, reps: int = 10) -> dict:
    rng = np.random.default_rng(1)
    h, w = 2400, 3200
    y, x = np.mgrid[0:h, 0:w] / w
    img = np.clip(rng.uniform(0, 255, 3) * x[..., None] + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    f = tmp / 'large.jpg'
    Image.fromarray(img).save(f, quality=90)
    out = {}
    for name, target in (('full decode', None), ('draft, target 224', 224)):
        open_image(f, target_size=target)
        start = time.perf_counter()
        for _ in range(reps):
            arr = open_image(f, target_size=target)
        out[name] = (reps / (time.perf_counter() - start), arr.shape)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n-images', type=int, default=400)
    p.add_argument('--n-arrays', type=int, default=10000)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--epochs', type=int, default=2, help='timed epochs per folder run (after one warm-up epoch)')
    p.add_argument('--revs', default='', help='comma-separated git revisions of learner to add as columns to (a)')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads in the main process '
                   '(default: torch default); 1 gives steadier figures on a busy machine')
    p.add_argument('--_one', choices=['learner', 'torchvision'], help=argparse.SUPPRESS)
    p.add_argument('--root', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a._one:   # one folder run in this fresh process (see bench_folder)
        print(folder_rate(Path(a.root), a._one, a.workers, a.bs, a.epochs))
        return
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; workers={a.workers}, bs={a.bs}')
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = make_jpegs(tmp / 'jpegs' / 'train', a.n_images).parent
        revs = [r for r in a.revs.split(',') if r]
        runs = bench_folder(root, a.workers, a.repeats, a.bs, a.epochs, revs, tmp)
        res = {name: statistics.median(v) for name, v in runs.items()}
        base = res['torchvision ImageFolder']
        for k, v in res.items():
            ratio = '' if k.startswith('torchvision') else f'  {v / base:5.2f}x torchvision'
            print(f'(a) {k:34s} {v:8.1f} images/s{ratio}   runs: {", ".join(f"{r:.0f}" for r in runs[k])}')
        # the machine drifts between runs: the ratio of each run to the torchvision run beside it is steadier
        paired = [ours / theirs for ours, theirs in zip(runs['learner'], runs['torchvision ImageFolder'])]
        print(f'(a) ratio learner / torchvision       {statistics.median(paired):8.2f}x  (target >= 1.0; median of '
              f'the runs paired: {", ".join(f"{r:.2f}" for r in paired)})')
        res = bench_arrays(a.n_arrays, max(a.repeats, 5))
        for k, v in res.items():
            print(f'(b) {k:34s} {v:8.0f} images/s')
        ours, base = res.values()
        print(f'(b) ratio learner / TensorDataset     {ours / base:8.2f}x  (target >= 0.9)')
        res = bench_draft(tmp)
        for k, (rate, shape) in res.items():
            print(f'(c) open_image 3200x2400 JPEG, {k:18s} {rate:7.1f} images/s -> {shape}')
        rates = [r for r, _ in res.values()]
        print(f'(c) draft speed-up                    {rates[1] / rates[0]:8.2f}x')


if __name__ == '__main__':
    main()
