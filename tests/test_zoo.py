"""The model zoo: shapes, log-probabilities, hand-computed parameter counts, the course batch norm, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import learner
from learner.models.zoo import (BnLayer, C3D_BN, ConvBnNet, ConvBnNet2, ConvLayer, ConvNet, ConvNet2, LeNet5,
                                Resnet, Resnet2, ResNet9, ResnetLayer, SimpleNet)

# Small widths keep every test fast; the posts' widths are used where a count is checked.
COURSE_NETS = {
    'SimpleNet': lambda: SimpleNet([32 * 32 * 3, 40, 10]),
    'ConvNet': lambda: ConvNet([3, 8, 16], 10),
    'ConvNet2': lambda: ConvNet2([3, 8, 16], 10),
    'ConvBnNet': lambda: ConvBnNet([8, 16, 32], 10),
    'ConvBnNet2': lambda: ConvBnNet2([8, 16, 32], 10),
    'Resnet': lambda: Resnet([8, 16, 32], 10),
    'Resnet2': lambda: Resnet2([8, 16, 32], 10, p=0.2),
    'LeNet5': lambda: LeNet5(10),
}
BN_NETS = ['ConvBnNet', 'ConvBnNet2', 'Resnet', 'Resnet2']


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))  # (n, 3, 32, 32)


@pytest.mark.parametrize('name', COURSE_NETS)
def test_course_nets_return_log_probabilities(name):
    torch.manual_seed(0)
    out = COURSE_NETS[name]()(images())
    assert out.shape == (4, 10)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(4), atol=1e-5)
    assert (out <= 0).all()


def test_resnet9_returns_scaled_logits():
    torch.manual_seed(0)
    model = ResNet9(c=7)
    out = model(images(2))
    assert out.shape == (2, 7)
    assert not torch.allclose(out.exp().sum(dim=1), torch.ones(2), atol=1e-3)   # logits, not log-probabilities
    model.scale = 1.0
    assert torch.allclose(model(images(2)), out * 8, atol=1e-5)                  # the 0.125 recipe scale


def test_c3d_bn_clip_shape_and_post_geometry():
    torch.manual_seed(0)
    model = C3D_BN(5, width=4, n_hidden=16)              # the paper's geometry with 16x fewer channels
    assert model.n_features == 32 * 1 * 4 * 4             # 8*width channels, 16 frames -> 1, 112 -> 4
    out = model(torch.randn(2, 3, 16, 112, 112))
    assert out.shape == (2, 5)
    assert not torch.allclose(out.exp().sum(dim=1), torch.ones(2), atol=1e-3)   # logits
    with torch.device('meta'):                             # the full size net, without allocating it
        full = C3D_BN(8)
    assert full.n_features == 8192                         # the post's h.view(-1, 8192)
    convs = (3 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512) * 27
    conv_biases_and_bn = 3 * (64 + 128 + 2 * 256 + 4 * 512)
    linears = 8192 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 8 + 8
    assert n_params(full) == convs + conv_biases_and_bn + linears == 78_034_056
    with pytest.raises(ValueError, match='16 frames'):
        C3D_BN(5, width=4, n_hidden=16, n_frames=8)
    with pytest.raises(ValueError, match='16x16'):
        C3D_BN(5, width=4, n_hidden=16, sz=15)         # 15 -> 7 -> 3 -> 1 -> 0 before the padded last pool
    assert C3D_BN(5, width=4, n_hidden=16, sz=16).n_features == 32   # 16 -> 8 -> 4 -> 2 -> 1 -> 1
    small = C3D_BN(5, width=4, n_hidden=16, sz=32)
    with pytest.raises(ValueError, match=r'takes clips \(B, 3, 16, 32, 32\), got \(2, 3, 8, 32, 32\)'):
        small(torch.randn(2, 3, 8, 32, 32))       # data of 8-frame clips (set_data): said, not a pooling error


def test_parameter_counts_by_hand():
    assert n_params(SimpleNet([32 * 32 * 3, 40, 10])) == (3072 * 40 + 40) + (40 * 10 + 10) == 123_330
    lenet = (3 * 6 * 25 + 6) + (6 * 16 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert n_params(LeNet5(10)) == lenet == 62_006
    conv = (3 * 20 * 9 + 20) + (20 * 40 * 9 + 40) + (40 * 80 * 9 + 80) + (80 * 10 + 10)
    assert n_params(ConvNet([3, 20, 40, 80], 10)) == n_params(ConvNet2([3, 20, 40, 80], 10)) == conv == 37_490
    # BnLayer: a bias-free conv plus a multiplier and an offset per output channel
    assert n_params(BnLayer(10, 20)) == 10 * 20 * 9 + 2 * 20
    # ResNet9: bias-free 3x3 convs, BatchNorm weight+bias, bias-free linear
    widths = [(3, 64), (64, 128), (128, 128), (128, 128), (128, 256), (256, 512), (512, 512), (512, 512)]
    resnet9 = sum(ni * nf * 9 + 2 * nf for ni, nf in widths) + 512 * 10
    assert n_params(ResNet9(10)) == resnet9 == 6_573_120


def test_simple_net_is_linear_layers_with_relu_between():
    torch.manual_seed(0)
    model, x = SimpleNet([3 * 32 * 32, 6, 10]), images(2)
    first, last = model.layers
    expected = F.log_softmax(last(F.relu(first(x.flatten(1)))), dim=-1)  # no ReLU on the class scores
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_conv_layer_halves_the_image():
    assert ConvLayer(3, 5)(images(2)).shape == (2, 5, 16, 16)
    assert ConvNet([3, 4, 4, 4], 2).layers[2](torch.zeros(1, 4, 7, 7)).shape == (1, 4, 3, 3)  # unpadded


@pytest.mark.parametrize('name', BN_NETS)
def test_bn_nets_evaluate_right_after_construction(name):
    torch.manual_seed(0)
    model = COURSE_NETS[name]().eval()
    with torch.no_grad():
        out = model(images())
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    assert not any(bool(m.has_stats) for m in model.modules() if isinstance(m, BnLayer))  # nothing remembered


def test_bn_layer_normalises_each_channel_of_the_batch():
    torch.manual_seed(0)
    layer = BnLayer(3, 6, stride=1)
    out = layer(images(8) * 5 + 3)                        # (8, 6, 32, 32)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-5)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(6), atol=1e-3)
    with torch.no_grad():
        layer.m.fill_(2.0)
        layer.a.fill_(-1.0)
    out = layer(images(8))
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.full((6,), -1.0), atol=1e-5)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.full((6,), 2.0), atol=1e-3)


def test_bn_layer_eval_reuses_the_last_training_batch_statistics(tmp_path):
    torch.manual_seed(0)
    layer = BnLayer(3, 4)
    layer(images(4, seed=1))                              # an older batch: overwritten, not averaged
    last = images(4, seed=2) * 3
    layer(last)
    relu_out = F.relu(layer.conv(last)).detach()          # (4, 4, 16, 16)
    means, stds = relu_out.mean(dim=(0, 2, 3)), relu_out.std(dim=(0, 2, 3))
    assert torch.allclose(layer.means.flatten(), means) and torch.allclose(layer.stds.flatten(), stds)

    layer.eval()
    x = images(4, seed=3)
    expected = (F.relu(layer.conv(x)) - means[:, None, None]) / (stds[:, None, None] + layer.eps)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.allclose(layer(x[:1]), layer(x)[:1], atol=1e-6)   # one image no longer depends on its batch

    torch.save(layer.state_dict(), tmp_path / 'bn.pth')   # the statistics travel with the weights
    reloaded = BnLayer(3, 4)
    reloaded.load_state_dict(torch.load(tmp_path / 'bn.pth'))
    assert torch.allclose(reloaded.eval()(x), layer(x))


def test_bn_layer_dead_channel_gives_zero_not_nan():
    layer = BnLayer(3, 2, stride=1)
    with torch.no_grad():
        layer.conv.weight[0].fill_(-1.0)                  # channel 0 is negative before ReLU on positive input
    out = layer(images(2).abs())
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, 0], torch.zeros_like(out[:, 0]))


def test_resnet_layer_adds_its_input_and_checks_shapes():
    torch.manual_seed(0)
    layer = ResnetLayer(4, 4)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(layer(x) - x, BnLayer.forward(layer, x), atol=1e-6)
    with pytest.raises(ValueError, match='ni == nf'):
        ResnetLayer(4, 8)
    with pytest.raises(ValueError, match='stride=1'):
        ResnetLayer(4, 4, stride=2)


def test_resnet2_dropout_probability_is_checked():
    with pytest.raises(ValueError, match='dropout'):
        Resnet2([8, 16], 10, p=1.5)
    with pytest.raises(ValueError, match='positive ints'):
        ConvNet([3], 10)


# lr per net: the plain nets need a larger step than the normalised ones to move in 15 steps;
# ResNet9 (6.6M parameters, the slowest) gets 5
@pytest.mark.parametrize('name, lr, n_steps', [('SimpleNet', 0.02, 15), ('ConvNet2', 0.1, 15), ('ConvBnNet', 0.02, 15),
                                               ('Resnet', 0.02, 15), ('LeNet5', 0.05, 15), ('ResNet9', 0.05, 5)])
def test_sgd_steps_drive_the_loss_down_on_a_fixed_batch(name, lr, n_steps):
    torch.manual_seed(0)
    model = ResNet9(10) if name == 'ResNet9' else COURSE_NETS[name]()
    xb, yb = images(8, seed=4), torch.arange(8) % 10
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(n_steps):
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_learner_fits_a_zoo_net_on_uint8_arrays(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 48)
    xv, yv = x[:16], y[:16]
    y[0], y[1] = 0, 9                                      # every class id 0..9 appears, so c == 10
    data = learner.DataBunch.from_arrays(tmp_path, (x, y), (xv, yv), bs=16,
                                         tfms=learner.tfms_from_stats(learner.cifar_stats, 32))
    model = ConvBnNet([8, 16, 32], data.c)
    before = [p.detach().clone() for p in model.parameters()]
    learn = learner.Learner.from_model_data(model, data, progress=False)
    result = learn.fit(1e-2, 1)
    assert np.isfinite(result[0])
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    assert all(bool(m.has_stats) for m in model.modules() if isinstance(m, BnLayer))
