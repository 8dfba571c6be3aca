"""ClassificationInterpretation on hand-made predictions: counts, pairs, losses and figures."""
import numpy as np
import pytest
import torch

from learner.interpret import ClassificationInterpretation


def _interp(dataset=None):
    # 6 items, 3 classes: items 1 and 4 are wrong (a->b, c->b), item 5 is wrong (b->a)
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .1, .8], [.1, .6, .3], [.5, .4, .1]])
    y = np.array([0, 0, 1, 2, 2, 1])
    return ClassificationInterpretation(np.log(probs), y, ['a', 'b', 'c'], dataset)


def test_confusion_matrix_rows_are_actual_columns_predicted():
    cm = _interp().confusion_matrix()
    assert cm.tolist() == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert cm.sum() == 6


def test_most_confused_and_per_class_accuracy():
    interp = _interp()
    assert interp.most_confused() == [('a', 'b', 1), ('b', 'a', 1), ('c', 'b', 1)]
    assert interp.most_confused(min_val=2) == []
    assert interp.per_class_accuracy() == {'a': 0.5, 'b': 0.5, 'c': 0.5}


def test_top_losses_are_the_least_likely_true_classes_first():
    losses, idxs = _interp().top_losses(2)
    assert idxs.tolist() == [1, 4]  # p(true) = 0.2 and 0.3... item 1 has p=.2, item 4 has p=.3
    assert np.allclose(losses, [-np.log(.2), -np.log(.3)])


def test_plots_return_figures():
    images = [(torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8), 0) for _ in range(6)]
    interp = _interp(images)
    fig = interp.plot_confusion_matrix(normalize=True)
    assert fig.axes and fig.axes[0].get_title() == 'Confusion matrix'
    fig = interp.plot_top_losses(4)
    assert sum(1 for ax in fig.axes if ax.images) == 4


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match='single-label'):
        ClassificationInterpretation(np.zeros((3, 2)), np.zeros((4,)), ['a', 'b'])


# ------------------------------------------------------------------------------------ precision / recall / AP
from learner.interpret import average_precision, threshold_counts, threshold_curve, validation_report  # noqa: E402


def test_threshold_counts_single_label_abstains_below_the_threshold():
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .1, .8], [.1, .6, .3], [.5, .4, .1]])
    y = np.array([0, 0, 1, 2, 2, 1])
    at0 = threshold_counts(probs, y, [0.0])[0]             # every item predicted as its argmax
    assert at0.tolist() == [[1, 1, 1], [1, 2, 1], [1, 0, 1]]  # (tp, fp, fn) per class
    at75 = threshold_counts(probs, y, [0.75])[0]           # only items 0, 2 and 3 are confident enough
    assert at75.tolist() == [[1, 0, 1], [1, 0, 1], [1, 0, 1]]
    report = validation_report(probs, y, ['a', 'b', 'c'], threshold=0.75)
    assert [r['precision'] for r in report['per_class']] == [1.0, 1.0, 1.0]
    assert [r['recall'] for r in report['per_class']] == [0.5, 0.5, 0.5]
    assert report['confusion_matrix'] == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]  # argmax, threshold-free
    none = validation_report(probs, y, ['a', 'b', 'c'], threshold=0.99)
    assert none['precision'] is None and none['per_class'][0]['precision'] is None  # no predictions: undefined


def test_average_precision_by_hand_with_ties_and_without_positives():
    assert average_precision([.9, .8, .7, .6], [1, 0, 1, 0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision([.9, .5, .5, .1], [0, 1, 0, 1]) == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 4)  # tie: one step
    assert average_precision([.3, .2], [1, 1]) == 1.0
    assert np.isnan(average_precision([.3, .2], [0, 0]))


def test_multi_label_report_and_curve():
    probs = np.array([[.9, .2], [.6, .7], [.1, .8], [.4, .3]])
    y = np.array([[1, 0], [0, 1], [0, 1], [1, 0]])
    report = validation_report(probs, y, ['x', 'y'], is_multi=True)
    assert report['confusion_matrix'] == [[[1, 1], [1, 1]], [[2, 0], [0, 2]]]   # per class [[TN, FP], [FN, TP]]
    assert report['per_class'][1]['precision'] == 1.0 and report['per_class'][0]['recall'] == 0.5
    curve = threshold_curve(probs, y, is_multi=True, n_points=11)
    assert curve['thresholds'][5] == 0.5 and curve['tp'][5] == [1, 2] and curve['fp'][0] == [2, 2]
    with pytest.raises(ValueError, match='multi-hot'):
        validation_report(probs, np.array([0, 1, 1, 0]), ['x', 'y'], is_multi=True)


def test_interpretation_precision_recall_ap_and_plot():
    interp = _interp()
    pr = interp.precision_recall(0.75)
    assert pr == {'a': (1.0, 0.5), 'b': (1.0, 0.5), 'c': (1.0, 0.5)}
    ap = interp.average_precision()
    assert set(ap) == {'a', 'b', 'c'} and all(0 < v <= 1 for v in ap.values())
    fig = interp.plot_precision_recall(threshold=0.5)
    ax = fig.axes[0]
    assert len([t for t in ax.get_legend().get_texts() if 'AP' in t.get_text()]) == 3
    with pytest.raises(ValueError, match='not among'):
        interp.plot_precision_recall(classes=['zebra'])
