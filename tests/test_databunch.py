"""DataBunch: from_paths / from_csv / from_arrays, loaders, bad input named, fingerprints, resize, show_batch."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learner.data import (DataBunch, DeviceDataLoader, ImageClassifierData, ImageError, RandomFlip, cifar_stats,
                          get_cv_idxs, imagenet_stats, tfms_from_stats, transforms_side_on)


@pytest.fixture(scope='module')
def messy(make_data, tmp_path_factory):
    root = tmp_path_factory.mktemp('messy')
    return Path(make_data.folder(str(root), size=32, per_class=6, valid_per_class=2, test=5, messy=True))


@pytest.fixture(scope='module')
def kaggle(make_data, tmp_path_factory):
    root = tmp_path_factory.mktemp('kaggle')
    return Path(make_data.csv_layout(str(root / 'dogs'), size=32, per_class=5, test=6))


CIFAR_TFMS = tfms_from_stats(cifar_stats, 32, aug_tfms=[RandomFlip()], pad=4)


def test_from_paths_messy_folder(messy, make_data):
    data = ImageClassifierData.from_paths(messy, bs=8, tfms=CIFAR_TFMS, test_name='test', num_workers=0)
    assert data.classes == sorted(make_data.CLASSES) and data.c == 10 and data.sz == 32 and data.bs == 8
    assert len(data.trn_ds) == 60 and len(data.val_ds) == 20 and len(data.test_ds) == 5
    assert isinstance(data.path, Path) and not data.is_multi and not data.is_reg
    assert data.trn_y.dtype == np.int64 and (data.test_y == 0).all()
    x, y = data.trn_ds[0]                                             # 0.7: normalized float image, int label
    assert x.dtype == np.float32 and x.shape == (3, 32, 32) and isinstance(y, np.integer)
    x, y = data.trn_ds.item_uint8(0)                                  # what the loaders move
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and y.dtype == torch.int64 and y.ndim == 0
    n = 0
    for xb, yb in data.trn_dl:
        assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 32, 32) and yb.dtype == torch.int64
        n += len(xb)
    assert n == 60
    xb, _ = next(iter(data.val_dl))
    img = data.denorm(xb)
    assert img.shape == (8, 32, 32, 3) and img.min() >= 0 and img.max() <= 1
    assert abs(float(xb.mean())) < 1.5                               # normalized, not 0..255
    assert len(data.test_dl) == 1 and next(iter(data.test_dl))[0].shape == (5, 3, 32, 32)


def test_loaders_normalize_per_batch_on_device(messy):
    data = DataBunch.from_paths(messy, bs=4, tfms=tfms_from_stats(imagenet_stats, 32), num_workers=0)
    dl = data.val_dl
    assert isinstance(dl, DeviceDataLoader) and dl.batch_size == 4 and dl.device == torch.device('cpu')
    raw, _ = next(iter(dl.dl))
    assert raw.dtype == torch.uint8                                   # the worker side stays uint8
    xb, _ = next(iter(dl))
    expected = (raw.float() / 255 - torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1).float()) \
        / torch.tensor(imagenet_stats[1]).view(1, 3, 1, 1).float()
    assert torch.allclose(xb, expected, atol=1e-5)
    assert np.allclose(dl.normalize.mean, imagenet_stats[0]) and len(dl) == 5
    assert data.to('cpu') is data and data.device == torch.device('cpu')


def test_workers_load_the_same_items(messy):
    data = DataBunch.from_paths(messy, bs=16, tfms=tfms_from_stats(cifar_stats, 32), num_workers=2)
    assert data.val_dl.dl.num_workers == 2 and data.val_dl.dl.persistent_workers
    assert not data.val_dl.dl.pin_memory                              # no CUDA here: no pinning
    xs = torch.cat([x for x, _ in data.val_dl])
    ref = DataBunch.from_paths(messy, bs=16, tfms=tfms_from_stats(cifar_stats, 32), num_workers=0)
    assert torch.equal(xs, torch.cat([x for x, _ in ref.val_dl]))


def test_train_loader_drops_only_a_single_item_batch(make_data):
    x, y = make_data.arrays(3, size=8)                                 # 30 items
    data = DataBunch.from_arrays('.', (x[:29], y[:29]), (x, y), bs=4)  # 29 = 7*4 + 1
    assert sum(len(b) for b, _ in data.trn_dl) == 28 and len(data.trn_dl) == 7
    data = DataBunch.from_arrays('.', (x[:30], y[:30]), (x[:9], y[:9]), bs=4)   # 30 = 7*4 + 2: kept
    assert sum(len(b) for b, _ in data.trn_dl) == 30
    assert sum(len(b) for b, _ in data.val_dl) == 9                   # valid never drops


def test_empty_class_folder_and_unknown_valid_class(tmp_path):
    for split, cls in [('train', 'a'), ('train', 'b'), ('valid', 'a')]:
        (tmp_path / split / cls).mkdir(parents=True)
        Image.new('RGB', (8, 8)).save(tmp_path / split / cls / 'x.png')
    (tmp_path / 'train' / 'empty').mkdir()
    with pytest.raises(ValueError, match='empty') as e:
        DataBunch.from_paths(tmp_path, num_workers=0)
    assert 'holds no images' in str(e.value)
    (tmp_path / 'train' / 'empty').rmdir()
    (tmp_path / 'valid' / 'zebra').mkdir()
    Image.new('RGB', (8, 8)).save(tmp_path / 'valid' / 'zebra' / 'z.png')
    with pytest.raises(ValueError, match='zebra') as e:
        DataBunch.from_paths(tmp_path, num_workers=0)
    assert 'not in the training classes' in str(e.value)


def test_bad_file_named_or_skipped(tmp_path):
    for split in ('train', 'valid'):
        for cls in ('a', 'b'):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new('RGB', (10, 10), (i * 40, 0, 0)).save(tmp_path / split / cls / f'{i}.png')
    (tmp_path / 'train' / 'b' / 'broken.jpg').write_bytes(b'not a jpeg')
    tfms = tfms_from_stats(imagenet_stats, 8)
    with pytest.raises(ImageError, match='broken.jpg'):  # refused up front by the header check, not mid-epoch
        DataBunch.from_paths(tmp_path, bs=8, tfms=tfms, num_workers=0)
    truncated = tmp_path / 'train' / 'b' / 'broken.jpg'
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO(); Image.fromarray(noise).save(buf, 'JPEG'); truncated.write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    data = DataBunch.from_paths(tmp_path, bs=8, tfms=tfms, num_workers=0)  # its header is fine...
    with pytest.warns(UserWarning, match=r'broken\.jpg: cannot decode.*read it partially'):  # ...its pixels are
        assert sum(len(x) for x, _ in data.trn_dl) == 7      # not: the epoch still runs, and says which file
    data.trn_ds.strict = True
    with pytest.raises(ImageError, match='broken.jpg'):
        list(data.trn_dl)
    truncated.write_bytes(b'not a jpeg')
    with pytest.warns(UserWarning, match='broken.jpg'):
        data = DataBunch.from_paths(tmp_path, bs=8, tfms=tfms, num_workers=0, skip_bad=True)
    assert len(data.trn_ds) == 6 and sum(len(x) for x, _ in data.trn_dl) == 6


def test_get_cv_idxs_deterministic_and_07_semantics():
    state = np.random.get_state()[1].copy()
    a = get_cv_idxs(1000, val_pct=0.1)
    assert np.array_equal(a, get_cv_idxs(1000, val_pct=0.1)) and len(a) == 100 and len(set(a.tolist())) == 100
    assert np.array_equal(np.random.get_state()[1], state)              # global numpy RNG untouched
    np.random.seed(42)
    perm = np.random.permutation(1000)
    assert np.array_equal(a, perm[:100]) and np.array_equal(get_cv_idxs(1000, cv_idx=2, val_pct=0.1), perm[200:300])
    assert len(get_cv_idxs(50)) == 10 and not np.array_equal(get_cv_idxs(50, seed=1), get_cv_idxs(50))


def test_from_csv_kaggle_layout(kaggle, make_data):
    label_csv = kaggle / 'labels.csv'
    n = len(list(open(label_csv))) - 1
    val_idxs = get_cv_idxs(n, val_pct=0.2)
    tfms = tfms_from_stats(imagenet_stats, 32, aug_tfms=transforms_side_on, max_zoom=1.1)
    data = ImageClassifierData.from_csv(f'{kaggle}/', 'train', str(label_csv), bs=8, tfms=tfms, val_idxs=val_idxs,
                                        suffix='.jpg', test_name='test', num_workers=0)
    rows = list(csv.reader(open(label_csv)))[1:]
    assert data.classes == sorted({r[1] for r in rows}) and not data.is_multi
    assert len(data.val_ds) == len(val_idxs) and len(data.trn_ds) == n - len(val_idxs) and len(data.test_ds) == 6
    first_val = rows[min(val_idxs)]                                     # validation keeps the CSV order (0.7)
    assert data.val_ds.fnames[0] == 'train/' + first_val[0] + '.jpg'     # PATH-relative, as 0.7
    assert data.classes[data.val_y[0]] == first_val[1]
    xb, yb = next(iter(data.trn_dl))
    assert xb.shape == (8, 3, 32, 32) and yb.dtype == torch.int64
    default = ImageClassifierData.from_csv(kaggle, 'train', label_csv, suffix='.jpg', num_workers=0)
    assert default.val_ds.fnames == [f'train/{rows[i][0]}.jpg' for i in sorted(get_cv_idxs(n))]


def _csv(path: Path, rows, header=('id', 'label')):
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_from_csv_errors_name_the_row(tmp_path):
    (tmp_path / 'imgs').mkdir()
    for i in range(4):
        Image.new('RGB', (8, 8)).save(tmp_path / 'imgs' / f'{i}.png')
    _csv(tmp_path / 'missing.csv', [(0, 'a'), (1, 'b'), (9, 'a')])
    with pytest.raises(FileNotFoundError, match='line 4') as e:
        DataBunch.from_csv(tmp_path, 'imgs', tmp_path / 'missing.csv', suffix='.png', num_workers=0)
    assert '9.png' in str(e.value)
    _csv(tmp_path / 'blank.csv', [(0, 'a'), (1, ''), (2, 'a')])
    with pytest.raises(ValueError, match=r"line 3 \(id '1'\).*blank"):
        DataBunch.from_csv(tmp_path, 'imgs', 'blank.csv', suffix='.png', num_workers=0)


def test_from_csv_multi_label_and_continuous(tmp_path):
    (tmp_path / 'imgs').mkdir()
    for i in range(5):
        Image.new('RGB', (8, 8)).save(tmp_path / 'imgs' / f'{i}.jpg')
    _csv(tmp_path / 'multi.csv', [(0, 'sky cloud'), (1, 'sky'), (2, 'water'), (3, 'cloud water'), (4, 'sky')])
    data = DataBunch.from_csv(tmp_path, 'imgs', tmp_path / 'multi.csv', suffix='.jpg', val_idxs=[1],
                              tfms=tfms_from_stats(imagenet_stats, 8), num_workers=0)
    assert data.is_multi and data.classes == ['cloud', 'sky', 'water'] and data.c == 3
    assert data.val_y.tolist() == [[0, 1, 0]] and data.trn_y[0].tolist() == [1, 1, 0]
    _, y = data.trn_ds[0]
    assert y.dtype == np.float32 and y.shape == (3,)
    _csv(tmp_path / 'reg.csv', [(i, f'{i * 0.5}') for i in range(5)])
    data = DataBunch.from_csv(tmp_path, 'imgs', tmp_path / 'reg.csv', suffix='.jpg', val_idxs=[0], continuous=True,
                              tfms=tfms_from_stats(imagenet_stats, 8), num_workers=0)
    assert data.is_reg and data.trn_y.dtype == np.float32 and data.trn_y.tolist() == [0.5, 1.0, 1.5, 2.0]


def test_from_arrays_cifar_recipe(make_data):
    x, y = make_data.arrays(8, size=32)
    data = ImageClassifierData.from_arrays('.', (x, y), (x[:20], y[:20]), bs=16, tfms=CIFAR_TFMS,
                                           classes=make_data.CLASSES, test=x[:5])
    assert data.num_workers == 0 and data.trn_ds.fnames is None and data.classes == make_data.CLASSES
    vals = torch.cat([b for b, _ in data.val_dl])
    assert np.allclose(data.denorm(vals) * 255, x[:20], atol=1e-3)     # validation: the original images
    trn = data.loader('train', augment=True)
    moved = data.denorm(torch.cat([b for b, _ in trn])) * 255
    assert moved.shape == x.shape and np.abs(moved - x).mean() > 5     # padding + crop shifted pixels
    assert data.test_dl is not None and (data.test_y == 0).all()
    with pytest.raises(ValueError, match='uint8'):
        DataBunch.from_arrays('.', (x.astype(np.float32) / 255, y), (x, y))


def test_array_train_loader_covers_every_image_once_in_a_seeded_order(make_data):
    x, y = make_data.arrays(5, size=8)                   # 5 per class: 50 images
    x = x.copy()
    x[:, 0, 0, 0] = np.arange(len(x))                    # tag each image by its top-left red pixel
    data = ImageClassifierData.from_arrays('.', (x, y), (x[:10], y[:10]), bs=7, tfms=tfms_from_stats(None, 8))
    assert len(data.trn_dl) == 7                         # 50 = 7 * 7 + 1: the 1-image batch is dropped

    def epoch_tags():
        tags = [xb[:, 0, 0, 0] for xb, _ in data.trn_dl]  # stats (0, 1): pixels scaled to [0, 1]
        return torch.cat(tags).mul(255).round().long().tolist()
    torch.manual_seed(3)
    first, second = epoch_tags(), epoch_tags()
    torch.manual_seed(3)
    assert epoch_tags() == first                         # the seed decides the order
    assert first != second and len(set(first)) == 49 and set(first) <= set(range(50))
    labels = torch.cat([yb for _, yb in data.trn_dl])
    assert labels.dtype == torch.long and len(labels) == 49


def test_loader_views_fingerprint_signature_resize(messy, tmp_path):
    tfms = tfms_from_stats(imagenet_stats, 32, aug_tfms=transforms_side_on, max_zoom=1.2)
    data = DataBunch.from_paths(messy, bs=8, tfms=tfms, test_name='test', num_workers=0)
    plain = data.loader('train')
    assert plain.dataset.tfms is data.val_ds.tfms and plain.dataset.fnames == data.trn_ds.fnames
    assert torch.equal(torch.cat([b for b, _ in plain]), torch.cat([b for b, _ in data.loader('train')]))
    assert data.loader('valid', augment=True).dataset.tfms is data.trn_ds.tfms
    assert data.loader('train') is plain                               # cached
    fp = data.fingerprint('train')
    again = DataBunch.from_paths(messy, bs=8, tfms=tfms, num_workers=0)
    assert fp == again.fingerprint('train') and fp != data.fingerprint('valid')
    assert data.tfms_signature() == again.tfms_signature()
    small = data.with_size(24)
    assert small.sz == 24 and small.bs == 8 and small.classes == data.classes
    assert next(iter(small.trn_dl))[0].shape == (8, 3, 24, 24) and next(iter(small.test_dl))[0].shape[-1] == 24
    assert small.tfms_signature() != data.tfms_signature() and small.fingerprint('train') == fp
    f = data.trn_ds.paths[0]
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert data.fingerprint('train') != fp
    with pytest.raises(ValueError, match='split'):
        data.loader('validation')


def test_array_fingerprint_and_show_batch(make_data):
    x, y = make_data.arrays(2, size=16)
    data = DataBunch.from_arrays('.', (x, y), (x, y), tfms=tfms_from_stats(imagenet_stats, 16))
    y2 = y.copy()
    y2[0] = 1 - y2[0]
    other = DataBunch.from_arrays('.', (x, y2), (x, y), tfms=tfms_from_stats(imagenet_stats, 16))
    assert data.fingerprint('train') != other.fingerprint('train') and data.fingerprint('valid') == other.fingerprint('valid')
    from matplotlib.figure import Figure
    fig = data.show_batch(rows=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert fig.axes[0].get_title() in [str(c) for c in data.classes]


def test_hymenoptera_from_paths(hymenoptera):
    data = ImageClassifierData.from_paths(hymenoptera, bs=4, val_name='val', num_workers=0,
                                          tfms=tfms_from_stats(imagenet_stats, 64, aug_tfms=transforms_side_on))
    assert data.classes == ['ants', 'bees'] and len(data.trn_ds) == 245 and len(data.val_ds) == 153
    xb, yb = next(iter(data.trn_dl))
    assert xb.shape == (4, 3, 64, 64) and set(yb.tolist()) <= {0, 1}


def test_single_label_data_with_one_class_is_refused_naming_where_it_came_from(tmp_path):
    for split in ('train', 'valid'):
        (tmp_path / 'one' / split / 'cats').mkdir(parents=True)
        for i in range(3):
            Image.new('RGB', (16, 16), (i * 40, 0, 0)).save(tmp_path / 'one' / split / 'cats' / f'{i}.png')
    with pytest.raises(ValueError, match=r"one[/\\]train gives only the class 'cats'.*at least 2 classes"):
        ImageClassifierData.from_paths(tmp_path / 'one', tfms=tfms_from_stats(imagenet_stats, 16), num_workers=0)
    (tmp_path / 'one' / 'labels.csv').write_text('id,label\n' + ''.join(f'{i},cats\n' for i in range(3)))
    with pytest.raises(ValueError, match=r'labels.csv \(column 2, the labels\) gives only'):
        ImageClassifierData.from_csv(tmp_path / 'one', 'train/cats', 'labels.csv', suffix='.png', val_idxs=[0],
                                     tfms=tfms_from_stats(imagenet_stats, 16), num_workers=0)
    x = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r'from_arrays.*at least 2 classes'):
        DataBunch.from_arrays(tmp_path, (x, np.zeros(4, dtype=np.int64)), (x, np.zeros(4, dtype=np.int64)))
    multi = DataBunch.from_arrays(tmp_path, (x, np.ones((4, 1), np.float32)), (x, np.ones((4, 1), np.float32)))
    assert multi.is_multi and multi.c == 1   # one label of a multi-label task is a yes/no question: allowed


def test_worker_processes_stay_bounded_after_fit_tta_and_fix_dl(make_data, tmp_path):
    import multiprocessing
    from learner import Learner, accuracy
    from conftest import tiny_cnn
    path = make_data.folder(str(tmp_path / 'shapes'), size=16, per_class=2, valid_per_class=1, test=0)
    before = len(multiprocessing.active_children())
    data = ImageClassifierData.from_paths(path, bs=8, tfms=tfms_from_stats(imagenet_stats, 16, aug_tfms=[RandomFlip()]),
                                          num_workers=2)
    learn = Learner(data, tiny_cnn(data.c), metrics=[accuracy], progress=False)
    learn.fit(0.01, 1)
    learn.TTA(n_aug=2)
    sum(len(x) for x, _ in data.fix_dl)
    learn.predict()
    alive = len(multiprocessing.active_children()) - before
    assert alive <= 4, f'{alive} worker processes alive: only trn_dl and val_dl (2 workers each) keep theirs'
    assert data.loader('valid') is data.val_dl
    data.close()      # a service that trains many times ends them when done with a DataBunch (the studio's worker)
    assert len(multiprocessing.active_children()) == before
    learn.fit(0.01, 1)                          # and the loaders still work: new workers for the next pass
    assert len(multiprocessing.active_children()) > before
    data.close()
