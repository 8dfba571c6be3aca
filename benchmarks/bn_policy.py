"""The BatchNorm policy in frozen layer groups, measured on the course's central flow.

The head is trained on precomputed activations (computed with the body in eval mode); then `precompute = False`
trains with the frozen body on augmented images. Under fastai 0.7's policy (our default) the frozen body's
BatchNorm stays in eval mode, so the head keeps seeing the features it was trained on; under fastai 1's
(`train_bn=True`) the frozen BatchNorm layers use batch statistics and train their affine parameters.

Prints validation accuracy on the ants/bees photos after the head phase, right after turning precompute off,
after one more epoch, and with TTA, for each policy and seed.

    python benchmarks/bn_policy.py [--data ../shared/data/hymenoptera] [--sz 160] [--bs 16] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from learner import ConvLearner, ImageClassifierData, accuracy_np, efficientnet_lite0, tfms_from_model, \
    transforms_side_on


def accuracy_of(learn) -> float:
    log_preds, y = learn.predict_with_targs()
    return accuracy_np(np.exp(log_preds), y)


def run(data_path: Path, sz: int, bs: int, seed: int, train_bn: bool) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    tfms = tfms_from_model(efficientnet_lite0, sz, aug_tfms=transforms_side_on, max_zoom=1.1)
    data = ImageClassifierData.from_paths(data_path, tfms=tfms, bs=bs, val_name='val')
    learn = ConvLearner.pretrained(efficientnet_lite0, data, precompute=True, train_bn=train_bn, progress=False)
    learn.fit(1e-2, 3)
    row = {'head (precomputed)': accuracy_of(learn)}
    learn.precompute = False
    row['precompute off, before training'] = accuracy_of(learn)   # eval mode: the same for both policies
    learn.fit(1e-2, 1)
    row['after 1 epoch, frozen body'] = accuracy_of(learn)
    log_preds, y = learn.TTA()
    row['TTA'] = accuracy_np(np.mean(np.exp(log_preds), 0), y)
    return row


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', default=here.parent.parent / 'shared' / 'data' / 'hymenoptera', type=Path)
    parser.add_argument('--sz', type=int, default=160)
    parser.add_argument('--bs', type=int, default=16, help='small batches are where batch statistics hurt most')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    args = parser.parse_args()
    results = {}
    for policy, train_bn in (('0.7 (default): frozen BN in eval', False), ('fastai 1: train_bn=True', True)):
        for seed in args.seeds:
            start = time.perf_counter()
            results[(policy, seed)] = run(args.data, args.sz, args.bs, seed, train_bn)
            print(f'{policy:34s} seed {seed}: ' + ', '.join(f'{k} {v:.4f}' for k, v in results[(policy, seed)].items())
                  + f' ({time.perf_counter() - start:.0f} s)', flush=True)
    columns = list(next(iter(results.values())))
    print(f'\n| policy (sz {args.sz}, bs {args.bs}, seeds {args.seeds}) | ' + ' | '.join(columns) + ' |')
    print('|---|' + '---|' * len(columns))
    for policy in dict.fromkeys(p for p, _ in results):
        rows = [results[(policy, s)] for s in args.seeds]
        cells = [f'{np.mean([r[c] for r in rows]):.4f} ± {np.std([r[c] for r in rows]):.4f}' for c in columns]
        print(f'| {policy} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
