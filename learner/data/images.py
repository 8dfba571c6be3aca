"""Image decoding: any file Pillow reads becomes an RGB uint8 HxWx3 array, or an error naming the file."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ['ImageError', 'BadImageWarning', 'BadImage', 'IMAGE_EXTENSIONS', 'open_image', 'decode_opened', 'draft',
           'reduce_to',
           'open_image_or_placeholder', 'verify_images', 'check_headers', 'image_files']

PathLike = Union[str, os.PathLike]

#: Suffixes (lower case) treated as images when folders are listed.
IMAGE_EXTENSIONS = frozenset({'.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm',
                              '.pgm', '.pbm', '.jfif'})

#: Background that transparent pixels are composited onto (white, as a browser shows them).
BACKGROUND = (255, 255, 255)

# Draft (reduced-scale JPEG decoding) is used only when the file is at least this many times the target.
_DRAFT_MIN_RATIO = 2


class ImageError(ValueError):
    """An image file that cannot be decoded: the message names the file and the reason."""


class BadImageWarning(UserWarning):
    """A file whose pixel data broke after its header was checked: it was read partially, or replaced by a gray
    placeholder, so the epoch goes on. The message names the file."""


class BadImage(NamedTuple):
    """One file `verify_images` could not decode, with the reason."""
    path: Path
    reason: str


def image_files(folder: PathLike, recurse: bool = False) -> list[Path]:
    """Sorted image files (by suffix, any case) in `folder`, optionally in its sub-folders too."""
    folder = Path(folder)
    it = folder.rglob('*') if recurse else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha composited on BACKGROUND, 16-bit and float scaled to 8 bits."""
    if img.mode == 'RGB':
        return img
    if img.mode == 'P':
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    if img.mode in ('LA', 'La', 'RGBa', 'PA'):
        img = img.convert('RGBA')
    if img.mode == 'RGBA':
        background = Image.new('RGB', img.size, BACKGROUND)
        background.paste(img, mask=img.getchannel('A'))
        return background
    if img.mode.startswith('I') or img.mode == 'F':
        arr = np.asarray(img).astype(np.float64)
        # 16-bit data (I;16* or I holding 16-bit values) spans 0..65535; 8-bit-range data stays as it is.
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        arr = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, 'L').convert('RGB')
    return img.convert('RGB')   # L, 1, CMYK, YCbCr, LAB, HSV


def open_image(path: PathLike, target_size: int | None = None) -> np.ndarray:
    """Decode an image file to an RGB uint8 array of shape (H, W, 3), EXIF orientation applied.

    Args:
        path: the image file.
        target_size: the smallest side the caller needs (pixels). A JPEG at least twice that large is
            decoded at reduced scale (Pillow `draft`, 1/2, 1/4 or 1/8), which is several times faster;
            the result's smaller side stays >= target_size. None decodes at full size.

    Raises:
        ImageError: the file is missing, empty, truncated, not an image, or a decompression bomb
            (more than twice `PIL.Image.MAX_IMAGE_PIXELS` pixels).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            arr = decode_opened(img, target_size)
    except Image.DecompressionBombError as e:
        raise ImageError(f'{path}: refused as a possible decompression bomb ({e}). If the image is '
                         f'trusted, raise PIL.Image.MAX_IMAGE_PIXELS (now {Image.MAX_IMAGE_PIXELS}).') from e
    except FileNotFoundError as e:
        raise ImageError(f'{path}: no such file') from e
    except UnidentifiedImageError as e:
        size = path.stat().st_size if path.exists() else 0
        what = 'an empty file (0 bytes)' if size == 0 else 'not an image Pillow can read'
        raise ImageError(f'{path}: {what}; remove it or pass skip_bad=True to the DataBunch') from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f'{path}: cannot decode ({e}); the file may be truncated or corrupt; remove it '
                         f'or pass skip_bad=True to the DataBunch') from e
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageError(f'{path}: decoded to shape {arr.shape} {arr.dtype}, expected (H, W, 3) uint8')
    return arr


def draft(img: Image.Image, target_size: int | None) -> Image.Image:
    """Ask a JPEG for reduced-scale decoding (1/2, 1/4 or 1/8) when it is at least twice `target_size`; nothing is
    decoded yet, but `img.size` already says what will be. Rotated EXIF orientations swap sides, so a square is
    asked for: both sides stay >= target. Other formats are left as they are (see `reduce_to`)."""
    if target_size and img.format in ('JPEG', 'MPO') and min(img.size) >= _DRAFT_MIN_RATIO * target_size:
        img.draft(None, (int(target_size), int(target_size)))
    return img


#: Modes `Image.reduce` works on directly; others are converted first (P, 1, I;16 ...).
_REDUCIBLE = frozenset({'L', 'LA', 'La', 'I', 'F', 'RGB', 'RGBA', 'RGBa', 'RGBX', 'CMYK', 'YCbCr'})


def reduce_to(img: Image.Image, target_size: int | None) -> Image.Image:
    """Shrink a decoded image by the largest whole factor that keeps its smaller side >= `target_size`, averaging
    each k x k block (what JPEG draft does in the decoder, for every other format). Cheap, and it means nothing
    downstream ever holds or resizes more than about twice the size the model needs."""
    if not target_size:
        return img
    factor = min(img.size) // int(target_size)
    if factor < 2:
        return img
    if img.mode not in _REDUCIBLE:
        img = img.convert('RGBA' if img.mode in ('P', 'PA') and ('transparency' in img.info or img.mode == 'PA')
                          else 'L' if img.mode == '1' else 'I' if img.mode.startswith('I') else 'RGB')
    return img.reduce(factor)


def decode_opened(img: Image.Image, target_size: int | None = None) -> np.ndarray:
    """The pixels of an opened Pillow image as RGB uint8 (H, W, 3), no larger than needed: JPEG draft decoding and,
    for other formats, a whole-factor reduction (`reduce_to`) down to about `target_size`, then EXIF orientation and
    the conversion to RGB on the small image. What `open_image` (files) and the prediction service (uploads) share, so
    an image decodes the same in training and in serving. Pillow's own errors pass through."""
    draft(img, target_size)
    img.load()
    img = reduce_to(img, target_size)
    return np.array(_to_rgb(ImageOps.exif_transpose(img)))   # writable copy (torch.from_numpy needs one)


#: Gray value of the placeholder that stands in for an undecodable image mid-epoch.
PLACEHOLDER_GRAY = 128


def open_image_or_placeholder(path: PathLike, target_size: int | None = None) -> tuple[np.ndarray, str | None]:
    """`open_image` for the middle of an epoch, where an exception would throw the epoch's work away.

    A readable file decodes as usual (problem None). A file whose pixel data is truncated decodes partially (the
    missing part gray, Pillow's truncated mode); a file that cannot be decoded at all (header only, deleted or
    rewritten since the DataBunch checked it) becomes a gray `target_size` square. Either way the second value
    says what happened, naming the file, so the caller can warn.
    """
    try:
        return open_image(path, target_size), None
    except ImageError as first:
        reason = str(first).split(';')[0]  # '<path>: <what went wrong>', without the advice
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        arr = open_image(path, target_size)
        return arr, f'{reason}; read it partially (the missing part is gray)'
    except ImageError:
        side = max(int(target_size or 32), 1)
        arr = np.full((side, side, 3), PLACEHOLDER_GRAY, dtype=np.uint8)
        return arr, f'{reason}; used a gray placeholder in its place'
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def check_headers(files: Sequence[PathLike]) -> list[BadImage]:
    """The files whose header Pillow cannot read (empty, not an image, a decompression bomb), without decoding.

    Cheap (tens of microseconds a file), so a DataBunch runs it by default and refuses bad files before the first
    epoch; truncated pixel data is only found by a full decode (`verify_images`).
    """
    bad = []
    limit = Image.MAX_IMAGE_PIXELS
    for f in map(Path, files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', Image.DecompressionBombWarning)
                with Image.open(f) as img:
                    width, height = img.size
            if limit and width * height > 2 * limit:
                bad.append(BadImage(f, f'{f}: {width}x{height} pixels, refused as a possible decompression bomb '
                                       f'(raise PIL.Image.MAX_IMAGE_PIXELS if it is trusted)'))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            size = f.stat().st_size if f.exists() else -1
            what = 'no such file' if size < 0 else 'an empty file (0 bytes)' if size == 0 else \
                f'not an image Pillow can read ({type(e).__name__})'
            bad.append(BadImage(f, f'{f}: {what}'))
    return sorted(bad)


def verify_images(path: PathLike | Sequence[PathLike], recurse: bool = True,
                  target_size: int | None = 64) -> list[BadImage]:
    """List the image files under `path` that cannot be decoded, without raising.

    Every file is fully decoded (at reduced scale for large JPEGs, which still reads the whole stream,
    so truncation is caught).

    Args:
        path: a folder (its image files, by suffix) or a list of files.
        recurse: look into sub-folders too (folders only).
        target_size: decode size hint, see `open_image`; None decodes at full size.

    Returns:
        `BadImage(path, reason)` tuples, sorted by path; empty when all files are readable.

    Example:
        >>> for bad in verify_images('data/dogs/train'): print(bad.path, bad.reason)
    """
    if isinstance(path, (str, os.PathLike)):
        files = image_files(path, recurse=recurse)
    else:
        files = [Path(p) for p in path]
    bad = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        for f in files:
            try:
                open_image(f, target_size=target_size)
            except ImageError as e:
                bad.append(BadImage(f, str(e)))
    return sorted(bad)
