"""The studio's test fixtures: a throw-away PostgreSQL cluster (Debian's postgresql, run as the `postgres` user when
the tests run as root, since initdb refuses root), a `db_url` fixture that runs a test on SQLite and on PostgreSQL,
and helpers to start `learner studio` and its worker for real."""
from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

from conftest import require

REPO = Path(__file__).resolve().parents[1]
_counter = itertools.count()


def _pg_bin() -> Optional[Path]:
    """The folder holding initdb/pg_ctl (Debian puts them in /usr/lib/postgresql/<version>/bin)."""
    found = sorted(Path('/usr/lib/postgresql').glob('*/bin/initdb'), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which('initdb')
    return Path(initdb).parent if initdb else None


def _as_postgres(argv: list) -> list:
    """Run as the unprivileged `postgres` user when we are root (initdb and postgres refuse root)."""
    return ['runuser', '-u', 'postgres', '--'] + argv if os.geteuid() == 0 else argv


class PostgresCluster:
    """A PostgreSQL server in a temporary folder, listening on a Unix socket only (no TCP port is opened)."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix='learner-pg-'))
        self.data, self.socket_dir = self.root / 'data', self.root / 'socket'
        self.socket_dir.mkdir()
        self.port = 5432
        if os.geteuid() == 0:
            shutil.chown(self.root, 'postgres')
            shutil.chown(self.socket_dir, 'postgres')

    def start(self) -> 'PostgresCluster':
        subprocess.run(_as_postgres([str(self.bin / 'initdb'), '-D', str(self.data), '-A', 'trust', '-U', 'postgres',
                                     '-E', 'UTF8', '--no-sync']), check=True, capture_output=True)
        options = f"-k {self.socket_dir} -c listen_addresses='' -p {self.port} -c fsync=off"
        subprocess.run(_as_postgres([str(self.bin / 'pg_ctl'), '-D', str(self.data), '-o', options, '-w', '-l',
                                     str(self.root / 'log'), 'start']), check=True, capture_output=True)
        return self

    def url(self, database: str) -> str:
        return f'postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}'

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg
        name = f'studio_{os.getpid()}_{next(_counter)}'
        with psycopg.connect(f'dbname=postgres user=postgres host={self.socket_dir} port={self.port}',
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE {name}')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.bin / 'pg_ctl'), '-D', str(self.data), '-m', 'immediate', 'stop']),
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope='session')
def postgres():
    """The session's throw-away PostgreSQL cluster (skipped without PostgreSQL; a failure under CI=true)."""
    bin_dir = _pg_bin()
    require(bin_dir / 'initdb' if bin_dir else Path('/usr/lib/postgresql/<version>/bin/initdb'),
            'the studio\'s PostgreSQL tests need Debian\'s postgresql (apt-get install postgresql; .ci/run does)')
    pytest.importorskip('psycopg', reason='the studio extra is not installed: pip install -e ".[studio]"')
    cluster = PostgresCluster(bin_dir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=['sqlite', 'postgresql'])
def db_url(request) -> Optional[str]:
    """None (the studio's default SQLite in its folder) or a fresh PostgreSQL database's URL."""
    if request.param == 'sqlite':
        return None
    return request.getfixturevalue('postgres').create_database()


# ------------------------------------------------------------------------------------------------ real processes
def _environment() -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '2')
    return env


class StudioProcess:
    """`learner studio --port 0` started for real; `url`, `keys`, `stop()`, `kill()`; its output in `lines`."""

    def __init__(self, folder: Path, db: Optional[str] = None, workers: int = 1, extra: tuple = ()):
        argv = [sys.executable, '-m', 'learner', 'studio', '--dir', str(folder), '--port', '0',
                '--workers', str(workers), '--log-level', 'warning', *extra]
        if db:
            argv += ['--db', db]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=_environment())
        self.lines: list = []
        self.url = None
        deadline = time.monotonic() + 120
        while self.url is None:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError('learner studio exited at start:\n' + ''.join(self.lines))
            self.lines.append(line)
            match = re.search(r'learner studio at (http://\S+)', line)
            if match:
                self.url = match.group(1)
            if time.monotonic() > deadline:
                raise RuntimeError('learner studio did not start in 120 s:\n' + ''.join(self.lines))
        text = ''.join(self.lines)   # the keys are printed before the address, on a first start only
        found = dict(re.findall(r'(Training|Prediction)-Key:\s+(\S+)', text))
        self.keys = {'training': found.get('Training'), 'prediction': found.get('Prediction')}
        threading.Thread(target=self._drain, daemon=True).start()
        self._wait_ready()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def _wait_ready(self) -> None:
        import httpx
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + '/health', timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError('learner studio never answered /health:\n' + ''.join(self.lines))

    def health(self) -> dict:
        import httpx
        return httpx.get(self.url + '/health', timeout=10).json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a power cut or an OOM kill."""
        self.process.kill()
        self.process.wait()


def run_worker_once(folder: Path, db: Optional[str] = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """A real worker process that runs every queued job, then exits."""
    argv = [sys.executable, '-m', 'learner.studio.jobs', '--dir', str(folder), '--once']
    if db:
        argv += ['--db', db]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_environment())


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = 'condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def smooth_photo(seed: int, size: int = 96):
    """A smooth, photo-like uint8 (size, size, 3) image (colour gradients): a re-encoded copy of it is a near-duplicate
    by find_duplicates' rule, while a noisy square's JPEG artefacts are too large to be."""
    import numpy as np
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    c = rng.uniform(0, 255, (3, 3))
    img = c[:, 0, None, None] * x + c[:, 1, None, None] * y + c[:, 2, None, None] * (1 - x) * y
    return np.clip(img.transpose(1, 2, 0), 0, 255).astype(np.uint8)
