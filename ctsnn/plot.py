"""Figures: spike rasters and membrane traces (matplotlib, no pyplot state).

Small functions that draw on a given ``matplotlib`` ``Axes`` (so they compose into any layout),
plus :func:`time_mode_figure`, the figure of ``ctsnn demo``. Time axes are in seconds. The
functions build :class:`matplotlib.figure.Figure` objects directly and never touch pyplot's
global state or backend: save with ``fig.savefig(path)``.

What will live here too: delay distributions and their evolution during training, delay-kernel
shapes, and convergence / work-precision plots of :mod:`ctsnn.analysis`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from .spikes import Spikes

#: Colours and markers used, in order, for overlaid runs.
RUN_STYLES: tuple[tuple[str, str], ...] = (
    ("tab:blue", "|"), ("tab:orange", "x"), ("tab:green", "+"), ("tab:red", "1"),
)


def spike_raster(ax: Axes, spikes: Spikes, *, sample: int = 0, color: str = "k",
                 marker: str = "o", size: float = 3.0, label: str | None = None) -> None:
    """Scatter the spikes of one sample: time (s) on x, neuron index on y.

    Args:
        ax: axes to draw on.
        spikes: the events; only sample ``sample`` is drawn.
        color, marker, size, label: matplotlib scatter style (``label`` for a legend).
    """
    keep = spikes.batch == sample
    ax.scatter(spikes.times[keep].detach().cpu(), spikes.units[keep].cpu(), s=size, c=color,
               marker=marker, label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("neuron")


def overlay_rasters(ax: Axes, runs: Sequence[tuple[Spikes, str]], *, sample: int = 0,
                    size: float = 14.0, legend: bool = True) -> None:
    """Rasters of several runs of the same neurons on one axes, one colour and marker per run
    (:data:`RUN_STYLES`), so shifted, missing or extra spikes stand out.

    Args:
        ax: axes to draw on.
        runs: ``(spikes, label)`` per run.
        sample: the sample drawn from each run.
    """
    if len(runs) > len(RUN_STYLES):
        raise ValueError(f"overlay_rasters draws at most {len(RUN_STYLES)} runs, got {len(runs)}")
    for (spikes, label), (color, marker) in zip(runs, RUN_STYLES, strict=False):
        spike_raster(ax, spikes, sample=sample, color=color, marker=marker, size=size,
                     label=label)
    if legend:
        ax.legend(loc="upper right", fontsize=8)


def membrane_traces(ax: Axes, traces: Sequence[tuple[Tensor, float, str]], *,
                    threshold: float | None = None, ylabel: str = "membrane v",
                    legend: bool = True) -> None:
    """Membrane traces against time (s), one line per run.

    Args:
        ax: axes to draw on.
        traces: ``(v, dt, label)`` per run, ``v [T]`` the value at the end of each of ``T``
            steps of ``dt`` seconds (as :func:`ctsnn.simulate` records), drawn at
            ``dt, 2 dt, ..., T dt``.
        threshold: draw the firing threshold as a dotted line.
        ylabel: y-axis label (include the unit).
    """
    for (v, dt, label), (color, _) in zip(traces, RUN_STYLES, strict=False):
        v = v.detach().cpu()
        t = torch.arange(1, len(v) + 1) * dt
        ax.plot(t, v, color=color, lw=0.8, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls=":", lw=0.8, label="threshold")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(loc="upper right", fontsize=8)


def time_mode_figure(
    inputs: Spikes,
    runs: Sequence[tuple[Sequence[Spikes], Tensor, float, str]],
    *,
    layer_names: Sequence[str],
    trace_name: str = "v of hidden neuron 0",
    threshold: float | None = None,
    sample: int = 0,
) -> Figure:
    """The figure comparing runs of one network: input raster, each layer's overlaid rasters,
    and one membrane trace per run.

    Args:
        inputs: the input spikes (top panel).
        runs: ``(spikes per layer, trace [T], dt, label)`` per run (at most
            ``len(RUN_STYLES)``); ``trace`` is the membrane of one neuron, ``dt`` its step (s).
        layer_names: one panel title per layer.
        trace_name: what the trace is (title of the bottom panel).
        threshold: the traced neuron's threshold, drawn as a dotted line.
        sample: the sample drawn.

    Returns:
        A :class:`~matplotlib.figure.Figure` (save it with ``fig.savefig(path)``).
    """
    n_layers = len(layer_names)
    if any(len(layers) != n_layers for layers, *_ in runs):
        raise ValueError(f"every run needs spikes for the {n_layers} layers {list(layer_names)}")
    fig = Figure(figsize=(9, 3 + 2 * n_layers))
    axes = fig.subplots(n_layers + 2, 1, sharex=True,
                        gridspec_kw={"height_ratios": [1] + [1.5] * n_layers + [1.4]})
    spike_raster(axes[0], inputs, sample=sample)
    axes[0].set_title(f"input: {int((inputs.batch == sample).sum())} spikes")
    axes[0].set_ylabel("input channel")
    for k, name in enumerate(layer_names):
        overlay_rasters(axes[k + 1], [(layers[k], label) for layers, _, _, label in runs],
                        sample=sample, legend=k == 0)
        axes[k + 1].set_title(name)
    membrane_traces(axes[-1], [(trace, dt, label) for _, trace, dt, label in runs],
                    threshold=threshold, ylabel="v (model units)")
    axes[-1].set_title(trace_name)
    for ax in axes[:-1]:
        ax.set_xlabel("")  # shared x axis: the time label sits under the bottom panel
    fig.tight_layout()
    return fig


__all__ = [
    "RUN_STYLES", "membrane_traces", "overlay_rasters", "spike_raster", "time_mode_figure",
]
