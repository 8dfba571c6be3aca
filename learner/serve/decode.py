"""Uploaded bytes -> RGB uint8 (H, W, 3) no larger than the model needs, by the rules of
`learner.data.images.decode_opened`, for untrusted input.

Differences from `open_image`, all because the bytes come from anyone who can reach the server:
  * only the common photo and web formats are decoded (JPEG, PNG, GIF, BMP, TIFF, WebP, PPM); Pillow's other
    plugins (EPS, which would run Ghostscript, among them) are never tried;
  * what an image costs is counted before any pixel is decoded (`decoded_pixels`: the pixels the decoder must hold
    at once, after JPEG's reduced-scale decoding), and an image over `max_pixels` is refused, so a few kilobytes
    that would decode to gigabytes never do; a service also sums it over a request (`ServeConfig`);
  * the decoded image is shrunk at once to about the model's input size (`reduce_to`), so a request's memory is one
    full-size image at a time plus small ones;
  * any failure of the decoder, whatever Pillow raises, becomes an `ImageError` naming the upload and the reason,
    so a bad upload is a 422 answer and never a server error.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from ..data.images import ImageError, decode_opened, draft

__all__ = ['decode_image_bytes', 'decoded_pixels', 'UPLOAD_FORMATS', 'DEFAULT_MAX_PIXELS']

#: Pillow format names an upload may be in.
UPLOAD_FORMATS = ('JPEG', 'PNG', 'GIF', 'BMP', 'TIFF', 'WEBP', 'PPM')  # JPEG includes phones' MPO files

#: The largest image an upload may decode to by default: 64 megapixels (an 8000 x 8000 PNG, about 256 MB while it
#: decodes; a JPEG may be far larger, since it decodes at reduced scale).
DEFAULT_MAX_PIXELS = 64_000_000


@contextlib.contextmanager
def _opened(data: bytes, name: str) -> Iterator[Image.Image]:
    """The upload opened by Pillow (header read, no pixels), with every decoder failure named."""
    if not data:
        raise ImageError(f'{name}: empty upload (0 bytes); send the bytes of an image file')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)  # the size is judged below, not by Pillow
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
                yield img
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


def _cost(img: Image.Image, name: str, target_size: Optional[int], max_pixels: Optional[int]) -> int:
    """Pixels the decoder will hold for this opened image (after the JPEG draft), refused over `max_pixels`."""
    draft(img, target_size)
    width, height = img.size
    limit = int(DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    if limit and width * height > limit:
        raise ImageError(f'{name}: decodes to {width}x{height} pixels, more than the {limit} allowed; refused as a '
                         f'possible decompression bomb (send a smaller image)')
    return width * height


def decoded_pixels(data: bytes, name: str = 'upload', target_size: Optional[int] = None,
                   max_pixels: Optional[int] = None) -> int:
    """How many pixels decoding this upload will hold at once, read from its header alone (nothing is decoded).

    Raises:
        ImageError: empty, not an image in UPLOAD_FORMATS, an unreadable header, or over `max_pixels`.
    """
    with _opened(data, name) as img:
        return _cost(img, name, target_size, max_pixels)


def decode_image_bytes(data: bytes, name: str = 'upload', target_size: Optional[int] = None,
                       max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode one uploaded image to an RGB uint8 array (H, W, 3), EXIF orientation applied, shrunk to about
    `target_size`.

    Args:
        data: the file's bytes.
        name: how errors name the upload (its file name, or 'request body').
        target_size: the smallest side the model needs (pixels): a large JPEG decodes at 1/2, 1/4 or 1/8 scale and
            any other format is reduced by a whole factor right after decoding, the smaller side staying >=
            target_size. None decodes at full size.
        max_pixels: refuse images that would decode to more pixels than this (a decompression bomb: a few KB that
            would decode to gigabytes); None: DEFAULT_MAX_PIXELS, 0: no limit.

    Raises:
        ImageError: empty, not an image in UPLOAD_FORMATS, truncated or corrupt, or over `max_pixels`; the message
            names the upload and says why.
    """
    with _opened(data, name) as img:
        _cost(img, name, target_size, max_pixels)
        try:
            arr = decode_opened(img, target_size)  # as training decodes files
        except MemoryError as err:
            raise ImageError(f'{name}: too large to decode in memory; send a smaller image') from err
        except Exception as err:  # noqa: BLE001 - any decoder failure is the upload's, named
            raise ImageError(f'{name}: cannot decode ({type(err).__name__}: {err}); the file may be truncated or '
                             f'corrupt') from err
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise ImageError(f'{name}: decoded to shape {arr.shape} {arr.dtype}, expected (H, W, 3) uint8')
    return arr
