"""The studio page's files and what it asks of the API, checked in-process (fast; the page itself is walked in a real
browser by test_studio_page.py): shipped and served with the right types, offline (nothing fetched from elsewhere),
every element the scripts name present, every module import resolved; /health's limits, /backbones, thumbnails."""
from __future__ import annotations

import io
import re

import pytest

pytest.importorskip('sqlalchemy', reason='the studio extra is not installed: pip install -e ".[studio]"')
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from _serve_helpers import color_image, png_bytes  # noqa: E402
from learner.studio.app import STATIC, create_app  # noqa: E402
from learner.studio.ingest import UploadLimits  # noqa: E402
from learner.studio.server import Studio  # noqa: E402

SCRIPTS = sorted((STATIC / 'js').glob('*.js'))


@pytest.fixture
def api(tmp_path):
    studio = Studio(tmp_path / 'studio', limits=UploadLimits(max_upload_bytes=3 * 1024 * 1024, max_files=40)).open()
    with TestClient(create_app(studio)) as client:
        client.headers['Training-Key'] = studio.new_keys['training']
        yield client
    studio.close()


def test_the_page_is_served_with_its_modules_and_revalidated(api):
    page = api.get('/', headers={'Training-Key': ''})            # the page itself needs no key: it asks for it
    assert page.status_code == 200 and page.headers['content-type'].startswith('text/html')
    assert page.headers['cache-control'] == 'no-cache'
    entry = re.search(r'<script type="module" src="([^"]+)"', page.text).group(1)
    module = api.get('/' + entry, headers={'Training-Key': ''})
    assert module.status_code == 200 and 'javascript' in module.headers['content-type']   # modules need a JS type
    assert module.headers['cache-control'] == 'no-cache'
    assert api.get('/static/style.css').headers['content-type'].startswith('text/css')


def test_the_page_works_offline_and_its_scripts_name_what_exists():
    html = (STATIC / 'index.html').read_text()
    texts = {path.name: path.read_text() for path in SCRIPTS + [STATIC / 'style.css', STATIC / 'index.html']}
    for name, text in texts.items():   # no CDN, no web font, no remote script: it must work with no network
        assert not re.search(r'(src|href)=["\']?(https?:)?//', text), name
        assert not re.search(r'url\(\s*["\']?(https?:)?//', text), name
        assert not re.search(r'import[^;]*from\s+["\'](https?:)?//', text), name
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    for path in SCRIPTS:
        named = set(re.findall(r"\$\('([\w-]+)'\)", path.read_text()))
        assert named <= ids, f'{path.name} looks up elements the page lacks: {sorted(named - ids)}'
        for target in re.findall(r"from '\./([\w.]+)'", path.read_text()):
            assert (STATIC / 'js' / target).is_file(), f'{path.name} imports a missing module {target}'
    # every control in the page's own markup has a label (the ones drawn by scripts are checked in the browser)
    for control in re.findall(r'<(?:input|select)\b[^>]*\bid="([^"]+)"', html):
        assert f'for="{control}"' in html or re.search(rf'<label[^>]*>\s*<input[^>]*id="{control}"', html), control


def test_health_says_how_to_split_uploads(api):
    limits = api.get('/health', headers={'Training-Key': ''}).json()['limits']
    assert limits == {'max_upload_bytes': 3 * 1024 * 1024, 'max_files': 40}


def test_backbones_say_which_ones_a_project_can_use(api):
    found = api.get('/backbones').json()
    assert found[0] == {'name': 'efficientnet_lite0', 'available': True, 'reason': None}   # the default first
    missing = [b for b in found if not b['available']]
    assert all('weights' in b['reason'] for b in missing)
    assert api.get('/backbones', headers={'Training-Key': 'wrong'}).status_code == 401


def test_thumbnails_fit_their_box_and_revalidate_by_content(api):
    project = api.post('/projects', json={'name': 'p', 'size': 32}).json()['id']
    wide = color_image('red', 1)
    wide = Image.fromarray(wide).resize((300, 120))
    data = io.BytesIO()
    wide.save(data, format='PNG')
    answer = api.post(f'/projects/{project}/images', files=[('files', ('wide.png', data.getvalue(), 'image/png'))])
    image_id = answer.json()['results'][0]['image_id']
    path = f'/projects/{project}/images/{image_id}/thumbnail'

    thumb = api.get(path, params={'size': 96})
    assert thumb.status_code == 200 and thumb.headers['content-type'] == 'image/jpeg'
    assert Image.open(io.BytesIO(thumb.content)).size == (96, 38)          # 300x120 fitted in 96x96
    assert 'private' in thumb.headers['cache-control']
    again = api.get(path, params={'size': 96}, headers={'If-None-Match': thumb.headers['etag']})
    assert again.status_code == 304 and not again.content

    # a deleted image's id is never given to another (a browser keeping thumbnails by URL would show the wrong one)
    api.delete(f'/projects/{project}/images', params={'image_id': image_id})
    other = api.post(f'/projects/{project}/images', files=[('files', ('b.png', png_bytes(color_image('blue', 2)),
                                                                        'image/png'))]).json()['results'][0]
    assert other['image_id'] != image_id
    assert api.get(path, params={'size': 96}).status_code == 404
    path = f'/projects/{project}/images/{other["image_id"]}/thumbnail'

    assert api.get(path, params={'size': 1000}).status_code == 422
    assert api.get(f'/projects/{project}/images/999/thumbnail').status_code == 404
    assert api.get(path, headers={'Training-Key': 'wrong'}).status_code == 401
