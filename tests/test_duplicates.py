"""find_duplicates: identical bytes and near-identical pixels, within a class, across classes and across splits."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from learner.data.duplicates import DuplicateWarning, find_duplicates, warn_duplicates


def _photo(seed: int, size: int = 96) -> np.ndarray:
    """A smooth random picture (blurred noise): distinct for every seed, photo-like gradients."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


@pytest.fixture
def tree(tmp_path):
    """PATH/train/{cat,dog}, PATH/valid/{cat,dog} with four kinds of duplicates planted among unique images."""
    for split, n in (('train', 6), ('valid', 3)):
        for k, label in enumerate(('cat', 'dog')):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_photo(1000 * k + 100 * (split == 'valid') + i)).save(folder / f'{i}.png')
    train, valid = tmp_path / 'train', tmp_path / 'valid'
    shutil.copy(train / 'cat' / '0.png', train / 'cat' / 'copy_of_0.png')              # same bytes, same class
    shutil.copy(train / 'cat' / '1.png', train / 'dog' / 'cat_1_as_dog.png')           # same bytes, two labels
    Image.open(train / 'dog' / '2.png').convert('RGB').save(valid / 'dog' / 'leak.jpg', quality=85)  # re-encoded
    big = Image.fromarray(_photo(1003)).resize((192, 192), Image.BICUBIC)               # resized copy of dog/3
    big.save(train / 'dog' / 'dog_3_big.png')
    return tmp_path


def _names(group):
    return sorted(f'{f.parent.parent.name}/{f.parent.name}/{f.name}' for f in group.files)


def test_finds_each_kind_and_nothing_else(tree):
    report = find_duplicates(tree)
    assert report.n_files == 9 * 2 + 4 and not report.unreadable
    groups = {tuple(_names(g)): g for g in report.groups}
    assert set(groups) == {
        ('train/cat/0.png', 'train/cat/copy_of_0.png'),
        ('train/cat/1.png', 'train/dog/cat_1_as_dog.png'),
        ('train/dog/2.png', 'valid/dog/leak.jpg'),
        ('train/dog/3.png', 'train/dog/dog_3_big.png'),
    }
    assert groups[('train/cat/0.png', 'train/cat/copy_of_0.png')].kind == 'identical'
    assert groups[('train/dog/2.png', 'valid/dog/leak.jpg')].kind == 'near'
    assert [_names(g) for g in report.conflicting] == [['train/cat/1.png', 'train/dog/cat_1_as_dog.png']]
    assert [_names(g) for g in report.leakage] == [['train/dog/2.png', 'valid/dog/leak.jpg']]
    assert len(report.within_class) == 2
    text = str(report)
    assert '4 group(s)' in text and 'conflicting labels' in text and '[valid/dog]' in text


def test_bytes_only_misses_reencoded_copies(tree):
    report = find_duplicates(tree, pixels=False)
    assert {tuple(_names(g)) for g in report.groups} == {
        ('train/cat/0.png', 'train/cat/copy_of_0.png'), ('train/cat/1.png', 'train/dog/cat_1_as_dog.png')}


def test_flat_images_of_different_colours_are_not_duplicates(tmp_path):
    # every flat image has the same (all-zero) difference hash: the colour thumbnails tell them apart
    for i, colour in enumerate([(200, 30, 30), (30, 40, 200), (30, 180, 40), (128, 128, 128)]):
        Image.new('RGB', (40, 40), colour).save(tmp_path / f'{i}.png')
    Image.new('RGB', (40, 40), (201, 30, 30)).save(tmp_path / 'almost_0.png')
    report = find_duplicates(tmp_path)
    assert [sorted(f.name for f in g.files) for g in report.groups] == [['0.png', 'almost_0.png']]


def test_a_list_of_files_with_labels_and_unreadable_files(tmp_path):
    a, b, bad = tmp_path / 'a.png', tmp_path / 'b.png', tmp_path / 'bad.png'
    Image.fromarray(_photo(1)).save(a)
    shutil.copy(a, b)
    bad.write_bytes(b'not an image')
    report = find_duplicates([a, b, bad], labels=['x', 'y', 'x'], splits=['train', 'train', 'train'])
    assert report.unreadable == [bad] and len(report.conflicting) == 1 and not report.leakage
    with pytest.raises(ValueError, match='one entry per file'):
        find_duplicates([a, b], labels=['x'])
    with pytest.raises(FileNotFoundError, match='no folder'):
        find_duplicates(tmp_path / 'missing')


def test_warn_duplicates_for_a_databunch_under_construction(tree):
    train = sorted((tree / 'train').rglob('*.png'))
    valid = sorted((tree / 'valid').rglob('*.*'))
    labels = lambda files: np.array([0 if f.parent.name == 'cat' else 1 for f in files])  # noqa: E731
    with pytest.warns(DuplicateWarning, match='2 group') as caught:
        report = warn_duplicates({'train': (train, labels(train)), 'valid': (valid, labels(valid))}, ['cat', 'dog'])
    assert 'find_duplicates' in str(caught[0].message) and 'train/cat' in str(caught[0].message)
    assert len(report.conflicting) == 1
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert not warn_duplicates({'train': (train[:3], None)})


def test_many_distinct_photos_give_no_false_alarm(tmp_path):
    for i in range(200):
        Image.fromarray(_photo(i, size=64)).save(tmp_path / f'{i}.jpg', quality=90)
    report = find_duplicates(tmp_path)   # (its speed is measured in the module docstring, not asserted here)
    assert not report.groups


def test_building_a_databunch_warns_about_identical_files(tree):
    from learner import ImageClassifierData, imagenet_stats, tfms_from_stats
    with pytest.warns(DuplicateWarning, match='cat_1_as_dog') as caught:
        ImageClassifierData.from_paths(tree, tfms=tfms_from_stats(imagenet_stats, 32), bs=4, num_workers=0)
    assert 'train/valid leakage' not in str(caught[0].message)   # bytes only by default: the re-encoded leak needs pixels
