"""The callback protocol: event names, order constants, the cancel exceptions and the dispatch, in one place.

A callback is a class with methods named after events; `CallbackRunner` calls them in `order` (lower first) and
sets `cb.learn` before the fit. A method whose name looks like an event but is not one (`after_epoc`) is a
`TypeError` when the class is defined, so a typo can never silently do nothing.
"""
from __future__ import annotations

import difflib
import sys
from typing import Any, List, Optional, Sequence

__all__ = ['EVENTS', 'Callback', 'CallbackRunner', 'CancelFit', 'CancelValidate', 'CancelBatch',
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
    """Raise in before_batch/after_loss/before_step to skip the rest of this batch (in training: no step; in
    validation: the batch counts in neither the loss nor the metrics); `after_batch` still runs."""


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

    def state_dict(self) -> dict:
        """What this callback has learnt during the fit, as plain data (a resumable checkpoint keeps it, so a resumed
        fit's EarlyStopping remembers its patience); empty for a callback with nothing to keep."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Put back what `state_dict()` returned (as attributes of the same names)."""
        for key, value in state.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f'{self.name}(order={self.order})'


_CANCELS = (CancelFit, CancelValidate, CancelBatch, KeyboardInterrupt)


def _note(err: BaseException, text: str) -> None:
    """Attach `text` to an exception once: `add_note` on Python 3.11+, else appended to a string message (3.10)."""
    if getattr(err, '_learner_noted', False):
        return
    err._learner_noted = True
    if sys.version_info >= (3, 11):
        err.add_note(text)
    elif err.args and isinstance(err.args[0], str):
        err.args = (f'{err.args[0]} ({text})',) + err.args[1:]


class CallbackRunner:
    """The callbacks of one fit, sorted by `order`, and the dispatch of events to them.

    Only methods a callback overrides are called, so an event costs nothing for callbacks that ignore it. An
    exception from a handler (other than the cancels and Ctrl-C) is re-raised with a note naming the callback and
    the event.

    Args:
        cbs: the callbacks (each gets `cb.learn = learn`).
        learn: the Learner they act on.
    """

    def __init__(self, cbs: Sequence[Callback] = (), learn: Any = None):
        self.callbacks: List[Callback] = sorted(cbs, key=lambda cb: cb.order)
        for cb in self.callbacks:
            cb.learn = learn
        self._handlers = {e: [(cb, getattr(cb, e)) for cb in self.callbacks
                              if getattr(type(cb), e, None) is not getattr(Callback, e, None)] for e in EVENTS}

    def __call__(self, event: str) -> None:
        for cb, handler in self._handlers[event]:
            try:
                handler()
            except _CANCELS:
                raise
            except Exception as err:
                _note(err, f'raised by callback {cb.name} at event {event}')
                raise

    def table(self) -> str:
        """Which callbacks run at each event, in order (one line per event)."""
        lines = []
        for event in EVENTS:
            names = [cb.name for cb, _ in self._handlers[event]]
            lines.append(f'{event:16s} {", ".join(names) if names else "-"}')
        return '\n'.join(lines)
