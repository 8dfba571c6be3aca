"""The quick-test page in a real browser: Debian's headless Chromium, driven by Selenium with the system
chromedriver (see _browser_helpers.py), against the service running on loopback under uvicorn."""
from __future__ import annotations

import threading
import time

import pytest

from _browser_helpers import missing, start_chromium
from _serve_helpers import color_image, png_bytes, tiny_export


@pytest.fixture(scope='module')
def server_url(tmp_path_factory):
    """The service on 127.0.0.1, a free port, in a thread of this process; stopped after the module."""
    try:
        import uvicorn
        from learner.serve import create_app
    except ImportError as err:
        missing(f'the serve extra is not installed ({err})')
    export = tiny_export(tmp_path_factory)
    server = uvicorn.Server(uvicorn.Config(create_app(export), host='127.0.0.1', port=0, log_level='warning'))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail('uvicorn did not start within 30 s')
        time.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    yield f'http://{host}:{port}'
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp('chromium-profile'), window='420,900')   # a phone-sized window
    yield driver
    driver.quit()


def _percent(value) -> str:
    """The page's number format (app.js `percent`)."""
    return '–' if value is None else f'{100 * value:.1f}%'


def test_page_uploads_an_image_shows_the_top_class_and_tracks_the_threshold(browser, server_url, tmp_path):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    image = tmp_path / 'green.png'
    image.write_bytes(png_bytes(color_image('green', 4242)))
    api = httpx.post(f'{server_url}/predict', content=image.read_bytes(), timeout=30).json()['predictions']
    table = httpx.get(f'{server_url}/model/thresholds', timeout=30).json()

    browser.get(server_url + '/')
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: 'efficientnet_lite0' in d.find_element(By.ID, 'model-summary').text)
    wait.until(lambda d: d.find_element(By.ID, 'overall-precision').text != '–')

    browser.find_element(By.ID, 'file').send_keys(str(image))
    wait.until(lambda d: d.find_element(By.ID, 'top-class').text not in ('', '…'))
    assert browser.find_element(By.ID, 'top-class').text == api[0]['class']
    assert browser.find_element(By.ID, 'top-probability').text == _percent(api[0]['probability'])
    bars = browser.find_elements(By.CSS_SELECTOR, '#predictions li')
    assert [b.get_attribute('data-class') for b in bars] == [p['class'] for p in api]
    assert browser.find_element(By.ID, 'error').get_attribute('hidden') is not None
    assert browser.find_element(By.ID, 'preview').get_attribute('naturalWidth') == '32'

    slider = browser.find_element(By.ID, 'threshold')
    slider.send_keys(Keys.END)                          # 100%
    slider.send_keys(*[Keys.ARROW_LEFT] * 5)            # 95%, a real user's keyboard steps
    assert browser.find_element(By.ID, 'threshold-value').text == '95%'
    k = table['thresholds'].index(0.95)
    assert browser.find_element(By.ID, 'overall-precision').text == _percent(table['overall']['precision'][k])
    assert browser.find_element(By.ID, 'overall-recall').text == _percent(table['overall']['recall'][k])
    for j, name in enumerate(table['classes']):
        row = browser.find_element(By.CSS_SELECTOR, f'#per-class tr[data-class="{name}"]')
        assert row.find_element(By.CLASS_NAME, 'precision').text == _percent(table['precision'][k][j]), name
        assert row.find_element(By.CLASS_NAME, 'recall').text == _percent(table['recall'][k][j]), name
    over = {b.get_attribute('data-class') for b in browser.find_elements(By.CSS_SELECTOR, '#predictions li.over')}
    assert over == {p['class'] for p in api if p['probability'] >= 0.95}


def test_page_shows_the_reason_for_a_bad_upload(browser, server_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / 'notes.png'
    bad.write_bytes(b'this is text, not a picture')
    browser.get(server_url + '/')
    browser.find_element(By.ID, 'file').send_keys(str(bad))
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, 'error').text)
    text = browser.find_element(By.ID, 'error').text
    assert text.startswith('422') and 'not an image' in text and 'notes.png' in text
