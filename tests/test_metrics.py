"""Metrics on whole sets against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.metrics import (accuracy, accuracy_np, accuracy_thresh, error_rate, f1, fbeta, log_loss, precision,
                             recall)

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


def test_multilabel_thresholded_metrics():
    logits = torch.tensor([[3., -3., 3.], [-3., 3., -3.]])  # predicts {0, 2} and {1}
    targs = torch.tensor([[1., 0., 0.], [0., 1., 1.]])       # actual {0} and {1, 2}
    assert accuracy_thresh(0.5)(logits, targs) == pytest.approx(4 / 6)
    assert precision(logits, targs) == pytest.approx(2 / 3)
    assert recall(logits, targs) == pytest.approx(2 / 3)
    assert f1(logits, targs) == pytest.approx(2 / 3)
    f2 = fbeta(beta=2)
    assert f2.__name__ == 'fbeta' and f2(logits, targs) == pytest.approx(2 / 3)
    probs = torch.sigmoid(logits)
    assert accuracy_thresh(0.5, sigmoid=False)(probs, targs) == pytest.approx(4 / 6)


def test_single_label_precision_recall():
    # one-hot argmax vs one-hot target: tp = 2 of 4 predictions and 4 targets
    assert precision(PREDS, TARGS) == pytest.approx(0.5) and recall(PREDS, TARGS) == pytest.approx(0.5)
