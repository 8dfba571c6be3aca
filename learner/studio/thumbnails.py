"""Small JPEG previews of stored images, for the page's galleries: a page of 48 thumbnails is a few hundred KB
where the photos themselves can be tens of MB.

A thumbnail is decoded the way training and prediction decode (the prediction service's `decode_image_bytes`: EXIF
orientation, JPEG reduced-scale decoding), so what the page shows is what the model saw. Stored files are
content-addressed and never change, so a thumbnail is cached by (sha256, size) and may be cached by the browser for
as long as it likes.
"""
from __future__ import annotations

import functools
import io
from pathlib import Path

from PIL import Image

from ..serve.decode import decode_image_bytes

__all__ = ['THUMBNAIL_SIZES', 'thumbnail_jpeg']

#: the sizes the page may ask for (a fixed few, so the cache holds at most a few entries per image)
THUMBNAIL_SIZES = (96, 160, 320)
_CACHED = 2048          # about 10 KB each at 160 px: ~20 MB at most


@functools.lru_cache(maxsize=_CACHED)
def _cached(path: str, sha: str, size: int) -> bytes:
    data = Path(path).read_bytes()
    pixels = decode_image_bytes(data, f'image {sha[:12]}', target_size=size)   # (H, W, 3) uint8, smaller side >= size
    image = Image.fromarray(pixels)
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format='JPEG', quality=82)
    return out.getvalue()


def thumbnail_jpeg(path: Path, sha: str, size: int) -> bytes:
    """JPEG bytes of the stored image at `path` (named by `sha`), fitted in a `size` x `size` box.

    Args:
        path: the content-addressed file (see blobs.py).
        sha: its sha256 (the cache key).
        size: one of THUMBNAIL_SIZES (pixels); ValueError otherwise.
    """
    if size not in THUMBNAIL_SIZES:
        raise ValueError(f'thumbnail size must be one of {THUMBNAIL_SIZES}, got {size}')
    return _cached(str(path), sha, int(size))
