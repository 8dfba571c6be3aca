"""Videos in the prediction service: a video export answers short video uploads (its clips averaged); an image
export answers a video upload with a 422 that says it classifies images.

Uploads are untrusted, so only three container families are ever opened, recognised by their first bytes and
handed to FFmpeg with that demuxer named (FFmpeg's other demuxers, playlists among them, which could make it open
other files or URLs, are never tried): MP4/MOV (`ftyp`), Matroska/WebM (EBML), AVI (RIFF AVI). Frames larger than
`max_pixels` are refused before any is decoded, and only the frames of the clips are decoded (`read_frames` seeks),
so a long upload costs no more than a short one; the body size limit (`--max-upload-mb`) applies as to images.
"""
from __future__ import annotations

import io
import re
from typing import Any, List, Optional, Tuple

import numpy as np
from fastapi import HTTPException

from ..data.video_io import VideoError
from .app import PredictionService, ServeConfig
from .info import model_info

__all__ = ['video_container', 'VideoPredictionService', 'ImagePredictionService', 'service_for', 'UPLOAD_DEMUXERS']

#: container family -> the FFmpeg demuxer named when opening an upload of it
UPLOAD_DEMUXERS = {'MP4': 'mov,mp4,m4a,3gp,3g2,mj2', 'WebM/Matroska': 'matroska,webm', 'AVI': 'avi'}


def video_container(data: bytes) -> Optional[str]:
    """'MP4', 'WebM/Matroska' or 'AVI' when the bytes start like one (ISO BMFF `ftyp` box, EBML header, RIFF AVI),
    else None."""
    if len(data) >= 12 and data[4:8] == b'ftyp':
        return 'MP4'
    if data[:4] == b'\x1a\x45\xdf\xa3':
        return 'WebM/Matroska'
    if len(data) >= 12 and data[:4] == b'RIFF' and data[8:12] == b'AVI ':
        return 'AVI'
    return None


#: the advice training messages end with, which means nothing to a client of the service
_TRAINING_ADVICE = re.compile(r'[;,.]? *(remove it or )?pass skip_bad=True[^;]*')


def _is_image(data: bytes) -> bool:
    """Whether Pillow recognises the bytes' header as an image (nothing is decoded)."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except Exception:  # noqa: BLE001 - any failure means: not an image Pillow knows
        return False


class ImagePredictionService(PredictionService):
    """The image service, telling a video upload apart from a broken image."""

    def decode_all(self, parts: List[Tuple[str, bytes]]) -> List[np.ndarray]:
        videos = [(name, video_container(data)) for name, data in parts if video_container(data)]
        if videos:
            shown = ', '.join(f'{name} ({kind})' for name, kind in videos)
            raise HTTPException(422, f'this model classifies images ({self.meta.get("arch")}, {self.sz} px) and '
                                     f'{shown} is a video: send an image (JPEG, PNG, ...), or serve a video '
                                     f'model (an export of a learner trained on VideoClassifierData)')
        return super().decode_all(parts)


class VideoPredictionService(PredictionService):
    """A `VideoInferenceLearner` behind the batcher: each upload is one video, answered with the mean of its
    clips' probabilities."""

    def __init__(self, inference: Any, config: ServeConfig):
        super().__init__(inference, config)
        self.info = {**model_info(self.meta), 'input': 'video', 'video': dict(self.meta['video'])}

    def decode_all(self, parts: List[Tuple[str, bytes]]) -> List[Any]:
        """Each part's clips at the model's input size, uint8 (K, 3, T, sz, sz), decoded in a decode thread; one 422
        naming every bad part; 413 when the request's frames add up to more than `max_request_pixels`."""
        prepared, errors, total = [], [], 0
        for name, data in parts:
            kind = video_container(data)
            if kind is None:
                what = ('an empty upload' if not data else 'an image' if _is_image(data) else
                        f'{len(data)} bytes that are not a video')
                errors.append(f'{name} is {what}; this model classifies videos: send an MP4, WebM/MKV or AVI file'
                              + (', or serve an image model' if what == 'an image' else ''))
                continue
            try:
                clips = self.inference.decode_clips(data, name=name, formats=UPLOAD_DEMUXERS[kind],
                                                    max_pixels=self.config.max_pixels)
            except VideoError as err:
                errors.append(_TRAINING_ADVICE.sub('', str(err)))   # a client cannot pass skip_bad
                continue
            total += clips.size // 3
            if total > self.config.max_request_pixels:
                raise HTTPException(413, f'the videos of this request decode to more than the '
                                         f'{self.config.max_request_pixels / 1e6:.0f} megapixels allowed in one '
                                         f'request; send fewer videos per request')
            prepared.append(self.inference.prepare(clips))
        if errors:
            raise HTTPException(422, '; '.join(errors))
        return prepared


def service_for(inference: Any, config: ServeConfig) -> PredictionService:
    """The service for an export: videos for a video learner, images (telling videos apart) otherwise."""
    if getattr(inference, 'meta', {}).get('video'):
        return VideoPredictionService(inference, config)
    return ImagePredictionService(inference, config)
