"""The data side of fastai 0.7 course code, typed the way the course notebooks type it: `PATH + ds.fnames[i]`,
`f'{PATH}tmp/...'`, `ds[i]` and `ds.denorm`, `next(iter(data.aug_dl))`, `data.resize(sz, 'tmp')`."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from learner.data import (CropType, DataBunch, ImageClassifierData, RandomFlip, Scale, imagenet_stats, open_image,
                          tfms_from_stats, transforms_side_on)
from learner.data.resize_files import resize_files

SZ = 16


def _picture(w: int, h: int, seed: int) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 255, w)[None, :, None] * rng.uniform(0.2, 1, 3)
    return PIL.Image.fromarray(np.clip(grad + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))


@pytest.fixture
def PATH(tmp_path) -> str:
    """A tiny dogscats: train/valid class folders and a test folder, images 24-40 px (two of them 12 px high)."""
    k = 0
    for split, n in (('train', 4), ('valid', 2)):
        for cls in ('cats', 'dogs'):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                w, h = (40, 30) if k % 3 else (24, 24)
                _picture(w, h, k).save(tmp_path / split / cls / f'{cls[:-1]}.{1000 + i}.jpg', quality=95)
                k += 1
    (tmp_path / 'test').mkdir()
    for i in range(3):
        _picture(36, 12 if i < 2 else 32, 50 + i).save(tmp_path / 'test' / f'{100 + i}.png')
    return f'{tmp_path}/'                        # course code's PATH: a string ending in '/'


def _data(PATH, tfms=None, **kw):
    return ImageClassifierData.from_paths(PATH, bs=4, tfms=tfms or tfms_from_stats(imagenet_stats, SZ),
                                          test_name='test', num_workers=0, **kw)


def test_fnames_are_path_relative_and_open_with_path_plus_name(PATH):
    data = _data(PATH)
    fn = data.val_ds.fnames[0]
    assert fn == 'valid/cats/cat.1000.jpg'
    assert PIL.Image.open(PATH + fn).size == (40, 30)
    assert data.trn_ds.fnames[-1] == 'train/dogs/dog.1003.jpg'
    assert [f[5:-4] for f in data.test_ds.fnames] == ['100', '101', '102']    # test ids by slicing, as Kaggle code
    assert data.val_ds.paths[0] == Path(PATH + fn).absolute() and data.val_ds.paths[0].is_absolute()
    assert isinstance(data.trn_y, np.ndarray) and data.val_y.tolist() == [0, 0, 1, 1]
    assert data.classes == ['cats', 'dogs'] and data.c == 2 and not data.is_multi and not data.is_reg
    assert len(data.test_ds) == 3 and len(data.test_dl) == 1


def test_from_csv_fnames_are_folder_slash_id(tmp_path):
    (tmp_path / 'train').mkdir()
    (tmp_path / 'test').mkdir()
    rows = [(f'id{i}', 'ab'[i % 2]) for i in range(6)]
    for ident, _ in rows:
        _picture(20, 20, len(ident)).save(tmp_path / 'train' / f'{ident}.jpg')
    _picture(20, 20, 9).save(tmp_path / 'test' / 'zz.jpg')
    with open(tmp_path / 'labels.csv', 'w', newline='') as f:
        csv.writer(f).writerows([('id', 'label'), *rows])
    PATH = f'{tmp_path}/'
    data = ImageClassifierData.from_csv(PATH, 'train', f'{PATH}labels.csv', tfms=tfms_from_stats(imagenet_stats, 16),
                                        val_idxs=[4, 1], suffix='.jpg', test_name='test', num_workers=0)
    assert data.val_ds.fnames == ['train/id1.jpg', 'train/id4.jpg']           # CSV order, as 0.7's mask split
    assert data.trn_ds.fnames == ['train/id0.jpg', 'train/id2.jpg', 'train/id3.jpg', 'train/id5.jpg']
    assert data.test_ds.fnames == ['test/zz.jpg'] and os.path.exists(PATH + data.trn_ds.fnames[0])


def test_constructors_make_path_tmp_for_course_code_to_save_in(PATH, monkeypatch):
    _data(PATH)
    np.savez(f'{PATH}tmp/preds.npz', a=np.zeros(2))                          # what course code does
    assert os.path.exists(f'{PATH}tmp/preds.npz')
    os.remove(f'{PATH}tmp/preds.npz')
    os.rmdir(f'{PATH}tmp')
    Path(f'{PATH}tmp').write_text('a file where the folder would go')      # cannot be created: silently skipped
    _data(PATH)
    os.remove(f'{PATH}tmp')
    monkeypatch.setattr(os, 'access', lambda *args, **kwargs: False)        # a read-only PATH (tests run as root)
    _data(PATH)
    assert not os.path.exists(f'{PATH}tmp')


def test_ds_items_are_normalized_and_denorm_shows_the_pipeline_images(PATH):
    tfms = tfms_from_stats(imagenet_stats, SZ, crop_type=CropType.CENTER)   # no augmentation: train = valid
    data = _data(PATH, tfms)
    x, y = data.trn_ds[0]
    assert x.dtype == np.float32 and x.shape == (3, SZ, SZ) and isinstance(y, np.integer) and y == 0
    assert x.min() < -0.5 and abs(float(x.mean())) < 3                      # normalized, not 0..255
    val_tfms = tfms[1]
    for ds in (data.trn_ds, data.val_ds, data.test_ds):
        shown = ds.denorm(np.stack([ds[i][0] for i in range(3)]))
        files = [val_tfms(open_image(PATH + ds.fnames[i], target_size=val_tfms.decode_size)).permute(1, 2, 0).numpy()
                 / 255 for i in range(3)]   # decoded as the pipeline decodes (reduced towards the size it needs)
        assert shown.shape == (3, SZ, SZ, 3) and np.allclose(shown, np.stack(files), atol=1e-5)
    xs, ys = data.val_ds[1:3]                                               # a slice: stacked, as 0.7
    assert xs.shape == (2, 3, SZ, SZ) and ys.tolist() == [0, 1]


def test_loaders_still_move_uint8_and_match_ds_items(PATH):
    data = _data(PATH)
    raw, _ = next(iter(data.val_dl.dl))
    assert raw.dtype == torch.uint8                                          # normalized on the device, not before
    xb, yb = next(iter(data.val_dl))
    assert np.allclose(xb.numpy(), np.stack([data.val_ds[i][0] for i in range(4)]), atol=1e-5)
    assert yb.tolist() == [int(data.val_ds[i][1]) for i in range(4)]
    multi = DataBunch.from_arrays('.', (np.zeros((4, 8, 8, 3), np.uint8), np.eye(4, 3, dtype=np.float32)),
                                  (np.zeros((2, 8, 8, 3), np.uint8), np.eye(2, 3, dtype=np.float32)),
                                  tfms=tfms_from_stats(imagenet_stats, 8))
    x, y = multi.trn_ds[0]
    assert x.dtype == np.float32 and y.dtype == np.float32 and y.tolist() == [1, 0, 0]
    assert next(iter(multi.trn_dl.dl))[0].dtype == torch.uint8               # the batched array path


def test_aug_dl_gives_augmented_validation_batches(PATH):
    tfms = tfms_from_stats(imagenet_stats, SZ, aug_tfms=transforms_side_on, max_zoom=1.1)
    data = ImageClassifierData.from_paths(PATH, bs=2, tfms=tfms, num_workers=0)
    x, y = next(iter(data.aug_dl))
    assert x.shape == (2, 3, SZ, SZ) and x.dtype == torch.float32 and y.tolist() == [0, 0]
    img = data.trn_ds.denorm(x)[1]
    assert img.shape == (SZ, SZ, 3) and 0 <= img.min() and img.max() <= 1
    assert data.aug_dl.dataset.tfms is data.trn_ds.tfms and data.aug_dl.dataset.fnames == data.val_ds.fnames
    assert data.aug_dl is data.aug_dl and data.fix_dl.dataset.tfms is data.val_ds.tfms
    assert data.test_aug_dl is None and _data(PATH).test_aug_dl.dataset.tfms is not None
    torch.manual_seed(0)
    batches = [next(iter(data.aug_dl))[0] for _ in range(4)]
    assert any(not torch.equal(batches[0], b) for b in batches[1:])          # random every pass


def _writes(folder: Path) -> dict:
    """Each file's inode and change time: both move when a file is written again (its mtime is its source's)."""
    return {p: (p.stat().st_ino, p.stat().st_ctime_ns) for p in folder.rglob('*') if p.is_file()}


def test_resize_writes_smaller_copies_once(PATH):
    data = _data(PATH)
    small = data.resize(20, 'tmp')
    root = Path(PATH) / 'tmp' / '20'
    assert small.path == root and isinstance(small, ImageClassifierData)
    assert small.trn_ds.fnames == data.trn_ds.fnames and small.test_ds.fnames == data.test_ds.fnames
    assert small.trn_ds.paths[0] == (root / 'train/cats/cat.1000.jpg').absolute()
    assert (small.classes, small.bs, small.sz) == (data.classes, data.bs, data.sz)
    assert np.array_equal(small.val_y, data.val_y) and small.trn_ds.tfms is data.trn_ds.tfms
    with PIL.Image.open(root / 'train/cats/cat.1001.jpg') as im:
        assert im.size == (26, 20)                                           # 40x30 -> smaller side 20
    assert (root / 'test/100.png').read_bytes() == (Path(PATH) / 'test/100.png').read_bytes()   # 12 px: copied
    assert PIL.Image.open(PATH + small.trn_ds.fnames[0]).size == (24, 24)    # PATH + fnames: still the original
    xb, _ = next(iter(small.trn_dl))
    assert xb.shape == (4, 3, SZ, SZ)
    assert not [p for p in root.rglob('*') if p.name.endswith('.tmp')]      # atomic: no temporary files left
    first = _writes(root)
    again = data.resize(20, 'tmp')                                           # second call: nothing rewritten
    assert _writes(root) == first and again.trn_ds.fnames == small.trn_ds.fnames
    src = Path(PATH) / 'train/dogs/dog.1002.jpg'
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 5 * 10**9))   # the source changed
    data.resize(20, 'tmp')
    second = _writes(root)
    assert [p for p, t in second.items() if first[p] != t] == [root / 'train/dogs/dog.1002.jpg']
    data.resize(20, 'tmp')
    assert _writes(root) == second                                            # and only once
    data.resize(20, 'tmp', resume=False)                                      # resume=False: all written again
    assert all(_writes(root)[p] != second[p] for p in second)


def test_resize_to_an_absolute_folder_and_its_errors(PATH, tmp_path_factory):
    data = _data(PATH)
    out = tmp_path_factory.mktemp('elsewhere')
    small = data.resize(12, str(out))
    assert small.path == out / '12' and (out / '12/valid/dogs/dog.1001.jpg').is_file()
    x, y = np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, 0, 1])
    arrays = DataBunch.from_arrays('.', (x, y), (x, y), tfms=tfms_from_stats(imagenet_stats, 8))
    with pytest.raises(TypeError, match='with_size'):
        arrays.resize(4)
    counts = resize_files([Path(PATH) / 'valid/cats/cat.1000.jpg'], ['a/b.jpg'], 10, out / 'direct', n_threads=2)
    assert counts['resized'] == 1 and not counts['problems']


def test_with_size_rebuilds_transforms_without_writing(PATH):
    data = _data(PATH, tfms_from_stats(imagenet_stats, SZ, aug_tfms=[RandomFlip()]))
    before = set(Path(PATH).rglob('*'))
    bigger = data.with_size(24)
    assert bigger.sz == 24 and next(iter(bigger.val_dl))[0].shape == (4, 3, 24, 24)
    assert isinstance(bigger.val_ds.tfms.tfms[0], Scale) and bigger.val_ds.tfms.tfms[0].sz == 24
    assert set(Path(PATH).rglob('*')) == before and bigger.path == data.path


def test_show_batch_draws_file_images(PATH):
    fig = _data(PATH).show_batch(rows=2)
    assert len(fig.axes) == 4 and fig.axes[0].get_title() in ('cats', 'dogs')
