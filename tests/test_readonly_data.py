"""A data folder marked read-only (a shared or mounted data set) is never written into, even by root: the
precompute cache, resized copies and checkpoints go elsewhere, and each says where."""
from __future__ import annotations

import os
import stat

import pytest

from learner import ConvLearner, ImageClassifierData, tfms_from_model


def _all_files(path):
    return sorted(p.relative_to(path) for p in path.rglob('*'))


@pytest.fixture
def readonly_shapes(tmp_path, make_data, monkeypatch):
    path = tmp_path / 'shapes'
    make_data.folder(str(path), size=32, per_class=3, valid_per_class=2, test=0)
    for folder in [path, *[p for p in path.rglob('*') if p.is_dir()]]:
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)   # r-x: marked read-only
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.chdir(tmp_path)
    yield path
    for folder in [path, *[p for p in path.rglob('*') if p.is_dir()]]:
        os.chmod(folder, 0o755)


def test_nothing_is_written_into_a_read_only_data_folder(readonly_shapes, tmp_path):
    before = _all_files(readonly_shapes)
    data = ImageClassifierData.from_paths(readonly_shapes, tfms=tfms_from_model('efficientnet_lite0', 32), bs=8,
                                          num_workers=0)
    with pytest.warns(UserWarning, match='read-only'):
        learn = ConvLearner.pretrained('efficientnet_lite0', data, precompute=True, progress=False)
    learn.fit(1e-2, 1)                                    # builds the precompute cache
    saved = learn.save('head')
    resized = data.resize(16, 'tmp')
    assert _all_files(readonly_shapes) == before, 'the read-only data folder was written into'
    assert (tmp_path / 'cache' / 'learner' / 'precompute').is_dir()
    assert saved == tmp_path / 'models' / 'head.pth' and saved.exists()
    assert str(resized.path).startswith(str(tmp_path / 'cache' / 'learner' / 'resized'))
    assert len(resized.trn_ds) == len(data.trn_ds) and resized.trn_ds.paths[0].exists()
