"""Load benchmark of `learner serve`: requests/s and p50/p99 latency for 1, 8 and 32 concurrent clients, the single
endpoint vs the batch endpoint, with an exported efficientnet_lite0 learner at 224 px.

Bounded and local: the server is started here on 127.0.0.1 (a free port), every level stops after `--requests`
requests or `--seconds` seconds, whichever comes first, and the server is stopped at the end. Errors (any answer
other than 200, or a failed connection) are counted; the target is none.

    python benchmarks/serve_load.py [--model EXPORT] [--requests 96] [--seconds 20] [--batch 8] [--levels 1 8 32]

Without --model, a lite0 learner with ImageNet weights and a fresh 3-class head is exported to a temporary folder
(no training: speed does not depend on the weights). Figures are noisy on a shared machine: compare runs made in
the same conditions.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HOST = '127.0.0.1'  # loopback only, by design


def _export_lite0(folder: Path, sz: int) -> Path:
    """A lite0 learner on a tiny generated data set, exported (the head is untrained: speed is what is measured)."""
    from PIL import Image
    from learner import ConvLearner, ImageClassifierData, tfms_from_model
    rng = np.random.default_rng(0)
    for split in ('train', 'valid'):
        for name in ('a', 'b', 'c'):
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (sz, sz, 3), dtype=np.uint8)).save(folder / split / name / f'{i}.png')
    data = ImageClassifierData.from_paths(folder, tfms=tfms_from_model('efficientnet_lite0', sz), bs=4, num_workers=0)
    learn = ConvLearner.pretrained('efficientnet_lite0', data, progress=False)
    return learn.export(folder / 'export.pth')


def _photo_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A smooth photo-like JPEG (what a phone upload costs to decode, roughly)."""
    from PIL import Image
    small = np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BICUBIC).save(buffer, format='JPEG', quality=90)
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _start_server(model: Path, port: int) -> subprocess.Popen:
    import httpx
    server = subprocess.Popen([sys.executable, '-m', 'learner', 'serve', str(model), '--host', HOST, '--port',
                               str(port), '--log-level', 'warning'], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f'the server exited with code {server.returncode}')
        try:
            if httpx.get(f'http://{HOST}:{port}/health', timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit('the server did not answer /health within 120 s')


async def _level(url: str, clients: int, requests: int, seconds: float, batch: int, image: bytes) -> dict:
    """`clients` concurrent clients send up to `requests` requests in all, for at most `seconds`."""
    import httpx
    latencies, errors, sent = [], 0, 0
    stop_at = time.perf_counter() + seconds
    files = [('files', (f'{i}.jpg', image, 'image/jpeg')) for i in range(batch)]

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        while sent < requests and time.perf_counter() < stop_at:
            sent += 1
            started = time.perf_counter()
            try:
                if batch > 1:
                    answer = await http.post(f'{url}/predict/batch', files=files)
                else:
                    answer = await http.post(f'{url}/predict', content=image, headers={'content-type': 'image/jpeg'})
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*[client(http) for _ in range(clients)])
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {'clients': clients, 'batch': batch, 'requests': len(latencies), 'errors': errors,
            'req_s': len(latencies) / elapsed, 'img_s': len(latencies) * batch / elapsed,
            'p50': float(np.percentile(ms, 50)) if len(ms) else float('nan'),
            'p99': float(np.percentile(ms, 99)) if len(ms) else float('nan')}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', help='an export to serve (default: a lite0 learner at --size px, exported here)')
    ap.add_argument('--size', type=int, default=224, help='input size of the generated export (default: 224)')
    ap.add_argument('--levels', type=int, nargs='+', default=[1, 8, 32], help='concurrent clients (default: 1 8 32)')
    ap.add_argument('--requests', type=int, default=96, help='most requests per level and endpoint (default: 96)')
    ap.add_argument('--seconds', type=float, default=20, help='most seconds per level and endpoint (default: 20)')
    ap.add_argument('--batch', type=int, default=8, help='images per /predict/batch request (default: 8)')
    args = ap.parse_args()
    image = _photo_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else _export_lite0(Path(tmp), args.size)
        port = _free_port()
        server = _start_server(model, port)
        try:
            url = f'http://{HOST}:{port}'
            asyncio.run(_level(url, 1, 3, 30, 1, image))  # warm-up: first calls allocate
            rows = [asyncio.run(_level(url, clients, args.requests, args.seconds, batch, image))
                    for clients in args.levels for batch in (1, args.batch)]
        finally:
            server.terminate()
            server.wait(30)
    print(f'learner serve, {model.name if args.model else f"efficientnet_lite0 at {args.size} px"}, a 640x480 JPEG, '
          f'{os.cpu_count()} CPU cores, loopback')
    print('| clients | endpoint | requests | errors | requests/s | images/s | p50 ms | p99 ms |')
    print('|---:|---|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        endpoint = '/predict' if r['batch'] == 1 else f'/predict/batch ({r["batch"]})'
        print(f'| {r["clients"]} | {endpoint} | {r["requests"]} | {r["errors"]} | {r["req_s"]:.1f} | {r["img_s"]:.1f} '
              f'| {r["p50"]:.0f} | {r["p99"]:.0f} |')


if __name__ == '__main__':
    main()
