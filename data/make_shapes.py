"""Generate the embedded `shapes` data set: 10 classes of drawn shapes, ImageNet layout, deterministic.

    python data/make_shapes.py [--out data/shapes] [--size 64] [--train 40] [--valid 10] [--seed 0]

Each image: a smooth random two-colour gradient background with noise, one shape of a class in a
contrasting colour at a random position, scale and rotation. Shapes are drawn as numpy masks on a 2x
grid and downsampled (antialiased), then saved as JPEG (quality 90). Same arguments -> same pixels.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ['disc', 'square', 'triangle', 'plus', 'ring', 'ellipse', 'hbars', 'vbars', 'checkers', 'xcross']


def _mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of shape `name` in shape coordinates (u, v), the shape spanning about [-1, 1]."""
    au, av = np.abs(u), np.abs(v)
    if name == 'disc':
        return u ** 2 + v ** 2 <= 1
    if name == 'square':
        return np.maximum(au, av) <= 0.8
    if name == 'triangle':
        return (v <= 0.7) & (v >= 1.7 * au - 0.9)
    if name == 'plus':
        return ((au <= 0.25) & (av <= 1)) | ((av <= 0.25) & (au <= 1))
    if name == 'ring':
        r2 = u ** 2 + v ** 2
        return (r2 <= 1) & (r2 >= 0.45)
    if name == 'ellipse':
        return (u / 1.0) ** 2 + (v / 0.45) ** 2 <= 1
    if name == 'hbars':
        return (au <= 0.9) & (av <= 0.9) & (np.floor((v + 1) * 2.5) % 2 == 0)
    if name == 'vbars':
        return (au <= 0.9) & (av <= 0.9) & (np.floor((u + 1) * 2.5) % 2 == 0)
    if name == 'checkers':
        return (au <= 0.9) & (av <= 0.9) & ((np.floor((u + 1) * 2) + np.floor((v + 1) * 2)) % 2 == 0)
    if name == 'xcross':
        d1, d2 = np.abs(u - v), np.abs(u + v)
        return (np.minimum(d1, d2) <= 0.3) & (np.maximum(au, av) <= 0.85)
    raise ValueError(f'unknown shape {name!r}')


def draw(cls: int, size: int, rng: np.random.Generator, supersample: int = 2) -> Image.Image:
    """One RGB image of class index `cls`, size x size pixels."""
    n = size * supersample
    y, x = np.mgrid[0:n, 0:n] / n                                   # (n, n) in [0, 1)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle_bg = rng.uniform(0, 2 * np.pi)
    t = (x * np.cos(angle_bg) + y * np.sin(angle_bg) + 1.5) / 3     # background gradient weight
    img = c0 * (1 - t[..., None]) + c1 * t[..., None] + rng.normal(0, 12, (n, n, 3))
    fg = (255 - (c0 + c1) / 2 + rng.uniform(-50, 50, 3)) % 256      # contrasts with the mean background
    radius = rng.uniform(0.2, 0.33)
    cx, cy = rng.uniform(0.32, 0.68, 2)
    theta = rng.uniform(-np.pi / 8, np.pi / 8)
    du, dv = (x - cx) / radius, (y - cy) / radius
    u = du * np.cos(theta) + dv * np.sin(theta)
    v = -du * np.sin(theta) + dv * np.cos(theta)
    mask = _mask(CLASSES[cls], u, v)
    img[mask] = fg + rng.normal(0, 6, (int(mask.sum()), 3))
    big = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return big.resize((size, size), Image.BILINEAR, reducing_gap=None) if supersample > 1 else big


def make(out: Path, size: int = 64, n_train: int = 40, n_valid: int = 10, seed: int = 0) -> Path:
    """Write out/{train,valid}/<class>/<class>_NNNN.jpg; replaces `out` if it exists."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for split, count in (('train', n_train), ('valid', n_valid)):
        for c, name in enumerate(CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                draw(c, size, rng).save(folder / f'{name}_{i:04d}.jpg', quality=90)
    return out


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=str(Path(__file__).resolve().parent / 'shapes'))
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--train', type=int, default=40, help='images per class in train/')
    p.add_argument('--valid', type=int, default=10, help='images per class in valid/')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    print(make(Path(a.out), a.size, a.train, a.valid, a.seed))
