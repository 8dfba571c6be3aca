"""A training job on N local processes (the job option `n_procs`): torchrun starts them, the worker watches them.

Why torchrun rather than `learner.launch`: the worker holds database connections and a heartbeat thread, which a
fork would copy into every process, while torchrun starts fresh interpreters; torchrun's agent already stops every
process when one fails and reports each one's exit code; and it is how the library's DDP support is meant to be run
(the same `--standalone` rendezvous a user's script gets, on a free port, so jobs of several workers never collide).

Three kinds of process, one function each:

worker (`train_on_processes`)   checks `n_procs` against this machine, writes the job's spec (job, project, snapshot)
                                to its work folder, starts the launcher in a session of its own (a Ctrl-C meant for
                                the studio reaches the worker, which then stops the job cleanly, not torchrun), touches
                                the job's cancel file when its heartbeat sees a cancel or the worker is stopping, and
                                when the launcher exits ends the job from what the processes left behind.
launcher (`launch_main`)        torchrun itself (`torch.distributed.run.run`, the code of the `torchrun` command),
                                plus a watch on the worker: when the worker is gone (killed) it stops, and torchrun
                                stops its processes. It writes each failed process's exit code and pid.
training process (`train_main`) exits when the launcher is gone; joins the group; reads the spec; runs `train_job`
                                (jobs.py), the function a one-process job runs, where process 0 alone writes the
                                progress and the iteration; writes its error, with the time, when it fails.

A cancel, or the worker stopping, reaches every process through the cancel file; each reads it at every training
batch and the processes agree on it (trainer.ReportProgress), so all stop at the same batch. A process that is
killed: torchrun stops the others, and the job fails naming the process, its pid and the signal. A worker that is
killed: the launcher and then the processes see their parent gone within a second and exit; the studio fails the
job as for a one-process job.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

__all__ = ['machine_processes', 'train_on_processes', 'ProcessReporter', 'launch_main', 'train_main', 'main']

DB_ENV = 'LEARNER_STUDIO_DB'           # the database URL, passed by environment: never on a command line
SPEC_FILE, CANCEL_FILE, OUTCOME_FILE, FAILURES_FILE = 'job.json', 'cancel', 'outcome.json', 'failures.json'
ERRORS_DIR = 'errors'
WATCH_S = 0.5                          # how often a launcher or a process looks for its parent
STOP_GRACE_S = 30.0                    # after SIGTERM, how long torchrun may take to stop its processes


def _cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def machine_processes() -> Tuple[int, str]:
    """(the most training processes this machine runs, why): one per GPU, else one per CPU core this process may
    use. More would share a GPU (NCCL refuses) or a core (slower than fewer processes)."""
    import torch
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpus:
        return n_gpus, f'{n_gpus} GPU(s)'
    return _cores(), f'{_cores()} CPU core(s) and no GPU'


# ------------------------------------------------------------------------------------------------ the worker's side
def train_on_processes(worker, spec: dict, reporter, workdir: Path) -> None:
    """Train the job `spec` describes on its `n_procs` local processes and return when it succeeded (process 0 has
    recorded the iteration); raise JobCancelled or JobFailed (with the reason) otherwise. `reporter` is the worker's
    (its `cancelled` is set by the heartbeat); its `state` ends as the progress process 0 last wrote."""
    from .trainer import JobFailed
    n_procs = int(spec['job']['options']['n_procs'])
    limit, why = machine_processes()
    if n_procs > limit:
        raise JobFailed(f'the job asks for {n_procs} training processes, but worker {worker.name} can run at most '
                        f'{limit} ({why}): train again with n_procs <= {limit}')
    (workdir / SPEC_FILE).write_text(json.dumps(spec))
    argv = [sys.executable, '-m', 'learner.studio.processes', 'launch', '--parent', str(os.getpid()),
            '--n-procs', str(n_procs), '--work', str(workdir), '--dir', str(worker.dirs.root)]
    launcher = subprocess.Popen(argv, env=_environment(worker.store.url, n_procs), start_new_session=True)
    try:
        code = _watch(launcher, reporter, workdir / CANCEL_FILE)
    finally:
        if launcher.poll() is None:
            _stop(launcher)
        reporter.state = _progress(worker.store, spec['job']['id']) or reporter.state
    _conclude(code, launcher.pid, workdir, n_procs)


def _environment(db_url: str, n_procs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                                                                'MASTER_PORT', 'LOCAL_WORLD_SIZE', 'GROUP_RANK')}
    env[DB_ENV] = db_url
    if 'OMP_NUM_THREADS' not in env:   # the cores shared out (torchrun would set 1 and warn)
        env['OMP_NUM_THREADS'] = str(max(1, _cores() // n_procs))
    return env


def _watch(launcher: subprocess.Popen, reporter, cancel_file: Path) -> int:
    """Wait for the launcher, passing a cancel (or the worker stopping) on as the cancel file; its exit status."""
    while True:
        try:
            return launcher.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if reporter.cancelled and not cancel_file.exists():
            cancel_file.touch()


def _stop(launcher: subprocess.Popen) -> None:
    """SIGTERM (torchrun stops its processes), then SIGKILL to the launcher's session: nothing is left behind."""
    launcher.terminate()
    try:
        launcher.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)   # its own session: the launcher and its processes, nothing else
        launcher.wait()


def _progress(store, job_id: int) -> Optional[dict]:
    from .queue import get_job
    try:
        with store.read() as conn:
            return get_job(conn, job_id)['progress']
    except Exception:  # noqa: BLE001 - the database is unreachable: keep what the worker had
        return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _conclude(code: int, launcher_pid: int, workdir: Path, n_procs: int) -> None:
    from .trainer import JobCancelled, JobFailed
    outcome = (_read_json(workdir / OUTCOME_FILE) or {}).get('status')
    if outcome == 'succeeded':
        return
    if outcome == 'cancelled':
        raise JobCancelled()
    raise JobFailed(_failure_reason(code, launcher_pid, workdir, n_procs))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f'signal {number}'


def _failure_reason(code: int, launcher_pid: int, workdir: Path, n_procs: int) -> str:
    """Which process failed first, and how.

    A process killed by a signal is the cause (the errors of the others follow from it: their peer vanished), but
    not one torchrun itself stopped with SIGTERM after a failure (listed after the failures it saw first); else the
    earliest error a process wrote; else the launcher's own exit.
    """
    failures = _read_json(workdir / FAILURES_FILE) or []
    killed = [f for k, f in enumerate(failures)
              if f['exitcode'] < 0 and (k == 0 or f['exitcode'] != -signal.SIGTERM)]
    if killed:
        return (f'training process {killed[0]["rank"]} of {n_procs} (pid {killed[0]["pid"]}) was killed by '
                f'{_signal_name(-killed[0]["exitcode"])} (by hand, by the out-of-memory killer or a crash); torchrun '
                f'stopped the others; train again')
    errors = [e for e in map(_read_json, sorted((workdir / ERRORS_DIR).glob('rank*.json'))) if e]
    if errors:
        first = min(errors, key=lambda e: e['time'])
        return f'training process {first["rank"]} of {n_procs} failed: {first["error"]}'
    if code < 0:
        return (f'the torchrun launcher (pid {launcher_pid}) was killed by {_signal_name(-code)}; its processes '
                f'stopped with it; train again')
    return (f'the {n_procs} training processes ended (torchrun exit status {code}) without saying why: see the '
            f'worker\'s output; train again')


# ------------------------------------------------------------------------------------------------ in the processes
def _exit_with_parent(parent_pid: int, on_gone: Callable[[], None]) -> None:
    """Call `on_gone` once `parent_pid` is no longer this process's parent (it died: we were re-parented)."""
    if os.getppid() != parent_pid:
        on_gone()
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCH_S)
        on_gone()
    threading.Thread(target=watch, name='studio-parent-watch', daemon=True).start()


def launch_main(args: argparse.Namespace) -> int:
    """The launcher: torchrun on this machine, stopped when the worker is gone; writes failed processes' exits."""
    _exit_with_parent(args.parent, lambda: os.kill(os.getpid(), signal.SIGTERM))
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run
    torchrun = get_args_parser().parse_args([
        '--standalone', '--nproc_per_node', str(args.n_procs), '--max_restarts', '0', '--module',
        'learner.studio.processes', 'train', '--work', args.work, '--dir', args.dir])
    try:
        run(torchrun)
    except ChildFailedError as err:
        # in the order torchrun saw them: first the processes that failed, then those it stopped because of them
        failures = [{'rank': r, 'exitcode': f.exitcode, 'pid': f.pid} for r, f in err.failures.items()]
        (Path(args.work) / FAILURES_FILE).write_text(json.dumps(failures))
        return 1
    except SignalException as err:   # the worker stopped us (or is gone): torchrun has stopped the processes
        return 128 + int(err.sigval)
    return 0


class ProcessReporter:
    """The Reporter (trainer.py) of one process of an N-process job: process 0 writes progress to the database
    through a JobReporter, the others write nothing; `cancelled` is this process's look at the cancel file (the
    trainer agrees on it across processes). `n_batches` counts the training batches this process ran."""

    def __init__(self, store, job_id: int, cancel_file: Path, n_procs: int):
        from .jobs import JobReporter
        self.job = JobReporter(store, job_id, n_procs=n_procs) if store is not None else None
        self.cancel_file, self.n_batches = cancel_file, 0

    @property
    def cancelled(self) -> bool:
        return self.cancel_file.exists()

    @property
    def state(self) -> dict:
        return self.job.state if self.job is not None else {}

    def note(self, **fields) -> None:
        """Add fields to the progress (process 0) and write it now."""
        if self.job is not None:
            self.job.note(**fields)

    def phase(self, name: str, n_epochs: Optional[int] = None) -> None:
        if self.job is not None:
            self.job.phase(name, n_epochs)

    def batch(self, epoch: int, batch: int, n_batches: int, loss: float, fraction: float) -> None:
        self.n_batches += 1
        if self.job is not None:
            self.job.batch(epoch, batch, n_batches, loss, fraction)

    def epoch(self, log: dict) -> None:
        if self.job is not None:
            self.job.epoch(log)


def train_main(args: argparse.Namespace) -> int:
    """One training process (started by torchrun): train the job, process 0 recording it; see the module docstring."""
    _exit_with_parent(os.getppid(), lambda: os._exit(1))
    from .. import distributed
    from .blobs import BlobStore
    from .jobs import StudioDirs, train_job
    from .store import Store
    from .trainer import JobCancelled
    work = Path(args.work)
    spec = json.loads((work / SPEC_FILE).read_text())
    distributed.setup()
    rank, n_procs = distributed.rank(), distributed.world_size()
    store = Store(os.environ[DB_ENV]) if rank == 0 else None   # the others never touch the database
    dirs = StudioDirs(args.dir)
    reporter = ProcessReporter(store, spec['job']['id'], work / CANCEL_FILE, n_procs)
    pids = distributed.all_gather_object(os.getpid())
    reporter.note(processes=[{'rank': r, 'pid': pid} for r, pid in enumerate(pids)], launcher_pid=os.getppid())
    try:
        train_job(spec, store, dirs, BlobStore(dirs.blobs_dir), reporter, work)
        status = 'succeeded'
    except JobCancelled:
        status = 'cancelled'
        batches = distributed.all_gather_object(reporter.n_batches)   # every process got here: agreed, collective
        reporter.note(processes=[{'rank': r, 'pid': pid, 'batches': n}
                                 for r, (pid, n) in enumerate(zip(pids, batches))])
    except BaseException as err:
        _write_error(work, rank, err)
        raise
    if rank == 0:
        (work / OUTCOME_FILE).write_text(json.dumps({'status': status}))
        store.dispose()
    return 0


def _write_error(work: Path, rank: int, err: BaseException) -> None:
    """This process's error with the time it happened (torchrun's own error files keep whole seconds only, too
    coarse to tell the cause from the errors it set off in the other processes)."""
    folder = work / ERRORS_DIR
    folder.mkdir(exist_ok=True)
    record = {'rank': rank, 'pid': os.getpid(), 'time': time.time(), 'error': f'{type(err).__name__}: {err}'}
    (folder / f'rank{rank}.json').write_text(json.dumps(record))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m learner.studio.processes',
                                     description='The processes of an N-process studio job (started by a worker).')
    commands = parser.add_subparsers(dest='command', required=True)
    launch = commands.add_parser('launch', help='torchrun, watched by the worker that started it')
    launch.add_argument('--parent', type=int, required=True)
    launch.add_argument('--n-procs', type=int, required=True)
    train = commands.add_parser('train', help='one training process (torchrun starts these)')
    for command in (launch, train):
        command.add_argument('--work', required=True, help="the job's work folder")
        command.add_argument('--dir', required=True, help='the studio folder')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return launch_main(args) if args.command == 'launch' else train_main(args)


if __name__ == '__main__':
    sys.exit(main())
