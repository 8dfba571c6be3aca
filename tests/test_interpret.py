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
