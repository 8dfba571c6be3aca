"""DistributedDataParallel under torchrun: 2 CPU processes with gloo, checked against one process.

One torchrun run of tests/ddp_scripts/ddp_run.py (a plain training script) serves most tests: each process writes
what it saw to rank<r>.pt. The samplers, the launcher and the checkpoint guard are tested in this process.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from learner import distributed
from learner.sharding import ShardSampler
from learner.launch import launch

SCRIPTS = Path(__file__).resolve().parent / 'ddp_scripts'
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))
import ddp_run  # noqa: E402  (the script under test; `train_mlp` is run on one process here)


# ------------------------------------------------------------------------------------------ in this process
def test_train_shards_cover_every_item_in_global_batch_order():
    n, world, bs = 10, 3, 2
    shards = []
    for r in range(world):
        s = ShardSampler(n, r, world, shuffle=True, even=True)
        s.set_epoch(0, seed=123)
        shards.append(list(s))
    assert [len(s) for s in shards] == [4, 4, 4]             # ceil(10 / 3): every process as many batches
    everything = sum(shards, [])
    assert set(everything) == set(range(n)) and len(everything) - n == 2   # padding repeats world - 1 = 2 items
    order = torch.randperm(n, generator=torch.Generator().manual_seed(123)).tolist()
    # batch k of all processes together = items k*bs*world ... (k+1)*bs*world of the permutation (one process, bs x 3)
    first_global_batch = sorted(sum((s[:bs] for s in shards), []))
    assert first_global_batch == sorted(order[:bs * world])
    again = ShardSampler(n, 0, world, shuffle=True, even=True)
    again.set_epoch(1, seed=124)
    assert list(again) != shards[0]                          # another epoch, another order


def test_eval_shards_are_contiguous_blocks_in_data_set_order():
    blocks = [list(ShardSampler(21, r, 2)) for r in range(2)]
    assert blocks == [list(range(10)), list(range(10, 21))]  # nothing dropped or repeated, rank order = data order
    with pytest.raises(ValueError, match='at least one'):
        ShardSampler(1, 0, 2)


def test_package_loaders_read_the_sampler_indices(tmp_path):
    from learner import ImageClassifierData
    x = np.zeros((10, 8, 8, 3), dtype=np.uint8)
    data = ImageClassifierData.from_arrays(tmp_path, (x, np.arange(10)), (x[:4], np.arange(4)), bs=3, num_workers=0)
    sampler = ShardSampler(10, 1, 2, shuffle=True, even=True)
    sampler.set_epoch(0, seed=7)
    loader = data.trn_dl.with_sampler(sampler, drop_last=False)
    seen = torch.cat([yb for _, yb in loader]).tolist()
    assert seen == list(sampler) and len(loader) == 2         # labels are the item numbers here


def test_setup_without_torchrun_environment_says_what_to_do(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.delenv('RANK', raising=False)
    monkeypatch.delenv('MASTER_ADDR', raising=False)
    with pytest.raises(RuntimeError, match='torchrun'):
        distributed.setup('cpu')
    monkeypatch.delenv('WORLD_SIZE')
    assert distributed.setup('cpu') == torch.device('cpu') and not distributed.is_distributed()


def test_checkpoint_of_another_number_of_processes_is_refused(tmp_path):
    from learner.callbacks.checkpoint import CheckpointMismatchError
    from learner.learner import Learner
    learn = Learner(ddp_run.VectorData(tmp_path, 16, shuffle=True), ddp_run.mlp(), progress=False)
    learn.fit(0.1, 1, checkpoint_every=1)
    file = tmp_path / 'models' / 'checkpoint.pth'
    state = torch.load(file, weights_only=True)
    assert state['world_size'] == 1
    state['world_size'] = 2
    torch.save(state, file)
    with pytest.raises(CheckpointMismatchError, match='processes: saved 2, this fit 1'):
        learn.fit(0.1, 1, checkpoint_every=1, resume=True)


# ------------------------------------------------------------------------------------------ torchrun, 2 processes
@pytest.fixture(scope='module')
def ddp(tmp_path_factory):
    """Both processes' records of one `torchrun --nproc_per_node 2` run of ddp_run.py."""
    out = tmp_path_factory.mktemp('ddp')
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
           'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
    env.pop('WORLD_SIZE', None)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(SCRIPTS / 'ddp_run.py'), str(out)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f'torchrun did not finish in 240 s (a hang?): {(err.stdout or "")[-3000:]}')
    if done.returncode != 0:
        pytest.fail(f'torchrun failed ({done.returncode}):\n{(done.stdout + done.stderr)[-6000:]}')
    return [torch.load(out / f'rank{r}.pt', weights_only=False) for r in range(2)], out


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.slow
def test_both_processes_end_with_identical_weights(ddp):
    (r0, r1), _ = ddp
    assert r0['world'] == r1['world'] == 2 and (r0['rank'], r1['rank']) == (0, 1)
    assert _max_diff(r0['images']['straight'], r1['images']['straight']) == 0   # BatchNorm statistics included
    assert _max_diff(r0['vectors']['exact']['weights'], r1['vectors']['exact']['weights']) == 0


@pytest.mark.slow
def test_each_process_trains_on_its_half_of_each_epoch(ddp):
    (r0, r1), _ = ddp
    n = ddp_run.N_TRAIN
    for e0, e1 in zip(r0['vectors']['shuffled_items'], r1['vectors']['shuffled_items']):
        assert len(e0) == len(e1) == n // 2
        assert set(e0).isdisjoint(e1) and set(e0) | set(e1) == set(range(n))   # shuffled the same way everywhere
    epochs = r0['vectors']['shuffled_items']
    assert epochs[0] != epochs[1]                                               # set_epoch: a new order each epoch
    assert r0['vectors']['exact']['items'][0] == list(range(0, n, 2))           # unshuffled: every other item


@pytest.mark.slow
def test_two_processes_of_bs16_match_one_process_of_bs32(ddp, tmp_path):
    # The same global batches in the same order (unshuffled, 64 items = 2 x 32), no BatchNorm: DDP's averaged
    # gradient equals the bs-32 gradient, so the runs differ only by float32 summation order (seen: 3e-8 after
    # 6 steps). atol 1e-5 is 300x that, while a wrong reduction (summed gradients = doubled lr, a missing average,
    # a duplicated shard) moves the weights by more than 1e-2.
    (r0, _), _ = ddp
    one = ddp_run.train_mlp(tmp_path, 32)
    two = r0['vectors']['exact']
    assert _max_diff(one['weights'], two['weights']) < 1e-5
    np.testing.assert_allclose(two['train_losses'], one['train_losses'], atol=1e-5)
    # validation loss and accuracy over the whole set (gathered, then the metric): the one-process figures
    np.testing.assert_allclose(two['result'], one['result'], atol=1e-5)


@pytest.mark.slow
def test_predictions_hold_every_item_once_in_order_on_each_process(ddp):
    for r in ddp[0]:
        im = r['images']
        n_valid = ddp_run.N_VALID
        assert im['preds'].shape == (n_valid, 2) and im['precompute_preds'].shape == (n_valid, 2)
        assert np.array_equal(im['targs'], im['val_y'])                 # data-set order
        local = torch.log_softmax(im['local_preds'], -1).numpy()          # the whole set run on this process alone
        np.testing.assert_allclose(im['preds'], local, atol=1e-5)
        assert im['test_preds'].shape == (ddp_run.N_TEST, 2)
        assert im['confusion'].sum() == n_valid                           # interpretation sees every item once
    np.testing.assert_array_equal(ddp[0][0]['images']['preds'], ddp[0][1]['images']['preds'])


@pytest.mark.slow
def test_tta_holds_every_item_once_on_each_process(ddp):
    for r in ddp[0]:
        assert r['images']['tta_shape'] == (2, ddp_run.N_VALID, 2)


@pytest.mark.slow
def test_only_process_0_writes_and_prints(ddp):
    (r0, r1), out = ddp
    assert r1['replaced'] == [] and r1['images']['builds'] == [] and r1['images']['stdout'] == ''
    written = {Path(p).relative_to(out).as_posix() for p in r0['replaced']}
    assert 'before_learner.pth' in written                                # a write before any Learner existed
    for name in ('start', 'checkpoint', 'best', 'final', 'export'):
        assert f'images/models/{name}.pth' in written and (out / 'images' / 'models' / f'{name}.pth').exists()
    assert r0['images']['builds'] == ['train', 'valid', 'test']           # the precompute cache, built once
    assert 'train_loss' in r0['images']['stdout']


@pytest.mark.slow
def test_resume_on_every_process_matches_an_uninterrupted_run(ddp):
    for r in ddp[0]:
        assert _max_diff(r['images']['resumed'], r['images']['straight']) < 1e-6


@pytest.mark.slow
def test_lr_find_and_errors_agree_on_every_process(ddp):
    (r0, r1), _ = ddp
    assert r0['vectors']['lr_find'] == r1['vectors']['lr_find'] and r0['vectors']['lr_find']['unchanged']
    assert len(r0['vectors']['lr_find']['losses']) == 8
    assert 'sync_bn=True needs CUDA' in r0['vectors']['sync_bn_error']


# ------------------------------------------------------------------------------------------ the notebook launcher
def _launched_training(path):
    result = ddp_run.train_mlp(path, 16)
    return {'rank': distributed.rank(), 'world': distributed.world_size(), 'weights': result['weights']}


def _launched_failure():
    distributed.setup('cpu')
    if distributed.rank() == 1:
        raise ValueError('process one gives up')
    distributed.barrier()   # process 0 waits here for a process that is gone: the launcher must stop it


@pytest.mark.slow
def test_launch_runs_a_function_on_n_processes(tmp_path):
    got = launch(_launched_training, 2, tmp_path, timeout=120)
    assert got['rank'] == 0 and got['world'] == 2
    one = ddp_run.train_mlp(tmp_path / 'one', 32)
    assert _max_diff(got['weights'], one['weights']) < 1e-5
    with pytest.raises(RuntimeError, match='process 1 failed(.|\n)*process one gives up'):
        launch(_launched_failure, 2, timeout=120)


def test_a_plain_script_exits_cleanly_on_every_process_run_after_run(tmp_path):
    """Every process of a finished script leaves with status 0: the process group is left together (a barrier on
    a clean exit), never torn down while the other process still uses it (it once aborted 2 runs in 8)."""
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
           'OMP_NUM_THREADS': '1'}
    env.pop('WORLD_SIZE', None)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(SCRIPTS / 'plain_fit.py')]
    for run in range(3):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and 'terminate called' not in output, f'run {run}:\n{output[-4000:]}'


def test_a_script_that_fails_on_one_process_exits_without_hanging(tmp_path):
    script = tmp_path / 'fails.py'
    script.write_text((SCRIPTS / 'plain_fit.py').read_text() + '\nimport os\n'
                      "if os.environ['RANK'] == '1':\n    raise RuntimeError('boom on process 1')\n")
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
           'OMP_NUM_THREADS': '1'}
    env.pop('WORLD_SIZE', None)
    done = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                           str(script)], env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode != 0 and 'boom on process 1' in done.stdout + done.stderr
