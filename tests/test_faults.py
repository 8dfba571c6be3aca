"""Fault injection through the public API: each bad input has one documented outcome.

Outcomes: `loaded` (read correctly), `skipped` (left out with a warning naming the file, `skip_bad=True`),
`warned` (the epoch goes on; a `BadImageWarning` names the file) or `error` (a clear exception naming the file, row
or argument, raised before any training). Never a hang, never a crash mid-epoch by default. `pytest tests/test_faults.py` prints the table of the cases that ran and their outcomes.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learner.data.images import check_headers

from learner import (BadImageWarning, ImageClassifierData, ImageError, Learner, NonFiniteLossError, imagenet_stats, open_image,
                     tfms_from_stats, verify_images)

OUTCOMES: list = []
TFMS = tfms_from_stats(imagenet_stats, 16)


def record(case: str, outcome: str, detail: str) -> None:
    OUTCOMES.append((case, outcome, detail.splitlines()[0][:110]))


@pytest.fixture(scope='module', autouse=True)
def print_fault_table(request):
    """After this file's tests, print the table of the cases that ran and their outcomes (no test depends on it)."""
    yield
    reporter = request.config.pluginmanager.get_plugin('terminalreporter')
    capture = request.config.pluginmanager.get_plugin('capturemanager')
    if reporter is None or capture is None or not OUTCOMES:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line('\n\nfault case                                 outcome           detail')
        for case, outcome, detail in OUTCOMES:
            reporter.write_line(f'{case:42s} {outcome:17s} {detail}')


def _rgb(size=(16, 16), color=(200, 30, 30)) -> Image.Image:
    return Image.new('RGB', size, color)


def _jpeg_bytes(size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    _rgb(size).save(buf, 'JPEG')
    return buf.getvalue()


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    _rgb().save(buf, 'PNG')
    return buf.getvalue()


# ------------------------------------------------------------------------------------- unreadable files
def _noise_jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, 'JPEG')
    return buf.getvalue()


TRUNCATED = ('JPEG truncated before its pixel data', 'JPEG truncated in its pixel data')
UNREADABLE = {
    'JPEG truncated before its pixel data': lambda p: p.write_bytes(_jpeg_bytes()[:_jpeg_bytes().index(b'\xff\xda')]),
    'JPEG truncated in its header': lambda p: p.write_bytes(_jpeg_bytes()[:300]),
    'JPEG truncated in its pixel data': lambda p: p.write_bytes(_noise_jpeg_bytes()[:1500]),
    'zero-byte file': lambda p: p.write_bytes(b''),
    'text file named .jpg': lambda p: p.write_text('this is not an image'),
}


@pytest.mark.parametrize('case', list(UNREADABLE))
def test_unreadable_file_is_an_error_naming_it_or_skipped_with_a_warning(case, tmp_path):
    tree = tmp_path / 'tree'
    for split in ('train', 'valid'):
        for cls in ('a', 'b'):
            (tree / split / cls).mkdir(parents=True)
            for i in range(3):
                _rgb(color=(40 * i, 90, 0)).save(tree / split / cls / f'{i}.png')
    bad = tree / 'train' / 'a' / 'bad.jpg'
    UNREADABLE[case](bad)
    with pytest.raises(ImageError, match='bad.jpg'):
        open_image(bad)
    assert [b.path for b in verify_images(tree)] == [bad]
    # whether a file cut just before its pixel data still has a readable header depends on the Pillow version
    # (13: yes, 12: no); either way the outcome is one of the two documented ones
    if case in TRUNCATED and not check_headers([bad]):  # the header reads: found mid-epoch, the epoch goes on
        data = ImageClassifierData.from_paths(tree, tfms=TFMS, bs=4, num_workers=0)
        with pytest.warns(BadImageWarning, match='bad.jpg') as caught:
            assert sum(len(x) for x, _ in data.trn_dl) == 7  # the whole epoch, the bad file included
        how = 'gray placeholder' if 'before' in case else 'read it partially'
        assert how in str(caught[0].message)
        outcome, detail = 'warned / skipped', f'epoch goes on: BadImageWarning naming the file ({how})'
    else:  # header faults are refused before the first epoch, all named at once
        with pytest.raises(ImageError, match=r'(?s)1 unreadable image.*bad\.jpg.*skip_bad=True'):
            ImageClassifierData.from_paths(tree, tfms=TFMS, bs=4, num_workers=0)
        outcome, detail = 'error / skipped', 'ImageError naming the file when the DataBunch is built'
    with pytest.warns(UserWarning, match='bad.jpg'):
        data = ImageClassifierData.from_paths(tree, tfms=TFMS, bs=4, num_workers=0, skip_bad=True)
    assert len(data.trn_ds) == 6 and bad.absolute() not in data.trn_ds.paths
    assert sum(len(x) for x, _ in data.trn_dl) == 6  # a whole epoch runs
    record(case, outcome, f'{detail}; skip_bad=True drops it with a warning')


def test_file_deleted_during_training_does_not_end_the_epoch(tmp_path):
    for split in ('train', 'valid'):
        for cls in ('a', 'b'):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                _rgb(color=(90 * i, 0, 0)).save(tmp_path / split / cls / f'{i}.png')
    data = ImageClassifierData.from_paths(tmp_path, tfms=TFMS, bs=2, num_workers=0)
    gone = tmp_path / 'train' / 'b' / '1.png'
    gone.unlink()
    with pytest.warns(BadImageWarning, match=r'1\.png: no such file.*placeholder'):
        assert sum(len(x) for x, _ in data.trn_dl) == 4
    data.trn_ds.strict = True  # the opt-in: raise instead
    with pytest.raises(ImageError, match='no such file'):
        list(data.trn_dl)
    record('file deleted during training', 'warned', 'gray placeholder, BadImageWarning naming the file; strict=True raises')


# ------------------------------------------------------------------------------------- odd but valid files
def _sixteen_bit(p):
    Image.fromarray((np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)).save(p)


def _palette_transparent(p):
    img = _rgb().convert('P', palette=Image.ADAPTIVE)
    img.info['transparency'] = 0
    img.save(p, transparency=0)


READABLE = {
    'PNG bytes in a .jpg file': ('png_inside.jpg', lambda p: p.write_bytes(_png_bytes())),
    '16-bit PNG (I;16)': ('sixteen.png', _sixteen_bit),
    'palette PNG with transparency': ('palette.png', _palette_transparent),
    'CMYK JPEG': ('cmyk.jpg', lambda p: _rgb().convert('CMYK').save(p)),
    '1x1 image': ('one.png', lambda p: _rgb((1, 1)).save(p)),
    'space in the file name': ('with space.png', lambda p: _rgb().save(p)),
}


@pytest.mark.parametrize('case', list(READABLE))
def test_odd_but_valid_file_loads_as_rgb_uint8(case, tmp_path):
    name, write = READABLE[case]
    path = tmp_path / name
    write(path)
    image = open_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if case == '16-bit PNG (I;16)':
        assert image[..., 0].min() == 0 and image[..., 0].max() == 255, 'the 16-bit range is scaled, not clipped'
    record(case, 'loaded', f'RGB uint8 {image.shape}')


def test_non_utf8_file_name_loads(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b'/caf\xe9.png'  # latin-1 'é': not valid UTF-8
    try:
        with open(raw, 'wb') as f:
            f.write(_png_bytes())
    except OSError as err:
        pytest.skip(f'this filesystem refuses non-UTF-8 names: {err}')
    path = Path(os.fsdecode(raw))
    image = open_image(path)
    assert image.shape == (16, 16, 3)
    record('non-UTF-8 file name', 'loaded', f'{path.name!r} read through its surrogate-escaped str path')


def test_one_pixel_image_goes_through_a_databunch(tmp_path):
    for split in ('train', 'valid'):
        for cls in ('a', 'b'):
            (tmp_path / split / cls).mkdir(parents=True)
            _rgb((1, 1), (255 * (cls == 'a'), 0, 0)).save(tmp_path / split / cls / 'tiny.png')
            _rgb().save(tmp_path / split / cls / 'normal.png')
    data = ImageClassifierData.from_paths(tmp_path, tfms=TFMS, bs=4, num_workers=0)
    x, _ = next(iter(data.val_dl))
    assert tuple(x.shape) == (4, 3, 16, 16)
    record('1x1 image in a DataBunch', 'loaded', 'scaled up to sz like any other image')


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / 'bomb.png'
    Image.new('L', (64, 64)).save(path)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)  # 4096 pixels > 2x the limit: Pillow's bomb rule
    with pytest.raises(ImageError, match='bomb.png.*decompression bomb'):
        open_image(path)
    record('decompression bomb', 'error', 'ImageError naming the file and PIL.Image.MAX_IMAGE_PIXELS')


# ------------------------------------------------------------------------------------- CSV labels
def _csv_tree(tmp_path, rows, n_files=6):
    (tmp_path / 'train').mkdir()
    for i in range(n_files):
        _rgb(color=(30 * i, 0, 0)).save(tmp_path / 'train' / f'id{i}.jpg')
    csv_path = tmp_path / 'labels.csv'
    csv_path.write_text('id,label\n' + '\n'.join(rows) + '\n')
    return csv_path


CSV_CASES = {
    'CSV row whose file is missing': (['id0,a', 'id1,b', 'ghost,a', 'id2,b'], FileNotFoundError, r'line 4.*ghost'),
    'CSV duplicate ids': (['id0,a', 'id1,b', 'id1,a', 'id2,b', 'id3,a'], ValueError, r'lines 3 and 4.*id1'),
    'CSV blank label': (['id0,a', 'id1,', 'id2,b', 'id3,a'], ValueError, r'line 3.*blank'),
    'CSV label only in the validation split': (['id0,a', 'id1,b', 'id2,c', 'id3,a', 'id4,b'], ValueError,
                                               r"\['c'\].*only in validation"),
}


@pytest.mark.parametrize('case', list(CSV_CASES))
def test_bad_csv_is_an_error_naming_the_row(case, tmp_path):
    rows, error, pattern = CSV_CASES[case]
    csv_path = _csv_tree(tmp_path, rows)
    with pytest.raises(error, match=pattern) as info:
        ImageClassifierData.from_csv(tmp_path, 'train', csv_path, tfms=TFMS, bs=2, suffix='.jpg', val_idxs=[2],
                                     num_workers=0)
    assert 'labels.csv' in str(info.value)
    record(case, 'error', str(info.value))


# ------------------------------------------------------------------------------------- folders and arrays
def test_valid_class_missing_from_train_is_an_error_naming_the_folder(tmp_path):
    for split, classes in (('train', ('a', 'b')), ('valid', ('a', 'b', 'zebra'))):
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True)
            _rgb().save(tmp_path / split / cls / '0.png')
    with pytest.raises(ValueError, match='zebra') as info:
        ImageClassifierData.from_paths(tmp_path, tfms=TFMS, bs=2, num_workers=0)
    record('label only in the validation folder', 'error', str(info.value))


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    for split in ('train', 'valid'):
        for cls in ('a', 'b'):
            (tmp_path / split / cls).mkdir(parents=True)
            if not (split == 'train' and cls == 'b'):
                _rgb().save(tmp_path / split / cls / '0.png')
    with pytest.raises(ValueError, match=r'train/b.*no images') as info:
        ImageClassifierData.from_paths(tmp_path, tfms=TFMS, bs=2, num_workers=0)
    record('empty class folder', 'error', str(info.value))


ARRAY_CASES = {
    'arrays: fewer labels than images': (np.zeros((10, 16, 16, 3), np.uint8), np.zeros(9, np.int64), '10 images but 9'),
    'arrays: grayscale (N, H, W)': (np.zeros((10, 16, 16), np.uint8), np.zeros(10, np.int64), r'\(N, H, W, 3\)'),
    'arrays: float images': (np.zeros((10, 16, 16, 3), np.float32), np.zeros(10, np.int64), 'uint8'),
}


@pytest.mark.parametrize('case', list(ARRAY_CASES))
def test_mismatched_arrays_are_an_error_saying_what_was_expected(case, tmp_path):
    x, y = ARRAY_CASES[case][:2]
    good = (np.zeros((4, 16, 16, 3), np.uint8), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=ARRAY_CASES[case][2]) as info:
        ImageClassifierData.from_arrays(tmp_path, trn=(x, y), val=good, tfms=TFMS, bs=2)
    record(case, 'error', str(info.value))


# ------------------------------------------------------------------------------------- training faults
def test_divergent_run_stops_with_a_message_naming_epoch_and_batch(tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(0).integers(0, 255, (64, 16, 16, 3), dtype=np.uint8)
    y = np.arange(64) % 2
    data = ImageClassifierData.from_arrays(tmp_path, trn=(x, y), val=(x[:16], y[:16]), tfms=TFMS, bs=16)
    # two layers: their weights multiply, so a far too large lr overflows the loss within a few steps
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 2))
    learn = Learner(data, model, progress=False)
    learn.fit(1e-3, 1)
    learn.save('before')  # weights and optimizer state: the way back after a divergence
    with pytest.raises(NonFiniteLossError, match=r'epoch \d+.*batch \d+') as info:
        learn.fit(1e12, 2)
    record('divergent run (lr=1e12)', 'error', str(info.value))
    learn.load('before')
    assert np.isfinite(learn.fit(1e-3, 1)[0]), 'after loading the checkpoint the learner trains again'
