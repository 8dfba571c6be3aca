"""Adding images to a project: check each file decodes, store its bytes once, and report duplicates as Custom Vision
does ("the system detects duplicate images").

Per file the report says one of:
    created    stored now (with `near_duplicates`: images already in the project with near-identical pixels, by
               `find_duplicates`' hash, each marked `conflicting` when it carries other tags than this upload);
    duplicate  the same bytes are already in the project: stored once, `duplicate_of` names that image (its tags are
               kept; an untagged one gets this upload's tags) and `conflicting` says whether the tags differ;
    error      not an image, truncated, empty, a decompression bomb, over the per-request pixel budget: the reason.

Each file is its own transaction, written after its bytes are durable (see blobs.py), so an interrupted upload keeps
every file reported before the interruption and nothing half-written.
"""
from __future__ import annotations

import dataclasses
import io
import time
from typing import List, Optional, Sequence

import numpy as np
import sqlalchemy as sa
from PIL import Image

from ..data.duplicates import near_matches, pixel_signature
from ..data.images import ImageError
from ..serve.decode import DEFAULT_MAX_PIXELS, decode_image_bytes, decoded_pixels
from .blobs import BlobStore, sha256_hex
from .catalog import get_project, image_tag_names, resolve_tags
from .store import Store, image_tags, images

__all__ = ['UploadLimits', 'Ingestor', 'to_signed64', 'from_signed64']

MB = 1024 * 1024


@dataclasses.dataclass
class UploadLimits:
    """What one upload request may hold.

    Args:
        max_upload_bytes: the largest request body (default 200 MB: many photos at once); larger ones get 413.
        max_files: the most files in one request (default 256).
        max_image_pixels: refuse an image that would decode to more pixels than this as a possible decompression
            bomb (default: the prediction service's, 64 M; JPEGs count after their reduced-scale decoding).
        max_request_pixels: the most pixels all images of one request may decode to (default 1,000 M); files past it
            are refused with the reason (send them in another request): the good ones before them are kept.
    """
    max_upload_bytes: int = 200 * MB
    max_files: int = 256
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_request_pixels: int = 1_000_000_000


def to_signed64(value: int) -> int:
    """An unsigned 64-bit hash as the signed int64 a BIGINT column holds."""
    return value - (1 << 64) if value >= 1 << 63 else value


def from_signed64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


class Ingestor:
    """Adds files to one project under fixed tags; keeps the project's pixel signatures for near-duplicate checks.

    Args:
        store, blobs: the studio's database and file store.
        project_id: the project.
        tag_names / tag_ids: the tags every added image gets (must exist: NotFound names the missing ones).
        source: 'upload', 'import' or 'prediction' (shown with the image).
        limits: UploadLimits.
        check_near: compare each image with the project's for near-duplicates (False for prediction images: they
            are stored to be tagged later, and the comparison reads every signature of the project).
    """

    def __init__(self, store: Store, blobs: BlobStore, project_id: int, tag_names: Sequence[str] = (),
                 tag_ids: Sequence[int] = (), source: str = 'upload', limits: Optional[UploadLimits] = None,
                 check_near: bool = True):
        self.store, self.blobs, self.source = store, blobs, source
        self.limits = limits or UploadLimits()
        with store.read() as conn:
            self.project = get_project(conn, project_id)
            self.tags = resolve_tags(conn, project_id, tag_names, tag_ids)
            rows = conn.execute(sa.select(images.c.id, images.c.dhash, images.c.thumb).where(
                images.c.project_id == project_id, images.c.dhash.is_not(None))).all() if check_near else []
        self.check_near = check_near
        if not self.project['multi_label'] and len(self.tags) > 1:
            raise_invalid(self.project, len(self.tags))
        self.tag_names = sorted(t['name'] for t in self.tags)
        self._ids = [r.id for r in rows]
        self._hashes = [from_signed64(r.dhash) for r in rows]
        self._thumbs = [np.frombuffer(r.thumb, dtype=np.uint8).reshape(12, 12, 3) for r in rows]
        self.pixels_used = 0

    def add(self, name: str, data: bytes, size: Optional[tuple] = None) -> dict:
        """Add one file; returns its report (see the module docstring). Never raises for a bad file.

        Args:
            name: the file name the client gave (shown, never used as a path).
            data: its bytes.
            size: (width, height) when the caller has already decoded it within the limits (no second check).
        """
        report = {'filename': name}
        try:
            width, height = size if size is not None else self._check(name, data)
        except ImageError as err:
            return {**report, 'status': 'error', 'error': str(err)}
        sha = sha256_hex(data)
        duplicate = self._same_bytes(sha)
        if duplicate is not None:
            return {**report, **duplicate}
        self.blobs.put(data)                               # durable before the row that names it commits
        signature = pixel_signature(io.BytesIO(data))
        near = self._near(signature)
        try:
            with self.store.write() as conn:
                image_id = conn.execute(sa.insert(images).values(
                    project_id=self.project['id'], sha256=sha, width=width, height=height, source=self.source,
                    original_name=str(name)[:500], created_at=time.time(),
                    dhash=None if signature is None else to_signed64(signature[0]),
                    thumb=None if signature is None else signature[1].tobytes())).inserted_primary_key[0]
                if self.tags:
                    conn.execute(sa.insert(image_tags), [{'image_id': image_id, 'tag_id': t['id']} for t in self.tags])
                near_tags = image_tag_names(conn, [i for i in near])
        except sa.exc.IntegrityError:                      # the same bytes committed by a concurrent request
            duplicate = self._same_bytes(sha)
            if duplicate is None:
                raise
            return {**report, **duplicate}
        if signature is not None and self.check_near:
            self._ids.append(image_id)
            self._hashes.append(signature[0])
            self._thumbs.append(signature[1])
        near_report = [{'image_id': i, 'tags': near_tags.get(i, []),
                        'conflicting': self._conflicting(near_tags.get(i, []))} for i in near]
        return {**report, 'status': 'created', 'image_id': image_id, 'sha256': sha, 'tags': self.tag_names,
                'near_duplicates': near_report}

    def _check(self, name: str, data: bytes) -> tuple:
        """(width, height) of an image that decodes within the limits; ImageError otherwise. What it will cost is
        read from its header first (`decoded_pixels`, as the prediction service does), so an image that would take
        the request over its pixel budget is refused before a pixel is decoded."""
        limits, size = self.limits, self.project['size']
        cost = decoded_pixels(data, name, size, limits.max_image_pixels)
        if self.pixels_used + cost > limits.max_request_pixels:
            raise ImageError(f'{name}: this request already decoded {self.pixels_used} pixels and this image adds '
                             f'{cost}, over the {limits.max_request_pixels} allowed per request; '
                             f'send it in another request')
        self.pixels_used += cost
        decode_image_bytes(data, name, target_size=size, max_pixels=limits.max_image_pixels)  # truncated, corrupt
        with Image.open(io.BytesIO(data)) as img:
            return img.size

    def _same_bytes(self, sha: str) -> Optional[dict]:
        with self.store.write() as conn:
            row = conn.execute(sa.select(images.c.id).where(images.c.project_id == self.project['id'],
                                                            images.c.sha256 == sha)).first()
            if row is None:
                return None
            existing = image_tag_names(conn, [row.id]).get(row.id, [])
            tagged_now = not existing and bool(self.tags)
            if tagged_now:
                conn.execute(sa.insert(image_tags), [{'image_id': row.id, 'tag_id': t['id']} for t in self.tags])
        return {'status': 'duplicate', 'image_id': row.id, 'duplicate_of': row.id, 'sha256': sha,
                'tags': self.tag_names if tagged_now else existing, 'tagged_now': tagged_now,
                'conflicting': not tagged_now and self._conflicting(existing)}

    def _near(self, signature: Optional[tuple]) -> List[int]:
        if signature is None or not self._ids or not self.check_near:
            return []
        hits = near_matches(signature[0], signature[1], np.array(self._hashes, dtype=np.uint64),
                            np.stack(self._thumbs))
        return [self._ids[i] for i in hits]

    def _conflicting(self, other_tags: Sequence[str]) -> bool:
        """Two copies under different tags: one of the labels is wrong."""
        return bool(other_tags) and bool(self.tag_names) and sorted(other_tags) != self.tag_names


def raise_invalid(project: dict, n_tags: int) -> None:
    from .errors import Invalid
    raise Invalid(f'project {project["name"]!r} is single-label: upload under one tag, not {n_tags}')
