"""The prediction service in-process (FastAPI's TestClient): every endpoint, and every bad input answered cleanly."""
from __future__ import annotations

import asyncio
import datetime
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

pytest.importorskip('fastapi', reason='the serve extra is not installed: pip install -e ".[serve]"')
from fastapi.testclient import TestClient  # noqa: E402

from _serve_helpers import COLORS, color_image, jpeg_bytes, png_bytes, png_header_only, tiny_export  # noqa: E402
from learner.export import load_learner, validation_summary  # noqa: E402
from learner.interpret import threshold_counts, validation_report  # noqa: E402
from learner.persistence import atomic_torch_save, safe_torch_load  # noqa: E402
from learner.serve import ServeConfig, create_app  # noqa: E402
from learner.serve.batcher import Batcher, QueueFull  # noqa: E402

CLASSES = sorted(COLORS)


@pytest.fixture(scope='session')
def export_path(tmp_path_factory):
    return tiny_export(tmp_path_factory)


@pytest.fixture(scope='session')
def inference(export_path):
    return load_learner(export_path)


@pytest.fixture(scope='session')
def client(inference):
    with TestClient(create_app(inference)) as c:
        yield c


def _red(seed=1000):
    return color_image('red', seed)


# ------------------------------------------------------------------------------------------------ predictions
def test_predict_multipart_gives_sorted_probabilities_equal_to_load_learner(client, inference):
    array = _red()
    answer = client.post('/predict', files={'file': ('red.png', png_bytes(array), 'image/png')})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()['predictions']
    assert len(predictions) == 3
    probs = [p['probability'] for p in predictions]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    expected = inference.predict_probs([array])[0]
    assert np.allclose([expected[CLASSES.index(p['class'])] for p in predictions], probs, atol=1e-5)


def test_predict_raw_body_with_top_k_and_threshold(client):
    body = jpeg_bytes(color_image('green', 7))
    everything = client.post('/predict', content=body).json()['predictions']
    top1 = client.post('/predict?top_k=1', content=body, headers={'content-type': 'image/jpeg'}).json()
    assert top1['predictions'] == everything[:1]
    over = client.post('/predict?threshold=0.2', content=body).json()['predictions']
    assert over and all(p['probability'] >= 0.2 for p in over)
    assert client.post('/predict?threshold=1', content=body).json() == {'predictions': []}


def test_batch_endpoint_answers_each_part_in_order_in_one_model_call(client, inference):
    names = ['blue', 'red', 'green', 'red']
    arrays = [color_image(n, 50 + i) for i, n in enumerate(names)]
    files = [('files', (f'{n}{i}.png', png_bytes(a), 'image/png')) for i, (n, a) in enumerate(zip(names, arrays))]
    calls_before = client.get('/health').json()['model_calls']
    answer = client.post('/predict/batch?top_k=2', files=files)
    assert answer.status_code == 200, answer.text
    results = answer.json()['results']
    assert [r['filename'] for r in results] == [f'{n}{i}.png' for i, n in enumerate(names)]
    assert [r['predictions'][0]['class'] for r in results] == [CLASSES[i] for i in
                                                               inference.predict_probs(arrays).argmax(1)]
    assert all(len(r['predictions']) == 2 for r in results)
    assert client.get('/health').json()['model_calls'] == calls_before + 1  # the 4 images went through together


def test_concurrent_clients_all_get_their_own_answers(client, inference):
    arrays = [color_image(n, 300 + i) for i, n in enumerate(CLASSES * 8)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda a: client.post('/predict', content=png_bytes(a)), arrays))
    assert [a.status_code for a in answers] == [200] * len(arrays)
    expected = inference.predict_probs(arrays)  # each answer is its own image's, whatever batch it rode in
    for answer, probs in zip(answers, expected):
        got = {p['class']: p['probability'] for p in answer.json()['predictions']}
        assert np.allclose([got[c] for c in CLASSES], probs, atol=1e-5)


# ------------------------------------------------------------------------------------------------ model card
def test_model_card_has_classes_arch_size_time_and_validation_metrics(client, inference):
    card = client.get('/model').json()
    assert card['classes'] == CLASSES and card['arch'] == 'efficientnet_lite0' and card['sz'] == 32
    assert card['is_multi'] is False and card['n_train'] == 30
    exported = datetime.datetime.fromisoformat(card['exported_at'])
    assert abs((datetime.datetime.now(datetime.timezone.utc) - exported).total_seconds()) < 3600
    report = card['validation']
    stored = inference.meta['validation']
    probs, labels = stored['probs'].numpy(), stored['labels'].numpy()
    assert probs.shape == (15, 3) and report['n_valid'] == 15
    assert report == validation_report(probs, labels, CLASSES, False, 0.5)
    assert [row['class'] for row in report['per_class']] == CLASSES
    assert np.array(report['confusion_matrix']).sum() == 15
    assert all(set(row) == {'class', 'precision', 'recall', 'average_precision', 'n'} for row in report['per_class'])


def test_threshold_table_matches_counts_from_the_stored_predictions(client, inference):
    table = client.get('/model/thresholds').json()
    assert len(table['thresholds']) == 101 and table['thresholds'][80] == pytest.approx(0.8)
    stored = inference.meta['validation']
    tp, fp, fn = threshold_counts(stored['probs'].numpy(), stored['labels'].numpy(), [0.8])[0].T
    for j in range(3):
        precision = table['precision'][80][j]
        assert (precision is None and tp[j] + fp[j] == 0) or precision == pytest.approx(tp[j] / (tp[j] + fp[j]))
        assert table['recall'][80][j] == pytest.approx(tp[j] / (tp[j] + fn[j]))
    assert table['n'] == [5, 5, 5]
    accuracy = (stored['probs'].numpy().argmax(1) == stored['labels'].numpy()).mean()
    assert table['overall']['recall'][0] == pytest.approx(accuracy)  # at threshold 0 every item gets its argmax


def test_health_docs_and_page(client):
    assert client.get('/health').json()['status'] == 'ok'
    assert client.get('/docs').status_code == 200
    spec = client.get('/openapi.json').json()
    assert {'/predict', '/predict/batch', '/model', '/model/thresholds', '/health'} <= set(spec['paths'])
    assert 'multipart/form-data' in spec['paths']['/predict']['post']['requestBody']['content']
    page = client.get('/')
    assert page.status_code == 200 and 'id="threshold"' in page.text and 'viewport' in page.text
    for asset in ('static/app.js', 'static/style.css'):
        assert client.get('/' + asset).status_code == 200, asset


# ------------------------------------------------------------------------------------------------ bad input
BAD = {
    'empty body': (b'', 400, 'empty request'),
    'not an image': (b'%PDF-1.4 definitely not a picture', 422, 'not an image'),
    'truncated PNG': (png_bytes(color_image('red', 1, size=64))[:300], 422, 'truncated'),
    'truncated JPEG': (jpeg_bytes(color_image('red', 2, size=256))[:1500], 422, 'truncated'),
    'bomb over the limit': (png_header_only(10_000, 10_000), 422, 'decompression bomb'),
    'bomb over twice the limit': (png_header_only(100_000, 100_000), 422, 'decompression bomb'),
}


@pytest.mark.parametrize('name', list(BAD))
@pytest.mark.filterwarnings('ignore::PIL.Image.DecompressionBombWarning')
def test_bad_uploads_are_named_and_never_a_server_error(client, name):
    body, status, reason = BAD[name]
    for answer in (client.post('/predict', content=body),
                   client.post('/predict', files={'file': ('upload.bin', body)})):
        if not body and answer.request.headers.get('content-type', '').startswith('multipart'):
            status = 422  # an empty file part is a part: it is a non-image, not a missing one
        assert answer.status_code == status, answer.text
        assert reason in answer.json()['detail'] or (not body and 'empty' in answer.json()['detail'])
    assert client.post('/predict', content=png_bytes(_red())).status_code == 200  # the worker is alive


def test_oversized_bodies_get_413_declared_or_streamed(inference):
    config = ServeConfig(max_upload_bytes=50_000)
    with TestClient(create_app(inference, config)) as small:
        big = b'\0' * 60_000
        assert small.post('/predict', content=big).status_code == 413
        chunked = small.post('/predict', content=iter([big[:30_000], big[30_000:]]))  # no Content-Length
        assert chunked.status_code == 413 and 'larger than' in chunked.json()['detail']
        assert small.post('/predict', files={'file': ('big.png', big)}).status_code == 413
        assert small.post('/predict', content=png_bytes(_red())).status_code == 200


def test_bad_requests_say_what_to_send(client):
    body = png_bytes(_red())
    assert client.post('/predict?top_k=0', content=body).status_code == 422
    assert client.post('/predict?threshold=1.5', content=body).status_code == 422
    no_file = client.post('/predict', data={'note': 'hello'}, files={'x': ('', b'')})
    assert no_file.status_code in (400, 422)
    text_only = client.post('/predict', data={'note': 'hello'}, headers={})
    assert text_only.status_code in (400, 422) and 'detail' in text_only.json()
    two = client.post('/predict', files=[('file', ('a.png', body)), ('file', ('b.png', body))])
    assert two.status_code == 400 and '/predict/batch' in two.json()['detail']
    mixed = client.post('/predict/batch', files=[('files', ('ok.png', body)), ('files', ('bad.txt', b'text'))])
    assert mixed.status_code == 422 and 'bad.txt' in mixed.json()['detail'] and 'ok.png' not in mixed.json()['detail']


# ------------------------------------------------------------------------------------------------ exports
def test_an_old_export_without_validation_metrics_is_still_served(export_path, inference, tmp_path):
    blob = safe_torch_load(export_path)
    for key in ('validation', 'exported_at', 'n_train'):
        blob['meta'].pop(key)
    old = atomic_torch_save(blob, tmp_path / 'old.pth')
    with TestClient(create_app(old)) as c:
        card = c.get('/model').json()
        assert card['validation'] is None and card['exported_at'] is None
        missing = c.get('/model/thresholds')
        assert missing.status_code == 404 and 're-export' in missing.json()['detail']
        answer = c.post('/predict', content=png_bytes(_red())).json()['predictions']
        assert answer[0]['class'] == CLASSES[int(inference.predict_probs([_red()])[0].argmax())]


def test_multi_label_answers_every_class_over_the_threshold(export_path, tmp_path):
    blob = safe_torch_load(export_path)
    rng = np.random.default_rng(0)
    labels = rng.random((20, 3)) > 0.5
    probs = np.clip(labels * 0.7 + rng.random((20, 3)) * 0.3, 0, 1)
    blob['meta']['is_multi'] = True
    blob['meta']['validation'] = validation_summary(probs, labels, CLASSES, True)
    path = atomic_torch_save(blob, tmp_path / 'multi.pth')
    with TestClient(create_app(path)) as c:
        card = c.get('/model').json()
        assert card['is_multi'] and np.array(card['validation']['confusion_matrix']).shape == (3, 2, 2)
        raw = c.post('/predict?threshold=0', content=png_bytes(_red())).json()['predictions']
        over = c.post('/predict', content=png_bytes(_red())).json()['predictions']
        assert [p for p in raw if p['probability'] >= 0.5] == over  # default: the export's threshold, 0.5
        assert all(0 <= p['probability'] <= 1 for p in raw) and len(raw) == 3


# ------------------------------------------------------------------------------------------------ batcher
def test_batcher_groups_waiting_requests_and_survives_model_errors():
    calls = []

    def predict(images):
        calls.append(len(images))
        if any(int(image[0, 0, 0]) == 255 for image in images):
            raise RuntimeError('model failed')
        time.sleep(0.05)
        return np.ones((len(images), 2)) / 2

    async def run():
        batcher = Batcher(predict, max_batch=4, max_queue=10)
        ok = np.zeros((2, 2, 3), np.uint8)
        answers = await asyncio.gather(*[batcher.predict([ok]) for _ in range(9)])
        assert all(a.shape == (1, 2) for a in answers)
        assert sorted(calls, reverse=True)[:2] == [4, 4] and sum(calls) == 9  # 9 requests in 3 or 4 model calls
        with pytest.raises(RuntimeError, match='model failed'):
            await batcher.predict([np.full((2, 2, 3), 255, np.uint8)])
        assert (await batcher.predict([ok])).shape == (1, 2)  # the worker is still there
        with pytest.raises(QueueFull, match='max_queue=10'):
            await batcher.predict([ok] * 11)
        await batcher.aclose()

    asyncio.run(run())
    assert torch.is_inference_mode_enabled() is False


def test_the_service_and_its_numbers_import_no_plotting():
    import subprocess
    import sys
    code = ('import sys, learner.serve.app, learner.reports, learner.export; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == '[]', done.stdout + done.stderr
