"""Metrics on whole sets against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.metrics import (accuracy, accuracy_multi, accuracy_np, accuracy_thresh, error_rate, f1, f2, fbeta,
                             log_loss, opt_th, precision, recall)

PREDS = torch.tensor([[2., 1., 0.], [0., 3., 1.], [1., 0., 5.], [4., 0., 1.]])
TARGS = torch.tensor([0, 2, 2, 1])


def test_accuracy_family():
    assert accuracy(PREDS, TARGS) == pytest.approx(0.5)
    assert error_rate(PREDS, TARGS) == pytest.approx(0.5)
    assert accuracy_np(PREDS.numpy(), TARGS.numpy()) == pytest.approx(0.5)
    assert accuracy(torch.log_softmax(PREDS, 1), TARGS) == pytest.approx(0.5)


def test_log_loss_matches_definition_and_is_output_kind_agnostic():
    p = torch.softmax(PREDS, 1)
    expected = -np.mean([math.log(p[i, t]) for i, t in enumerate(TARGS.tolist())])
    assert log_loss(PREDS, TARGS) == pytest.approx(expected, rel=1e-5)
    assert log_loss(torch.log_softmax(PREDS, 1), TARGS) == pytest.approx(expected, rel=1e-5)


def test_multilabel_thresholded_metrics_take_probabilities():
    probs = torch.sigmoid(torch.tensor([[3., -3., 3.], [-3., 3., -3.]]))  # predicts {0, 2} and {1}
    targs = torch.tensor([[1., 0., 0.], [0., 1., 1.]])                     # actual {0} and {1, 2}
    assert accuracy_thresh(0.5)(probs, targs) == pytest.approx(4 / 6)     # 0.7: a factory
    assert accuracy_thresh(probs, targs) == pytest.approx(4 / 6)          # 1+: a metric
    assert accuracy_multi(probs, targs) == pytest.approx(4 / 6)
    assert accuracy_thresh(0.99)(probs, targs) == pytest.approx(3 / 6)   # nothing predicted: the 3 zeros match
    assert precision(probs, targs) == pytest.approx(2 / 3)
    assert recall(probs, targs) == pytest.approx(2 / 3)
    assert f1(probs, targs) == pytest.approx(2 / 3)
    metric = fbeta(beta=2)
    assert metric.__name__ == 'fbeta' and metric(probs, targs) == pytest.approx(2 / 3)
    logits = torch.logit(probs)
    assert accuracy_thresh(0.5, sigmoid=True)(logits, targs) == pytest.approx(4 / 6)
    expected = -np.mean(np.where(targs.numpy() > 0, np.log(probs.numpy()), np.log(1 - probs.numpy())))
    assert log_loss(probs, targs) == pytest.approx(expected, rel=1e-5)


def test_planet_f2_and_opt_th_by_hand():
    # item 0: true {0, 1}; item 1: true {2}. At t=0.2 item 0 predicts {0, 1} (F2 = 1) and item 1 predicts {1, 2}
    # (precision 1/2, recall 1: F2 = 5 * 0.5 / (4 * 0.5 + 1) = 5/6); from t=0.22 (pred > t) item 1 predicts {2} only.
    probs = np.array([[0.9, 0.3, 0.1], [0.05, 0.22, 0.8]])
    targs = np.array([[1, 1, 0], [0, 0, 1]], dtype=np.float32)
    assert f2(probs, targs, start=0.2, end=0.21) == pytest.approx((1 + 5 / 6) / 2)
    assert f2(probs, targs) == pytest.approx(1.0)                       # the best threshold in 0.17..0.24
    assert opt_th(probs, targs) == pytest.approx(0.22)                  # the first that reaches it
    with pytest.raises(ValueError, match='multi-hot'):
        f2(probs, np.array([0, 2]))


def test_single_label_precision_recall():
    # one-hot argmax vs one-hot target: tp = 2 of 4 predictions and 4 targets
    assert precision(PREDS, TARGS) == pytest.approx(0.5) and recall(PREDS, TARGS) == pytest.approx(0.5)
