"""`learn.lr_find()`: the LR range test, run as a short fit after which the learner is exactly as it was."""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from .callbacks.lr_finder import LRFinder, LRSuggestions, suggest_lrs
from .core import rng_state, set_rng_state

__all__ = ['LRFindMixin']


class LRFindMixin:
    """Adds `lr_find()` to the Learner (it uses `_fit`, `opt`, `create_opt`, `set_wds`, `no_bar` and the recorder)."""

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
                wds: Any = None, linear: bool = False) -> LRSuggestions:
        """LR range test: lr swept from start_lr to end_lr (exponentially, or linearly) over `num_it` batches.

        Afterwards the weights, BN buffers, optimizer state, frozen/train modes and random-number state are exactly
        as before. Results: `learn.sched.plot()` / `learn.recorder.plot_lr_find()`.

        Returns:
            LRSuggestions(steep, min_div10), also marked on the plot.
        """
        if self.opt is None:
            self.create_opt()
        saved = self._snapshot()
        ratios = None
        if self.opt.param_groups:  # keep the shape of differential lrs: sweep the last group, scale the others
            current = np.zeros(len(self._layer_groups))
            for g in self.opt.param_groups:
                current[g['layer_group']] = g['lr']
            ratios = current / current[-1] if current[-1] > 0 and (current > 0).all() else None
        finder = LRFinder(start_lr, end_lr, num_it, stop_div, linear, ratios=ratios)
        n_batches = max(len(self.get_loader('train')), 1)
        try:
            if wds is not None:
                self.set_wds(wds)
            self.lr_finding = True
            with self.no_bar():
                self._fit(math.ceil(num_it / n_batches), [finder])
        finally:
            self.lr_finding = False
            self._restore(saved)
        self.recorder.lr_find_lrs, self.recorder.lr_find_losses = finder.lrs, finder.losses
        self.recorder.lr_find_suggestions = suggest_lrs(finder.lrs, finder.losses)
        return self.recorder.lr_find_suggestions

    def _snapshot(self) -> dict:
        """Everything a training run changes that lr_find must put back."""
        return {'model': copy.deepcopy(self.model.state_dict()), 'opt': copy.deepcopy(self.opt.state_dict()),
                'wds': self.wds.copy(), 'modes': [m.training for m in self.model.modules()],
                'rng': rng_state(), 'scaler': self.scaler.state_dict()}

    def _restore(self, saved: dict) -> None:
        self.model.load_state_dict(saved['model'])
        self.opt.load_state_dict(saved['opt'])
        self.set_wds(saved['wds'])
        for module, mode in zip(self.model.modules(), saved['modes']):
            module.training = mode
        set_rng_state(saved['rng'])
        if saved['scaler']:
            self.scaler.load_state_dict(saved['scaler'])
