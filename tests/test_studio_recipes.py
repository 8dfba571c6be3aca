"""The studio's training recipes (quick, advanced within a time budget, multi-label) and `learner studio import`."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('sqlalchemy', reason='the studio extra is not installed: pip install -e ".[studio]"')

from _serve_helpers import color_image, make_color_folders, png_bytes  # noqa: E402
from _studio_helpers import REPO, _environment, run_worker_once  # noqa: E402
from learner.studio.blobs import BlobStore  # noqa: E402
from learner.studio.queue import split_images  # noqa: E402
from learner.studio.trainer import JobCancelled, build_data, train_advanced, train_quick  # noqa: E402


class RecordingReporter:
    """A Reporter that keeps what it hears (and can ask to cancel after some batches)."""

    def __init__(self, cancel_after_batches=None):
        self.cancelled, self.phases, self.epochs, self.batches = False, [], [], 0
        self.cancel_after = cancel_after_batches

    def phase(self, name, n_epochs=None):
        self.phases.append(name)

    def batch(self, epoch, batch, n_batches, loss, fraction):
        self.batches += 1
        assert 0 < fraction <= 1
        if self.cancel_after is not None and self.batches >= self.cancel_after:
            self.cancelled = True

    def epoch(self, log):
        self.epochs.append(log)


def _colour_items(blobs, n=8, multi=False):
    items = []
    for k, name in enumerate(('red', 'green', 'blue')):
        for i in range(n):
            image = color_image(name, 100 * k + i)
            if multi and i % 2:   # half of them also show a white stripe: the second label
                image = image.copy()
                image[:, 12:20] = 255
            labels = [name, 'stripe'] if multi and i % 2 else [name]
            items.append({'sha256': blobs.put(png_bytes(image)), 'labels': labels})
    for item, split in zip(items, split_images(1, items, 0.25)):
        item['split'] = split
    return items


def _data(tmp_path, multi=False, n=8):
    blobs = BlobStore(tmp_path / 'blobs')
    items = _colour_items(blobs, n, multi)
    classes = sorted({label for item in items for label in item['labels']})
    return build_data(items, blobs.path, classes, multi, 'efficientnet_lite0', 32, 16, tmp_path / 'work', 0)


def test_quick_learns_the_colours_and_reports_every_epoch(tmp_path):
    reporter = RecordingReporter()
    learn, history = train_quick(_data(tmp_path), 'efficientnet_lite0', {'epochs': 6, 'seed': 0}, reporter)
    assert reporter.phases == ['preparing', 'computing features', 'training']
    assert [log['epoch'] for log in reporter.epochs] == list(range(6))
    assert history[0]['epochs'] == 6 and reporter.epochs[-1]['accuracy'] >= 0.8


def test_advanced_fits_its_budget_and_never_returns_a_worse_model(tmp_path):
    reporter = RecordingReporter()
    data = _data(tmp_path)
    learn, history = train_advanced(data, "efficientnet_lite0", {"seed": 0}, 0.25, reporter)
    assert [h['phase'] for h in history] == ['training the head', 'fine-tuning']
    head, tuned = history
    assert 'finding the learning rate (fine-tuning)' in reporter.phases
    assert tuned.get('epochs', 0) >= 1 or 'skipped' in tuned
    final = learn.get_preds('valid')
    accuracy = float((final[0].argmax(1) == final[1]).mean())
    assert accuracy >= head['accuracy'] - 1e-9           # the fine-tuned weights are kept only when not worse


def test_a_sweep_that_diverges_at_once_falls_back_to_the_course_lr(tmp_path):
    """A head already trained on a few images has a loss near 0 that one batch can quadruple: the sweep stops after
    2 points. The advanced recipe must then fine-tune at its fallback lr, not fail the job."""
    from learner.studio.trainer import _lr_find
    learn = train_quick(_data(tmp_path), 'efficientnet_lite0', {'epochs': 1, 'seed': 0}, RecordingReporter())[0]
    learn.precompute = False
    learn.unfreeze()
    plain, calls = learn.loss_func, []

    def loss_near_zero_then_a_hard_batch(pred, y):   # what a sweep sees on such a head: 0.01, then a batch at 1.0
        calls.append(1)
        return plain(pred, y) * 0 + (0.01 if len(calls) == 1 else 1.0)
    learn.loss_func = loss_near_zero_then_a_hard_batch
    suggestions, n_swept, _, cut_short = _lr_find(learn, RecordingReporter(), 10, start_lr=1e-6, end_lr=1e-1)
    assert suggestions is None and 1 <= n_swept < 3 and not cut_short  # a batch measured: the recipe can still plan its epochs


def test_a_cancel_stops_training_within_a_batch(tmp_path):
    reporter = RecordingReporter(cancel_after_batches=3)
    with pytest.raises(JobCancelled):
        train_quick(_data(tmp_path), 'efficientnet_lite0', {'epochs': 50}, reporter)
    assert reporter.batches == 3


def test_multi_label_trains_with_per_tag_sigmoids(tmp_path):
    reporter = RecordingReporter()
    data = _data(tmp_path, multi=True)
    assert data.is_multi and data.classes == ['blue', 'green', 'red', 'stripe']
    learn, _ = train_quick(data, 'efficientnet_lite0', {'epochs': 8}, reporter)
    probs, y = learn.get_preds('valid')
    assert probs.shape == y.shape and not np.allclose(probs.sum(1), 1)
    assert reporter.epochs[-1]['accuracy_thresh'] > 0.7


def _import(args, folder):
    return subprocess.run([sys.executable, '-m', 'learner', 'studio', 'import', *args, '--dir', str(folder)],
                          capture_output=True, text=True, env=_environment(), cwd=REPO, timeout=300)


def test_the_studio_folder_and_database_count_before_or_after_the_command():
    """`learner studio --dir X import ...` reads X (a command's own default must not replace it), and so does
    `learner studio import ... --dir X`."""
    from learner.cli import build_parser
    parser = build_parser()
    before = parser.parse_args(['studio', '--dir', '/x', '--db', 'sqlite:///y.db', 'import', 'photos', 'p'])
    after = parser.parse_args(['studio', 'import', 'photos', 'p', '--dir', '/x'])
    neither = parser.parse_args(['studio', 'worker'])
    assert (before.dir, before.db, after.dir, after.db) == ('/x', 'sqlite:///y.db', '/x', None)
    assert (neither.dir, neither.db) == ('studio', None)


@pytest.mark.slow   # subprocesses end to end: the slow tier
def test_import_a_folder_of_classes_then_a_labels_csv(tmp_path):
    root = make_color_folders(tmp_path / 'colours', n_train=5, n_valid=2)   # train/ and valid/ are merged
    folder = tmp_path / 'studio'
    done = _import([str(root), 'colours', '--size', '32'], folder)
    assert done.returncode == 0, done.stderr
    assert "project 'colours' (id 1): 21 image(s) added, 0 duplicate(s), 0 error(s)" in done.stdout
    again = _import([str(root), 'colours'], folder)
    assert '0 image(s) added, 21 duplicate(s)' in again.stdout

    flat = tmp_path / 'flat'
    flat.mkdir()
    with open(flat / 'labels.csv', 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(['file', 'tags'])
        for i in range(6):
            (flat / f'{i}.png').write_bytes(png_bytes(color_image('red' if i < 3 else 'blue', 700 + i)))
            writer.writerow([f'{i}.png', 'warm bright' if i < 3 else 'cold'])
        (flat / 'bad.png').write_bytes(b'not a png')
        writer.writerow(['bad.png', 'cold'])
    done = _import([str(flat), 'tags', '--csv', str(flat / 'labels.csv'), '--multi-label', '--size', '32'], folder)
    assert done.returncode == 0, done.stderr
    assert '6 image(s) added, 0 duplicate(s), 1 error(s)' in done.stdout and 'bad.png' in done.stdout
    missing = _import([str(tmp_path / 'nowhere'), 'x'], folder)
    assert missing.returncode != 0 and 'no folder' in missing.stderr
    worker = run_worker_once(folder)        # nothing queued: the worker starts and exits cleanly
    assert worker.returncode == 0, worker.stderr
