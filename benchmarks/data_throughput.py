"""Data loading throughput: learner's pipeline against torchvision baselines, in the same run.

    python benchmarks/data_throughput.py [--n-images 500] [--n-arrays 10000] [--repeats 3] [--workers 2]

(a) a folder of JPEGs (varied sizes around 400x300) at 224 px with `transforms_side_on`, `--workers`
    worker processes, against torchvision `ImageFolder` + an equivalent `transforms.v2` pipeline
    (resize, rotate p=0.75, brightness/contrast, flip, random crop, to float, normalize) on the same files.
(b) 32 px uint8 arrays through `from_arrays` with the CIFAR recipe (reflect pad 4, flip, random crop)
    against a plain `TensorDataset` loop (no augmentation) with the same per-batch normalization.
(c) `open_image` on a large JPEG with and without draft decoding for a 224 px target.
Runs are interleaved (ours, theirs, ours, ...); the median of `--repeats` epochs is reported. Not a test.
"""
from __future__ import annotations

import argparse
import statistics
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from learner.data import (ImageClassifierData, RandomFlip, cifar_stats, imagenet_stats, open_image,  # noqa: E402
                          tfms_from_stats, transforms_side_on)


def make_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """n smooth photo-like JPEGs (two classes), sides 350-500 x 260-380, like the hymenoptera photos."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = int(rng.integers(350, 501)), int(rng.integers(260, 381))
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


def bench_folder(root: Path, workers: int, repeats: int, bs: int = 64) -> dict:
    tfms = tfms_from_stats(imagenet_stats, 224, aug_tfms=transforms_side_on)
    data = ImageClassifierData.from_paths(root, bs=bs, tfms=tfms, trn_name='train', val_name='train',
                                          num_workers=workers, device='cpu')
    mean, std = imagenet_stats
    tv_tfms = v2.Compose([
        v2.PILToTensor(), v2.Resize(224, antialias=True),
        v2.RandomApply([v2.RandomRotation(10)], p=0.75),
        v2.ColorJitter(brightness=0.05, contrast=0.05),
        v2.RandomHorizontalFlip(), v2.RandomCrop(224),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean.tolist(), std.tolist())])
    tv_dl = DataLoader(datasets.ImageFolder(str(root / 'train'), transform=tv_tfms), batch_size=bs, shuffle=True,
                       num_workers=workers, persistent_workers=workers > 0)

    def ours():
        return sum(len(x) for x, _ in data.trn_dl)

    def theirs():
        return sum(len(x) for x, _ in tv_dl)
    ours(), theirs()   # warm up: start the persistent workers, fill caches
    return interleave({'learner': ours, 'torchvision ImageFolder': theirs}, repeats)


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
    p.add_argument('--n-images', type=int, default=500)
    p.add_argument('--n-arrays', type=int, default=10000)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads in the main process '
                   '(default: torch default); 1 gives steadier figures on a busy machine')
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; workers={a.workers}')
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = make_jpegs(tmp / 'jpegs' / 'train', a.n_images).parent
        res = bench_folder(root, a.workers, a.repeats)
        for k, v in res.items():
            print(f'(a) {k:34s} {v:8.1f} images/s')
        print(f'(a) ratio learner / torchvision       {res["learner"] / res["torchvision ImageFolder"]:8.2f}x  '
              f'(target >= 1.0)')
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
