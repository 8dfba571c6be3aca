"""A tiny exported learner for the serving tests: three colour classes of 32 px PNGs, efficientnet_lite0, one fit.

Built once per test session (about 5 s on 2 CPU cores) and shared by test_serve, test_serve_browser and test_cli.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np

COLORS = {'blue': (30, 40, 200), 'green': (30, 180, 40), 'red': (200, 30, 30)}
_CACHE: dict = {}


def color_image(name: str, seed: int, size: int = 32) -> np.ndarray:
    """A noisy square of class `name`'s colour, uint8 (size, size, 3)."""
    rng = np.random.default_rng(seed)
    base = np.array(COLORS[name], dtype=np.float64)[None, None]
    return np.clip(base + rng.normal(0, 35, (size, size, 3)), 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format='PNG')
    return buffer.getvalue()


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format='JPEG', quality=quality)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds almost no data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b'')


def make_color_folders(root: Path, n_train: int = 10, n_valid: int = 5) -> Path:
    """root/train/<colour>/*.png and root/valid/<colour>/*.png."""
    from PIL import Image
    seed = 0
    for split, n in (('train', n_train), ('valid', n_valid)):
        for name in COLORS:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                Image.fromarray(color_image(name, seed)).save(folder / f'{name}_{i}.png')
    return root


def tiny_export(tmp_path_factory) -> Path:
    """The session's exported colour classifier (built on first use)."""
    if 'export' not in _CACHE:
        import torch
        from learner.conv_learner import ConvLearner
        from learner.data.databunch import ImageClassifierData
        from learner.data.transforms import tfms_from_model

        root = make_color_folders(tmp_path_factory.mktemp('colors'))
        torch.manual_seed(0)
        data = ImageClassifierData.from_paths(root, tfms=tfms_from_model('efficientnet_lite0', 32), bs=10,
                                              num_workers=0)
        # the head on cached activations of the pretrained body: a few fast epochs learn the colours
        learn = ConvLearner.pretrained('efficientnet_lite0', data, pretrained=True, precompute=True, progress=False)
        learn.fit(3e-2, 4)
        _CACHE['root'] = root
        _CACHE['export'] = learn.export(root / 'export.pth')
    return _CACHE['export']
