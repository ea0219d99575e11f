"""One network under several (time mode, dt) settings, compared with a reference run."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn.analysis import compare_runs, run_time_modes
from ctsnn.data import poisson_spikes

pytestmark = pytest.mark.usefixtures("float64")


def network():
    gen = torch.Generator().manual_seed(0)
    w1 = torch.rand(6, 10, generator=gen) * 0.9
    w2 = torch.rand(3, 6, generator=gen) * 0.6
    return [ctsnn.Layer(ctsnn.CubaLIF(6, tau_mem=0.02, tau_syn=0.005), w1),
            ctsnn.Layer(ctsnn.CubaLIF(3, tau_mem=0.02, tau_syn=0.005), w2)]


def test_continuous_runs_agree_and_discrete_converges():
    net = network()
    x = poisson_spikes(10, 60.0, 0.1, batch=2, seed=0)
    settings = [("continuous", 1e-3), ("continuous", 1e-4), ("discrete", 1e-3),
                ("discrete", 1e-4)]
    runs = run_time_modes(net, x, settings, record=("v",))
    assert [r.setting for r in runs] == settings
    assert all(r.wall_s > 0 for r in runs)
    assert runs[0].result.layers[0].states["v"].shape == (100, 2, 6)
    comparisons = compare_runs(runs, ("continuous", 1e-4))
    assert len(comparisons) == 4 and all(len(c) == 2 for c in comparisons)
    hidden = [c[0] for c in comparisons]
    assert hidden[0].n_spikes > 0 and hidden[1].time_error == 0.0
    assert hidden[0].time_error < 1e-9  # closed-form flow: exact at any dt
    assert hidden[3].time_error < hidden[2].time_error  # discrete time converges with dt
    with pytest.raises(ValueError, match="reference"):
        compare_runs(runs, ("continuous", 1e-5))
