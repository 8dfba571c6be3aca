"""The 0.7 head: layer order, default and float ps, validation, and the precompute split point."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from learner.models import HEAD_POOL_LAYERS, AdaptiveConcatPool2d, Flatten, create_head


def _kinds(head):
    return [type(m).__name__ for m in head]


def test_default_head_matches_0_7():
    head = create_head(512, 10)
    assert _kinds(head) == ['AdaptiveConcatPool2d', 'Flatten', 'BatchNorm1d', 'Dropout', 'Linear', 'ReLU',
                            'BatchNorm1d', 'Dropout', 'Linear']
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.25, 0.5]
    assert [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)] == [(1024, 512), (512, 10)]
    head.eval()
    assert head(torch.randn(3, 512, 4, 4)).shape == (3, 10)


def test_xtra_fc_and_ps_options():
    head = create_head(64, 5, xtra_fc=[512, 256], ps=[0.5, 0.5, 0.4])
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.5, 0.5, 0.4]
    assert [m.out_features for m in head if isinstance(m, nn.Linear)] == [512, 256, 5]
    assert [m.p for m in create_head(64, 5, xtra_fc=[32, 16], ps=0.3) if isinstance(m, nn.Dropout)] == [0.3] * 3
    single = create_head(64, 5, xtra_fc=[])
    assert _kinds(single)[2:] == ['BatchNorm1d', 'Dropout', 'Linear'] and single[3].p == 0.5
    assert [m.p for m in create_head(64, 5, xtra_fc=[32, 16]) if isinstance(m, nn.Dropout)] == [0.25, 0.25, 0.5]


def test_wrong_number_of_ps_is_a_clear_error():
    with pytest.raises(ValueError, match=r'3 for xtra_fc with 2 sizes.*got 2'):
        create_head(64, 5, xtra_fc=[512, 256], ps=[0.5, 0.5])
    with pytest.raises(ValueError, match=r'\[0, 1\)'):
        create_head(64, 5, ps=[0.2, 1.5])
    with pytest.raises(ValueError, match='n_features'):
        create_head(0, 5)


def test_concat_pool_is_max_then_average_and_pool_layers_split_the_head():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    pooled = AdaptiveConcatPool2d()(x)
    assert pooled.shape == (2, 6, 1, 1)
    assert torch.equal(pooled[:, :3, 0, 0], x.amax((2, 3))) and torch.allclose(pooled[:, 3:, 0, 0], x.mean((2, 3)))
    assert Flatten()(pooled).shape == (2, 6)
    torch.manual_seed(0)
    head = create_head(3, 4).eval()
    features = head[:HEAD_POOL_LAYERS](x)           # what precompute stores
    assert features.shape == (2, 6)
    assert torch.allclose(head[HEAD_POOL_LAYERS:](features), head(x))
