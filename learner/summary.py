"""`learn.summary()`: a table of the model's leaf layers with output shapes, parameter counts and frozen state."""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ['SummaryMixin', 'layer_rows']


def layer_rows(model: nn.Module, xb: torch.Tensor, train_mode: bool) -> list:
    """(name, type, output shape, parameters, trainable) of each leaf layer, from one forward pass of `xb`."""
    rows, hooks = [], []
    for name, module in model.named_modules():
        if list(module.children()) and not list(module.parameters(recurse=False)):
            continue  # containers: their leaves are listed

        def hook(mod, inp, out, name=name):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            params = list(mod.parameters(recurse=False))
            n_params = sum(p.numel() for p in params)
            trainable = 'yes' if any(p.requires_grad for p in params) else ('no' if params else '-')
            rows.append((name or type(model).__name__, type(mod).__name__, str(shape), n_params, trainable))
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.train(train_mode)
    try:
        with torch.no_grad():
            model(xb)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


class SummaryMixin:
    """The Learner's `summary()`. Uses the Learner's `stage()`, `layer_groups` and `n_frozen`."""

    def summary(self, n_items: int = 2) -> str:
        """Print (and return) a table of the leaf layers: output shape, parameters, trainable or frozen, computed by
        running `n_items` validation (or training) items through the model in eval mode (or, for a model that only
        runs in training mode, through a copy of it in training mode, so no statistics change)."""
        stage = self.stage()
        xb = next(iter(stage.valid or stage.train))[0][:n_items]
        model = stage.model
        try:
            rows = layer_rows(model, xb, train_mode=False)
        except Exception:  # e.g. layers that set attributes only in training mode (fastai 0.7 course models)
            rows = layer_rows(copy.deepcopy(model), xb, train_mode=True)
        n_total = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        header = f'{"layer":28s} {"type":18s} {"output shape":22s} {"params":>10s} trainable'
        lines = [header, '-' * len(header)]
        lines += [f'{n[:28]:28s} {t[:18]:18s} {s[:22]:22s} {p:>10,d} {tr}' for n, t, s, p, tr in rows]
        lines += ['-' * len(header), f'total params {n_total:,d}  trainable {n_train:,d}  frozen {n_total - n_train:,d}',
                  f'layer groups {len(self.layer_groups)}, frozen groups {self.n_frozen}']
        text = '\n'.join(lines)
        print(text)
        return text
