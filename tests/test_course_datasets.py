"""fastai 0.7's hand-built data classes, as the dog-breeds notebook's single-image prediction and the CIFAR notebooks
build them: `FilesIndexArrayDataset` + 0.7's `DataLoader` + `learn.predict_dl`, `ArraysIndexDataset`, `ModelData`,
`split_by_idx`, and the 0.7 loader's collation of other data sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learner import *  # noqa: F403  (the way course code imports)

from conftest import tiny_cnn


@pytest.fixture(scope='module')
def shapes(tmp_path_factory, make_data):
    return make_data.folder(str(tmp_path_factory.mktemp('shapes')), size=32, per_class=4, valid_per_class=2, test=0)


def test_one_file_through_files_index_array_dataset_and_dataloader(shapes):
    PATH = shapes + '/'
    stats = (np.array([0.5, 0.5, 0.5]), np.array([0.25, 0.25, 0.25]))
    trn_tfms, val_tfms = tfms_from_stats(stats, 32)
    data = ImageClassifierData.from_paths(PATH, tfms=(trn_tfms, val_tfms), bs=4, num_workers=0)
    learn = Learner.from_model_data(tiny_cnn(data.c), data, progress=False)
    learn.fit(0.05, 1)
    # the notebook's cells, as written
    fn = data.val_ds.fnames[0]
    ds = FilesIndexArrayDataset([fn], np.array([0]), val_tfms, PATH)
    dl = DataLoader(ds)
    preds = learn.predict_dl(dl)
    assert preds.shape == (1, data.c)
    assert np.allclose(preds[0], learn.predict()[0], atol=1e-5), 'the same prediction as the validation pass'
    im = val_tfms(open_image(PATH + fn))
    assert np.allclose(learn.predict_array(im[None]), preds, atol=1e-5)
    assert learn.data.classes[np.argmax(preds)] in data.classes
    assert ds.c == 1 and ds.fnames == [fn] and ds[0][0].dtype == np.float32


def test_files_datasets_label_kinds(shapes):
    fnames = ['valid/' + c for c in ['a.jpg', 'b.jpg']]
    nhot = FilesNhotArrayDataset(fnames, np.array([[1, 0, 1], [0, 1, 0]], np.float32), None, shapes)
    assert nhot.is_multi and nhot.c == 3
    reg = FilesIndexArrayRegressionDataset(fnames, np.array([0.5, 1.5], np.float32), None, shapes)
    assert reg.is_reg and not reg.is_multi
    with pytest.raises(ValueError, match='one label per file'):
        FilesIndexArrayDataset(fnames, np.array([0]), None, shapes)
    with pytest.raises(ValueError, match='integer class index'):
        FilesIndexArrayDataset(fnames, np.array([0.5, 1.0]), None, shapes)


def test_arrays_model_data_and_the_07_loader_train_a_learner(tmp_path, make_data):
    x, y = make_data.arrays(6, size=16)
    ((val_x, trn_x), (val_y, trn_y)) = split_by_idx(np.arange(0, len(y), 4), x / 255.0, y)   # 0.7 floats
    assert len(val_x) + len(trn_x) == len(x) and np.array_equal(val_y, y[::4])
    stats = (np.array([0.5] * 3), np.array([0.25] * 3))
    trn_tfms, val_tfms = tfms_from_stats(stats, 16, aug_tfms=[RandomFlip()])
    trn_ds, val_ds = ArraysIndexDataset(trn_x, trn_y, trn_tfms), ArraysIndexDataset(val_x, val_y, val_tfms)
    assert trn_ds.x.dtype == torch.uint8 and trn_ds.c == len(np.unique(y))
    md = ModelData(str(tmp_path), DataLoader(trn_ds, batch_size=8, shuffle=True), DataLoader(val_ds, batch_size=8))
    xb, yb = next(iter(md.trn_dl))
    assert xb.dtype == torch.float32 and xb.shape == (8, 3, 16, 16) and abs(float(xb.mean())) < 3
    assert md.c == trn_ds.c and not md.is_multi and np.array_equal(md.val_y, val_y)
    torch.manual_seed(0)
    learn = Learner.from_model_data(tiny_cnn(md.c), md, metrics=[accuracy], progress=False)
    learn.fit(0.05, 2)
    assert learn.predict().shape == (len(val_y), md.c)
    with pytest.raises(ValueError, match='TTA needs a DataBunch'):
        learn.TTA()
    nhot = ArraysNhotDataset(trn_x, np.eye(3)[trn_y % 3], None)
    assert nhot.is_multi and nhot.c == 3
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        ArraysIndexDataset(x * 2.0, y, None)


def test_the_07_loader_collates_other_data_sets_as_0_7_did():
    items = [(np.full(3, i, np.float32), i) for i in range(5)]
    xb, yb = next(iter(DataLoader(items, batch_size=4)))
    assert xb.shape == (4, 3) and xb.dtype == torch.float32 and yb.tolist() == [0, 1, 2, 3]
    assert xb.device.type == default_device().type
    seqs = [(np.arange(1, n + 1), 0) for n in (2, 3)]
    pre, _ = next(iter(DataLoader(seqs, batch_size=2, pad_idx=9)))
    post, _ = next(iter(DataLoader(seqs, batch_size=2, pad_idx=9, pre_pad=False)))
    assert pre.tolist() == [[9, 1, 2], [1, 2, 3]] and post.tolist() == [[1, 2, 9], [1, 2, 3]]
    seq_first, _ = next(iter(DataLoader(seqs, batch_size=2, transpose=True)))
    assert seq_first.shape == (3, 2)
    halves, _ = next(iter(DataLoader(items, batch_size=2, half=True)))
    assert halves.dtype == torch.float16
    assert len(DataLoader(items, batch_size=2, drop_last=True)) == 2
