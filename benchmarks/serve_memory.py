"""Peak memory of the prediction service under one request of large PNGs.

Starts `learner serve` on an export in its own process, warms it up with one small image, then sends one
/predict/batch request of N copies of a PNG of SIZE x SIZE pixels and prints how much the server's peak resident
memory (VmHWM, Linux) grew, with the answer's status. The review's worst case is 64 PNGs of 9400 x 9400 (18 MB on
the wire, 17 GB if decoded at full size at once).

    python benchmarks/serve_memory.py --n 64 --size 9400            # the review's request
    python benchmarks/serve_memory.py --n 8 --size 4000 --mode RGB  # 8 x 48 MB decoded
"""
from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image


def peak_rss_mb(pid: int) -> float:
    status = Path(f'/proc/{pid}/status').read_text()
    return int(re.search(r'VmHWM:\s+(\d+) kB', status).group(1)) / 1024


def png(size: int, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), (30, 180, 40) if mode == 'RGB' else 90).save(buffer, format='PNG')
    return buffer.getvalue()


def tiny_export(folder: Path) -> Path:
    """A 3-colour classifier on efficientnet_lite0's head, exported (a few seconds)."""
    import numpy as np
    import torch
    from learner import ConvLearner, ImageClassifierData, tfms_from_model
    rng = np.random.default_rng(0)
    for split, n in (('train', 8), ('valid', 4)):
        for k, colour in enumerate([(200, 30, 30), (30, 180, 40), (30, 40, 200)]):
            (folder / split / str(k)).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / split / str(k) / f'{i}.png')
    torch.manual_seed(0)
    data = ImageClassifierData.from_paths(folder, tfms=tfms_from_model('efficientnet_lite0', 32), bs=8, num_workers=0)
    learn = ConvLearner.pretrained('efficientnet_lite0', data, precompute=True, progress=False)
    learn.fit(3e-2, 2)
    return learn.export(folder / 'export.pth')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=64)
    parser.add_argument('--size', type=int, default=9400)
    parser.add_argument('--mode', default='L', choices=['L', 'RGB'])
    parser.add_argument('--export', help='an export to serve (default: a tiny one made now)')
    args = parser.parse_args()
    import httpx
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(args.export) if args.export else tiny_export(Path(tmp))
        server = subprocess.Popen([sys.executable, '-m', 'learner', 'serve', str(export), '--port', '0'],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in server.stdout:
                found = re.search(r'running on (http://\S+:\d+)', line)
                if found:
                    break
            threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
            url = found.group(1)
            httpx.post(f'{url}/predict', content=png(64, 'RGB'), timeout=120)
            body = png(args.size, args.mode)
            before = peak_rss_mb(server.pid)
            answer = httpx.post(f'{url}/predict/batch', timeout=1800,
                                files=[('files', (f'{i}.png', body)) for i in range(args.n)])
            growth = peak_rss_mb(server.pid) - before
            print(f'{args.n} PNGs of {args.size}x{args.size} {args.mode} ({args.n * len(body) / 1e6:.1f} MB sent, '
                  f'{args.n * args.size ** 2 * len(args.mode) / 1e9:.2f} GB at full size): status '
                  f'{answer.status_code}, server peak memory +{growth:.0f} MB (peak {before + growth:.0f} MB)')
            if answer.status_code != 200:
                print('  ', answer.json()['detail'][:200])
        finally:
            server.terminate()
            server.wait(30)


if __name__ == '__main__':
    main()
