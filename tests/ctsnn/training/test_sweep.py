"""Multi-seed sweeps: one run per seed, aggregated mean ± std, resumable."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from ctsnn.training import TrainerConfig, aggregate, format_mean_std, seed_sweep


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=8))
def test_aggregate_matches_statistics(values):
    stats = aggregate([{"test": {"accuracy": v}, "flag": True} for v in values])
    assert set(stats) == {"test.accuracy"}
    s = stats["test.accuracy"]
    assert s["mean"] == pytest.approx(statistics.fmean(values), abs=1e-9)
    assert s["std"] == pytest.approx(statistics.stdev(values), abs=1e-6)
    assert s["sem"] == pytest.approx(s["std"] / math.sqrt(len(values)))
    assert s["values"] == values


def test_seed_sweep_runs_each_seed_and_is_resumable(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, generator=g)
    data = TensorDataset(x, (x[:, 0] > 0).long())

    def model(seed):
        torch.manual_seed(seed)
        return nn.Linear(3, 2)

    cfg = TrainerConfig(epochs=2, batch_size=16, lr=0.05, progress=False)
    result = seed_sweep(model, data, cfg, [0, 3], out_dir=tmp_path, test_set=data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0", "seed3", "sweep.json"]
    acc = result["aggregate"]["test.accuracy"]
    assert acc["n"] == 2 and acc["values"] == [result["runs"]["0"]["test"]["accuracy"],
                                               result["runs"]["3"]["test"]["accuracy"]]
    assert json.loads((tmp_path / "sweep.json").read_text()) == result
    assert seed_sweep(model, data, cfg, [0, 3], out_dir=tmp_path, test_set=data) == result
    assert format_mean_std({"mean": 0.9512, "std": 0.0031, "n": 3}) == "95.12 ± 0.31 (n = 3)"
    with pytest.raises(ValueError, match="distinct"):
        seed_sweep(model, data, cfg, [1, 1], out_dir=tmp_path)
