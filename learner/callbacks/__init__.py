"""Callbacks: the event protocol (base), schedules, the LR range test, the recorder, progress, tracking and
resumable checkpoints."""
from .base import (ALL_EVENTS, CANCEL_EVENTS, EVENTS, ORDER_DEFAULT, ORDER_PROGRESS, ORDER_RECORDER, ORDER_SCHEDULE, ORDER_TRACKING, Callback,
                   CancelBatch, CancelFit, CancelValidate)
from .checkpoint import CheckpointMismatchError, ResumeFromCheckpoint, SaveEvery, checkpoint_callbacks
from .lr_finder import LRFinder, LRSuggestions, suggest_lrs
from .progress import ProgressCallback
from .recorder import Recorder
from .schedule import CLRBeta, ConstantLR, OneCycle, SGDR, sched_cos, sched_exp, sched_lin, sched_no
from .tracking import CycleSnapshot, EarlyStopping, SaveBest

__all__ = ['EVENTS', 'CANCEL_EVENTS', 'ALL_EVENTS', 'ORDER_DEFAULT', 'ORDER_PROGRESS', 'ORDER_RECORDER', 'ORDER_SCHEDULE', 'ORDER_TRACKING',
           'Callback', 'CancelBatch', 'CancelFit', 'CancelValidate', 'LRFinder', 'LRSuggestions', 'suggest_lrs',
           'ProgressCallback', 'Recorder', 'CLRBeta', 'ConstantLR', 'OneCycle', 'SGDR', 'sched_cos', 'sched_exp',
           'sched_lin', 'sched_no', 'CycleSnapshot', 'EarlyStopping', 'SaveBest',
           'SaveEvery', 'ResumeFromCheckpoint', 'CheckpointMismatchError', 'checkpoint_callbacks']
