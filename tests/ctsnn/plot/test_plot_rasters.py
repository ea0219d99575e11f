"""Rasters, membrane traces and the time-mode figures: titled, labelled, legends outside."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from ctsnn.analysis import compare_time_modes
from ctsnn.data import poisson_spikes
from ctsnn.plot import (
    comparison_figure,
    membrane_traces,
    overlay_rasters,
    spike_raster,
    time_mode_figure,
)


def legend_is_outside(ax) -> bool:
    """The legend's anchor is right of the axes (nothing of the data under it)."""
    legend = ax.get_legend()
    return legend is not None and legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1


def test_raster_and_traces_on_axes():
    s = poisson_spikes(5, 50.0, 0.1, batch=2, seed=0)
    fig = Figure()
    ax1, ax2, ax3 = fig.subplots(3, 1)
    spike_raster(ax1, s, sample=1)
    assert len(ax1.collections[0].get_offsets()) == int((s.batch == 1).sum())
    assert ax1.get_xlabel() == "time (s)" and ax1.get_ylabel() == "neuron"
    overlay_rasters(ax2, [(s, "a"), (s, "b")], spread=0.4)
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["a", "b"]
    assert legend_is_outside(ax2)
    ya = ax2.collections[0].get_offsets()[:, 1]
    yb = ax2.collections[1].get_offsets()[:, 1]
    assert torch.allclose(torch.tensor(yb - ya), torch.tensor(0.4, dtype=torch.float64))
    spikes_v = torch.tensor([0.004, 0.009])
    membrane_traces(ax3, [(torch.linspace(0, 1, 10), 1e-3, "v")], threshold=1.0,
                    ylabel="v (mV)", spike_times=[spikes_v])
    line = ax3.get_lines()[0]
    assert line.get_xdata()[-1] == pytest.approx(0.01) and ax3.get_ylabel() == "v (mV)"
    markers = [ln for ln in ax3.get_lines() if ln.get_label() == "v: spikes"]
    assert list(markers[0].get_xdata()) == pytest.approx([0.004, 0.009])
    assert list(markers[0].get_ydata()) == [1.0, 1.0]
    with pytest.raises(ValueError, match="at most"):
        overlay_rasters(ax2, [(s, str(i)) for i in range(5)])
    with pytest.raises(ValueError, match="spike_times has 2 entries"):
        membrane_traces(ax3, [(torch.zeros(3), 1e-3, "v")], spike_times=[None, None])
    with pytest.raises(ValueError, match="sample 3 is out of range"):
        spike_raster(ax1, s, sample=3)
    with pytest.raises(ValueError, match="start < end"):
        spike_raster(ax1, s, window=(0.05, 0.01))


def test_zoom_window_keeps_only_its_spikes():
    s = poisson_spikes(5, 80.0, 0.2, seed=3)
    fig = Figure()
    ax = fig.subplots()
    spike_raster(ax, s, window=(0.05, 0.1))
    x = torch.tensor(ax.collections[0].get_offsets()[:, 0])
    assert len(x) == int(((s.times >= 0.05) & (s.times <= 0.1)).sum()) > 0
    assert ax.get_xlim() == (0.05, 0.1)


def test_time_mode_figure(tmp_path):
    x = poisson_spikes(5, 50.0, 0.1, seed=0)
    h = poisson_spikes(4, 50.0, 0.1, seed=1)
    o = poisson_spikes(2, 50.0, 0.1, seed=2)
    v = torch.rand(100)
    fig = time_mode_figure(x, [([h, o], v, 1e-3, "run a"), ([h, o], v, 1e-3, "run b")],
                           layer_names=["hidden", "output"], threshold=1.0,
                           window=(0.02, 0.08), title="demo")
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes][1:] == ["hidden", "output", "v of hidden neuron 0"]
    assert fig.get_suptitle() == "demo"
    assert axes[-1].get_xlabel() == "time (s)" and axes[-1].get_xlim() == (0.02, 0.08)
    assert all(ax.get_ylabel() for ax in axes)
    path = tmp_path / "f.png"
    fig.savefig(path, dpi=50)
    assert path.stat().st_size > 5_000
    assert legend_is_outside(axes[1]) and legend_is_outside(axes[-1])
    with pytest.raises(ValueError, match="layers"):
        time_mode_figure(x, [([h], v, 1e-3, "a")], layer_names=["hidden", "output"])


def test_comparison_figure(tmp_path, float64):
    import ctsnn

    gen = torch.Generator().manual_seed(0)
    net = [ctsnn.Layer(ctsnn.LIF(4, tau_mem=0.02), torch.rand(4, 6, generator=gen) * 2),
           ctsnn.Layer(ctsnn.LIF(2, tau_mem=0.02), torch.rand(2, 4, generator=gen) * 2)]
    x = poisson_spikes(6, 80.0, 0.05, seed=0)
    cmp = compare_time_modes(net, x, [1e-3, 5e-4], modes=("discrete",),
                             reference=("continuous", 5e-4))
    fig = comparison_figure(cmp, [("continuous", 5e-4), ("discrete", 1e-3)],
                            layer_names=["hidden", "out"], window=(0.0, 0.05))
    axes = fig.get_axes()
    assert axes[0].get_title().startswith("hidden — mean spike-time error vs reference: 0 ms")
    assert axes[1].get_xlabel() == "time (s)" and axes[0].get_ylabel() == "neuron"
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == [
        "continuous dt=0.5 ms", "discrete dt=1 ms"]
    fig.savefig(tmp_path / "c.png", dpi=50)
    with pytest.raises(KeyError, match="no run"):
        comparison_figure(cmp, [("discrete", 2e-3)])
    with pytest.raises(ValueError, match="layer names"):
        comparison_figure(cmp, [("discrete", 1e-3)], layer_names=["one"])
