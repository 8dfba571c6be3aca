"""`from learner import *` gives exactly the public names, and the names the course scripts type are among them."""
from __future__ import annotations

import types

import learner

MISSION_NAMES = {'tfms_from_model', 'transforms_side_on', 'ImageClassifierData', 'ConvLearner', 'resnet34',
                 'DataBunch', 'Learner', 'load_learner', 'ClassificationInterpretation', 'accuracy', 'untar_data',
                 'verify_images', 'SaveEvery', 'BadImageWarning', 'efficientnet_lite0'}


def test_star_import_is_exactly_all_and_holds_no_modules():
    namespace: dict = {}
    exec('from learner import *', namespace)
    names = set(namespace) - {'__builtins__'}
    assert names == set(learner.__all__)
    assert len(learner.__all__) == len(names), 'a name is listed twice in __all__'
    assert not [n for n in names if isinstance(namespace[n], types.ModuleType)]
    assert MISSION_NAMES <= names
