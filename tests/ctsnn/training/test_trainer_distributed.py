"""Data parallelism: two gloo processes on loopback equal one process on the same global batch.

Two worker processes are started the way ``torchrun`` starts them (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT`` in the environment), a third runs alone. Each computes the
gradient of one global batch of 51 samples (shares 26/25: uneven on purpose) and then trains
the same model with the :class:`~ctsnn.training.Trainer` for two epochs (global batches of 20;
the last batch of each epoch, 11 samples, splits 6/5).

Tolerances: the two-process gradient is ``g_0 + g_1`` (each share's mean loss scaled by its
share of the batch, summed by the all-reduce), the one-process gradient sums the same terms in
another order; in float32 that differs by a few ulps, so gradients are compared with
``rtol = 1e-5, atol = 1e-7`` (about 100 float32 ulps of the largest entry). After 10 Adam
steps those differences stay at the 1e-6 level for weights of order 0.1-1 (Adam divides by
the gradient's running RMS, so relative gradient errors become relative step errors of the
same size), hence ``atol = 1e-5`` on the trained weights. The two ranks hold bit-identical
weights (same all-reduced gradient on both).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ctsnn.training.distributed import DistContext, shard

ROOT = Path(__file__).resolve().parents[3]

WORKER = textwrap.dedent('''
    import sys
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import TensorDataset

    from ctsnn.training import Trainer, TrainerConfig
    from ctsnn.training.distributed import all_reduce_gradients, init_distributed, shard

    torch.set_num_threads(1)
    out = sys.argv[1]
    ctx = init_distributed("cpu")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = (x[:, 0] - x[:, 2] > 0).long() + (x[:, 1] > 1).long()
    data = TensorDataset(x, y)

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))

    net = model()
    batch = list(range(51))
    mine = shard(batch, ctx)
    loss = F.cross_entropy(net(x[mine]), y[mine]) * (len(mine) / len(batch))
    loss.backward()
    all_reduce_gradients(net.parameters(), ctx)
    grads = [p.grad.clone() for p in net.parameters()]

    trained = model()
    cfg = TrainerConfig(epochs=2, batch_size=20, lr=1e-2, val_fraction=0.2, seed=1,
                        progress=False, device="cpu")
    final = Trainer(trained, data, cfg, out_dir=out + "/run", test_set=data).fit()
    torch.save({"grads": grads, "weights": trained.state_dict(), "final": final,
                "world": ctx.world, "share": len(mine)}, f"{out}/rank{ctx.rank}.pt")
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@given(st.integers(0, 200), st.integers(1, 9))
def test_shards_partition_a_batch_contiguously(n, world):
    batch = list(range(100, 100 + n))
    parts = [shard(batch, DistContext(rank, world)) for rank in range(world)]
    assert [i for p in parts for i in p] == batch
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    base = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        base.pop(k, None)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "one")], env=base,
                              stderr=subprocess.PIPE, text=True)]
    for rank in range(2):
        env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "two")],
                                      env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    one = torch.load(tmp_path / "one" / "rank0.pt", weights_only=False)
    r0 = torch.load(tmp_path / "two" / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "two" / "rank1.pt", weights_only=False)
    assert (one["world"], r0["world"], r0["share"], r1["share"]) == (1, 2, 26, 25)
    print("max |grad diff|", max(float((a - b).abs().max())
                                 for a, b in zip(one["grads"], r0["grads"], strict=True)),
          "max |weight diff|", max(float((one["weights"][k] - r0["weights"][k]).abs().max())
                                   for k in one["weights"]))
    for a, b, c in zip(one["grads"], r0["grads"], r1["grads"], strict=True):
        assert torch.equal(b, c)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    for k in one["weights"]:
        assert torch.equal(r0["weights"][k], r1["weights"][k]), k
        torch.testing.assert_close(r0["weights"][k], one["weights"][k], rtol=0, atol=1e-5)
    # rank 0 alone wrote the run; metrics are summed over both ranks
    assert sorted(p.name for p in (tmp_path / "two" / "run").iterdir()) == [
        "best.pt", "final.json", "last.pt", "log.csv", "run.json"]
    assert r0["final"]["test"]["samples"] == one["final"]["test"]["samples"] == 64
    assert abs(r0["final"]["test"]["accuracy"] - one["final"]["test"]["accuracy"]) <= 1 / 64
