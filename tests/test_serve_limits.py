"""What one request can cost the prediction service, measured on a real server process (`learner serve` on
loopback): peak memory of requests full of large PNGs, and the 413 answer reaching clients that send their whole
body before reading (Python's urllib and requests)."""
from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from _serve_helpers import color_image, png_bytes, tiny_export

MB = 1024 * 1024


def _png(size: int, mode: str = 'RGB') -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), (30, 180, 40) if mode == 'RGB' else 90).save(buffer, format='PNG')
    return buffer.getvalue()


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f'/proc/{pid}/status').read_text()
    return int(re.search(r'VmHWM:\s+(\d+) kB', status).group(1)) / 1024


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """`learner serve` in its own process (so its memory is its own), on a free loopback port."""
    pytest.importorskip('uvicorn', reason='the serve extra is not installed: pip install -e ".[serve]"')
    if not Path('/proc/self/status').exists():
        pytest.skip('peak memory is read from /proc (Linux)')
    export = tiny_export(tmp_path_factory)
    process = subprocess.Popen([sys.executable, '-m', 'learner', 'serve', str(export), '--port', '0'],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(180, process.kill)
    watchdog.start()
    try:
        lines, found = [], None
        for line in process.stdout:
            lines.append(line)
            found = re.search(r'running on http://(127\.0\.0\.1):(\d+)', line)
            if found or len(lines) > 50:
                break
        assert found, ''.join(lines)
        watchdog.cancel()
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # keep the pipe open
        yield f'http://{found.group(1)}:{found.group(2)}', process.pid
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(30)


def test_a_request_of_large_pngs_decodes_one_image_at_a_time(server):
    import httpx
    url, pid = server
    assert httpx.post(f'{url}/predict', content=png_bytes(color_image('red', 1)), timeout=60).status_code == 200
    big = _png(4000)                                  # 56 kB that decode to 4000 x 4000 x 3 = 48 MB each
    files = [('files', (f'big{i}.png', big)) for i in range(8)]
    before = _peak_rss_mb(pid)
    answer = httpx.post(f'{url}/predict/batch', files=files, timeout=300)
    assert answer.status_code == 200 and len(answer.json()['results']) == 8
    growth = _peak_rss_mb(pid) - before
    # all eight at full size at once would be >= 384 MB; one at a time, shrunk at once, is one image and change
    assert growth < 160, f'peak memory grew by {growth:.0f} MB for 8 PNGs of 4000 x 4000'


def test_a_request_that_would_decode_to_gigabytes_is_refused_before_decoding(server):
    import httpx
    url, pid = server
    huge = _png(9400, 'L')                            # 107 kB that decode to 88 megapixels each
    files = [('files', (f'huge{i}.png', huge)) for i in range(64)]   # 6.9 MB: under the 20 MB upload limit
    before = _peak_rss_mb(pid)
    answer = httpx.post(f'{url}/predict/batch', files=files, timeout=300)
    assert answer.status_code in (413, 422), answer.text
    assert 'huge0.png' in answer.json()['detail'] or 'megapixels' in answer.json()['detail']
    growth = _peak_rss_mb(pid) - before
    assert growth < 60, f'peak memory grew by {growth:.0f} MB for a request refused by its headers'
    medium = [('files', (f'm{i}.png', _png(7000, 'L'))) for i in range(6)]    # 49 MP each: 294 MP in all
    answer = httpx.post(f'{url}/predict/batch', files=medium, timeout=300)
    assert answer.status_code == 413 and 'megapixels' in answer.json()['detail']


def test_an_oversized_upload_gets_its_413_in_urllib_and_requests(server):
    import requests
    url, _ = server
    body = b'\0' * (30 * MB)                          # the limit is 20 MB
    with pytest.raises(urllib.error.HTTPError) as caught:   # before: ConnectionResetError
        urllib.request.urlopen(urllib.request.Request(f'{url}/predict', data=body, method='POST'), timeout=120)
    assert caught.value.code == 413 and b'larger than the 20 MB limit' in caught.value.read()
    answer = requests.post(f'{url}/predict', data=body, timeout=120)
    assert answer.status_code == 413 and 'larger than' in answer.json()['detail']
    streamed = requests.post(f'{url}/predict', data=iter([body[i:i + MB] for i in range(0, len(body), MB)]),
                             timeout=120)                 # chunked: no length declared, over the limit mid-stream
    assert streamed.status_code == 413 and 'larger than' in streamed.json()['detail']
    assert requests.post(f'{url}/predict', data=png_bytes(color_image('red', 2)), timeout=60).status_code == 200
