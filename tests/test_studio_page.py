"""The studio's web page walked in a real browser (Debian's Chromium under Selenium) against a real `learner studio`
(its server process, its worker process, its SQLite database) on the ants/bees photos: the post's whole flow, from
the training key to a second published iteration, with a screenshot at each step.

The desktop walk does all of it; the phone walk (390x844) does its first half (key, project, uploads by drop, the
duplicate report, refusals, retag/untag/delete) and checks after every step that nothing is wider than the screen
and no control is covered. Both ask the browser's accessibility tree whether every control has a name and takes the
keyboard's focus. Screenshots go to a temporary folder, or to $LEARNER_PAGE_SCREENSHOTS when set (the README's come
from there).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

pytest.importorskip('sqlalchemy', reason='the studio extra is not installed: pip install -e ".[studio]"')
import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from _browser_helpers import (accessibility_problems, drop_files, fit_problems, interactive_roles,  # noqa: E402
                              phone_screen, save_screenshot, severe_console_messages, start_chromium)
from _studio_helpers import StudioProcess  # noqa: E402

pytestmark = pytest.mark.slow

N_PER_TAG = 10          # 8 train + 2 validation images per tag
SIZE = 64               # pixels: the quick training takes seconds
QUICK_EPOCHS = 5        # learner/studio/trainer.py's default for a quick training
KEY_STORAGE = 'learner-studio.training-key'


def _percent(value) -> str:
    """The page's number format (dom.js `percent`)."""
    return '–' if value is None else f'{100 * value:.1f}%'


@pytest.fixture(scope='module')
def studio(tmp_path_factory):
    """`learner studio` with one worker, and a 1 MB body limit so that a real photo of 2 MB gets its 413."""
    process = StudioProcess(tmp_path_factory.mktemp('page') / 'studio', extra=('--max-upload-mb', '1'))
    yield process
    process.stop()


@pytest.fixture(scope='module')
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get('LEARNER_PAGE_SCREENSHOTS')
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder)
    return tmp_path_factory.mktemp('screenshots')


@pytest.fixture
def desktop(tmp_path):
    driver = start_chromium(tmp_path / 'profile', window='1280,900')
    yield driver
    driver.quit()


@pytest.fixture
def phone(tmp_path):
    driver = start_chromium(tmp_path / 'profile', window='390,844')
    phone_screen(driver)
    yield driver
    driver.quit()


class Walk:
    """One browser walking the page: waits, element look-ups, and the checks and screenshot of each step."""

    def __init__(self, driver, studio: StudioProcess, shots: Path, prefix: str, on_phone: bool = False):
        self.driver, self.studio, self.shots, self.prefix, self.on_phone = driver, studio, shots, prefix, on_phone
        self.n_steps = 0
        self.checked_roles: set = set()

    def by_id(self, element_id: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.ID, element_id)

    def css(self, selector: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def text(self, element_id: str) -> str:
        return self.by_id(element_id).text

    def wait(self, predicate, what: str, timeout: float = 30):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        def check(_driver):
            try:
                return predicate()
            except StaleElementReferenceException:   # redrawn while read: look again
                return False
        from selenium.common.exceptions import TimeoutException
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(check, message=what)
        except TimeoutException as err:   # say what the page showed instead
            shown = self.driver.execute_script(
                "const j = document.getElementById('job'); const t = (id) => (document.getElementById(id) || {}).textContent;"
                "return j ? [j.dataset.status, t('job-status'), t('job-error'), t('train-error')] : null;")
            raise AssertionError(f'{what}: not seen in {timeout} s; the job panel showed {shown}') from err

    def tab(self, view: str) -> None:
        self.css(f'#tabs a[data-view="{view}"]')[0].click()
        self.wait(lambda: self.by_id(f'{view}-panel').is_displayed(), f'the {view} view')

    def step(self, name: str, show: str = None, accessible: bool = False) -> None:
        """Screenshot (with `show` scrolled to the top), then: no script error; on a phone nothing overflows or is
        covered; with `accessible`, every control has a name and takes the focus."""
        if show:
            self.driver.execute_script('document.getElementById(arguments[0]).scrollIntoView({block: "start"})', show)
        self.n_steps += 1
        save_screenshot(self.driver, self.shots, f'{self.prefix}-{self.n_steps:02d}-{name}')
        assert severe_console_messages(self.driver) == [], name
        if self.on_phone:
            assert fit_problems(self.driver) == [], name
        if accessible:
            assert accessibility_problems(self.driver) == [], name
            self.checked_roles |= interactive_roles(self.driver)

    # ------------------------------------------------------------------------------------------ uploads
    def upload(self, tag: str, paths) -> list:
        """Drop `paths` on the tag's drop zone ('' for untagged), wait for every request of the drop to end, and
        return each file's report as (file, status, text, image id), in upload order."""
        n_before = len(self.css('#uploads .upload'))
        drop_files(self.driver, f'li.tag[data-tag="{tag}"] .drop', paths)
        self.wait(lambda: len(self.css('#uploads .upload')) > n_before
                  and self.by_id('uploads').get_attribute('data-busy') == '0', f'the upload to {tag or "untagged"}')
        rows = self.css('#uploads .upload')
        new_rows = rows[:len(rows) - n_before][::-1]           # the newest request is drawn first
        return [(r.find_element('css selector', '.file').text if r.get_attribute('data-status') != 'request-error'
                 else '', r.get_attribute('data-status'), r.text, r.get_attribute('data-image-id'))
                for row in new_rows for r in row.find_elements('css selector', '.report')]

    def tag_count(self, tag: str) -> str:
        return self.css(f'li.tag[data-tag="{tag}"] .count')[0].text

    def gallery_ids(self) -> list:
        return [int(t.get_attribute('data-image-id')) for t in self.css('#gallery .thumb')]

    def chosen(self, select_id: str) -> str:
        from selenium.webdriver.support.ui import Select
        return Select(self.by_id(select_id)).first_selected_option.text

    def choose(self, select_id: str, text_start: str) -> None:
        from selenium.webdriver.support.ui import Select
        select = Select(self.by_id(select_id))
        select.select_by_visible_text(next(o.text for o in select.options if o.text.startswith(text_start)))

    def act_on(self, image_id: int, button_id: str) -> None:
        box = self.by_id(f'pick-{image_id}')
        if not box.is_selected():
            box.click()
        self.by_id(button_id).click()


def _photos(hymenoptera, split, tag, n):
    return sorted((hymenoptera / split / tag).iterdir())[:n]


def first_half(walk: Walk, hymenoptera: Path, tmp_path: Path, project_name: str, n_per_tag: int) -> int:
    """Key, project, tags, uploads by drop with their reports and refusals, retag/untag/delete; the project's id."""
    from selenium.webdriver.common.keys import Keys
    studio, driver = walk.studio, walk.driver
    key = studio.keys['training']

    driver.get(studio.url + '/')
    walk.wait(lambda: walk.by_id('key-view').is_displayed(), 'the key form')
    if walk.on_phone:   # the page's viewport rule gives a phone its own width (without it, 980 px zoomed out)
        assert driver.execute_script('return document.documentElement.clientWidth') == 390
    walk.by_id('key-input').send_keys('not-the-key', Keys.ENTER)
    walk.wait(lambda: walk.text('key-error').startswith('401'), 'the wrong key refused')
    assert 'wrong training key' in walk.text('key-error')
    walk.step('key-refused', accessible=True)
    walk.by_id('key-input').clear()
    walk.by_id('key-input').send_keys(key, Keys.ENTER)
    walk.wait(lambda: walk.by_id('projects-view').is_displayed(), 'the projects view')
    assert driver.execute_script(f"return sessionStorage.getItem('{KEY_STORAGE}')") == key
    assert driver.execute_script(f"return localStorage.getItem('{KEY_STORAGE}')") is None

    walk.by_id('project-name').send_keys(project_name)
    walk.by_id('project-description').send_keys('ants and bees, as the post\'s landmarks')
    walk.choose('project-backbone', 'efficientnet_lite0')
    walk.by_id('project-size').clear()
    walk.by_id('project-size').send_keys(str(SIZE))
    walk.step('new-project', show='project-form', accessible=True)
    walk.by_id('project-size').send_keys(Keys.ENTER)
    walk.wait(lambda: walk.text('project-title') == project_name, 'the new project')
    project_id = int(re.search(r'#/projects/(\d+)/images', driver.current_url).group(1))

    for tag in ('ants', 'bees'):
        walk.by_id('tag-name').send_keys(tag, Keys.ENTER)
        walk.wait(lambda: walk.css(f'li.tag[data-tag="{tag}"]'), f'the tag {tag}')
    reports = walk.upload('ants', _photos(hymenoptera, 'train', 'ants', n_per_tag))
    assert [r[1] for r in reports] == ['created'] * n_per_tag, reports
    walk.wait(lambda: walk.tag_count('ants') == f'{n_per_tag} images', 'the ants count')
    walk.step('ants-dropped', show='tags-title')

    walk.tab('train')
    walk.by_id('train-start').click()
    walk.wait(lambda: walk.text('train-error').startswith('422'), 'training refused')
    assert 'at least 2 tags' in walk.text('train-error') and "only 'ants'" in walk.text('train-error')
    walk.step('training-refused')

    walk.tab('images')
    reports = walk.upload('bees', _photos(hymenoptera, 'train', 'bees', n_per_tag))
    assert [r[1] for r in reports] == ['created'] * n_per_tag, reports
    first_ant = _photos(hymenoptera, 'train', 'ants', 1)
    reports = walk.upload('ants', first_ant)
    assert [(r[0], r[1]) for r in reports] == [(first_ant[0].name, 'duplicate')]
    assert re.search(r'duplicate of image \d+: the same bytes, stored once', reports[0][2])
    big = hymenoptera / 'val' / 'ants' / ('ants-devouring-remains-of-large-dead-insect-on-red-tile-in-Stellenbosch-'
                                          'South-Africa-closeup-1-DHD.jpg')
    assert big.stat().st_size > 1024 * 1024
    reports = walk.upload('ants', [big])
    assert reports[0][1] == 'request-error' and reports[0][2].startswith('413 Too large'), reports
    notes = tmp_path / 'notes.jpg'
    notes.write_text('a shopping list, not a photo')
    reports = walk.upload('ants', [notes])
    assert reports[0][1] == 'error' and 'not an image' in reports[0][2], reports
    walk.wait(lambda: walk.tag_count('bees') == f'{n_per_tag} images', 'the bees count')
    walk.step('duplicate-and-refusals', show='uploads-title')

    # a re-encoded copy of an ant photo dropped on bees: a near-duplicate under another tag; then set its tag to
    # ants, remove its tags, and delete it (after the confirmation)
    copy = tmp_path / 'ant-copy.jpg'
    Image.open(first_ant[0]).save(copy, format='JPEG', quality=85)
    reports = walk.upload('bees', [copy])
    assert reports[0][1] == 'created', reports
    assert re.search(r'near-duplicate of image \d+ \(ants\): conflicting tag', reports[0][2]), reports
    image_id = int(reports[0][3])
    walk.step('near-duplicate', show='uploads-title')
    walk.choose('gallery-filter', 'bees')
    walk.wait(lambda: image_id in walk.gallery_ids(), 'the copy under bees')
    walk.choose('retag-to', 'ants')
    walk.act_on(image_id, 'retag')
    walk.wait(lambda: walk.tag_count('ants') == f'{n_per_tag + 1} images', 'the copy tagged ants')
    walk.wait(lambda: image_id not in walk.gallery_ids(), 'the copy gone from bees')
    walk.choose('gallery-filter', 'ants')
    walk.wait(lambda: image_id in walk.gallery_ids(), 'the copy under ants')
    walk.step('gallery-by-tag', show='gallery-title', accessible=True)
    walk.act_on(image_id, 'untag')
    walk.wait(lambda: walk.tag_count('ants') == f'{n_per_tag} images', 'the copy untagged')
    walk.choose('gallery-filter', 'Untagged')
    walk.wait(lambda: walk.gallery_ids() == [image_id], 'the untagged copy')
    walk.act_on(image_id, 'delete-images')
    walk.wait(lambda: walk.by_id('confirm').is_displayed(), 'the confirmation')
    assert walk.driver.switch_to.active_element.get_attribute('id') == 'confirm-no'   # the safe choice has the focus
    walk.step('delete-confirmation', accessible=True)
    walk.by_id('confirm-yes').click()
    walk.wait(lambda: walk.gallery_ids() == [] and walk.text('gallery-count') == '0 images', 'the image deleted')
    walk.choose('gallery-filter', 'All images')
    walk.wait(lambda: walk.text('gallery-count') == f'{2 * n_per_tag} images', 'every image listed')
    loaded = 'return arguments[0].complete && arguments[0].naturalWidth > 0'
    walk.wait(lambda: all(driver.execute_script(loaded, img) for img in walk.css('#gallery img')), 'the thumbnails')
    walk.step('gallery', show='gallery-title')

    urls = driver.execute_script("return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]")
    assert not [u for u in urls if key in u], 'the training key appeared in a URL'
    return project_id


def _start_job(walk: Walk) -> str:
    """Click Train and wait until the page draws the new job (not the last one); its id."""
    before = walk.by_id('job').get_attribute('data-job-id')
    walk.by_id('train-start').click()
    walk.wait(lambda: walk.by_id('job').get_attribute('data-job-id') not in (None, before), 'the new job')
    return walk.by_id('job').get_attribute('data-job-id')


def _follow_training(walk: Walk, screenshot: str = None, timeout: float = 300) -> None:
    """Start a quick training from the Train view and watch its progress to the end, as the page draws it (with a
    screenshot the first time the page shows the training phase)."""
    import time
    _start_job(walk)
    phases, deadline = [], time.monotonic() + timeout
    while walk.by_id('job').get_attribute('data-status') not in ('succeeded', 'failed', 'cancelled'):
        phase = walk.by_id('job').get_attribute('data-phase')
        if not phases or phases[-1] != phase:
            phases.append(phase)
        if screenshot and phase == 'training' and walk.css('#job-epochs tbody tr'):   # mid-training, an epoch drawn
            walk.step(screenshot, show='train-title', accessible=True)
            screenshot = None
        assert time.monotonic() < deadline, f'the training did not end in {timeout} s: {phases}'
        time.sleep(0.1)
    if screenshot:       # a machine so fast that no epoch was seen before the end
        walk.step(screenshot, show='train-title', accessible=True)
    assert walk.by_id('job').get_attribute('data-status') == 'succeeded', walk.text('job-error')
    assert {'starting', 'preparing', 'computing features', 'training'} & set(phases), phases   # drawn live
    assert walk.by_id('job-progress').get_attribute('value') == '100'
    assert len(walk.css('#job-epochs tbody tr')) == QUICK_EPOCHS
    assert walk.text('job-status').startswith('Done: iteration')


def _slide_to_a_change(walk: Walk, table: dict) -> int:
    """Move the slider by keyboard from 50% to the nearest threshold where overall precision or recall differ;
    returns that threshold in percent."""
    from selenium.webdriver.common.keys import Keys
    overall = table['overall']
    at = lambda k: (_percent(overall['precision'][k]), _percent(overall['recall'][k]))  # noqa: E731
    target = next(k for d in range(1, 51) for k in (50 + d, 50 - d) if 0 <= k <= 100 and at(k) != at(50))
    slider = walk.by_id('threshold')
    assert slider.get_attribute('value') == '50'
    assert (walk.text('overall-precision'), walk.text('overall-recall')) == at(50)
    arrow = Keys.ARROW_RIGHT if target > 50 else Keys.ARROW_LEFT
    slider.send_keys(*[arrow] * abs(target - 50))
    assert walk.text('threshold-value') == f'{target}%'
    assert (walk.text('overall-precision'), walk.text('overall-recall')) == at(target)
    for j, name in enumerate(table['classes']):
        row = walk.css(f'#per-tag tr[data-tag="{name}"]')[0]
        assert row.find_element('css selector', '.precision').text == _percent(table['precision'][target][j])
        assert row.find_element('css selector', '.recall').text == _percent(table['recall'][target][j])
    return target


def _curl(line: str, image: Path) -> dict:
    """Run the page's curl line as a client would (httpx with its header and URL when curl is not installed)."""
    argv = shlex.split(line.replace('file=@image.jpg', f'file=@{image}'))
    if shutil.which('curl'):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    header = argv[argv.index('-H') + 1]
    name, _, value = header.partition(': ')
    answer = httpx.post(argv[-1], headers={name: value}, files={'file': (image.name, image.read_bytes())}, timeout=60)
    return answer.json()


def second_half(walk: Walk, hymenoptera: Path, project_id: int, tmp_path: Path) -> None:
    """Cancel, a failed job, train, the slider, quick test, publish, curl, correct a prediction, train again,
    compare, publish the second iteration."""
    studio = walk.studio
    api = httpx.Client(base_url=studio.url, headers={'Training-Key': studio.keys['training']}, timeout=60)
    project = f'/projects/{project_id}'

    walk.tab('train')
    walk.by_id('mode-advanced').click()      # minutes long: still running when cancelled or killed, on any machine
    _start_job(walk)
    walk.wait(lambda: walk.by_id('job-cancel').is_displayed(), 'the cancel button')
    walk.by_id('job-cancel').click()
    walk.wait(lambda: walk.by_id('job').get_attribute('data-status') == 'cancelled', 'the job cancelled')
    assert walk.text('job-status') == 'Cancelled.'

    _start_job(walk)
    walk.wait(lambda: walk.by_id('job').get_attribute('data-status') == 'running', 'the job claimed')
    worker = studio.health()['workers'][0]
    os.kill(worker, signal.SIGKILL)          # the worker dies mid-job: the page must say why the job failed
    walk.wait(lambda: walk.text('job-error').startswith('The training failed'), 'the failure', 60)
    assert f'worker process {worker} was killed by signal SIGKILL' in walk.text('job-error')
    walk.step('training-failed', show='train-title')

    walk.by_id('mode-quick').click()
    _follow_training(walk, 'training-progress')     # the studio has started a new worker
    walk.step('trained', show='train-title')
    walk.by_id('job-iteration').click()
    walk.wait(lambda: walk.by_id('iteration-body').get_attribute('data-iteration-id'), 'the iteration')
    first = api.get(f'{project}/iterations').json()[0]
    table = api.get(f'{project}/iterations/{first["id"]}/thresholds').json()
    target = _slide_to_a_change(walk, table)
    walk.step('iteration-threshold', show='iterations-title', accessible=True)
    from selenium.webdriver.common.keys import Keys
    walk.by_id('threshold').send_keys(*[Keys.ARROW_LEFT if target > 50 else Keys.ARROW_RIGHT] * abs(target - 50))
    assert walk.text('threshold-value') == '50%'

    query = _photos(hymenoptera, 'val', 'bees', 1)[0]
    walk.tab('quicktest')
    drop_files(walk.driver, '#quicktest-drop', [query])
    walk.wait(lambda: walk.by_id('quicktest-result').get_attribute('data-state') == 'done', 'the quick test')
    expected = api.post(f'{project}/quicktest', params={'iteration_id': first['id']},
                        files={'file': (query.name, query.read_bytes())}).json()['predictions']
    shown = [(b.get_attribute('data-tag'), b.find_element('css selector', '.pct').text)
             for b in walk.css('#quicktest-bars li')]
    assert shown == [(p['tag'], _percent(p['probability'])) for p in expected]
    walk.step('quick-test', show='quicktest-title', accessible=True)
    note = tmp_path / 'note.txt'
    note.write_text('not a photo')
    drop_files(walk.driver, '#quicktest-drop', [note])                     # refused: said in words, no broken image
    walk.wait(lambda: walk.by_id('quicktest-result').get_attribute('data-state') == 'failed', 'the refusal')
    assert 'not an image' in walk.text('quicktest-error') and not walk.by_id('quicktest-result').is_displayed()
    assert api.get(f'{project}/predictions').json()['total'] == 0          # a quick test stores nothing

    walk.tab('iterations')
    walk.by_id('publish-name').clear()
    walk.by_id('publish-name').send_keys('insects')
    walk.by_id('publish').click()
    walk.wait(lambda: walk.text('publish-status') == 'This iteration is published as "insects".', 'published')
    assert walk.text('prediction-url') == f'{studio.url}{project}/predict'
    assert '$PREDICTION_KEY' in walk.text('curl-line')
    walk.by_id('prediction-key').send_keys(studio.keys['prediction'])
    line = walk.text('curl-line')
    assert studio.keys['prediction'] in line and studio.keys['training'] not in line
    answer = _curl(line, query)                                             # a client calls the REST endpoint
    assert answer['published_name'] == 'insects' and answer['iteration'] == 1
    again = _curl(line, query)                                              # the same photo sent twice: two cards
    walk.step('published', show='publish-title', accessible=True)

    walk.tab('predictions')
    card = f'#predictions li[data-prediction-id="{answer["prediction_id"]}"]'
    walk.wait(lambda: walk.css(card), 'the stored prediction')
    assert walk.css(f'{card} img')[0].get_attribute('alt').startswith('predicted image')
    walk.css(f'{card} button[data-tag="bees"]')[0].click()                 # one click: it is a bee
    walk.wait(lambda: walk.css(card) and walk.css(card)[0].get_attribute('data-tags') == 'bees', 'the tag set')
    image_id = int(walk.css(card)[0].get_attribute('data-image-id'))
    other = f'#predictions li[data-prediction-id="{again["prediction_id"]}"]'
    assert walk.css(other)[0].get_attribute('data-tags') == 'bees'          # the other card of that image too
    assert api.get(f'{project}/images/{image_id}').json()['tags'] == ['bees']
    walk.step('prediction-corrected', show='predictions-title', accessible=True)

    walk.by_id('train-again').click()
    walk.wait(lambda: walk.by_id('train-panel').is_displayed(), 'the train view')
    _follow_training(walk)
    walk.by_id('job-iteration').click()
    walk.wait(lambda: walk.chosen('iteration-select').startswith('Iteration 2'), 'the second iteration chosen')
    walk.css('#compare-form button[type=submit]')[0].click()
    walk.wait(lambda: walk.by_id('compare').is_displayed(), 'the comparison')
    first, second = api.get(f'{project}/iterations').json()
    headers = [th.text for th in walk.css('#compare thead th')][1:]
    assert headers == ['Iteration 1', 'Iteration 2']
    cells = [td.text for td in walk.css('#compare tbody tr')[0].find_elements('css selector', 'td')]
    assert cells == [str(first['n_train']), str(second['n_train'])]
    assert second['n_train'] + second['n_valid'] == first['n_train'] + first['n_valid'] + 1
    walk.step('compare', show='compare-title', accessible=True)

    walk.by_id('publish-name').clear()
    walk.by_id('publish-name').send_keys('insects-2')
    walk.by_id('publish').click()
    walk.wait(lambda: walk.text('publish-status') == 'This iteration is published as "insects-2".', 'published')
    answer = _curl(walk.text('curl-line'), _photos(hymenoptera, 'val', 'ants', 1)[0])
    assert answer['iteration'] == 2 and answer['published_name'] == 'insects-2'
    walk.step('published-second', show='publish-title')
    api.close()


def _error_words(driver, status: int, detail: str, retry_after=None) -> str:
    """The page's own wording of an error answer (api.js ApiError), computed by the page's module in the browser."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const [status, detail, retry] = arguments;"
        "import('./static/js/api.js').then((m) => done(new m.ApiError(status, detail, retry).message))"
        ".catch((e) => done('import failed: ' + e));", status, detail, retry_after)


def test_the_posts_flow_in_the_page(desktop, studio, shots, hymenoptera, tmp_path):
    walk = Walk(desktop, studio, shots, 'desktop')
    project_id = first_half(walk, hymenoptera, tmp_path, 'insects', N_PER_TAG)
    second_half(walk, hymenoptera, project_id, tmp_path)
    # a 503 (the prediction queue full) cannot be caused on purpose here; its words, as the page would show them
    assert _error_words(desktop, 503, 'queue full', '1') == '503 The server is busy: queue full (try again in 1 s)'
    # the checks saw every kind of control the page has
    assert {'button', 'link', 'textbox', 'radio', 'checkbox', 'combobox', 'slider', 'spinbutton'} <= walk.checked_roles


def test_the_first_half_on_a_phone_screen(phone, studio, shots, hymenoptera, tmp_path):
    from selenium.webdriver.common.keys import Keys
    walk = Walk(phone, studio, shots, 'phone', on_phone=True)
    first_half(walk, hymenoptera, tmp_path, 'insects on a phone', 6)
    # a tag and the project deleted, each after its confirmation
    walk.by_id('tag-name').send_keys('wasps', Keys.ENTER)
    walk.wait(lambda: walk.css('li.tag[data-tag="wasps"]'), 'the tag wasps')
    walk.css('li.tag[data-tag="wasps"] button')[0].click()
    walk.wait(lambda: walk.by_id('confirm').is_displayed(), 'the confirmation')
    walk.by_id('confirm-yes').click()
    walk.wait(lambda: not walk.css('li.tag[data-tag="wasps"]'), 'the tag deleted')
    walk.by_id('home').click()
    card = 'li[data-project-id]'
    walk.wait(lambda: 'insects on a phone' in [c.find_element('css selector', '.title').text for c in walk.css(card)],
              'the projects list')
    walk.step('projects', accessible=True)
    mine = next(c for c in walk.css(card) if c.find_element('css selector', '.title').text == 'insects on a phone')
    mine.find_element('css selector', 'button.danger').click()
    walk.wait(lambda: walk.by_id('confirm').is_displayed(), 'the confirmation')
    walk.step('project-delete-confirmation')
    walk.by_id('confirm-yes').click()
    walk.wait(lambda: 'insects on a phone' not in walk.text('project-list'), 'the project deleted')
