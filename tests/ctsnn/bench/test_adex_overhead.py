"""The generic-model overhead measurement on a tiny AdEx network (nothing is timed here)."""

from __future__ import annotations

import json

import pytest
import torch

from ctsnn.bench import adex_overhead
from ctsnn.compiled import use_kernels


def test_the_network_spikes_and_repeats_exactly() -> None:
    call = adex_overhead.build(batch=2, n_in=50, n=8, duration=0.03)
    a, b = call(), call()
    assert len(a.spikes) > 0
    assert torch.equal(a.spikes.times, b.spikes.times)


def test_torch_calls_are_counted() -> None:
    x = torch.ones(3)
    assert adex_overhead.torch_call_count(lambda: (x + 1) * 2) == 2
    call = adex_overhead.build(batch=1, n_in=5, n=4, duration=0.005)
    with use_kernels(False):  # the reference engine, step by step from Python
        assert adex_overhead.torch_call_count(call) > 100


def test_main_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert adex_overhead.main(batch=1, n_in=5, n=4, duration=0.005, repeats=1) == 0
    line = json.loads(capsys.readouterr().out)
    ours = line["ours"]
    assert ours["eager"]["torch_calls"] > 0 and line["config"]["method"] == "rk4"
    for side in ("compiled_steps", "generic_loop"):
        assert ours[f"{side}_vs_eager"]["same_spiking_units"] is True
        assert ours["eager"]["n_spikes"] == ours[side]["n_spikes"]
    assert ours["generic_loop"]["torch_calls"] < ours["eager"]["torch_calls"]
