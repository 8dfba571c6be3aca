"""The studio from empty to a published iteration on the ants/bees photos, timed step by step: start `learner
studio` (a fresh folder, SQLite, one worker process), create a project, upload each tag's training photos, train
quick, publish, measure predictions/s of the published endpoint at 1 and 8 clients, then train advanced with a
2-minute budget and publish it. Each iteration's validation accuracy is read from the studio (its own held-out
split of the uploaded photos).

Bounded and local: the studio listens on 127.0.0.1 (a free port), each load level stops after `--requests`
requests or `--seconds` seconds, and the studio is stopped at the end.

    python benchmarks/studio_flow.py [--data ../shared/data/hymenoptera] [--size 224] [--budget 2] [--db URL]

Figures depend on the machine and on what else runs on it: compare runs made in the same conditions.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_studio(folder: Path, db: str = None) -> tuple:
    """(process, url, keys) of a `learner studio --port 0` on loopback."""
    argv = [sys.executable, '-m', 'learner', 'studio', '--dir', str(folder), '--port', '0', '--log-level', 'warning']
    if db:
        argv += ['--db', db]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError('learner studio exited:\n' + ''.join(lines))
        lines.append(line)
        if 'learner studio at' in line:
            break
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    text = ''.join(lines)
    keys = dict(re.findall(r'(Training|Prediction)-Key:\s+(\S+)', text))
    return process, re.search(r'http://\S+', text).group(0), keys


def wait_healthy(url: str, timeout: float = 60) -> None:
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + '/health', timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError('the studio never answered /health')


def accuracy_of(iteration) -> float:
    report = iteration.performance(0.5)
    matrix = report['confusion_matrix']
    return sum(row[k] for k, row in enumerate(matrix)) / max(report['n_valid'], 1)


def load(url: str, project_id: int, key: str, images: list, n_clients: int, n_requests: int, seconds: float) -> dict:
    """Predictions/s and latency percentiles of `n_clients` clients posting images until either bound."""
    import httpx
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(n_requests))

    def client(k: int) -> None:
        with httpx.Client(timeout=120) as http:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                started = time.perf_counter()
                answer = http.post(f'{url}/projects/{project_id}/predict', headers={'Prediction-Key': key},
                                   content=images[(i + k) % len(images)])
                with lock:
                    if answer.status_code == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors[0] += 1
    started = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        list(pool.map(client, range(n_clients)))
    wall = time.perf_counter() - started
    latencies.sort()
    pct = (lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)) if latencies \
        else (lambda q: None)
    return {'clients': n_clients, 'requests': len(latencies), 'errors': errors[0],
            'predictions_per_s': round(len(latencies) / wall, 2), 'p50_ms': pct(0.5), 'p99_ms': pct(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', default=str(REPO.parent / 'shared' / 'data' / 'hymenoptera'))
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--budget', type=float, default=2.0, help='advanced training budget, minutes (default: 2)')
    parser.add_argument('--db', default=None, help='database URL (default: SQLite in a temporary folder)')
    parser.add_argument('--requests', type=int, default=200, help='requests per load level (default: 200)')
    parser.add_argument('--seconds', type=float, default=30, help='seconds per load level at most (default: 30)')
    parser.add_argument('--out', default=None, help='write the figures as JSON here')
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from learner.studio import Client

    data = Path(args.data)
    steps, figures = {}, {}

    def step(name, fn):
        started = time.perf_counter()
        value = fn()
        steps[name] = round(time.perf_counter() - started, 2)
        print(f'{name:42s} {steps[name]:8.2f} s', flush=True)
        return value

    with tempfile.TemporaryDirectory() as tmp:
        process, url, keys = step('start the studio (to /health)', lambda: start_studio(Path(tmp) / 'studio', args.db))
        try:
            step('  ... answering /health', lambda: wait_healthy(url))
            client = Client(url, training_key=keys['Training'], prediction_key=keys['Prediction'])
            project = step('create a project', lambda: client.create_project('insects', size=args.size))
            for tag in ('ants', 'bees'):
                files = sorted((data / 'train' / tag).iterdir())
                report = step(f'upload {tag} ({len(files)} photos)', lambda: project.upload(files, tags=[tag]))
                figures[f'uploaded_{tag}'] = len(report.created)
            quick = step('train quick (queued to iteration)', lambda: project.train(progress=False))
            figures['quick_accuracy'] = round(accuracy_of(quick), 4)
            print(f'  quick: validation accuracy {figures["quick_accuracy"]} on {quick.n_valid} photos', flush=True)
            figures['quick_n_valid'] = quick.n_valid
            step('publish quick', lambda: quick.publish('insects'))
            queries = [p.read_bytes() for tag in ('ants', 'bees') for p in sorted((data / 'val' / tag).iterdir())[:16]]
            for n in (1, 8):
                figures[f'load_{n}_clients'] = step(f'predict, {n} client(s)', lambda: load(
                    url, project.id, keys['Prediction'], queries, n, args.requests, args.seconds))
                print(f'  {figures[f"load_{n}_clients"]}', flush=True)
            advanced = step(f'train advanced ({args.budget:g} min budget)',
                            lambda: project.train('advanced', budget_minutes=args.budget, progress=False))
            figures['advanced_accuracy'] = round(accuracy_of(advanced), 4)
            figures['advanced_history'] = [{k: h.get(k) for k in ('phase', 'epochs', 'seconds', 'accuracy', 'kept')}
                                           for h in advanced.history]
            step('publish advanced', lambda: advanced.publish('insects-advanced'))
        finally:
            process.terminate()
            process.wait(30)
    result = {'steps_s': steps, **figures, 'size': args.size, 'database': args.db or 'sqlite'}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
