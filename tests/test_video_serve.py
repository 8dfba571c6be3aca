"""A video learner exported, loaded and served: `learner serve` answers a short video upload with the mean of its
clips' probabilities, refuses what is not a video by name, and an image export says it is for images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip('fastapi', reason='the serve extra is not installed: pip install -e ".[serve]"')
from fastapi.testclient import TestClient  # noqa: E402

from _serve_helpers import png_bytes, color_image, tiny_export  # noqa: E402
from _video_helpers import numbered_frames, tiny_motion, write_video  # noqa: E402
from learner import ConvLearner, VideoClassifierData, kinetics_stats, load_learner, r3d_18, tfms_from_stats  # noqa: E402
from learner.serve import create_app  # noqa: E402
from learner.video_inference import VideoInferenceLearner  # noqa: E402


@pytest.fixture(scope='module')
def video_export(tmp_path_factory):
    root = tiny_motion(tmp_path_factory.mktemp('video_serve'), n_train=2, n_valid=2, n_frames=12)
    data = VideoClassifierData.from_paths(root, tfms=tfms_from_stats(kinetics_stats, 16), bs=4, frames_per_clip=4,
                                          stride=2, clips_per_video=3, num_workers=0)
    torch.manual_seed(0)
    learn = ConvLearner.pretrained(r3d_18, data, pretrained=False, progress=False)
    learn.fit(1e-2, 1)
    return learn, learn.export(root / 'video.pth'), root


def test_the_export_predicts_videos_as_the_learner_did(video_export):
    learn, path, root = video_export
    inference = load_learner(path)
    assert isinstance(inference, VideoInferenceLearner)
    assert inference.meta['video'] == {'frames_per_clip': 4, 'stride': 2, 'clips_per_video': 3, 'frames_body': False}
    probs, _ = learn.get_preds('valid')
    files = [root / f for f in learn.data.val_ds.fnames]
    assert np.allclose(inference.predict_probs(files), probs, atol=1e-5)      # the same clips, averaged the same
    frames = np.stack([f for f in numbered_frames(12, 32, 32)])
    name, p = inference.predict_video(frames)                                  # decoded frames work too
    assert name in inference.classes and p.shape == (4,)
    with pytest.raises(TypeError, match='classifies videos'):
        inference.predict_image(frames[0])


def test_learner_predict_prints_the_top_classes_of_a_video(video_export, capsys):
    from learner.cli import main
    learn, path, root = video_export
    video = root / learn.data.val_ds.fnames[0]
    assert main(['predict', str(path), str(video), '--top', '2']) == 0
    line = capsys.readouterr().out.strip()
    best = load_learner(path).predict_video(video)[0]
    assert line.startswith(f'{video}: {best} ') and line.count(',') == 1
    photo = root / 'photo.png'
    photo.write_bytes(png_bytes(color_image('red', 1)))
    with pytest.raises(SystemExit, match='photo.png is an image, and .* classifies videos'):
        main(['predict', str(path), str(photo)])


def test_learner_predict_tells_an_image_model_it_was_given_a_video(tmp_path_factory, tmp_path):
    from learner.cli import main
    video = write_video(tmp_path / 'clip.mp4', numbered_frames(10, 32, 32))
    with pytest.raises(SystemExit, match='clip.mp4 is a video, and .* classifies images'):
        main(['predict', str(tiny_export(tmp_path_factory)), str(video)])


def test_serve_answers_a_video_upload_with_the_clip_average(video_export):
    learn, path, root = video_export
    inference = load_learner(path)
    video = root / learn.data.val_ds.fnames[1]
    with TestClient(create_app(inference)) as client:
        answer = client.post('/predict', files={'file': (video.name, video.read_bytes(), 'video/mp4')})
        assert answer.status_code == 200, answer.text
        rows = answer.json()['predictions']
        expected = inference.predict_probs([video])[0]
        assert np.allclose([expected[inference.classes.index(r['class'])] for r in rows],
                           [r['probability'] for r in rows], atol=1e-5)
        card = client.get('/model').json()
        assert card['input'] == 'video' and card['video']['clips_per_video'] == 3
        raw = client.post('/predict', content=video.read_bytes())              # the raw body works as for images
        assert raw.status_code == 200 and raw.json()['predictions'][0]['class'] == rows[0]['class']


def test_a_video_export_refuses_images_and_broken_videos_by_name(video_export, tmp_path):
    _, path, _ = video_export
    whole = write_video(tmp_path / 'v.mp4', numbered_frames(20, 32, 32)).read_bytes()
    cases = {'photo.png': (png_bytes(color_image('red', 1)), 'photo.png is an image; this model classifies videos'),
             'cut.mp4': (whole[:len(whole) // 2], 'cut.mp4: not a video file'),
             'empty.webm': (b'', 'empty')}
    with TestClient(create_app(path)) as client:
        for name, (body, why) in cases.items():
            answer = client.post('/predict', files={'file': (name, body, 'application/octet-stream')})
            assert answer.status_code in (400, 422) and why in answer.json()['detail'], (name, answer.text)
            assert 'skip_bad' not in answer.json()['detail']    # training advice means nothing to a client
        playlist = b'#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n'
        answer = client.post('/predict', files={'file': ('list.m3u8', playlist, 'video/mp4')})
        assert answer.status_code == 422 and 'not a video' in answer.json()['detail']   # never handed to FFmpeg


def test_an_image_export_says_it_is_for_images_when_sent_a_video(tmp_path_factory, tmp_path):
    video = write_video(tmp_path / 'clip.webm', numbered_frames(10, 32, 32))
    with TestClient(create_app(tiny_export(tmp_path_factory))) as client:
        answer = client.post('/predict', files={'file': ('clip.webm', video.read_bytes(), 'video/webm')})
    assert answer.status_code == 422
    detail = answer.json()['detail']
    assert 'classifies images' in detail and 'clip.webm (WebM/Matroska) is a video' in detail
