"""A user's training script, run by tests/test_distributed.py on 2 CPU processes (gloo):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_scripts/ddp_run.py OUT

Nothing in it is about processes: the Learner finds torchrun's environment. Each process records what it saw (items
per batch, weights, predictions, files it renamed into place, what it printed) in OUT/rank<r>.pt for the test.
`train_mlp` is also imported by the test and run on one process for the 1-vs-2-process comparison.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

N_TRAIN, N_VALID, N_TEST = 64, 21, 5   # 21: the two validation shards are uneven (10 and 11 items)


# ------------------------------------------------------------------------------------------ vectors with item ids
def vector_arrays():
    """(x (85, 6), y): column 0 is the item's id / 100, so a batch tells which items it holds."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, 6, generator=g)
    y = (x[:, 1] + x[:, 2] > 0).long()
    x[:, 0] = torch.arange(len(x)) / 100
    return x, y


def item_ids(xb: torch.Tensor) -> list:
    return (xb[:, 0] * 100).round().long().tolist()


class VectorData:
    """Duck-typed data over torch DataLoaders (as a user might bring)."""

    def __init__(self, path, bs: int, shuffle: bool):
        x, y = vector_arrays()
        self.trn_ds, self.val_ds = TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:])
        gen = torch.Generator().manual_seed(1) if shuffle else None
        self.trn_dl = DataLoader(self.trn_ds, batch_size=bs, shuffle=shuffle, generator=gen)
        self.val_dl = DataLoader(self.val_ds, batch_size=bs)
        self.test_dl, self.c, self.classes, self.is_multi = None, 2, ['a', 'b'], False
        self.path, self.device = Path(path), torch.device('cpu')

    def to(self, device):
        return self


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))


def record_items():
    from learner.callbacks.base import Callback

    class RecordItems(Callback):
        """The ids of the items of every training batch, per epoch."""

        def before_fit(self):
            self.epochs = []

        def before_epoch(self):
            self.epochs.append([])

        def before_batch(self):
            if self.learn.training:
                self.epochs[-1] += item_ids(self.learn.xb)
    return RecordItems()


def train_mlp(path, bs: int) -> dict:
    """Three epochs over the unshuffled items at a constant lr with momentum and weight decay: run with bs 16 on
    2 processes and with bs 32 on one, the same global batches are seen in the same order."""
    from learner.learner import Learner
    from learner.metrics import accuracy
    learn = Learner(VectorData(path, bs, shuffle=False), mlp(), metrics=[accuracy], wd=1e-2, progress=False)
    rec = record_items()
    result = learn.fit(0.1, 3, callbacks=[rec])
    return {'weights': {k: v.clone() for k, v in learn.model.state_dict().items()}, 'items': rec.epochs,
            'result': result, 'train_losses': list(learn.recorder.train_losses)}


def part_vectors(path: Path) -> dict:
    from learner.learner import Learner
    res = {'exact': train_mlp(path, 16)}
    learn = Learner(VectorData(path, 16, shuffle=True), mlp(), progress=False)
    rec = record_items()
    learn.fit(0.1, 2, callbacks=[rec])
    res['shuffled_items'] = rec.epochs
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.lr_find(num_it=8)
    res['lr_find'] = {'losses': list(learn.recorder.lr_find_losses), 'lrs': list(learn.recorder.lr_find_lrs),
                      'unchanged': all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())}
    bn_model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    try:
        Learner(VectorData(path, 16, shuffle=True), bn_model, sync_bn=True, progress=False).fit(0.1, 1)
        res['sync_bn_error'] = None
    except ValueError as err:
        res['sync_bn_error'] = str(err)
    return res


# ------------------------------------------------------------------------------------------ images, DataBunch
def image_arrays():
    """Two classes of 32x32 noise images, one darker than the other."""
    rng = np.random.default_rng(0)
    n = N_TRAIN + N_VALID + N_TEST
    y = np.arange(n) % 2
    x = rng.integers(0, 110, (n, 32, 32, 3)) + y[:, None, None, None] * 120
    return x.astype(np.uint8), y.astype(np.int64)


def part_images(path: Path) -> dict:
    from learner import ClassificationInterpretation, ConvLearner, ImageClassifierData, imagenet_stats
    from learner import tfms_from_stats, transforms_side_on
    from learner.callbacks.base import ORDER_TRACKING, Callback, CancelFit
    from learner.core import rng_state, set_rng_state
    from learner.inference import collect_outputs
    from learner.precompute import ActivationCache

    builds = []
    real_build = ActivationCache._build

    def counting_build(self, split, *args, **kwargs):
        builds.append(split)
        return real_build(self, split, *args, **kwargs)
    ActivationCache._build = counting_build

    class StopAfterFirstEpoch(Callback):
        order = ORDER_TRACKING + 10  # after SaveEvery wrote the checkpoint: an interruption

        def after_epoch(self):
            raise CancelFit()

    torch.manual_seed(int(os.environ.get('RANK', 0)))  # seeds differ on purpose: all must start from process 0's
    x, y = image_arrays()
    tfms = tfms_from_stats(imagenet_stats, 32, aug_tfms=transforms_side_on)
    n_tv = N_TRAIN + N_VALID
    data = ImageClassifierData.from_arrays(path, (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:n_tv], y[N_TRAIN:n_tv]),
                                           bs=8, tfms=tfms, test=x[n_tv:], num_workers=0)
    learn = ConvLearner.pretrained('resnet18', data, pretrained=False, precompute=True)
    res = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        res['precompute_fit'] = learn.fit(1e-2, 1)            # the head on cached features
        res['precompute_preds'] = learn.predict()
        learn.precompute = False
        learn.unfreeze()                                     # the whole model trains: DDP is rebuilt
        learn.save('start')
        start_rng = rng_state()
        learn.fit(1e-3, 2, cycle_len=1, checkpoint_every=1, best_save_name='best', callbacks=[StopAfterFirstEpoch()])
        learn.fit(1e-3, 2, cycle_len=1, checkpoint_every=1, resume=True)
        res['resumed'] = {k: v.clone() for k, v in learn.model.state_dict().items()}
        learn.load('start')
        set_rng_state(start_rng)
        learn.fit(1e-3, 2, cycle_len=1)
        res['straight'] = {k: v.clone() for k, v in learn.model.state_dict().items()}
        learn.save('final')
        learn.export()
        learn.load('best')
        learn.load('final')
        res['preds'], res['targs'] = learn.predict_with_targs()
        res['test_preds'] = learn.predict(is_test=True)
        res['local_preds'] = collect_outputs(learn.model, data.loader('valid'))[0]   # the whole set, no gather
        res['confusion'] = ClassificationInterpretation.from_learner(learn).confusion_matrix()
        res['val_y'] = np.asarray(data.val_y)
        try:
            res['tta_shape'] = tuple(learn.TTA(n_aug=1)[0].shape)
        except Exception as err:  # reported to the test
            res['tta_shape'] = f'{type(err).__name__}: {err}'
    res['stdout'] = printed.getvalue()
    res['builds'] = builds
    return res


def main(out: Path) -> None:
    replaced = []   # every file renamed into place by this process: the package's atomic writes all end so
    real_replace = os.replace

    def logging_replace(src, dst, *args, **kwargs):
        replaced.append(str(dst))
        return real_replace(src, dst, *args, **kwargs)
    os.replace = logging_replace
    from learner import distributed
    from learner.persistence import atomic_torch_save
    atomic_torch_save({'step': torch.zeros(1)}, out / 'before_learner.pth')   # joins the group: no Learner yet
    res = {'vectors': part_vectors(out / 'vectors')}
    res['images'] = part_images(out / 'images')
    res.update(rank=distributed.rank(), world=distributed.world_size(), replaced=replaced)
    os.replace = real_replace
    torch.save(res, out / f'rank{distributed.rank()}.pt')


if __name__ == '__main__':
    main(Path(sys.argv[1]))
