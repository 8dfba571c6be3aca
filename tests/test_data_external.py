"""untar_data / download_data: local archives (file:// or pre-placed) unpack; offline fails fast, naming the URL."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from learner.data import DownloadError, URLs, download_data, untar_data


def _make_tgz(tmp_path: Path, name='toy') -> Path:
    src = tmp_path / 'src' / name / 'train' / 'a'
    src.mkdir(parents=True)
    (src / 'x.txt').write_text('hi')
    archive = tmp_path / f'{name}.tgz'
    with tarfile.open(archive, 'w:gz') as t:
        t.add(tmp_path / 'src' / name, arcname=name)
    return archive


def test_official_urls():
    assert URLs.CIFAR.endswith('/cifar10.tgz') and 'fast-ai-imageclas' in URLs.CIFAR
    assert URLs.HYMENOPTERA == 'https://download.pytorch.org/tutorial/hymenoptera_data.zip'
    assert URLs.IMAGENETTE_160.endswith('imagenette2-160.tgz')


def test_untar_from_file_url(tmp_path):
    archive = _make_tgz(tmp_path)
    dest = tmp_path / 'data'
    out = untar_data(archive.as_uri(), dest=dest)
    assert out == dest / 'toy' and (out / 'train' / 'a' / 'x.txt').read_text() == 'hi'
    assert (dest / 'toy.tgz').exists()
    archive.unlink()
    assert untar_data(archive.as_uri(), dest=dest) == out               # already there: no fetch at all


def test_preplaced_archive_needs_no_network(tmp_path):
    dest = tmp_path / 'data'
    dest.mkdir()
    src = tmp_path / 'hymenoptera_data'
    (src / 'train' / 'ants').mkdir(parents=True)
    (src / 'train' / 'ants' / 'a.txt').write_text('ant')
    with zipfile.ZipFile(dest / 'hymenoptera_data.zip', 'w') as z:
        z.write(src / 'train' / 'ants' / 'a.txt', 'hymenoptera_data/train/ants/a.txt')
    out = untar_data('hymenoptera', dest=dest)                           # by name -> the official URL's file
    assert out == dest / 'hymenoptera_data' and (out / 'train' / 'ants' / 'a.txt').exists()


def test_offline_error_says_where_to_put_the_file(tmp_path):
    url = 'http://127.0.0.1:9/datasets/cifar10.tgz'   # the discard port on loopback: refused at once, no network needed
    with pytest.raises(DownloadError) as e:
        untar_data(url, dest=tmp_path, timeout=3)
    msg = str(e.value)
    assert url in msg and str(tmp_path / 'cifar10.tgz') in msg
    assert not list(tmp_path.glob('*.part'))
    with pytest.raises(DownloadError, match='127.0.0.1'):
        download_data(url, dest=tmp_path, timeout=3)


def test_corrupt_archive_error(tmp_path):
    (tmp_path / 'bad.tgz').write_bytes(b'garbage')
    with pytest.raises(DownloadError, match='not a readable archive'):
        untar_data('http://127.0.0.1:9/bad.tgz', dest=tmp_path)
