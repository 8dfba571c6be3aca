"""The studio's REST API in-process (FastAPI's TestClient) on SQLite and PostgreSQL, training in a real worker
process: keys, projects, tags, uploads and every bad input, training refused or queued, iterations, publish,
predictions and the retrain loop."""
from __future__ import annotations

import io
import zlib

import numpy as np
import pytest

pytest.importorskip('sqlalchemy', reason='the studio extra is not installed: pip install -e ".[studio]"')
from fastapi.testclient import TestClient  # noqa: E402

from _serve_helpers import color_image, jpeg_bytes, png_bytes, png_header_only  # noqa: E402
from _studio_helpers import db_url, postgres, run_worker_once  # noqa: E402,F401
from learner.studio.app import create_app  # noqa: E402
from learner.studio.ingest import UploadLimits  # noqa: E402
from learner.studio.server import Studio  # noqa: E402

MB = 1024 * 1024


@pytest.fixture
def studio(db_url, tmp_path):
    s = Studio(tmp_path / 'studio', db_url, limits=UploadLimits(max_upload_bytes=2 * MB,
                                                                  max_request_pixels=40_000)).open()
    s.db_url = db_url
    yield s
    s.close()


@pytest.fixture
def api(studio):
    with TestClient(create_app(studio)) as client:
        client.headers['Training-Key'] = studio.new_keys['training']
        yield client


def _project(api, name='colours', **kw) -> int:
    answer = api.post('/projects', json={'name': name, 'size': 32, **kw})
    assert answer.status_code == 201, answer.text
    return answer.json()['id']


def _files(names_and_bytes):
    return [('files', (name, data, 'application/octet-stream')) for name, data in names_and_bytes]


def _upload(api, project_id, tag, images, **params):
    return api.post(f'/projects/{project_id}/images', params={'tag': tag, **params},
                    files=_files([(f'{tag}{i}.png', png_bytes(a)) for i, a in enumerate(images)]))


def _tagged_project(api, n=6, tags=('red', 'green', 'blue')) -> int:
    project_id = _project(api)
    for k, tag in enumerate(tags):
        api.post(f'/projects/{project_id}/tags', json={'name': tag})
        answer = _upload(api, project_id, tag, [color_image(tag, 10 * k + i) for i in range(n)])
        assert answer.json()['summary'] == {'created': n, 'duplicate': 0, 'error': 0}
    return project_id


def _n_images(api, project_id) -> int:
    return api.get(f'/projects/{project_id}/images').json()['total']


# ------------------------------------------------------------------------------------------------ keys
def test_wrong_or_missing_key_is_401_and_changes_nothing(api, studio):
    project_id = _tagged_project(api, n=1)
    for headers in ({'Training-Key': 'wrong'}, {'Training-Key': ''},
                    {'Training-Key': studio.new_keys['prediction']}):
        assert api.post('/projects', json={'name': 'intruder'}, headers=headers).status_code == 401
        answer = api.post(f'/projects/{project_id}/images', params={'tag': 'red'}, headers=headers,
                          files=_files([('x.png', png_bytes(color_image('red', 99)))]))
        assert answer.status_code == 401 and 'Training-Key' in answer.json()['detail']
    del api.headers['Training-Key']
    assert api.get('/projects').status_code == 401
    api.headers['Training-Key'] = studio.new_keys['training']
    assert [p['name'] for p in api.get('/projects').json()] == ['colours'] and _n_images(api, project_id) == 3
    assert api.get('/health').status_code == 200       # no key needed to see that it is up


# ------------------------------------------------------------------------------------------------ projects, tags
def test_project_settings_are_checked(api):
    _project(api)
    assert api.post('/projects', json={'name': 'colours'}).status_code == 409
    answer = api.post('/projects', json={'name': 'x', 'backbone': 'resnet9000'})
    assert answer.status_code == 422 and 'unknown backbone' in answer.json()['detail']
    answer = api.post('/projects', json={'name': 'x', 'sise': 64})
    assert answer.status_code == 422 and 'sise' in answer.text          # a misspelled field is named, not ignored
    assert api.get('/projects/42').status_code == 404


def test_unknown_tag_or_project_is_404_and_nothing_is_stored(api):
    project_id = _project(api)
    answer = _upload(api, project_id, 'purple', [color_image('red', 1)])
    assert answer.status_code == 404 and "no tag 'purple'" in answer.json()['detail']
    assert _upload(api, 9999, 'red', [color_image('red', 1)]).status_code == 404
    assert _n_images(api, project_id) == 0


# ------------------------------------------------------------------------------------------------ uploads
def _truncated_png() -> bytes:
    return png_bytes(color_image('red', 5))[:-60]


def _png_that_decodes_huge(side: int = 9000) -> bytes:
    """A real, complete greyscale PNG of side x side black pixels: a few KB that would decode to 81 MB."""
    import struct

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    raw = zlib.compress((b'\0' + b'\0' * side) * side, 9)
    header = struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', raw) + chunk(b'IEND', b'')


def test_bad_files_are_reported_one_by_one_and_good_ones_kept(api):
    project_id = _project(api)
    api.post(f'/projects/{project_id}/tags', json={'name': 'red'})
    huge = _png_that_decodes_huge()
    assert len(huge) < 200_000
    parts = [('good.png', png_bytes(color_image('red', 1))), ('notes.txt', b'not an image at all'),
             ('cut.png', _truncated_png()), ('empty.jpg', b''), ('bomb.png', png_header_only(30000, 30000)),
             ('huge.png', huge)]
    answer = api.post(f'/projects/{project_id}/images', params={'tag': 'red'}, files=_files(parts))
    assert answer.status_code == 200, answer.text
    results = {r['filename']: r for r in answer.json()['results']}
    assert results['good.png']['status'] == 'created'
    assert 'not an image' in results['notes.txt']['error']
    assert 'truncated or corrupt' in results['cut.png']['error']
    assert 'empty upload' in results['empty.jpg']['error']
    assert 'decompression bomb' in results['bomb.png']['error']
    assert 'decompression bomb' in results['huge.png']['error']     # 81 M pixels > the 50 M per image
    assert _n_images(api, project_id) == 1
    only_bad = api.post(f'/projects/{project_id}/images', files=_files(parts[1:3]))
    assert only_bad.status_code == 422 and only_bad.json()['summary']['error'] == 2


def test_decoded_pixels_are_capped_per_request(api):
    project_id = _project(api)
    images = [color_image('red', i, size=120) for i in range(4)]        # 14,400 pixels each; the cap is 40,000
    answer = api.post(f'/projects/{project_id}/images', files=_files([(f'{i}.png', png_bytes(a))
                                                                      for i, a in enumerate(images)]))
    statuses = [r['status'] for r in answer.json()['results']]
    assert statuses == ['created', 'created', 'error', 'error']
    assert 'another request' in answer.json()['results'][2]['error']


def test_an_upload_over_the_size_limit_is_413_and_stores_nothing(api):
    project_id = _project(api)
    noise = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    big = png_bytes(noise)
    assert len(big) > 2 * MB
    answer = api.post(f'/projects/{project_id}/images', files=_files([('big.png', big)]))
    assert answer.status_code == 413 and 'limit' in answer.json()['detail']
    assert _n_images(api, project_id) == 0


def test_retag_untag_delete_and_single_label_rule(api):
    project_id = _tagged_project(api, n=2)
    tags = {t['name']: t['id'] for t in api.get(f'/projects/{project_id}/tags').json()}
    red_images = api.get(f'/projects/{project_id}/images', params={'tag_id': tags['red']}).json()['images']
    first = red_images[0]['id']
    assert api.post(f'/projects/{project_id}/images/tags',
                    json={'image_ids': [first], 'tag_ids': [tags['blue']]}).status_code == 200
    assert api.get(f'/projects/{project_id}/images/{first}').json()['tags'] == ['blue']
    two = api.post(f'/projects/{project_id}/images/tags',
                   json={'image_ids': [first], 'tag_ids': [tags['red']], 'mode': 'add'})
    assert two.status_code == 422 and 'single-label' in two.json()['detail']
    api.post(f'/projects/{project_id}/images/tags', json={'image_ids': [first], 'tag_ids': [tags['blue']],
                                                         'mode': 'remove'})
    assert api.get(f'/projects/{project_id}/images', params={'untagged': True}).json()['total'] == 1
    assert api.delete(f'/projects/{project_id}/images', params={'image_id': [first]}).json() == {'deleted': 1}
    assert _n_images(api, project_id) == 5
    counts = {t['name']: t['image_count'] for t in api.get(f'/projects/{project_id}/tags').json()}
    assert counts == {'blue': 2, 'green': 2, 'red': 1}


# ------------------------------------------------------------------------------------------------ training
def test_training_refused_with_what_to_add_and_never_twice_at_once(api):
    project_id = _tagged_project(api, n=4)
    refused = api.post(f'/projects/{project_id}/train', json={})
    assert refused.status_code == 422 and "'red' has 4 (add 1)" in refused.json()['detail']
    for tag in ('red', 'green', 'blue'):
        _upload(api, project_id, tag, [color_image(tag, 900 + len(tag))])
    job = api.post(f'/projects/{project_id}/train', json={'mode': 'quick'})
    assert job.status_code == 202, job.text
    second = api.post(f'/projects/{project_id}/train', json={'mode': 'quick'})
    assert second.status_code == 409 and f"job {job.json()['id']}" in second.json()['detail']
    assert api.post(f'/jobs/{job.json()["id"]}/cancel').json()['status'] == 'cancelled'
    assert api.post(f'/jobs/{job.json()["id"]}/cancel').status_code == 409
    assert api.post(f'/projects/{project_id}/train', json={'mode': 'advanced'}).status_code == 422  # no budget
    assert api.post(f'/projects/{project_id}/train', json={'options': {'epoch': 3}}).status_code == 422


def _train(api, studio, project_id, **options) -> dict:
    job = api.post(f'/projects/{project_id}/train', json={'options': {'num_workers': 0, **options}}).json()
    done = run_worker_once(studio.dirs.root, studio.db_url)
    assert done.returncode == 0, done.stderr
    job = api.get(f'/jobs/{job["id"]}').json()
    assert job['status'] == 'succeeded', (job, done.stderr)
    return job


def test_the_whole_loop_in_process(api, studio):
    """Upload, train (a real worker process), metrics at two thresholds, publish, predict with the prediction key,
    the prediction stored and tagged, retrain, compare, publish the second, export."""
    project_id = _tagged_project(api, n=8)
    job = _train(api, studio, project_id, epochs=8)
    events = api.get(f'/jobs/{job["id"]}/events').text
    assert events.startswith('event: job') and '"succeeded"' in events
    progress = job['progress']
    assert progress['phase'] == 'done' and progress['iteration'] == 1 and progress['eta_s'] == 0
    assert [e['epoch'] for e in progress['epochs']] == list(range(8))       # what the page plots, epoch by epoch
    assert all(set(e) >= {'train_loss', 'valid_loss', 'accuracy'} for e in progress['epochs'])
    first = api.get(f'/projects/{project_id}/iterations').json()
    assert len(first) == 1 and first[0]['n_train'] + first[0]['n_valid'] == 24 and first[0]['n_valid'] == 6
    iteration = first[0]['id']
    low = api.get(f'/projects/{project_id}/iterations/{iteration}/performance', params={'threshold': 0.0}).json()
    high = api.get(f'/projects/{project_id}/iterations/{iteration}/performance', params={'threshold': 0.9}).json()
    assert low['recall'] >= (high['recall'] or 0) and [c['class'] for c in low['per_class']] == ['blue', 'green', 'red']
    table = api.get(f'/projects/{project_id}/iterations/{iteration}/thresholds').json()
    assert len(table['thresholds']) == 101 and table['n'] == [2, 2, 2]
    assert isinstance(api.get(f'/projects/{project_id}/iterations/{iteration}/wrong').json(), list)

    assert api.post(f'/projects/{project_id}/predict', content=png_bytes(color_image('red', 500)),
                    headers={'Prediction-Key': studio.new_keys['prediction']}).status_code == 404  # unpublished
    api.post(f'/projects/{project_id}/iterations/{iteration}/publish', json={'name': 'colours-v1'})
    predict_headers = {'Prediction-Key': studio.new_keys['prediction'], 'Training-Key': ''}
    answer = api.post(f'/projects/{project_id}/predict', headers=predict_headers,
                      files={'file': ('query.jpg', jpeg_bytes(color_image('red', 501)), 'image/jpeg')})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body['published_name'] == 'colours-v1' and body['predictions'][0]['tag'] == 'red'
    assert api.post(f'/projects/{project_id}/train', headers=predict_headers, json={}).status_code == 401
    two = [('file', ('a.jpg', jpeg_bytes(color_image('red', 501)), 'image/jpeg'))] * 2
    refused = api.post(f'/projects/{project_id}/predict', headers=predict_headers, files=two)
    assert refused.status_code == 400 and 'one image per request' in refused.json()['detail']   # no route to invent
    quick = api.post(f'/projects/{project_id}/quicktest', content=png_bytes(color_image('blue', 502))).json()
    assert quick['predictions'][0]['tag'] == 'blue'
    stored = api.get(f'/projects/{project_id}/predictions').json()
    assert stored['total'] == 1                                   # the quick test was not stored
    tagged = api.post(f'/projects/{project_id}/predictions/{body["prediction_id"]}/tags', json={'tags': ['red']})
    assert tagged.json()['tags'] == ['red']

    _train(api, studio, project_id, epochs=8)
    second = api.get(f'/projects/{project_id}/iterations').json()[-1]
    assert second['number'] == 2 and second['n_train'] + second['n_valid'] == 25
    compared = api.get(f'/projects/{project_id}/iterations/compare', params={'a': iteration, 'b': second['id']}).json()
    assert compared['n_shared_valid'] >= 6
    api.post(f'/projects/{project_id}/iterations/{second["id"]}/publish', json={'name': 'colours-v2'})
    again = api.post(f'/projects/{project_id}/predict', headers=predict_headers,
                     content=png_bytes(color_image('red', 503)))
    assert again.json()['iteration'] == 2 and again.json()['published_name'] == 'colours-v2'

    from learner.export import load_learner
    export = api.get(f'/projects/{project_id}/iterations/{second["id"]}/export')
    path = studio.dirs.root / 'downloaded.pth'
    path.write_bytes(export.content)
    inference = load_learner(path)
    assert inference.classes == ['blue', 'green', 'red']
    probs = inference.predict_probs([np.asarray(color_image('red', 503))])[0]
    assert np.allclose(sorted(probs, reverse=True), [p['probability'] for p in again.json()['predictions']], atol=1e-4)
    assert api.delete(f'/projects/{project_id}/publish').status_code == 204
    assert api.post(f'/projects/{project_id}/predict', headers=predict_headers,
                    content=png_bytes(color_image('red', 504))).status_code == 404


def test_uncertain_predictions_come_first(studio):
    from learner.studio.predictions import uncertainty
    assert uncertainty(np.array([0.5, 0.5]), False) == 1.0 and uncertainty(np.array([1.0, 0.0]), False) == 0.0
    assert uncertainty(np.array([0.9, 0.05, 0.05]), False) < uncertainty(np.array([0.5, 0.4, 0.1]), False)
    assert uncertainty(np.array([0.99, 0.5]), True) == 1.0 and uncertainty(np.array([1.0, 0.0]), True) == 0.0
