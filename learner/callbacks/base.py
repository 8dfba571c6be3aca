"""The callback protocol: event names, order constants and the cancel exceptions, in one place.

A callback is a class with methods named after events; the Learner calls them in `order` (lower first) and
sets `cb.learn` before the fit. A method whose name looks like an event but is not one (`after_epoc`) is a
`TypeError` when the class is defined, so a typo can never silently do nothing.
"""
from __future__ import annotations

import difflib
from typing import Any, Optional

__all__ = ['EVENTS', 'Callback', 'CancelFit', 'CancelValidate', 'CancelBatch',
           'ORDER_SCHEDULE', 'ORDER_DEFAULT', 'ORDER_RECORDER', 'ORDER_TRACKING', 'ORDER_PROGRESS']

EVENTS = ('before_fit', 'before_epoch', 'before_train', 'before_batch', 'after_loss', 'before_step', 'after_batch',
          'after_train', 'before_validate', 'after_validate', 'after_epoch', 'after_fit')

# Lower runs first at every event. The recorder and the progress display come first, so a callback that cancels
# at after_batch/after_epoch (EarlyStopping, a user's CancelFit) can never hide that batch or epoch from them;
# schedules set lr/momentum at before_batch; tracking (SaveBest, EarlyStopping) reads `learn.log`, which the core
# fills before after_epoch.
ORDER_RECORDER = -20
ORDER_PROGRESS = -10
ORDER_SCHEDULE = 10
ORDER_DEFAULT = 20
ORDER_TRACKING = 60

_EVENT_PREFIXES = ('before_', 'after_', 'on_')


class CancelFit(Exception):
    """Raise in any event to stop the fit; lands in `Learner.fit`, after which `after_fit` runs."""


class CancelValidate(Exception):
    """Raise in before_validate/after_batch (validation) to skip the rest of validation; `after_validate` still runs
    and the epoch's valid loss and metrics are NaN."""


class CancelBatch(Exception):
    """Raise in before_batch/after_loss/before_step to skip the rest of this batch (no step); `after_batch` still runs."""


class Callback:
    """Base class of every callback: override any of `EVENTS`; read and write the learner through `self.learn`.

    Attributes:
        order: integer position among callbacks at each event (see the ORDER_* constants).
        learn: the Learner, set by the Learner when the fit starts.

    Example:
        >>> class PrintEpoch(Callback):
        ...     def after_epoch(self): print(self.learn.epoch, self.learn.log)
    """

    order: int = ORDER_DEFAULT
    learn: Optional[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if not callable(value) or name in EVENTS or not name.startswith(_EVENT_PREFIXES):
                continue
            close = difflib.get_close_matches(name, EVENTS, n=1)
            hint = f' (did you mean {close[0]!r}?)' if close else ''
            raise TypeError(f'{cls.__name__}.{name} looks like an event handler but is not an event{hint}; '
                            f'events are {", ".join(EVENTS)}. Rename it, or start its name with "_" if it is a helper')

    @property
    def name(self) -> str:
        """The class name, used in messages and `show_training_loop()`."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f'{self.name}(order={self.order})'
