"""The shortest user script under torchrun: a DataBunch of arrays, a Learner, one fit, then the script ends.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_scripts/plain_fit.py

Nothing in it mentions processes. tests/test_distributed.py runs it several times and requires every process to
exit with status 0 (leaving the process group at exit once aborted one process in four).
"""
import numpy as np
import torch
from torch import nn

from learner import DataBunch, Learner, accuracy

torch.manual_seed(0)
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (48, 8, 8, 3), dtype=np.uint8)
y = (x[..., 0].mean((1, 2)) > 127).astype(np.int64)
data = DataBunch.from_arrays('.', (x[:32], y[:32]), (x[32:], y[32:]), bs=8)
model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 16), nn.ReLU(), nn.Linear(16, 2))
learn = Learner(data, model, metrics=[accuracy], progress=False)
learn.fit(0.01, 2)
