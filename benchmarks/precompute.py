"""Precompute benchmark: head training on cached activations vs the full frozen model, and cache build cost.

efficientnet_lite0 at 224 px on ../shared/data/hymenoptera (245 train / 153 valid photos). Prints:
  * seconds per epoch of head training on the cache vs the full model with a frozen body (same data, same head);
  * the cache build time vs one plain inference pass of the body over the same images;
  * the validation accuracy each reaches (the feature-extraction recipe of issue 4: frozen body, 1cycle).
Targets: >= 20x faster epochs on the cache; build <= 1.2x a forward pass.

    python benchmarks/precompute.py [--data DIR] [--size 224] [--epochs 3] [--workers 2]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from learner import ConvLearner, ImageClassifierData, accuracy_np, efficientnet_lite0, tfms_from_model, transforms_side_on


def _accuracy(learn) -> float:
    log_preds, y = learn.predict_with_targs()
    return float(accuracy_np(np.exp(log_preds), y))


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=str(here.parent / 'shared' / 'data' / 'hymenoptera'))
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--workers', type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0); np.random.seed(0)

    tfms = tfms_from_model(efficientnet_lite0, args.size, aug_tfms=transforms_side_on, max_zoom=1.1)
    data = ImageClassifierData.from_paths(args.data, tfms=tfms, bs=args.bs, val_name='val', num_workers=args.workers)
    print(f'data: {args.data}: {len(data.trn_ds)} train, {len(data.val_ds)} valid, {args.size} px, bs {args.bs}, '
          f'{args.workers} workers, {torch.get_num_threads()} threads')

    # 1. one plain inference pass of the frozen body over every split (the floor for a cache build)
    learn = ConvLearner.pretrained(efficientnet_lite0, data, progress=False)
    learn.precompute_cache_dir = Path(tempfile.mkdtemp(prefix='learner-precompute-bench-'))
    body = learn.body.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for split in ('train', 'valid'):
            for xb, _ in data.loader(split):
                body(xb)
    forward_s = time.perf_counter() - started

    # 2. building the cache (same images, validation transforms, plus pooling and the memory-mapped write)
    learn.precompute = True   # records the wish; the cache is built when first needed
    started = time.perf_counter()
    learn.stage()             # what the first fit (or prediction) does first: build the cache
    build_s = time.perf_counter() - started

    # 3. epochs on the cache: 1cycle, frozen body
    started = time.perf_counter()
    learn.fit_one_cycle(args.epochs, max_lr=1e-2)
    cached_epoch_s = (time.perf_counter() - started) / args.epochs
    cached_acc = _accuracy(learn)

    # 4. the same head training through the full model (frozen body, images with augmentation)
    full = ConvLearner.pretrained(efficientnet_lite0, data, progress=False)
    started = time.perf_counter()
    full.fit_one_cycle(1, max_lr=1e-2)
    full_epoch_s = time.perf_counter() - started
    full_acc = _accuracy(full)
    shutil.rmtree(learn.precompute_cache_dir, ignore_errors=True)

    print(f'{"":34s}{"seconds":>10s}')
    print(f'{"body forward pass (train+valid)":34s}{forward_s:10.2f}')
    print(f'{"cache build (train+valid)":34s}{build_s:10.2f}   ratio to forward {build_s / forward_s:.2f}x (target <= 1.2x)')
    print(f'{"epoch on the cache":34s}{cached_epoch_s:10.3f}')
    print(f'{"epoch through the full model":34s}{full_epoch_s:10.2f}')
    print(f'speed-up of head training on the cache: {full_epoch_s / cached_epoch_s:.1f}x (target >= 20x)')
    print(f'validation accuracy: cache, {args.epochs} epochs 1cycle {cached_acc:.4f}; full model, 1 epoch {full_acc:.4f}')


if __name__ == '__main__':
    main()
