"""The post's Custom Vision flow against a real `learner studio` (uvicorn, its worker process) on the ants/bees
photos, through the Python client and the REST API, on SQLite and PostgreSQL; and the faults: a job cancelled, the
worker killed mid-job, the studio killed mid-upload and mid-job then restarted, publishing switched under load."""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip('sqlalchemy', reason='the studio extra is not installed: pip install -e ".[studio]"')
import httpx  # noqa: E402

from _serve_helpers import color_image, png_bytes  # noqa: E402
from _studio_helpers import StudioProcess, db_url, postgres, wait_for  # noqa: E402,F401
from learner.studio import Client, StudioError  # noqa: E402

pytestmark = pytest.mark.slow
N_PER_TAG = 25


def _photos(hymenoptera, split, tag, n):
    return sorted((hymenoptera / split / tag).iterdir())[:n]


def test_the_posts_flow_on_ants_and_bees(hymenoptera, db_url, tmp_path):
    studio = StudioProcess(tmp_path / 'studio', db_url)
    try:
        keys = studio.keys
        assert keys['training'] and keys['prediction'] and keys['training'] != keys['prediction']
        client = Client(studio.url, training_key=keys['training'], prediction_key=keys['prediction'])
        project = client.create_project('insects', description='ants and bees, as the post\'s landmarks', size=96)
        for tag in ('ants', 'bees'):                                     # category by category
            report = project.upload(_photos(hymenoptera, 'train', tag, N_PER_TAG), tags=[tag])
            assert len(report.created) == N_PER_TAG and not report.errors
        again = project.upload(_photos(hymenoptera, 'train', 'ants', 1), tags=['ants'])
        assert len(again.duplicates) == 1 and 'same bytes as image' in str(again)    # "detects duplicate images"

        iteration = project.train(progress=False, epochs=8, num_workers=0)           # quick
        assert iteration.number == 1 and iteration.n_valid == 10
        at_half, at_high = iteration.performance(0.5), iteration.performance(0.95)
        assert at_half['recall'] >= (at_high['recall'] or 0.0)                      # the threshold trades recall
        accuracy = sum(row[k] for k, row in enumerate(at_half['confusion_matrix'])) / at_half['n_valid']
        assert accuracy >= 0.7, at_half
        iteration.publish('insects')

        query = _photos(hymenoptera, 'val', 'bees', 1)[0]
        rest = httpx.post(f'{studio.url}/projects/{project.id}/predict', headers={'Prediction-Key': keys['prediction']},
                          files={'file': (query.name, query.read_bytes(), 'image/jpeg')}, timeout=60)
        assert rest.status_code == 200 and rest.json()['published_name'] == 'insects'
        assert {p['tag'] for p in rest.json()['predictions']} == {'ants', 'bees'}
        stored = project.predictions()
        assert [p.id for p in stored] == [rest.json()['prediction_id']] and stored[0].tags == []
        stored[0].tag(['bees'])                                         # the retrain loop: it joins the training set

        second = project.train(progress=False, epochs=8, num_workers=0)
        assert second.number == 2 and second.n_train + second.n_valid == 2 * N_PER_TAG + 1
        compared = project.compare(iteration, second)
        assert compared['n_shared_valid'] >= 9
        second.publish('insects-2')
        answer = project.predict(_photos(hymenoptera, 'val', 'ants', 1)[0])
        assert answer['iteration'] == 2 and answer['published_name'] == 'insects-2'
        with pytest.raises(StudioError, match='401'):
            Client(studio.url, prediction_key='wrong').project(project.id)
        _switching_publish_fails_no_request(studio, client, project, iteration, second, query.read_bytes())
    finally:
        studio.stop()


def _switching_publish_fails_no_request(studio, client, project, first, second, image: bytes) -> None:
    """Clients keep predicting while the published iteration flips: every answer is a 200 from one of the two."""
    stop, answers = threading.Event(), []

    def hammer():
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                r = http.post(f'{studio.url}/projects/{project.id}/predict', content=image,
                              headers={'Prediction-Key': studio.keys['prediction']})
                answers.append((r.status_code, r.json().get('iteration')))
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(hammer) for _ in range(3)]
        for k in range(6):
            (first if k % 2 == 0 else second).publish(f'flip-{k}')
            time.sleep(0.3)
        stop.set()
        [f.result() for f in futures]
    assert answers and {status for status, _ in answers} == {200}
    assert {iteration for _, iteration in answers} <= {1, 2}


def _colour_project(client, n=8, size=32):
    project = client.create_project('colours', size=size)
    for tag in ('red', 'green', 'blue'):
        project.create_tag(tag)
        data = [png_bytes(color_image(tag, 100 * len(tag) + i)) for i in range(n)]
        client.request('POST', f'/projects/{project.id}/images', params={'tag': tag},
                       files=[('files', (f'{tag}{i}.png', d, 'image/png')) for i, d in enumerate(data)])
    return project


def _running(client, job, min_epoch=1):
    job.refresh()
    progress = job.progress or {}
    return job.status == 'running' and progress.get('phase') == 'training' and (progress.get('epoch') or 0) >= min_epoch


def test_cancel_then_worker_killed_then_training_works(db_url, tmp_path):
    studio = StudioProcess(tmp_path / 'studio', db_url)
    try:
        client = Client(studio.url, training_key=studio.keys['training'])
        project = _colour_project(client)
        job = project.train(wait=False, epochs=2000, num_workers=0)
        wait_for(lambda: _running(client, job), what='the first job to train')
        job.cancel()
        wait_for(lambda: job.refresh().status == 'cancelled', timeout=30, what='the cancel to land')
        assert project.iterations() == []

        job = project.train(wait=False, epochs=2000, num_workers=0)
        wait_for(lambda: _running(client, job), what='the second job to train')
        (worker_pid,) = studio.health()['workers']
        os.kill(worker_pid, signal.SIGKILL)
        wait_for(lambda: job.refresh().status == 'failed', timeout=30, what='the killed job to fail')
        assert f'worker process {worker_pid} was killed by signal SIGKILL' in job.error
        new_workers = wait_for(lambda: studio.health()['workers'], what='a new worker')
        assert new_workers != [worker_pid]

        iteration = project.train(progress=False, epochs=3, num_workers=0)      # the next training works
        assert iteration.number == 1
        jobs = client.request('GET', f'/projects/{project.id}/jobs')
        assert [j['status'] for j in jobs] == ['succeeded', 'failed', 'cancelled']
    finally:
        studio.stop()


def _blob_files(folder):
    return {p.name for p in (folder / 'blobs').glob('*/*/*')}


def test_studio_killed_mid_upload_and_mid_job_restarts_clean(tmp_path):
    folder = tmp_path / 'studio'
    studio = StudioProcess(folder)
    keys = studio.keys
    client = Client(studio.url, training_key=keys['training'])
    project = _colour_project(client)
    job = project.train(wait=False, epochs=2000, num_workers=0)
    wait_for(lambda: _running(client, job), what='the job to train')
    (worker_pid,) = studio.health()['workers']
    big = [png_bytes(color_image('red', 5000 + i, size=400)) for i in range(60)]   # ~0.5 MB each

    def upload():
        try:
            client.request('POST', f'/projects/{project.id}/images', params={'tag': 'red'},
                           files=[('files', (f'big{i}.png', d, 'image/png')) for i, d in enumerate(big)])
        except (httpx.HTTPError, StudioError):
            pass                                                     # the studio dies under it
    uploader = threading.Thread(target=upload)
    uploader.start()
    wait_for(lambda: project.images(limit=1)['total'] > 24 + 3, interval=0.05, what='part of the upload to land')
    studio.kill()                                                    # SIGKILL: no clean-up
    os.kill(worker_pid, signal.SIGKILL)
    uploader.join()
    stray = folder / 'blobs' / 'ab' / 'cd'                            # what a crash between file and row leaves
    stray.mkdir(parents=True, exist_ok=True)
    (stray / ('ab' + 'cd' + 'e' * 60)).write_bytes(b'a file no row names')
    (stray / '.abcdabcdabcdabcd.x.tmp').write_bytes(b'half a file')

    restarted = StudioProcess(folder)
    try:
        assert restarted.keys == {'training': None, 'prediction': None}            # keys are shown only once
        client = Client(restarted.url, training_key=keys['training'])
        job = client.job(job.id)
        assert job.status == 'failed' and f'worker process {worker_pid} is gone' in job.error
        with sqlite3.connect(folder / 'studio.db') as db:
            assert db.execute('PRAGMA integrity_check').fetchone() == ('ok',)
            shas = {r[0] for r in db.execute('SELECT sha256 FROM images UNION SELECT sha256 FROM snapshot_images')}
            n_stored = db.execute('SELECT count(*) FROM images').fetchone()[0]
        assert _blob_files(folder) == shas                 # no orphan, no temporary file, no row without its file
        project = client.project(project.id)
        redo = client.request('POST', f'/projects/{project.id}/images', params={'tag': 'red'},
                              files=[('files', (f'big{i}.png', d, 'image/png')) for i, d in enumerate(big)])
        assert redo['summary'] == {'created': 60 - (n_stored - 24), 'duplicate': n_stored - 24, 'error': 0}
        assert project.train(progress=False, epochs=2, num_workers=0).number == 1
    finally:
        restarted.stop()
