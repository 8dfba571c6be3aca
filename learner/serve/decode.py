"""Uploaded bytes -> RGB uint8 (H, W, 3), by the rules of `learner.data.images.open_image`, for untrusted input.

Differences from `open_image`, all because the bytes come from anyone who can reach the server:
  * only the common photo and web formats are decoded (JPEG, PNG, GIF, BMP, TIFF, WebP, PPM); Pillow's other
    plugins (EPS, which would run Ghostscript, among them) are never tried;
  * an image over `max_pixels` (default `PIL.Image.MAX_IMAGE_PIXELS`, about 89 megapixels) is refused before any
    pixel is decoded; `open_image` only refuses twice that, for files the user chose;
  * any failure of the decoder, whatever Pillow raises, becomes an `ImageError` naming the upload and the reason,
    so a bad upload is a 422 answer and never a server error.
"""
from __future__ import annotations

import io
from typing import Optional

import numpy as np
from PIL import Image

from ..data.images import ImageError, decode_opened

__all__ = ['decode_image_bytes', 'UPLOAD_FORMATS']

#: Pillow format names an upload may be in.
UPLOAD_FORMATS = ('JPEG', 'PNG', 'GIF', 'BMP', 'TIFF', 'WEBP', 'PPM')  # JPEG includes phones' MPO files


def decode_image_bytes(data: bytes, name: str = 'upload', target_size: Optional[int] = None,
                       max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode one uploaded image to an RGB uint8 array (H, W, 3), EXIF orientation applied.

    Args:
        data: the file's bytes.
        name: how errors name the upload (its file name, or 'request body').
        target_size: the smallest side the model needs (pixels): a large JPEG is decoded at 1/2, 1/4 or 1/8 scale,
            its smaller side staying >= target_size. None decodes at full size.
        max_pixels: refuse images with more pixels than this (a decompression bomb: a few KB that would decode to
            gigabytes). None: `PIL.Image.MAX_IMAGE_PIXELS`.

    Raises:
        ImageError: empty, not an image in UPLOAD_FORMATS, truncated or corrupt, or over `max_pixels`; the message
            names the upload and says why.
    """
    if not data:
        raise ImageError(f'{name}: empty upload (0 bytes); send the bytes of an image file')
    limit = int(max_pixels if max_pixels is not None else (Image.MAX_IMAGE_PIXELS or 0))
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
            width, height = img.size
            if limit and width * height > limit:
                raise ImageError(f'{name}: {width}x{height} pixels is more than the {limit} allowed; refused as a '
                                 f'possible decompression bomb (send a smaller image)')
            arr = decode_opened(img, target_size)  # as training decodes files
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f'{name}: refused as a possible decompression bomb ({err}); send a smaller image') from err
    except Image.UnidentifiedImageError as err:
        raise ImageError(f'{name}: not an image ({len(data)} bytes that are none of {", ".join(UPLOAD_FORMATS)}); '
                         f'send a JPEG, PNG or another of those formats') from err
    except MemoryError as err:
        raise ImageError(f'{name}: too large to decode in memory; send a smaller image') from err
    except Exception as err:  # Pillow's plugins raise OSError, SyntaxError, ValueError, struct.error, IndexError...
        raise ImageError(f'{name}: cannot decode ({type(err).__name__}: {err}); the file may be truncated or '
                         f'corrupt') from err
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise ImageError(f'{name}: decoded to shape {arr.shape} {arr.dtype}, expected (H, W, 3) uint8')
    return arr
