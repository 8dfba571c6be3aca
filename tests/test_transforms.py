"""fastai 0.7 transforms: each does what it promises (flip flips, p honoured, rotation within deg, geometry)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.data import (AddPadding, CenterCrop, CropType, Cutout, GoogleNetResize, NoCrop, RandomCrop,
                          RandomDihedral, RandomFlip, RandomLighting, RandomRotate, RandomScale, RandomZoom, Scale,
                          Transforms, cifar_stats, imagenet_stats, inception_stats, tfms_from_model,
                          tfms_from_stats, transforms_basic, transforms_side_on, transforms_top_down)


def _img(h=16, w=24, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, h, w), dtype=np.uint8))


def test_stats_and_composed_lists_match_fastai_07():
    assert np.allclose(imagenet_stats[0], [0.485, 0.456, 0.406]) and np.allclose(imagenet_stats[1], [0.229, 0.224, 0.225])
    assert np.allclose(inception_stats[0], 0.5) and np.allclose(cifar_stats[0], [0.4914, 0.48216, 0.44653])
    assert [type(t) for t in transforms_basic] == [RandomRotate, RandomLighting]
    assert transforms_basic[0].deg == 10 and transforms_basic[0].p == 0.75
    assert (transforms_basic[1].b, transforms_basic[1].c) == (0.05, 0.05)
    assert [type(t) for t in transforms_side_on] == [RandomRotate, RandomLighting, RandomFlip]
    assert [type(t) for t in transforms_top_down] == [RandomRotate, RandomLighting, RandomDihedral]
    assert [int(c) for c in CropType] == [1, 2, 3, 4, 5]                # NOOP = 5 as in 0.7's last release


def test_flip_flips_and_p_is_honoured():
    x = _img()
    assert torch.equal(RandomFlip(p=1.0)(x), x.flip(-1))
    assert torch.equal(RandomFlip(p=0.0)(x), x)
    torch.manual_seed(0)
    n_flipped = sum(not torch.equal(RandomFlip()(x), x) for _ in range(400))
    assert 160 < n_flipped < 240, n_flipped
    xb = torch.stack([x] * 400)
    out = RandomFlip(p=0.25).batch(xb)
    flipped = [torch.equal(o, x.flip(-1)) for o in out]
    assert all(f or torch.equal(o, x) for f, o in zip(flipped, out)) and 60 < sum(flipped) < 140


def test_rotate_p_and_angle_within_deg():
    # a bright bar along the x axis through the centre: its angle after rotation must be within deg
    x = torch.zeros(3, 41, 41, dtype=torch.uint8)
    x[:, 19:22, 4:37] = 255
    torch.manual_seed(1)
    rot = RandomRotate(10, p=0.75)
    changed, angles = 0, []
    for _ in range(60):
        y = rot(x)
        assert y.shape == x.shape and y.dtype == torch.uint8
        if not torch.equal(y, x):
            changed += 1
            ys, xs = np.nonzero(y[0].numpy() > 128)
            slope = np.polyfit(xs - 20, ys - 20, 1)[0]
            angles.append(abs(math.degrees(math.atan(slope))))
    assert 35 <= changed <= 55, changed               # p = 0.75 of 60
    assert max(angles) <= 10.5 and max(angles) > 3, angles
    assert torch.equal(RandomRotate(30, p=0.0)(x), x)


def test_rotate_reflect_fills_corners():
    x = torch.full((3, 20, 20), 200, dtype=torch.uint8)
    torch.manual_seed(0)
    y = RandomRotate(30, p=1.0)(x)
    assert int(y.min()) >= 190                        # reflection, not black corners
    y0 = RandomRotate(30, p=1.0, mode='constant')(x)
    assert int(y0[:, 0, 0].max()) < 50 or int(y0[:, -1, -1].max()) < 50


def test_lighting_brightness_and_contrast_ranges():
    x = torch.full((3, 8, 8), 100, dtype=torch.uint8)
    torch.manual_seed(0)
    outs = [int(RandomLighting(0.2, 0.0)(x)[0, 0, 0]) for _ in range(200)]
    assert min(outs) >= 100 - 51 and max(outs) <= 100 + 51 and max(outs) - min(outs) > 40
    grad = torch.arange(64, dtype=torch.uint8).view(1, 8, 8).expand(3, 8, 8) * 3
    spreads = [float(RandomLighting(0.0, 0.5)(grad).float().std()) for _ in range(200)]
    base = float(grad.float().std())
    assert min(spreads) >= base / 1.5 - 1 and max(spreads) <= base * 1.5 + 1
    assert min(spreads) < base * 0.8 and max(spreads) > base * 1.2       # contrast goes both ways


def test_dihedral_gives_all_8_symmetries():
    x = _img(6, 6)
    torch.manual_seed(0)
    seen = {RandomDihedral()(x).numpy().tobytes() for _ in range(200)}
    assert len(seen) == 8


def test_padding_crop_and_sizes():
    x = _img(10, 12)
    padded = AddPadding(2)(x)
    assert padded.shape == (3, 14, 16)
    assert torch.equal(padded[:, 2:-2, 2:-2], x)
    assert torch.equal(padded[:, 0, 2:-2], x[:, 1]) and torch.equal(padded[:, 1, 2:-2], x[:, 0])   # symmetric (0.7)
    assert torch.equal(AddPadding(2, mode='reflect')(x)[:, 0, 2:-2], x[:, 2])
    assert torch.equal(AddPadding(2, mode='constant')(x)[:, 0], torch.zeros(3, 16, dtype=torch.uint8))
    assert CenterCrop(8)(x).shape == (3, 8, 8) and torch.equal(CenterCrop(8)(x), x[:, 1:9, 2:10])
    crop = RandomCrop(8)(x)
    assert crop.shape == (3, 8, 8)
    assert NoCrop(8)(x).shape == (3, 8, 8)
    assert Scale(20)(x).shape == (3, 20, 24)
    torch.manual_seed(0)
    sizes = {min(RandomScale(20, 1.5, p=1.0)(x).shape[1:]) for _ in range(30)}
    assert min(sizes) >= 20 and max(sizes) <= 30 and len(sizes) > 3
    assert GoogleNetResize(9)(x).shape == (3, 9, 9)
    assert RandomZoom(0.5)(x).shape == x.shape
    with pytest.raises(ValueError, match='scale it'):
        RandomCrop(30)(x)


def test_cutout_blacks_out_a_square():
    x = torch.full((3, 20, 20), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    y = Cutout(n_holes=1, length=6, p=1.0)(x)
    n_black = int((y[0] == 0).sum())
    assert 9 <= n_black <= 36 and int((x[0] == 0).sum()) == 0


def test_cifar_recipe_geometry():
    trn, val = tfms_from_stats(cifar_stats, 32, aug_tfms=[RandomFlip()], pad=4)
    assert [type(t) for t in trn.tfms] == [Scale, AddPadding, RandomFlip, RandomCrop]
    x = _img(32, 32, seed=3)
    assert torch.equal(val(x), x)                                  # validation: the unchanged image
    assert torch.equal(val.batch(x[None])[0], x)
    torch.manual_seed(0)
    outs = [trn(x) for _ in range(30)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert sum(not torch.equal(o, x) and not torch.equal(o, x.flip(-1)) for o in outs) > 20   # shifted
    padded = AddPadding(4)(x)
    for o in outs:   # each output is a 32x32 window of the reflect-padded (possibly flipped) image
        windows = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        assert any(torch.equal(o, w) or torch.equal(o, w.flip(-1)) for w in windows)


def test_batch_path_matches_item_semantics():
    trn, _ = tfms_from_stats(cifar_stats, 32, aug_tfms=[RandomFlip()], pad=4)
    xb = torch.stack([_img(32, 32, seed=s) for s in range(16)])
    torch.manual_seed(0)
    out = trn.batch(xb)
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.uint8
    for x, o in zip(xb, out):
        padded = AddPadding(4)(x)
        windows = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        assert any(torch.equal(o, w) or torch.equal(o, w.flip(-1)) for w in windows)
    assert sum(torch.equal(o, x) for x, o in zip(xb, out)) < 8     # most were moved
    side, _ = tfms_from_stats(imagenet_stats, 24, aug_tfms=transforms_side_on)   # rotate: item-by-item path
    assert side.batch(xb).shape == (16, 3, 24, 24)


def test_tfms_from_stats_pipeline_shapes_and_signature():
    trn, val = tfms_from_stats(imagenet_stats, 24, aug_tfms=transforms_side_on, max_zoom=1.2)
    assert isinstance(trn.tfms[0], RandomScale) and isinstance(val.tfms[0], Scale)
    x = _img(40, 60)
    for _ in range(5):
        assert trn(x).shape == (3, 24, 24)
    assert val(x).shape == (3, 24, 24)
    assert trn.decode_size == 29 and val.decode_size == 24
    assert repr(val) == repr(tfms_from_stats(imagenet_stats, 24, aug_tfms=transforms_side_on, max_zoom=1.2)[1])
    g_trn, g_val = tfms_from_stats(imagenet_stats, 24, crop_type=CropType.GOOGLENET)
    assert isinstance(g_trn.tfms[0], GoogleNetResize) and isinstance(g_val.tfms[-1], CenterCrop)
    n_trn, n_val = tfms_from_stats(imagenet_stats, 24, crop_type=CropType.NO)
    assert isinstance(n_trn.tfms[-1], NoCrop) and isinstance(n_val.tfms[-1], NoCrop)
    r = trn.resized(16)
    assert r.sz == 16 and r(x).shape == (3, 16, 16) and trn.sz == 24
    with pytest.raises(NotImplementedError):
        tfms_from_stats(imagenet_stats, 24, tfm_y=3)                 # 0.7's TfmType.COORD


def test_denorm_inverts_normalization():
    tfms = Transforms([], 4, imagenet_stats)
    img = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    normed = (img - imagenet_stats[0]) / imagenet_stats[1]
    back = tfms.denorm(torch.from_numpy(np.moveaxis(normed, -1, 1)).float())
    assert back.shape == (2, 4, 4, 3) and np.allclose(back, img, atol=1e-5)
    assert tfms.denorm(np.moveaxis(normed, -1, 1)[0]).shape == (1, 4, 4, 3)
    u8 = (img[0] * 255).round().astype(np.uint8)                     # (H, W, 3) as open_image gives
    x = tfms(u8)
    assert x.shape == (3, 4, 4) and x.dtype == torch.uint8
    assert np.allclose(tfms.denorm(tfms.normalize(x))[0], u8 / 255, atol=1e-5)


def test_tfms_from_model_stats():
    trn, val = tfms_from_model('not-a-registered-arch', 32)
    assert np.allclose(val.stats[0], imagenet_stats[0])
    _, val = tfms_from_model('anything', 32, stats=inception_stats)
    assert np.allclose(val.stats[1], 0.5)
    backbones = pytest.importorskip('learner.models.backbones')
    try:
        spec = backbones.get_backbone('efficientnet_lite0')
    except Exception as e:   # noqa: BLE001 - the registry is optional here
        pytest.skip(f'efficientnet_lite0 not registered: {e}')
    _, val = tfms_from_model('efficientnet_lite0', 32)
    assert np.allclose(val.stats[0], spec.stats[0]) and np.allclose(val.stats[0], 127 / 255, atol=1e-3)


@pytest.mark.parametrize('shape, deg', [((3, 40, 56), 7.3), ((3, 56, 40), -9.5), ((3, 33, 33), 25.0), ((1, 20, 31), 90.0)])
def test_mirrored_rotation_samples_as_padding_then_rotating_would(shape, deg):
    """The fast 'symmetric' rotation (one grid_sample, mirrored outside) against the plain recipe: mirror-pad enough,
    rotate, crop back. Within one grey level everywhere, borders included."""
    import math
    import torchvision.transforms.v2.functional as TF
    from learner.data.augment import rotate
    from learner.data.resample import pad
    torch.manual_seed(0)
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    h, w = shape[-2:]
    s, c = abs(math.sin(math.radians(deg))), abs(math.cos(math.radians(deg)))
    px, py = max(0, math.ceil((w * c + h * s - w) / 2)) + 1, max(0, math.ceil((h * c + w * s - h) / 2)) + 1
    plain = TF.crop(TF.rotate(pad(x, [px, py, px, py], 'symmetric'), deg, interpolation=TF.InterpolationMode.BILINEAR),
                    py, px, h, w)
    fast = rotate(x, deg)
    assert fast.shape == x.shape and fast.dtype == torch.uint8
    assert (fast.int() - plain.int()).abs().max() <= 1
