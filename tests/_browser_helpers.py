"""Driving the pages in a real browser: Debian's headless Chromium with the system chromedriver (nothing is downloaded
at run time), files dropped the way a person's drag and drop delivers them, the accessibility tree's verdict on
every control, and the phone-screen fit checks.

Locally a browser test skips, saying what to install, when Chromium, chromedriver or selenium is missing; under
CI=true it fails instead (.ci/run installs them).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import pytest

CHROMIUM_NAMES = ('chromium', 'chromium-browser', 'google-chrome')
CHROME_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync',
                '--disable-dev-shm-usage')

# the roles a person operates, which must have a name and take the keyboard's focus
OPERABLE_ROLES = {'button', 'link', 'textbox', 'checkbox', 'radio', 'combobox', 'listbox', 'slider', 'spinbutton',
                  'searchbox', 'switch', 'tab', 'menuitem', 'PopUpButton'}
NAMED_ROLES = OPERABLE_ROLES | {'progressbar', 'table', 'dialog', 'navigation', 'image', 'img'}


def missing(reason: str):
    message = (f'{reason}: the browser test needs Debian\'s Chromium and ChromeDriver '
               f'(apt-get install -y chromium chromium-driver) and pip install -e ".[test]"')
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(f'CI=true but {message}')
    pytest.skip(message)


def browser_paths() -> tuple:
    browser = os.environ.get('CHROMIUM') or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = os.environ.get('CHROMEDRIVER') or shutil.which('chromedriver')
    if not browser:
        missing('no Chromium found on PATH (looked for ' + ', '.join(CHROMIUM_NAMES) + ')')
    if not driver:
        missing('no chromedriver found on PATH')
    return browser, driver


def start_chromium(profile: Path, window: str = '1280,900'):
    """A headless Chromium under Selenium, with its own throw-away profile (so sessionStorage starts empty)."""
    browser_path, driver_path = browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing('selenium is not installed')
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in CHROME_FLAGS + (f'--window-size={window}', f'--user-data-dir={profile}'):
        options.add_argument(flag)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    return driver


def phone_screen(driver, width: int = 390, height: int = 844) -> None:
    """Emulate a phone's screen (CSS pixels, touch, mobile viewport rules) through the DevTools protocol."""
    driver.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', {
        'width': width, 'height': height, 'deviceScaleFactor': 2, 'mobile': True})
    driver.execute_cdp_cmd('Emulation.setTouchEmulationEnabled', {'enabled': True, 'maxTouchPoints': 5})


def drop_files(driver, target_selector: str, paths: Sequence[Path]) -> None:
    """Drop files on the element `target_selector` as a drag from the desktop does: real File objects (read from
    disk by the browser through a temporary file input) in a DataTransfer, delivered by dragenter, dragover and
    drop events to the page's own handlers."""
    from selenium.webdriver.common.by import By
    driver.execute_script(
        "const input = Object.assign(document.createElement('input'), {type: 'file', multiple: true, "
        "id: 'test-drop-source'}); input.style.position = 'fixed'; input.style.left = '-100px'; "
        "document.body.append(input);")
    driver.find_element(By.ID, 'test-drop-source').send_keys('\n'.join(str(p) for p in paths))
    dropped = driver.execute_script("""
        const input = document.getElementById('test-drop-source');
        const target = document.querySelector(arguments[0]);
        const transfer = new DataTransfer();
        for (const file of input.files) transfer.items.add(file);
        input.remove();
        if (!target) return -1;
        for (const type of ['dragenter', 'dragover', 'drop']) {
          target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
        return transfer.files.length;""", target_selector)
    assert dropped == len(paths), f'could not drop {len(paths)} files on {target_selector} (got {dropped})'


def _ax_property(node: dict, name: str):
    for prop in node.get('properties', []):
        if prop.get('name') == name:
            return prop.get('value', {}).get('value')
    return None


def accessibility_problems(driver) -> List[str]:
    """What the browser's accessibility tree says is wrong with the controls shown now: an operable control without
    a name, or one the keyboard cannot reach (not focusable and not disabled)."""
    tree = driver.execute_cdp_cmd('Accessibility.getFullAXTree', {})['nodes']
    problems = []
    for node in tree:
        if node.get('ignored'):
            continue
        role = node.get('role', {}).get('value')
        if role not in NAMED_ROLES:
            continue
        name = (node.get('name') or {}).get('value', '')
        described = f'{role} #{node.get("backendDOMNodeId")}'
        if not str(name).strip():
            problems.append(f'{described} has no name')
        if role in OPERABLE_ROLES and not _ax_property(node, 'focusable') and not _ax_property(node, 'disabled'):
            problems.append(f'{described} ({name!r}) cannot take the keyboard focus')
    return problems


def interactive_roles(driver) -> set:
    """The operable roles present in the accessibility tree now (to show what a check covered)."""
    tree = driver.execute_cdp_cmd('Accessibility.getFullAXTree', {})['nodes']
    return {n.get('role', {}).get('value') for n in tree if not n.get('ignored')} & OPERABLE_ROLES


# the visible controls: each must lie inside the screen's width and be the topmost thing at its centre once
# scrolled into view (nothing overflows it or covers it)
_FIT_SCRIPT = """
const width = document.documentElement.clientWidth;
const problems = [];
if (document.documentElement.scrollWidth > width + 1) {
  problems.push(`the page is ${document.documentElement.scrollWidth} px wide on a ${width} px screen`);
}
// with a modal dialog open only its controls can be reached: the rest is inert behind the backdrop
const root = document.querySelector('dialog[open]') || document;
const controls = [...root.querySelectorAll('button, a[href], input, select, textarea, progress, [tabindex]')];
for (const c of controls) {
  const r = c.getBoundingClientRect();
  if (!c.offsetParent && getComputedStyle(c).position !== 'fixed') continue;   // not shown
  if (r.width === 0 || r.height === 0) continue;
  const name = c.id || c.getAttribute('aria-label') || c.textContent.trim().slice(0, 40) || c.tagName;
  const scroller = c.closest('.table-wrap');
  if (!scroller && (r.left < -1 || r.right > width + 1)) {
    problems.push(`${name} spans ${Math.round(r.left)}..${Math.round(r.right)} px of a ${width} px screen`);
    continue;
  }
  c.scrollIntoView({block: 'center', inline: 'nearest'});
  const s = c.getBoundingClientRect();
  const x = Math.min(Math.max(s.left + s.width / 2, 0), width - 1), y = s.top + Math.min(s.height / 2, 10);
  const top = document.elementFromPoint(x, y);
  const label = c.id ? document.querySelector(`label[for="${CSS.escape(c.id)}"]`) : null;
  const ok = top && (top === c || c.contains(top) || top.contains(c) || (label && label.contains(top)) ||
                     top.closest('label') === c.closest('label') && c.closest('label'));
  if (!ok) problems.push(`${name} is covered by ${top ? top.tagName + '#' + top.id + '.' + top.className : 'nothing'}`);
}
window.scrollTo(0, 0);
return problems;
"""


def fit_problems(driver) -> List[str]:
    """Overflow and hidden controls on the current screen (an empty list when everything fits)."""
    return driver.execute_script(_FIT_SCRIPT)


def severe_console_messages(driver, allowed: Iterable[str] = ()) -> List[str]:
    """The page's own script errors (console level SEVERE) except failed requests, which the page shows itself."""
    out = []
    for entry in driver.get_log('browser'):
        message = entry.get('message', '')
        if entry.get('level') != 'SEVERE' or 'Failed to load resource' in message:
            continue
        if any(a in message for a in allowed):
            continue
        out.append(message)
    return out


def save_screenshot(driver, folder: Optional[Path], name: str) -> Optional[Path]:
    if folder is None:
        return None
    path = Path(folder) / f'{name}.png'
    driver.save_screenshot(str(path))
    return path
