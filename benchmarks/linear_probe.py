"""Frozen-body linear probe: is efficientnet_lite0's pretrained body real?

Extracts pooled features of the frozen body (eval mode) for the hymenoptera photos (ants vs bees; 245 train,
153 val) at 224 px (shorter side resized to 256, centre crop 224, the Lite0 normalisation), then fits an
L2-regularised logistic regression on the train features with full-batch L-BFGS and reports validation
accuracy, for the ImageNet weights and for a random initialisation (same seed, same recipe).
Expected: about 0.95 pretrained vs about 0.6 random.

Usage: python benchmarks/linear_probe.py [--data ../shared/data/hymenoptera] [--arch efficientnet_lite0]
Images are read with Pillow directly, so this depends only on learner.models.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from learner.models import create_body, get_backbone

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'hymenoptera'


def load_split(folder: Path, size: int, stats) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(N, 3, size, size) normalised float tensor, int labels, class names from `folder/<class>/*`."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    mean, std = (np.array(s, dtype=np.float32) for s in stats)
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            image = Image.open(path).convert('RGB')
            scale = size * 256 / 224 / min(image.size)
            image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                                 Image.BILINEAR)
            left, top = (image.width - size) // 2, (image.height - size) // 2
            image = image.crop((left, top, left + size, top + size))
            images.append((np.asarray(image, dtype=np.float32) / 255 - mean) / std)  # (H, W, 3)
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return x, torch.tensor(labels), classes


def features(body: torch.nn.Module, x: torch.Tensor, bs: int = 32) -> torch.Tensor:
    """Global-average-pooled body activations (N, F), frozen body in eval mode."""
    body.eval()
    with torch.no_grad():
        return torch.cat([body(x[i:i + bs]).mean((2, 3)) for i in range(0, len(x), bs)])


def probe(trn_f, trn_y, val_f, val_y, wd: float = 1e-3) -> float:
    """Fit standardised logistic regression (L-BFGS, L2 weight `wd`) on train; validation accuracy."""
    mu, sigma = trn_f.mean(0), trn_f.std(0) + 1e-6
    trn_f, val_f = (trn_f - mu) / sigma, (val_f - mu) / sigma
    n_classes = int(trn_y.max()) + 1
    linear = torch.nn.Linear(trn_f.shape[1], n_classes)
    torch.nn.init.zeros_(linear.weight), torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=200, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(trn_f), trn_y) + wd * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (linear(val_f).argmax(1) == val_y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA)
    parser.add_argument('--arch', default='efficientnet_lite0')
    parser.add_argument('--size', type=int, default=224)
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = get_backbone(args.arch)
    start = time.time()
    trn_x, trn_y, classes = load_split(args.data / 'train', args.size, spec.stats)
    val_x, val_y, _ = load_split(args.data / 'val', args.size, spec.stats)
    print(f'{args.arch} at {args.size} px, classes {classes}: {len(trn_y)} train, {len(val_y)} val images '
          f'(loaded in {time.time() - start:.1f}s)')
    for pretrained in (True, False):
        torch.manual_seed(0)
        body = create_body(spec, pretrained=pretrained)
        start = time.time()
        trn_f, val_f = features(body, trn_x), features(body, val_x)
        accuracy = probe(trn_f, trn_y, val_f, val_y)
        label = 'pretrained' if pretrained else 'random init'
        print(f'{label:>12}: val accuracy {accuracy:.4f}  (features {trn_f.shape[1]}, {time.time() - start:.1f}s)')


if __name__ == '__main__':
    main()
