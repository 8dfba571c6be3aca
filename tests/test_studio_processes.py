"""Studio jobs on N processes (the `n_procs` option): real torchrun launches of 2 CPU processes with gloo, run by real
worker processes against a real database. A 2-process quick job end to end (published, predicting, its stored
validation figures those of its export, beside a 1-process job on the same images); a cancel mid-fit; a training
process killed, then the worker killed, then the next training; the refusals. The agreement that makes a cancel stop
every process at the same batch is checked on its own with `learner.launch`."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('sqlalchemy', reason='the studio extra is not installed: pip install -e ".[studio]"')
from fastapi.testclient import TestClient  # noqa: E402

from _serve_helpers import color_image, png_bytes  # noqa: E402
from _studio_helpers import _environment, db_url, postgres, run_worker_once, wait_for  # noqa: E402,F401
from conftest import vector_learner  # noqa: E402
from learner import distributed  # noqa: E402
from learner.launch import launch  # noqa: E402
from learner.studio.app import create_app  # noqa: E402
from learner.studio.errors import Invalid  # noqa: E402
from learner.studio.processes import machine_processes  # noqa: E402
from learner.studio.queue import get_job, queue_job, snapshot  # noqa: E402
from learner.studio.server import Studio  # noqa: E402
from learner.studio.trainer import JobCancelled, _fit  # noqa: E402

TAGS = ('red', 'green', 'blue')


# ------------------------------------------------------------------------------------------------ helpers
def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a reaped-later zombie has stopped all the same)."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != 'Z'


def _open(folder: Path, db=None, **kwargs) -> Studio:
    return Studio(folder, db, **kwargs).open()


def _colour_project(studio: Studio, n: int = 8, name: str = 'colours') -> int:
    """A project of 3 colour tags with n 32-pixel images each, uploaded through the API."""
    with TestClient(create_app(studio)) as api:
        api.headers['Training-Key'] = studio.new_keys['training']
        project_id = api.post('/projects', json={'name': name, 'size': 32}).json()['id']
        for k, tag in enumerate(TAGS):
            api.post(f'/projects/{project_id}/tags', json={'name': tag})
            files = [('files', (f'{tag}{i}.png', png_bytes(color_image(tag, 10 * k + i)), 'image/png'))
                     for i in range(n)]
            assert api.post(f'/projects/{project_id}/images', params={'tag': tag}, files=files).status_code == 200
    return project_id


def _job(studio: Studio, job_id: int) -> dict:
    with studio.store.read() as conn:
        return get_job(conn, job_id)


def _training(studio: Studio, job_id: int, min_epoch: int = 1) -> bool:
    job = _job(studio, job_id)
    progress = job['progress'] or {}
    return (job['status'] == 'running' and progress.get('phase') == 'training'
            and (progress.get('epoch') or 0) >= min_epoch and len(progress.get('processes') or []) == 2)


def _ranks(job: dict) -> list:
    return [p['pid'] for p in job['progress']['processes']]


# ------------------------------------------------------------------------------------------------ the agreement
class _OneSidedReporter:
    """A Reporter that tells process 1 alone to cancel, once it has run `after` batches."""

    def __init__(self, after: int):
        self.after, self.batches = after, 0

    @property
    def cancelled(self) -> bool:
        return distributed.rank() == 1 and self.batches >= self.after

    def phase(self, name, n_epochs=None):
        pass

    def batch(self, epoch, batch, n_batches, loss, fraction):
        self.batches += 1

    def epoch(self, log):
        pass


def _cancel_seen_by_process_1(path):
    learn = vector_learner(path)              # 20 items, batches of 5: 2 per process and epoch
    reporter = _OneSidedReporter(after=3)
    try:
        _fit(learn, reporter, 'training', 50, 0.1)
        ending = 'finished'
    except JobCancelled:
        ending = 'cancelled'
    return {'ending': distributed.all_gather_object(ending), 'batches': distributed.all_gather_object(reporter.batches)}


@pytest.mark.slow
def test_a_cancel_seen_by_one_process_stops_every_process_at_the_same_batch(tmp_path):
    # Without the agreement process 1 leaves the fit after batch 3 while process 0 goes on into batch 4's gradient
    # sync and waits there for good: launch's timeout then fails the test.
    got = launch(_cancel_seen_by_process_1, 2, tmp_path, timeout=180)
    assert got == {'ending': ['cancelled', 'cancelled'], 'batches': [3, 3]}


# ------------------------------------------------------------------------------------------------ refusals
def test_n_procs_is_refused_with_what_to_ask_for(tmp_path):
    studio = _open(tmp_path / 'studio')
    try:
        project_id = _colour_project(studio, n=6)            # valid_pct 0.2: 1 validation image per tag, 3 in all
        limit, why = machine_processes()
        with TestClient(create_app(studio)) as api:
            api.headers['Training-Key'] = studio.new_keys['training']
            for bad in (0, -2, 'two', 1.5, True, None):
                answer = api.post(f'/projects/{project_id}/train', json={'options': {'n_procs': bad}})
                assert answer.status_code == 422 and 'n_procs' in answer.json()['detail'], (bad, answer.text)
            answer = api.post(f'/projects/{project_id}/train', json={'options': {'n_procs': limit + 1}})
            assert answer.status_code == 422
            assert f'at most {limit} training processes ({why}); ask for n_procs <= {limit}' in answer.json()['detail']
        with pytest.raises(Invalid, match=r'holds out 3 validation image\(s\).*n_procs <= 3'):
            queue_job(studio.store, project_id, options={'n_procs': 4}, max_procs=64)
        assert _jobs_of(studio, project_id) == []             # nothing was queued by any refusal

        # a studio whose --max-procs lets through more than the worker's machine runs: the worker refuses it
        n_procs = limit + 1
        if n_procs > 9:
            pytest.skip(f'this machine runs {limit} processes: more than the 9 validation images here can share')
        job = queue_job(studio.store, project_id, options={'n_procs': n_procs, 'valid_pct': 0.5}, max_procs=n_procs)
        done = run_worker_once(studio.dirs.root)
        assert done.returncode == 0, done.stderr
        failed = _job(studio, job['id'])
        assert failed['status'] == 'failed'
        assert f'asks for {n_procs} training processes, but worker' in failed['error']
        assert f'can run at most {limit} ({why}): train again with n_procs <= {limit}' in failed['error']
    finally:
        studio.close()


def _jobs_of(studio: Studio, project_id: int) -> list:
    from learner.studio.queue import list_jobs
    with studio.store.read() as conn:
        return list_jobs(conn, project_id)


def test_the_cli_queues_a_job_on_n_processes_and_refuses_bad_counts(tmp_path):
    studio = _open(tmp_path / 'studio')
    try:
        project_id = _colour_project(studio, n=6)
    finally:
        studio.close()

    def cli(*args):
        return subprocess.run([sys.executable, '-m', 'learner', 'studio', 'train', *args, '--dir',
                               str(tmp_path / 'studio')], capture_output=True, text=True, env=_environment(),
                              timeout=300)
    refused = cli('colours', '--n-procs', '0')
    assert refused.returncode != 0 and 'refused: n_procs must be at least 1' in refused.stderr
    queued = cli('colours', '--n-procs', '2', '--epochs', '3')
    assert queued.returncode == 0, queued.stderr
    assert "job 1 queued: quick training of project 'colours' on 2 process(es)" in queued.stdout
    studio = _open(tmp_path / 'studio')
    try:
        (job,) = _jobs_of(studio, project_id)
        assert job['status'] == 'queued' and job['options']['n_procs'] == 2 and job['options']['epochs'] == 3
    finally:
        studio.close()


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_a_two_process_job_is_published_and_predicts_like_a_one_process_job(db_url, tmp_path):
    studio = _open(tmp_path / 'studio', db_url)
    try:
        project_id = _colour_project(studio)
        with TestClient(create_app(studio)) as api:
            api.headers['Training-Key'] = studio.new_keys['training']
            queued = api.post(f'/projects/{project_id}/train', json={'options': {'n_procs': 2, 'epochs': 20,
                                                                                 'num_workers': 0}})
            assert queued.status_code == 202, queued.text
            done = run_worker_once(studio.dirs.root, db_url)
            assert done.returncode == 0, done.stderr
            job = _job(studio, queued.json()['id'])
            assert job['status'] == 'succeeded', (job, done.stdout[-3000:], done.stderr[-3000:])
            progress = job['progress']
            assert progress['phase'] == 'done' and progress['n_procs'] == 2
            assert [e['epoch'] for e in progress['epochs']] == list(range(20))    # one row per epoch: process 0's
            ranks = _ranks(job)
            assert len(set(ranks)) == 2 and not any(map(_alive, ranks + [progress['launcher_pid']]))

            (iteration,) = api.get(f'/projects/{project_id}/iterations').json()   # written once, by process 0
            assert sorted(p.name for p in studio.dirs.exports.iterdir()) == [iteration['export_file']]
            _stored_probs_are_the_exports(studio, job['id'], studio.dirs.exports / iteration['export_file'])

            api.post(f'/projects/{project_id}/iterations/{iteration["id"]}/publish', json={'name': 'two-procs'})
            answer = api.post(f'/projects/{project_id}/predict', content=png_bytes(color_image('red', 501)),
                              headers={'Prediction-Key': studio.new_keys['prediction'], 'Training-Key': ''})
            assert answer.status_code == 200, answer.text
            assert answer.json()['published_name'] == 'two-procs' and answer.json()['predictions'][0]['tag'] == 'red'

            one = api.post(f'/projects/{project_id}/train', json={'options': {'epochs': 20, 'num_workers': 0}}).json()
            assert run_worker_once(studio.dirs.root, db_url).returncode == 0
            assert _job(studio, one['id'])['status'] == 'succeeded'
            first, second = api.get(f'/projects/{project_id}/iterations').json()
            compared = api.get(f'/projects/{project_id}/iterations/compare',
                               params={'a': first['id'], 'b': second['id']}).json()
        # the same held-out images, and the same figures computed the same way: the loss and accuracy each job
        # logged for its last epoch are those of its stored probabilities over all 6 images (under DDP each process
        # validates 3 of them: figures of one process's half would differ)
        assert (first['n_train'], first['n_valid']) == (second['n_train'], second['n_valid']) == (18, 6)
        assert compared['n_shared_valid'] == 6
        reports = [side['report'] for side in compared['iterations']]
        assert reports[0].keys() == reports[1].keys()
        assert [c['class'] for c in reports[0]['per_class']] == [c['class'] for c in reports[1]['per_class']]
        for iteration, side in zip((first, second), compared['iterations']):
            (history,) = iteration['history']
            assert history['epochs'] == 20
            probs, y = _validation(studio, iteration)
            np.testing.assert_allclose(history['valid_loss'][-1], -np.log(probs[np.arange(len(y)), y]).mean(),
                                       atol=1e-4)
            accuracy = (probs.argmax(1) == y).mean()
            assert history['metrics']['accuracy'][-1] == pytest.approx(accuracy)
            assert side['accuracy_on_shared'] == pytest.approx(accuracy) and accuracy >= 0.5   # chance: 1/3
    finally:
        studio.close()


def _validation(studio: Studio, iteration: dict) -> tuple:
    """(stored validation probabilities (N, C), class indices (N,)) of an iteration."""
    with studio.store.read() as conn:
        valid = [item for item in snapshot(conn, iteration['job_id']) if item['split'] == 'valid']
    classes = iteration['classes']
    return np.array([item['probs'] for item in valid]), np.array([classes.index(item['labels'][0]) for item in valid])


def _stored_probs_are_the_exports(studio: Studio, job_id: int, export: Path) -> None:
    """The validation probabilities the iteration stored (gathered from both processes) are its export's, image by
    image: gathered in data-set order, none lost or repeated."""
    from learner.export import load_learner
    with studio.store.read() as conn:
        valid = [item for item in snapshot(conn, job_id) if item['split'] == 'valid']
    stored = np.array([item['probs'] for item in valid])
    model = load_learner(export)
    again = model.predict_probs([studio.blobs.path(item['sha256']) for item in valid])
    np.testing.assert_allclose(stored, again, atol=1e-4)


# ------------------------------------------------------------------------------------------------ faults
@pytest.mark.slow
def test_a_cancel_mid_fit_stops_both_processes_at_the_same_batch(tmp_path):
    studio = _open(tmp_path / 'studio')
    try:
        project_id = _colour_project(studio)
        studio.start_workers(1)
        job = queue_job(studio.store, project_id, options={'n_procs': 2, 'epochs': 2000, 'num_workers': 0})
        wait_for(lambda: _training(studio, job['id']), timeout=300, what='the 2-process job to train')
        ranks = _ranks(_job(studio, job['id']))
        from learner.studio.queue import cancel_job
        cancel_job(studio.store, job['id'])
        wait_for(lambda: _job(studio, job['id'])['status'] == 'cancelled', timeout=60, what='the cancel to land')
        processes = _job(studio, job['id'])['progress']['processes']
        batches = [p['batches'] for p in processes]
        assert batches[0] == batches[1] > 1, processes             # the same batch on both: agreed, never half-way
        wait_for(lambda: not any(map(_alive, ranks)), timeout=30, what='both processes to exit')
        assert list(studio.dirs.exports.iterdir()) == []
        with studio.store.read() as conn:
            from learner.studio.iterations import list_iterations
            assert list_iterations(conn, project_id) == []
    finally:
        studio.close()


@pytest.mark.slow
def test_a_killed_process_then_a_killed_worker_fail_their_jobs_and_the_next_training_works(tmp_path):
    studio = _open(tmp_path / 'studio')
    try:
        project_id = _colour_project(studio)
        studio.start_workers(1)
        options = {'n_procs': 2, 'epochs': 2000, 'num_workers': 0}

        job = queue_job(studio.store, project_id, options=options)
        wait_for(lambda: _training(studio, job['id']), timeout=300, what='the first job to train')
        running = _job(studio, job['id'])
        ranks, launcher = _ranks(running), running['progress']['launcher_pid']
        os.kill(ranks[1], signal.SIGKILL)
        wait_for(lambda: _job(studio, job['id'])['status'] == 'failed', timeout=60, what='the job to fail')
        error = _job(studio, job['id'])['error']
        assert f'training process 1 of 2 (pid {ranks[1]}) was killed by SIGKILL' in error, error
        wait_for(lambda: not any(map(_alive, ranks + [launcher])), timeout=30, what='every process to exit')

        job = queue_job(studio.store, project_id, options=options)
        wait_for(lambda: _training(studio, job['id']), timeout=300, what='the second job to train')
        running = _job(studio, job['id'])
        ranks, launcher = _ranks(running), running['progress']['launcher_pid']
        (worker,) = studio.worker_pids()
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: _job(studio, job['id'])['status'] == 'failed', timeout=30, what='the job to fail')
        assert f'worker process {worker} was killed by signal SIGKILL' in _job(studio, job['id'])['error']
        wait_for(lambda: not any(map(_alive, ranks + [launcher])), timeout=30, what='its processes to exit')

        job = queue_job(studio.store, project_id, options={**options, 'epochs': 3})
        wait_for(lambda: _job(studio, job['id'])['status'] not in ('queued', 'running'), timeout=300,
                 what='the next training to end')
        ended = _job(studio, job['id'])
        assert ended['status'] == 'succeeded', ended
        assert ended['progress']['iteration'] == 1
        wait_for(lambda: not any(map(_alive, _ranks(ended))), timeout=60, what='its processes to exit')
    finally:
        studio.close()


@pytest.mark.slow
def test_an_error_in_one_process_fails_the_job_with_that_error(tmp_path):
    studio = _open(tmp_path / 'studio')
    try:
        project_id = _colour_project(studio)
        job = queue_job(studio.store, project_id, options={'n_procs': 2, 'epochs': 3, 'num_workers': 0})
        with studio.store.read() as conn:
            lost = next(item for item in snapshot(conn, job['id']) if item['split'] == 'train')
        studio.blobs.path(lost['sha256']).unlink()          # an image file lost from the shared folder
        done = run_worker_once(studio.dirs.root)
        assert done.returncode == 0, done.stderr
        failed = _job(studio, job['id'])
        assert failed['status'] == 'failed', failed
        # the first error (every process fingerprints the files for the feature cache: either may be first), not
        # the connection errors it then sets off in the other process
        assert re.match(r"training process [01] of 2 failed: FileNotFoundError: .*No such file or directory: '.*"
                        + lost['sha256'], failed['error']), failed['error']
        assert not any(map(_alive, _ranks(failed) + [failed['progress']['launcher_pid']]))
    finally:
        studio.close()
