"""Figures: rasters, membrane traces and the time-mode figure render with labelled axes."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from ctsnn.data import poisson_spikes
from ctsnn.plot import membrane_traces, overlay_rasters, spike_raster, time_mode_figure


def test_raster_and_traces_on_axes():
    s = poisson_spikes(5, 50.0, 0.1, batch=2, seed=0)
    fig = Figure()
    ax1, ax2, ax3 = fig.subplots(3, 1)
    spike_raster(ax1, s, sample=1)
    assert len(ax1.collections[0].get_offsets()) == int((s.batch == 1).sum())
    assert ax1.get_xlabel() == "time (s)" and ax1.get_ylabel() == "neuron"
    overlay_rasters(ax2, [(s, "a"), (s, "b")])
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["a", "b"]
    membrane_traces(ax3, [(torch.linspace(0, 1, 10), 1e-3, "v")], threshold=1.0,
                    ylabel="v (mV)")
    line = ax3.get_lines()[0]
    assert line.get_xdata()[-1] == pytest.approx(0.01) and ax3.get_ylabel() == "v (mV)"
    with pytest.raises(ValueError, match="at most"):
        overlay_rasters(ax2, [(s, str(i)) for i in range(5)])


def test_time_mode_figure(tmp_path):
    x = poisson_spikes(5, 50.0, 0.1, seed=0)
    h = poisson_spikes(4, 50.0, 0.1, seed=1)
    o = poisson_spikes(2, 50.0, 0.1, seed=2)
    v = torch.rand(100)
    fig = time_mode_figure(x, [([h, o], v, 1e-3, "run a"), ([h, o], v, 1e-3, "run b")],
                           layer_names=["hidden", "output"], threshold=1.0)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes][1:] == ["hidden", "output", "v of hidden neuron 0"]
    assert axes[-1].get_xlabel() == "time (s)"
    path = tmp_path / "f.png"
    fig.savefig(path, dpi=50)
    assert path.stat().st_size > 5_000
    with pytest.raises(ValueError, match="layers"):
        time_mode_figure(x, [([h], v, 1e-3, "a")], layer_names=["hidden", "output"])
