"""`from learner import *` gives exactly the public names: the library's, the names the course scripts type, and the
modules and helpers fastai 0.7's star import gave course notebooks."""
from __future__ import annotations

import types

import learner

MISSION_NAMES = {'tfms_from_model', 'transforms_side_on', 'ImageClassifierData', 'ConvLearner', 'resnet34',
                 'DataBunch', 'Learner', 'load_learner', 'ClassificationInterpretation', 'accuracy', 'untar_data',
                 'verify_images', 'SaveEvery', 'BadImageWarning', 'efficientnet_lite0', 'f2', 'opt_th'}
COURSE_NAMES = {'np', 'os', 'torch', 'nn', 'F', 'optim', 'plt', 'PIL', 'Image', 'Path', 'glob', 'partial', 'to_np',
                'V', 'T', 'VV', 'plots', 'plots_from_files', 'plots_raw', 'plot_confusion_matrix', 'load_img_id'}


def test_star_import_is_exactly_all_and_its_modules_are_the_course_ones():
    namespace: dict = {}
    exec('from learner import *', namespace)
    names = set(namespace) - {'__builtins__'}
    assert names == set(learner.__all__)
    assert len(learner.__all__) == len(names), 'a name is listed twice in __all__'
    modules = {n for n in names if isinstance(namespace[n], types.ModuleType)}
    assert modules == set(learner.COURSE_MODULES), 'the only modules exported are the ones 0.7 course code uses'
    assert (MISSION_NAMES | COURSE_NAMES) <= names
    assert namespace['plt'].__name__ == 'matplotlib.pyplot' and namespace['F'].__name__ == 'torch.nn.functional'
    assert namespace['optim'] is namespace['torch'].optim          # opt_fn=optim.Adam, as course code types it


def test_course_helpers_do_what_the_notebooks_expect():
    namespace: dict = {}
    exec('from learner import *', namespace)
    np, torch, to_np, T, V = (namespace[n] for n in ('np', 'torch', 'to_np', 'T', 'V'))
    t = T(np.array([1, 2, 3]))
    assert t.dtype == torch.int64 and T(np.array([0.5])).dtype == torch.float32
    assert np.array_equal(to_np(t), [1, 2, 3]) and isinstance(to_np([t, t]), list)
    assert V(np.ones(2), requires_grad=True).requires_grad
    fig = namespace['plots'](np.zeros((2, 3, 8, 8)), rows=1, titles=['a', 'b'])   # NCHW is shown as NHWC
    assert [ax.get_title() for ax in fig.axes] == ['a', 'b'] and fig.axes[0].images[0].get_array().shape == (8, 8, 3)
    cm_fig = namespace['plot_confusion_matrix'](np.array([[3, 1], [0, 2]]), ['cat', 'dog'])
    texts = sorted(t.get_text() for t in cm_fig.axes[0].texts)
    assert texts == ['0', '1', '2', '3'] and [t.get_text() for t in cm_fig.axes[0].get_xticklabels()] == ['cat', 'dog']
