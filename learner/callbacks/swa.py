"""Stochastic weight averaging (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and Better
Generalization"), as fastai 0.7's `fit(..., use_swa=True, swa_start=, swa_eval_freq=)` ran it.

From epoch `swa_start` on (1-based, the paper's convention), the weights at the end of each epoch are averaged into
`learn.swa_model` (a copy of the whole model; torch's `AveragedModel` keeps the running mean). Every
`swa_eval_freq` epochs, and at the last one, its BatchNorm statistics are recomputed with one pass over the
training data (averaged weights never saw the data; torch's `update_bn`) and it is validated: `swa_loss` and
`swa_<metric>` join the epoch's log and line (NaN in the other epochs). `learn.predict(use_swa=True)` predicts with
it. A new average starts with every fit.
"""
from __future__ import annotations

from typing import Any, List

import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from ..inference import collect_outputs, to_predictions
from .base import ORDER_EPOCH_VALUES, Callback

__all__ = ['SWA', 'swa_callbacks']


class SWA(Callback):
    """Average the weights from epoch `swa_start` on into `learn.swa_model`; evaluate it every `eval_freq` epochs.

    Args:
        swa_start: the first epoch (1-based) whose weights join the average.
        eval_freq: evaluate the average every this many epochs from `swa_start` (and after the last epoch); each
            evaluation costs a pass over the training data (BatchNorm statistics) and one over the validation data.
    """

    order = ORDER_EPOCH_VALUES

    def __init__(self, swa_start: int = 1, eval_freq: int = 5):
        if int(swa_start) < 1 or int(eval_freq) < 1:
            raise ValueError(f'swa_start and swa_eval_freq are epochs >= 1, got {swa_start} and {eval_freq}')
        self.swa_start, self.eval_freq = int(swa_start), int(eval_freq)

    def before_fit(self) -> None:
        learn = self.learn
        self.average = AveragedModel(learn.model)
        learn.swa_model = self.average.module

    def after_epoch(self) -> None:
        learn = self.learn
        done = learn.epoch + 1
        names = ['swa_loss', *[f'swa_{n}' for n in learn.metric_names]]
        values = [float('nan')] * len(names)
        if done >= self.swa_start:
            self.average.update_parameters(learn.model)
            if (done - self.swa_start) % self.eval_freq == 0 or done == learn.n_epochs:
                values = self._evaluate()
        learn.log.update(zip(names, values))

    def _evaluate(self) -> List[float]:
        """BatchNorm statistics from the training data, then loss and metrics on the validation data."""
        learn, model = self.learn, self.average.module
        update_bn(learn.data.trn_dl, model)
        outputs, targets = collect_outputs(model, learn.data.val_dl, learn.amp_dtype)
        with torch.no_grad():
            loss = float(learn.loss_func(outputs, targets))
        preds = to_predictions(outputs, learn.kind)
        return [loss, *[float(m(preds, targets)) for m in learn.metrics]]


def swa_callbacks(learn: Any, use_swa: bool, swa_start: int, swa_eval_freq: int) -> List[Callback]:
    """`[SWA(...)]` when `use_swa`, else `[]` (the fit entry points' `use_swa=` arguments)."""
    if not use_swa:
        return []
    if learn.distributed is not None:
        raise ValueError('use_swa is not supported under torchrun: average the weights in a one-process fit')
    return [SWA(swa_start, swa_eval_freq)]
