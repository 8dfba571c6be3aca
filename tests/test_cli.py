"""The main job end to end: `python -m learner train` on the embedded data, then `learner predict`."""
import subprocess
import sys

import pytest

from learner.cli import default_data_dir


@pytest.mark.slow
def test_train_then_predict_on_the_embedded_data(tmp_path):
    if not (default_data_dir() / 'train').is_dir():
        pytest.fail(f'the embedded data set is missing from {default_data_dir()}')
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'learner', 'train', '--size', '32', '--epochs', '1', '--unfrozen-epochs', '1',
           '--lr-find-iters', '20', '--lr', '3e-2', '--tta', '1', '--workers', '0', '--quiet', '--out', str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'TTA accuracy' in done.stdout
    for name in ('model.pth', 'lr_find.png', 'losses.png', 'confusion_matrix.png'):
        assert (out / name).stat().st_size > 0, name
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
