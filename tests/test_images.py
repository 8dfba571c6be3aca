"""open_image / verify_images: every Pillow mode to RGB uint8, EXIF, draft decoding, and bad files named."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from learner.data import ImageError, image_files, open_image, verify_images


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_messy_folder_every_format_decodes(make_data, tmp_path):
    root = Path(make_data.folder(str(tmp_path / 'messy'), size=32, per_class=8, valid_per_class=2, test=4,
                                 messy=True))
    files = image_files(root, recurse=True)
    modes, suffixes = set(), set()
    for f in files:
        with Image.open(f) as im:
            modes.add(im.mode)
        suffixes.add(f.suffix)
        arr = open_image(f)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, (f, arr.shape)
    # the messy mix really contains these formats, so the loop above covered each of them
    assert {'L', 'RGBA', 'P', 'CMYK', 'RGB'} <= modes, modes
    assert '.JPG' in suffixes and '.png' in suffixes
    assert verify_images(root) == []


def test_rgba_is_composited_on_white_not_dropped(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255                     # red ...
    rgba[:2, :, 3] = 0                     # ... transparent in the top half
    rgba[2:, :, 3] = 255
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    arr = open_image(tmp_path / 'a.png')
    assert (arr[:2] == 255).all()                          # white background shows through
    assert (arr[2:] == [255, 0, 0]).all()


def test_la_and_palette_with_transparency(tmp_path):
    la = np.zeros((2, 2, 2), dtype=np.uint8)
    la[..., 0] = 10
    la[0, :, 1] = 0
    la[1, :, 1] = 255
    Image.fromarray(la, 'LA').save(tmp_path / 'la.png')
    arr = open_image(tmp_path / 'la.png')
    assert (arr[0] == 255).all() and (arr[1] == 10).all()
    pal = Image.new('P', (2, 1))
    pal.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.info['transparency'] = 0
    pal.save(tmp_path / 'p.png', transparency=0)
    arr = open_image(tmp_path / 'p.png')
    assert arr[0, 0].tolist() == [255, 255, 255] and arr[0, 1].tolist() == [0, 255, 0]
    pal2 = Image.new('P', (1, 1))
    pal2.putpalette([7, 8, 9] + [0] * 765)
    pal2.save(tmp_path / 'p2.png')
    assert open_image(tmp_path / 'p2.png')[0, 0].tolist() == [7, 8, 9]


def test_16bit_png_and_grayscale_jpeg(tmp_path):
    arr16 = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / 'g16.png')
    with Image.open(tmp_path / 'g16.png') as im:
        assert im.mode.startswith('I')
    out = open_image(tmp_path / 'g16.png')
    assert out[..., 0].tolist() == [[0, 255], [100, 200]] and (out[..., 0] == out[..., 2]).all()
    Image.fromarray(np.full((8, 8), 90, np.uint8), 'L').save(tmp_path / 'g.jpg')
    out = open_image(tmp_path / 'g.jpg')
    assert out.shape == (8, 8, 3) and abs(int(out[4, 4, 1]) - 90) <= 2


def test_cmyk_jpeg_colours(tmp_path):
    Image.new('RGB', (8, 8), (200, 30, 30)).convert('CMYK').save(tmp_path / 'c.jpg', quality=95)
    out = open_image(tmp_path / 'c.jpg')
    assert np.abs(out[4, 4].astype(int) - [200, 30, 30]).max() < 12, out[4, 4]


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(_rgb(10, 20))                    # landscape on disk
    exif = Image.Exif()
    exif[0x0112] = 6                                       # "rotate 90 CW to display"
    img.save(tmp_path / 'e.jpg', exif=exif)
    assert open_image(tmp_path / 'e.jpg').shape == (20, 10, 3)


def test_jpeg_draft_decodes_large_files_at_reduced_scale(tmp_path):
    Image.fromarray(_rgb(800, 1200)).save(tmp_path / 'big.jpg', quality=80)
    full = open_image(tmp_path / 'big.jpg')
    small = open_image(tmp_path / 'big.jpg', target_size=100)
    assert full.shape == (800, 1200, 3)
    assert min(small.shape[:2]) >= 100 and small.shape[0] <= 200, small.shape   # 1/4 or 1/8 scale
    assert open_image(tmp_path / 'big.jpg', target_size=500).shape == (800, 1200, 3)   # not 2x larger


@pytest.mark.parametrize('content, words', [(b'', 'empty'), (b'this is not an image', 'not an image')])
def test_unreadable_file_error_names_it(tmp_path, content, words):
    f = tmp_path / 'bad.jpg'
    f.write_bytes(content)
    with pytest.raises(ImageError, match=words) as e:
        open_image(f)
    assert str(f) in str(e.value)


def test_truncated_and_missing_files(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, 'JPEG')
    (tmp_path / 'trunc.jpg').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match='trunc.jpg'):
        open_image(tmp_path / 'trunc.jpg')
    with pytest.raises(ImageError, match='no such file'):
        open_image(tmp_path / 'nope.png')


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    Image.fromarray(_rgb(40, 40)).save(tmp_path / 'bomb.png')
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)    # 1600 px > 2 * 100: Pillow's bomb error
    with pytest.raises(ImageError, match='decompression bomb') as e:
        open_image(tmp_path / 'bomb.png')
    assert 'bomb.png' in str(e.value) and 'MAX_IMAGE_PIXELS' in str(e.value)


def test_verify_images_lists_bad_files_without_raising(tmp_path):
    (tmp_path / 'sub').mkdir()
    Image.fromarray(_rgb()).save(tmp_path / 'good.png')
    Image.fromarray(_rgb()).save(tmp_path / 'sub' / 'good.jpg')
    (tmp_path / 'zero.jpg').write_bytes(b'')
    (tmp_path / 'sub' / 'text.png').write_text('hello')
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, 'JPEG')
    (tmp_path / 'trunc.JPG').write_bytes(buf.getvalue()[:300])
    (tmp_path / 'notes.txt').write_text('not considered: not an image suffix')
    bad = verify_images(tmp_path)
    assert sorted(b.path.name for b in bad) == ['text.png', 'trunc.JPG', 'zero.jpg']
    assert all(str(b.path) in b.reason for b in bad)
    assert verify_images(tmp_path, recurse=False) == [b for b in bad if b.path.parent == tmp_path]
