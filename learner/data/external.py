"""Download and unpack public data sets by name or URL (CIFAR-10, hymenoptera, Imagenette), offline-friendly."""
from __future__ import annotations

import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

__all__ = ['URLs', 'DownloadError', 'data_dir', 'download_data', 'untar_data']


class URLs:
    """Official URLs of the data sets `untar_data` knows by name (lower-case attribute name or key)."""
    CIFAR = 'https://s3.amazonaws.com/fast-ai-imageclas/cifar10.tgz'
    HYMENOPTERA = 'https://download.pytorch.org/tutorial/hymenoptera_data.zip'
    IMAGENETTE_160 = 'https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz'
    BY_NAME = {'cifar10': CIFAR, 'cifar': CIFAR, 'hymenoptera': HYMENOPTERA, 'hymenoptera_data': HYMENOPTERA,
               'imagenette': IMAGENETTE_160, 'imagenette2-160': IMAGENETTE_160}


class DownloadError(RuntimeError):
    """A data set could not be fetched: the message names the URL and where to put the file by hand."""


_SUFFIXES = ('.tar.gz', '.tgz', '.tar', '.zip')


def data_dir() -> Path:
    """Where data sets go by default: $LEARNER_DATA, else ~/.learner/data."""
    return Path(os.environ.get('LEARNER_DATA', Path.home() / '.learner' / 'data'))


def _resolve(url_or_name: str) -> str:
    return URLs.BY_NAME.get(url_or_name.lower(), url_or_name) if '/' not in url_or_name else url_or_name


def _archive_name(url: str) -> str:
    return url.rstrip('/').split('/')[-1].split('?')[0]


def _stem(name: str) -> str:
    for s in _SUFFIXES:
        if name.endswith(s):
            return name[:-len(s)]
    return name


def download_data(url_or_name: str, dest=None, timeout: float = 10.0, force: bool = False) -> Path:
    """Fetch an archive (URL or known name, see `URLs`) into `dest` unless it is already there.

    Args:
        url_or_name: http(s)/file URL, or a name such as 'cifar10', 'hymenoptera', 'imagenette'.
        dest: folder for the archive (default `data_dir()`).
        timeout: seconds to wait for the server before giving up (no hanging when offline).
        force: download again even if the archive exists.

    Raises:
        DownloadError: naming the URL and the path where the archive can be placed by hand.
    """
    url = _resolve(url_or_name)
    dest = Path(dest) if dest is not None else data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / _archive_name(url)
    if target.exists() and not force:
        return target
    tmp = target.with_name(target.name + '.part')
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, 'wb') as f:
            shutil.copyfileobj(resp, f, length=1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f'could not download {url} ({e}). Offline? Download it on another machine and '
                            f'put the file at {target}, then call again.') from e
    os.replace(tmp, target)
    return target


def _extract(archive: Path, dest: Path) -> None:
    if archive.name.endswith('.zip'):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if Path(member).is_absolute() or '..' in Path(member).parts:
                    raise DownloadError(f'{archive}: refusing unsafe member path {member!r}')
            z.extractall(dest)
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter='data')   # 'data' refuses absolute paths, '..', devices and links out


def untar_data(url_or_name: str, dest=None, timeout: float = 10.0, force: bool = False) -> Path:
    """Download (if needed) and unpack a data set; returns the unpacked folder.

    A pre-placed archive in `dest` is used without any network access; an already unpacked folder is
    returned as it is.

    Args:
        url_or_name: as `download_data`.
        dest: folder for the archive and the unpacked data (default `data_dir()`).

    Example:
        >>> path = untar_data(URLs.CIFAR)         # ~/.learner/data/cifar10
        >>> data = ImageClassifierData.from_paths(path, val_name='test', tfms=tfms_from_stats(cifar_stats, 32))
    """
    url = _resolve(url_or_name)
    dest = Path(dest) if dest is not None else data_dir()
    name = _archive_name(url)
    out = dest / _stem(name)
    if out.is_dir() and not force:
        return out
    archive = download_data(url, dest, timeout=timeout, force=force)
    staging = dest / f'.{_stem(name)}.extracting'
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _extract(archive, staging)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DownloadError(f'{archive} is not a readable archive ({e}); delete it and call again') from e
    top = [p for p in staging.iterdir() if not p.name.startswith('.') and p.name != '__MACOSX']
    src = top[0] if len(top) == 1 and top[0].is_dir() else staging   # archives usually hold one folder
    shutil.rmtree(out, ignore_errors=True)
    os.replace(src, out)
    shutil.rmtree(staging, ignore_errors=True)
    return out
