"""Video decoding on real files: the frames asked for and no others, seeking, resizing in the decoder, rotation,
variable frame rates, frame folders, and every kind of bad file named in a clear error."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from learner.data.video_files import verify_videos, video_files
from learner.data.video_io import VideoError, frame_files, probe_video, read_frames

from _video_helpers import frame_numbers, need_av, numbered_frames, write_audio_only, write_video


@pytest.mark.parametrize('suffix', ['.mp4', '.webm', '.avi'])
def test_the_frames_asked_for_in_their_order_with_repeats(tmp_path, suffix):
    # .avi: H.264 with B-frames, whose AVI time stamps are in decode order (frames were doubled and skipped)
    path = write_video(tmp_path / f'v{suffix}', numbered_frames(30))
    info = probe_video(path)
    assert (info.n_frames, info.fps, info.width, info.height, info.variable_rate) == (30, 25.0, 64, 48, False)
    assert info.estimated == (suffix == '.webm')       # WebM headers hold a duration, not a frame count
    frames, problem = read_frames(info, list(range(30)))
    assert problem is None and frame_numbers(frames) == list(range(30))
    wanted = [0, 5, 29, 13, 2, 2, 28]
    frames, problem = read_frames(info, wanted)
    assert problem is None and frames.shape == (7, 48, 64, 3) and frames.dtype == np.uint8
    assert frame_numbers(frames) == wanted


def test_a_clip_far_into_a_long_video_seeks_instead_of_decoding_everything(tmp_path):
    path = write_video(tmp_path / 'long.mp4', numbered_frames(300, 32, 32), gop=12)
    info = probe_video(path)
    counts = {}
    frames, _ = read_frames(info, list(range(280, 296)), counts=counts)
    assert frame_numbers(frames) == [i % 32 for i in range(280, 296)]   # 8 * i wraps at 256: i mod 32
    assert counts['seeks'] == 1 and counts['decoded'] <= 16 + 12 + 1     # the clip, and at most a keyframe interval
    counts = {}
    frames, _ = read_frames(info, [10, 11, 150, 151, 290], counts=counts)  # far apart: a seek for each group
    assert frame_numbers(frames) == [10, 11, 150 % 32, 151 % 32, 290 % 32]
    assert counts['seeks'] == 3 and counts['decoded'] < 60


def test_frames_are_resized_by_the_decoder_and_never_enlarged(tmp_path):
    info = probe_video(write_video(tmp_path / 'v.mp4', numbered_frames(10, 48, 64)))
    small, _ = read_frames(info, [3, 4], size=24)
    assert small.shape == (2, 24, 32, 3)                                 # smaller side 24, aspect kept
    assert frame_numbers(small) == [3, 4] and (small[:, :4, :4] > 200).all()   # the white corner survives
    same, _ = read_frames(info, [3], size=100)
    assert same.shape == (1, 48, 64, 3)


def test_a_rotated_phone_video_comes_out_upright(tmp_path):
    upright = numbered_frames(6, 64, 48)                 # portrait, white block top-left
    stored = np.ascontiguousarray(np.rot90(upright, -1, axes=(1, 2)))   # stored sideways, as phones do
    info = probe_video(write_video(tmp_path / 'phone.mp4', stored, rotation=90))
    frames, problem = read_frames(info, [0, 3], size=32)
    assert problem is None and frames.shape == (2, 42, 32, 3)           # upright: portrait, smaller side 32
    assert (frames[:, :8, :6] > 200).all() and (frames[:, -8:, -6:, 1:] < 60).all()
    assert frame_numbers(frames) == [0, 3]


def test_a_variable_frame_rate_is_detected_and_sampled_evenly_in_time(tmp_path):
    times = np.cumsum([0] + [80 if i % 2 else 40 for i in range(29)])   # 40 and 80 ms in turn: 16.7 fps on average
    info = probe_video(write_video(tmp_path / 'vfr.mp4', numbered_frames(30), frame_ms=times.tolist()))
    assert info.variable_rate and info.n_frames == 30
    assert info.fps == pytest.approx(1000 / 60, rel=0.05)
    frames, problem = read_frames(info, [0, 10, 20])
    assert problem is None
    # frame i is the one shown at i / fps (accepted up to half a frame early, so rounding never picks the one before)
    shown = [int(np.searchsorted(times, 1000 * (i + 0.5) / info.fps, side='right')) - 1 for i in (0, 10, 20)]
    assert frame_numbers(frames) == shown


def test_frame_folders_read_in_natural_order(tmp_path):
    folder = tmp_path / 'video1'
    folder.mkdir()
    for i, frame in enumerate(numbered_frames(12)):
        Image.fromarray(frame).save(folder / f'frame_{i + 1}.png')      # frame_2 before frame_10
    assert [f.name for f in frame_files(folder)][:3] == ['frame_1.png', 'frame_2.png', 'frame_3.png']
    info = probe_video(folder)
    assert info.is_folder and info.n_frames == 12 and (info.width, info.height) == (64, 48)
    frames, problem = read_frames(info, [1, 9, 11], size=24)
    assert problem is None and frames.shape == (3, 24, 32, 3) and frame_numbers(frames) == [1, 9, 11]
    assert video_files(tmp_path) == [folder]


def _bad_files(tmp_path):
    need_av()
    (tmp_path / 'empty.mp4').write_bytes(b'')
    (tmp_path / 'notes.mp4').write_text('not a video at all\n' * 20)
    write_audio_only(tmp_path / 'audio.mp4')
    whole = write_video(tmp_path / 'whole.mp4', numbered_frames(40)).read_bytes()
    (tmp_path / 'cut.mp4').write_bytes(whole[:len(whole) // 2])        # the index is at the end: gone
    return {'empty.mp4': 'empty file', 'notes.mp4': 'not a video file', 'audio.mp4': 'no video stream',
            'cut.mp4': 'not a video file'}


def test_every_unusable_file_is_a_video_error_naming_it_and_why(tmp_path):
    for name, why in _bad_files(tmp_path).items():
        with pytest.raises(VideoError, match=why) as info:
            probe_video(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(VideoError, match='no such file'):
        probe_video(tmp_path / 'missing.mp4')


@pytest.mark.parametrize('suffix', ['.mkv', '.mp4'])
def test_a_video_stream_without_frames_is_refused(tmp_path, suffix):
    av = need_av()
    with av.open(str(tmp_path / f'zero{suffix}'), 'w') as container:
        stream = container.add_stream('libx264', rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, 'yuv420p'
        container.start_encoding()                                       # a header, then no frame at all
    with pytest.raises(VideoError, match='zero frames') as info:
        probe_video(tmp_path / f'zero{suffix}')
    assert f'zero{suffix}' in str(info.value)


def test_a_truncated_stream_is_reported_not_raised_and_verify_lists_it(tmp_path):
    whole = write_video(tmp_path / 'whole.mp4', numbered_frames(60, 32, 32), faststart=True).read_bytes()
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(whole[:len(whole) * 2 // 3])                         # index first, last frames' data gone
    info = probe_video(cut)                                              # the header is fine
    assert info.n_frames == 60
    frames, problem = read_frames(info, [0, 1, 58, 59])
    assert frames.shape == (4, 32, 32, 3) and problem is not None and 'truncated' in problem
    assert frame_numbers(frames)[:2] == [0, 1]                            # what decoded is kept
    bad = verify_videos(tmp_path)
    assert [b.path.name for b in bad] == ['cut.mp4']


def test_an_audio_track_longer_than_the_video_is_not_read_as_truncation(tmp_path):
    """A WebM's header has no frame count; its container duration covers the audio too. 1 s of video under 3 s of
    audio is 25 frames, all there: no 'truncated' problem, no frozen clip."""
    av = need_av()
    path = tmp_path / 'talk.webm'
    with av.open(str(path), 'w') as container:
        video = container.add_stream('libvpx-vp9', rate=25, options={'deadline': 'realtime', 'cpu-used': '8'})
        video.width, video.height, video.pix_fmt = 64, 48, 'yuv420p'
        audio = container.add_stream('libopus', rate=48000)
        for array in numbered_frames(25):
            for packet in video.encode(av.VideoFrame.from_ndarray(array, format='rgb24')):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for _ in range(150):                        # 3 s of silence in 20 ms frames
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format='fltp', layout='mono')
            frame.sample_rate = 48000
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    info = probe_video(path)
    assert info.n_frames == 25
    frames, problem = read_frames(info, [0, 12, 24])
    assert problem is None and frame_numbers(frames) == [0, 12, 24]
