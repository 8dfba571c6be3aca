"""Resumable checkpoints: a fit killed hard (SIGKILL) and resumed ends with the weights of an uninterrupted run.

The training script below runs in subprocesses: seeded, deterministic algorithms, one thread, no loader workers, a
model with dropout (torch's generator), a per-batch input jitter drawn from numpy's and python's generators, and a
training loader with its own generator, so every random state the checkpoint saves is exercised.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from learner import persistence
from learner.callbacks import CheckpointMismatchError, SaveEvery

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ArrayData, tiny_cnn  # noqa: E402

TESTS = Path(__file__).resolve().parent
N_EPOCHS = 4

SCRIPT = textwrap.dedent('''
    """Usage: train.py WORKDIR OUT_FILE [resume] [kill_after_epoch=E | kill_in_epoch=E]"""
    import os, random, signal, sys
    sys.path[:0] = [{tests!r}, {root!r}]  # the helpers, and this checkout's learner
    import numpy as np
    import torch
    from torch import nn
    from conftest import ArrayData, tiny_cnn
    from learner import Learner
    from learner.callbacks import Callback

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    random.seed(0); np.random.seed(0); torch.manual_seed(0)
    workdir, out_file, flags = sys.argv[1], sys.argv[2], dict(a.partition('=')[::2] for a in sys.argv[3:])

    rs = np.random.RandomState(0)
    trn = (rs.randint(0, 256, (72, 16, 16, 3), dtype=np.uint8), rs.randint(0, 3, 72))
    val = (rs.randint(0, 256, (24, 16, 16, 3), dtype=np.uint8), rs.randint(0, 3, 24))
    data = ArrayData(trn, val, workdir, bs=16, seed=0)  # 5 training batches, its own shuffling generator
    body = tiny_cnn(c=3, seed=0)
    model = nn.Sequential(*body[:3], nn.Dropout(0.3), body[3])


    class Jitter(Callback):
        """Input noise from numpy's and python's generators, so their states matter."""
        def before_batch(self):
            if self.learn.training:
                noise = np.random.standard_normal(self.learn.xb.shape).astype(np.float32)
                self.learn.xb = self.learn.xb + torch.from_numpy(noise) * (0.05 * random.random())


    class Kill(Callback):
        """SIGKILL: no cleanup, no after_fit, as a power cut or the OOM killer."""
        order = 1000
        def after_epoch(self):
            if self.learn.epoch == int(flags.get('kill_after_epoch', -1)):
                os.kill(os.getpid(), signal.SIGKILL)
        def after_batch(self):
            if self.learn.training and self.learn.epoch == int(flags.get('kill_in_epoch', -1)) and self.learn.iter == 2:
                os.kill(os.getpid(), signal.SIGKILL)


    learn = Learner(data, model, progress=False, wd=1e-3)
    learn.fit_one_cycle({n_epochs}, max_lr=0.05, checkpoint_every=1, resume='resume' in flags,
                        callbacks=[Jitter(), Kill()])
    rec = learn.recorder
    torch.save({{'model': learn.model.state_dict(), 'lrs': rec.lrs, 'moms': rec.moms, 'losses': rec.losses,
                'valid_losses': rec.valid_losses, 'train_iter': learn.train_iter}}, out_file)
''')


def _run(script: Path, workdir: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, str(script), str(workdir), str(out), *flags], capture_output=True,
                          text=True, timeout=120, env=env)


def _checkpoint(workdir: Path) -> dict:
    return torch.load(workdir / 'models' / 'checkpoint.pth', weights_only=True)  # plain data only


@pytest.mark.slow   # subprocesses end to end: the slow tier
def test_killed_and_resumed_fit_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    script = tmp_path / 'train.py'
    script.write_text(SCRIPT.format(tests=str(TESTS), root=str(TESTS.parent), n_epochs=N_EPOCHS))
    interrupted, reference = tmp_path / 'interrupted', tmp_path / 'reference'

    # 1. killed right after epoch 2 of 4 (its checkpoint was written just before)
    killed = _run(script, interrupted, tmp_path / 'never.pt', 'kill_after_epoch=1')
    assert killed.returncode == -9, killed.stderr
    assert _checkpoint(interrupted)['epoch'] == 1
    # 2. resumed, then killed in the middle of epoch 4: the work of that partial epoch is lost
    killed = _run(script, interrupted, tmp_path / 'never.pt', 'resume', 'kill_in_epoch=3')
    assert killed.returncode == -9, killed.stderr
    assert _checkpoint(interrupted)['epoch'] == 2
    # 3. resumed again to the end; 4. an uninterrupted reference
    for args in ((interrupted, tmp_path / 'resumed.pt', 'resume'), (reference, tmp_path / 'reference.pt')):
        done = _run(script, *args)
        assert done.returncode == 0, done.stderr
    resumed, expected = (torch.load(tmp_path / f, weights_only=True) for f in ('resumed.pt', 'reference.pt'))

    # Same process, same ops in the same order on CPU with deterministic algorithms: bit-for-bit equal.
    assert resumed['model'].keys() == expected['model'].keys()
    for key, value in expected['model'].items():
        assert torch.equal(resumed['model'][key], value), key
    # every batch had the lr and momentum of the uninterrupted run; the history spans all epochs
    assert resumed['train_iter'] == expected['train_iter'] == N_EPOCHS * 5
    assert resumed['lrs'] == expected['lrs'] and resumed['moms'] == expected['moms']
    assert resumed['losses'] == expected['losses'] and resumed['valid_losses'] == expected['valid_losses']
    assert len(resumed['valid_losses']) == N_EPOCHS
    assert sorted(p.name for p in (interrupted / 'models').iterdir()) == ['checkpoint.pth']  # no temp files left


# ------------------------------------------------------------------------------------------- in-process checks
def _learner(tmp_path: Path):
    from learner import Learner
    rs = np.random.RandomState(0)
    trn = (rs.randint(0, 256, (32, 8, 8, 3), dtype=np.uint8), rs.randint(0, 2, 32))
    val = (rs.randint(0, 256, (16, 8, 8, 3), dtype=np.uint8), rs.randint(0, 2, 16))
    return Learner(ArrayData(trn, val, tmp_path, bs=16), tiny_cnn(c=2), progress=False)


@pytest.mark.parametrize('change', [dict(n_epochs=3), dict(max_lr=0.02), dict(pct_start=0.5)])
def test_resume_with_another_schedule_is_refused_naming_the_file(tmp_path, change):
    learn = _learner(tmp_path)
    learn.fit_one_cycle(2, max_lr=0.01, checkpoint_every=1)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    args = {'n_epochs': 2, 'max_lr': 0.01, **change}
    with pytest.raises(CheckpointMismatchError, match=r'checkpoint\.pth belongs to a different fit') as err:
        learn.fit_one_cycle(args.pop('n_epochs'), checkpoint_every=1, resume=True, **args)
    assert 'resume=False' in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())  # nothing was loaded
    with pytest.raises(CheckpointMismatchError, match='schedule'):  # fit_sgdr's schedule is another kind
        learn.fit_sgdr(1, 2, 0.01, resume=True)


def test_resume_without_a_checkpoint_or_from_a_weights_file(tmp_path):
    learn = _learner(tmp_path)
    with pytest.raises(FileNotFoundError, match='checkpoint_every'):
        learn.fit_one_cycle(1, resume=True)
    learn.save('checkpoint')
    with pytest.raises(CheckpointMismatchError, match='not a resumable checkpoint'):
        learn.fit_one_cycle(1, resume=True)


def test_resuming_a_finished_fit_changes_nothing_and_checkpoint_loads_as_weights(tmp_path):
    learn = _learner(tmp_path)
    result = learn.fit(0.01, 2, cycle_len=1, checkpoint_every=2)
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    assert learn.fit(0.01, 2, cycle_len=1, resume=True) == result  # nothing left to run
    assert all(torch.equal(weights[k], v) for k, v in learn.model.state_dict().items())
    assert len(learn.recorder.valid_losses) == 2
    fresh = _learner(tmp_path)
    fresh.load('checkpoint')  # the checkpoint is also an ordinary weights + optimizer file
    assert all(torch.equal(weights[k], v) for k, v in fresh.model.state_dict().items())


def test_checkpoint_is_never_half_written(tmp_path, monkeypatch):
    learn = _learner(tmp_path)
    learn.fit_one_cycle(1, checkpoint_every=1)
    file = tmp_path / 'models' / 'checkpoint.pth'
    good = file.read_bytes()

    def crash_mid_write(obj, f):  # half the bytes reach the disk, then the process "dies"
        f.write(good[:len(good) // 2])
        raise KeyboardInterrupt
    monkeypatch.setattr(persistence.torch, 'save', crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        learn.fit_one_cycle(1, checkpoint_every=1)
    monkeypatch.undo()
    assert file.read_bytes() == good  # the previous checkpoint is intact
    assert [p.name for p in file.parent.iterdir()] == ['checkpoint.pth']  # the temp file was removed
    assert _checkpoint(tmp_path)['epoch'] == 0


def test_save_every_validates_and_saves_on_its_epochs(tmp_path):
    with pytest.raises(ValueError, match='positive'):
        SaveEvery(0)
    learn = _learner(tmp_path)
    saver = SaveEvery(2, name='every2')
    saved_at = []

    class Spy(SaveEvery):
        def state(self):
            saved_at.append(self.learn.epoch)
            return super().state()
    learn.fit_one_cycle(5, callbacks=[saver, Spy(2, name='spy')])
    assert saved_at == [1, 3, 4]  # every 2 epochs, and the last one
    assert (tmp_path / 'models' / 'every2.pth').exists()
