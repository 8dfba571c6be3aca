"""The main job end to end (`python -m learner train`, then `learner predict`), and `learner serve`."""
import subprocess
import sys

import numpy as np
import pytest

from learner.cli import default_data_dir


@pytest.mark.slow
def test_train_then_predict_on_the_embedded_data(tmp_path):
    """The main job end to end. Its unfrozen phase is made to wreck the model (a head lr of 30): the job must undo
    it and export the frozen phase's weights, never a model worse than one it had."""
    if not (default_data_dir() / 'train').is_dir():
        pytest.fail(f'the embedded data set is missing from {default_data_dir()}')
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'learner', 'train', '--size', '32', '--epochs', '1', '--unfrozen-epochs', '1',
           '--lr-find-iters', '20', '--lr', '3e-2', '--unfrozen-lr', '30', '--tta', '1', '--workers', '0', '--quiet',
           '--out', str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'TTA accuracy' in done.stdout
    figures = {line[:28].strip(): line[28:].strip() for line in done.stdout.splitlines() if len(line) > 28}
    frozen, unfrozen = float(figures['frozen accuracy']), float(figures['unfrozen accuracy'])
    assert unfrozen < frozen, done.stdout   # the wrecking worked ...
    assert "keeping the frozen phase's weights" in done.stdout and figures['exported phase'] == 'frozen'
    assert float(figures['final accuracy']) == frozen
    for name in ('model.pth', 'lr_find.png', 'losses.png', 'confusion_matrix.png'):
        assert (out / name).stat().st_size > 0, name
    from learner.export import load_learner
    meta = load_learner(out / 'model.pth').meta  # what `learner serve` shows: export time and validation metrics
    assert meta['exported_at'] and len(meta['validation']['report']['per_class']) == 10
    cm = np.array(meta['validation']['report']['confusion_matrix'])
    assert np.trace(cm) / cm.sum() == pytest.approx(frozen, abs=1e-6)   # ... and the export is the frozen model
    final = float(next(line.split()[-1] for line in done.stdout.splitlines() if line.startswith('final accuracy')))
    assert final > 0.3, done.stdout  # 10 classes: chance is 0.1
    image = next(p for p in sorted((default_data_dir() / 'valid').rglob('*')) if p.is_file())
    done = subprocess.run([sys.executable, '-m', 'learner', 'predict', str(out / 'model.pth'), str(image)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(str(image)) and done.stdout.count(' 0.') + done.stdout.count(' 1.') == 3


def test_missing_train_folder_is_a_clear_error(tmp_path):
    done = subprocess.run([sys.executable, '-m', 'learner', 'train', str(tmp_path), '--quiet'],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert 'has no train/ folder' in done.stderr and str(tmp_path) in done.stderr


def test_losses_plot_shows_every_phase_with_its_valid_points():
    from learner.cli import plot_phases
    frozen = {'name': 'frozen', 'losses': [2.0, 1.8, 1.5, 1.4, 1.2, 1.1], 'valid_losses': [1.6, 1.3, 1.2],
              'epoch_iters': [2, 4, 6]}
    unfrozen = {'name': 'unfrozen', 'losses': [1.0, 0.9, 0.8, 0.7], 'valid_losses': [1.0, 0.9], 'epoch_iters': [2, 4]}
    ax = plot_phases([frozen, unfrozen]).axes[0]
    valid = next(line for line in ax.lines if line.get_label() == 'valid (epoch)')
    others = [line for line in ax.lines if line.get_marker() == 'o' and line is not valid]
    points = list(valid.get_xdata()) + [x for line in others for x in line.get_xdata()]
    assert points == [2, 4, 6, 8, 10]  # the unfrozen epochs continue after the frozen ones' 6 batches
    raw = [line for line in ax.lines if line.get_color() == '0.75']
    assert sum(len(line.get_xdata()) for line in raw) == 10
    assert [t.get_text() for t in ax.texts] == ['frozen', 'unfrozen']


def test_serve_command_answers_on_loopback(tmp_path_factory):
    pytest.importorskip('uvicorn', reason='the serve extra is not installed: pip install -e ".[serve]"')
    import re

    import httpx

    from _serve_helpers import color_image, png_bytes, tiny_export
    export = tiny_export(tmp_path_factory)
    server = subprocess.Popen([sys.executable, '-m', 'learner', 'serve', str(export), '--port', '0'],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    import threading
    watchdog = threading.Timer(120, server.kill)  # never hang the suite on a server that does not come up
    watchdog.start()
    try:
        lines = []
        for line in server.stdout:
            lines.append(line)
            found = re.search(r'running on http://(127\.0\.0\.1):(\d+)', line)
            if found or len(lines) > 50:
                break
        assert found, ''.join(lines)  # bound to loopback by default
        url = f'http://{found.group(1)}:{found.group(2)}'
        assert httpx.get(f'{url}/health', timeout=30).json()['status'] == 'ok'
        answer = httpx.post(f'{url}/predict?top_k=1', content=png_bytes(color_image('red', 9)), timeout=30)
        assert answer.status_code == 200 and len(answer.json()['predictions']) == 1
        assert httpx.post(f'{url}/predict', content=b'not an image', timeout=30).status_code == 422
    finally:
        watchdog.cancel()
        server.terminate()
        server.wait(30)


def test_serve_command_names_a_missing_export(tmp_path):
    done = subprocess.run([sys.executable, '-m', 'learner', 'serve', str(tmp_path / 'nope.pth')],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and 'no export at' in done.stderr and 'nope.pth' in done.stderr

