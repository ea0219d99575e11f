"""Spike rasters and membrane traces, alone or with several runs overlaid.

Functions that draw on a given ``matplotlib`` ``Axes`` (so they compose into any layout), plus
:func:`time_mode_figure` (the figure of ``ctsnn demo``) and :func:`comparison_figure` (the
rasters of a :func:`ctsnn.compare_time_modes` result). Time axes are in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from ..spikes import Spikes

#: Colours and markers used, in order, for overlaid runs (filled/unfilled shapes that stay
#: distinct when they overlap: a vertical bar, a cross, a hollow circle, a tri-down).
RUN_STYLES: tuple[tuple[str, str], ...] = (
    ("tab:blue", "|"), ("tab:orange", "x"), ("tab:green", "o"), ("tab:red", "1"),
)


def _window(times: Tensor, window: tuple[float, float] | None) -> Tensor:
    if window is None:
        return torch.ones_like(times, dtype=torch.bool)
    t0, t1 = _check_window(window)
    return (times >= t0) & (times <= t1)


def _check_window(window: tuple[float, float]) -> tuple[float, float]:
    if len(window) != 2 or not float(window[0]) < float(window[1]):
        raise ValueError(f"window must be (start, end) in seconds with start < end, "
                         f"got {window!r}")
    return float(window[0]), float(window[1])


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """A legend to the right of ``ax``, outside the data area (nothing hidden under it)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  fontsize=8, **kwargs)


def spike_raster(ax: Axes, spikes: Spikes, *, sample: int = 0, color: str = "k",
                 marker: str = "|", size: float = 12.0, label: str | None = None,
                 offset: float = 0.0, window: tuple[float, float] | None = None) -> None:
    """Scatter the spikes of one sample: time (s) on x, neuron index on y.

    Args:
        ax: axes to draw on.
        spikes: the events; only sample ``sample`` is drawn.
        color, marker, size, label: matplotlib scatter style (``label`` for a legend).
        offset: added to the neuron index (to set overlaid runs apart vertically).
        window: ``(start, end)`` in seconds: draw only these spikes and zoom the x axis there.
    """
    if not 0 <= sample < max(spikes.batch_size, 1):
        raise ValueError(f"sample {sample} is out of range: the spikes have "
                         f"{spikes.batch_size} samples")
    keep = (spikes.batch == sample) & _window(spikes.times, window)
    unfilled = marker in ("|", "_", "x", "+", "1", "2", "3", "4")
    style = {"c": color} if unfilled else {"facecolors": "none", "edgecolors": color}
    ax.scatter(spikes.times[keep].detach().cpu(), spikes.units[keep].cpu() + offset, s=size,
               marker=marker, label=label, linewidths=1.0, **style)
    if window is not None:
        ax.set_xlim(*window)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("neuron")


def overlay_rasters(ax: Axes, runs: Sequence[tuple[Spikes, str]], *, sample: int = 0,
                    size: float = 14.0, legend: bool = True, spread: float = 0.5,
                    window: tuple[float, float] | None = None) -> None:
    """Rasters of several runs of the same neurons on one axes, one colour and marker per run
    (:data:`RUN_STYLES`), each run shifted vertically within its neuron's row so that
    coincident spikes stay visible and shifted, missing or extra spikes stand out.

    Args:
        ax: axes to draw on.
        runs: ``(spikes, label)`` per run.
        sample: the sample drawn from each run.
        spread: total vertical extent of the offsets within a row (in neuron units; 0 overlays
            the runs exactly).
        window: ``(start, end)`` in seconds to zoom on.
        legend: draw the legend (outside the axes, on the right).
    """
    if len(runs) > len(RUN_STYLES):
        raise ValueError(f"overlay_rasters draws at most {len(RUN_STYLES)} runs, got {len(runs)}")
    n = len(runs)
    for i, ((spikes, label), (color, marker)) in enumerate(zip(runs, RUN_STYLES,
                                                                strict=False)):
        offset = 0.0 if n == 1 else spread * (i / (n - 1) - 0.5)
        spike_raster(ax, spikes, sample=sample, color=color, marker=marker, size=size,
                     label=label, offset=offset, window=window)
    if runs:
        n_units = runs[0][0].n_units
        ax.set_ylim(-0.5 - spread / 2, n_units - 0.5 + spread / 2)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if legend:
        legend_outside(ax)


def membrane_traces(ax: Axes, traces: Sequence[tuple[Tensor, float, str]], *,
                    threshold: float | None = None, ylabel: str = "membrane v",
                    spike_times: Sequence[Tensor | None] | None = None,
                    window: tuple[float, float] | None = None,
                    legend: bool = True) -> None:
    """Membrane traces against time (s), one line per run, with the threshold and the spikes.

    Args:
        ax: axes to draw on.
        traces: ``(v, dt, label)`` per run, ``v [T]`` the value at the end of each of ``T``
            steps of ``dt`` seconds (as :func:`ctsnn.simulate` records), drawn at
            ``dt, 2 dt, ..., T dt``.
        threshold: draw the firing threshold as a dotted line.
        ylabel: y-axis label (include the unit).
        spike_times: per run, the traced neuron's spike times (s) or ``None``: drawn as
            markers on the threshold line (or at the top of the axes without a threshold).
        window: ``(start, end)`` in seconds to zoom on.
        legend: draw the legend (outside the axes, on the right).
    """
    if spike_times is not None and len(spike_times) != len(traces):
        raise ValueError(f"spike_times has {len(spike_times)} entries for {len(traces)} traces")
    if len(traces) > len(RUN_STYLES):
        raise ValueError(f"membrane_traces draws at most {len(RUN_STYLES)} runs, "
                         f"got {len(traces)}")
    for (v, dt, label), (color, _) in zip(traces, RUN_STYLES, strict=False):
        v = v.detach().cpu()
        if v.ndim != 1:
            raise ValueError(f"trace {label!r}: expected v [T], got shape {list(v.shape)}")
        t = torch.arange(1, len(v) + 1, dtype=torch.float64) * dt
        ax.plot(t, v, color=color, lw=0.8, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls=":", lw=0.8, label="threshold")
    if spike_times is not None:
        y = threshold if threshold is not None else ax.get_ylim()[1]
        for (_, _, label), (color, _), times in zip(traces, RUN_STYLES, spike_times,
                                                          strict=False):
            if times is None or len(times) == 0:
                continue
            times = times.detach().cpu()
            times = times[_window(times, window)]
            ax.plot(times, torch.full_like(times, y), ls="none", marker="v", ms=6,
                    color=color, markerfacecolor="none", label=f"{label}: spikes")
    if window is not None:
        ax.set_xlim(*_check_window(window))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if legend:
        legend_outside(ax)


def time_mode_figure(
    inputs: Spikes,
    runs: Sequence[tuple[Sequence[Spikes], Tensor, float, str]],
    *,
    layer_names: Sequence[str],
    trace_name: str = "v of hidden neuron 0",
    trace_neuron: int = 0,
    threshold: float | None = None,
    sample: int = 0,
    window: tuple[float, float] | None = None,
    title: str = "One network in two time modes",
) -> Figure:
    """The figure comparing runs of one network: input raster, each layer's overlaid rasters,
    and one membrane trace per run (with its spikes).

    Args:
        inputs: the input spikes (top panel).
        runs: ``(spikes per layer, trace [T], dt, label)`` per run (at most
            ``len(RUN_STYLES)``); ``trace`` is the membrane of neuron ``trace_neuron`` of the
            first layer, ``dt`` its step (s).
        layer_names: one panel title per layer.
        trace_name: what the trace is (title of the bottom panel).
        threshold: the traced neuron's threshold, drawn as a dotted line.
        sample: the sample drawn.
        window: ``(start, end)`` in seconds to zoom on (e.g. 100 ms of a long run, so that the
            overlaid rasters stay legible).
        title: the figure title.

    Returns:
        A :class:`~matplotlib.figure.Figure` (save it with ``fig.savefig(path)``).
    """
    n_layers = len(layer_names)
    if any(len(layers) != n_layers for layers, *_ in runs):
        raise ValueError(f"every run needs spikes for the {n_layers} layers {list(layer_names)}")
    fig = Figure(figsize=(10, 3 + 2.2 * n_layers), layout="constrained")
    axes = fig.subplots(n_layers + 2, 1, sharex=True,
                        gridspec_kw={"height_ratios": [1] + [1.5] * n_layers + [1.4]})
    spike_raster(axes[0], inputs, sample=sample, size=8, window=window)
    n_shown = int(((inputs.batch == sample) & _window(inputs.times, window)).sum())
    axes[0].set_title(f"input: {n_shown} spikes" + (" in the window" if window else ""))
    axes[0].set_ylabel("input channel")
    for k, name in enumerate(layer_names):
        overlay_rasters(axes[k + 1], [(layers[k], label) for layers, _, _, label in runs],
                        sample=sample, legend=k == 0, window=window)
        axes[k + 1].set_title(name)
    spikes_of_traced = []
    for layers, _, _, _ in runs:
        s = layers[0]
        spikes_of_traced.append(s.times[(s.batch == sample) & (s.units == trace_neuron)])
    membrane_traces(axes[-1], [(trace, dt, label) for _, trace, dt, label in runs],
                    threshold=threshold, ylabel="v (model units)", spike_times=spikes_of_traced,
                    window=window)
    axes[-1].set_title(trace_name)
    for ax in axes[:-1]:
        ax.set_xlabel("")  # shared x axis: the time label sits under the bottom panel
    fig.suptitle(title)
    return fig


def comparison_figure(comparison: Any, settings: Sequence[tuple], *,
                      labels: Sequence[str] | None = None,
                      layer_names: Sequence[str] | None = None, sample: int = 0,
                      window: tuple[float, float] | None = None) -> Figure:
    """Overlaid rasters of chosen runs of a :func:`ctsnn.compare_time_modes` result, one panel
    per layer, titled with each run's spike-time error against the reference.

    Args:
        comparison: a :class:`~ctsnn.analysis.TimeModeComparison`.
        settings: ``(time, dt)`` or ``(time, dt, method)`` of the runs to draw (at most
            ``len(RUN_STYLES)``; the reference's setting is allowed).
        labels: legend label per run (default ``"time dt=... ms"``).
        layer_names: panel titles (default ``"layer k"``).
        sample, window: as in :func:`time_mode_figure`.
    """
    picked = []
    for s in settings:
        run = comparison.get(s[0], s[1], s[2] if len(s) == 3 else None)
        picked.append((run, comparison.simulations[run.setting]))
    labels = list(labels) if labels is not None else [
        f"{r.time} dt={r.dt * 1e3:g} ms" + (f" {r.method}" if r.method else "")
        for r, _ in picked]
    if len(labels) != len(picked):
        raise ValueError(f"{len(labels)} labels for {len(picked)} runs")
    n_layers = len(comparison.reference.layers)
    names = list(layer_names) if layer_names is not None else [f"layer {k}"
                                                               for k in range(n_layers)]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    fig = Figure(figsize=(10, 1.2 + 2.2 * n_layers), layout="constrained")
    axes = fig.subplots(n_layers, 1, sharex=True, squeeze=False)[:, 0]
    for k, ax in enumerate(axes):
        layer_runs = [(res.layers[k].spikes, lab) for (_, res), lab in zip(picked, labels,
                                                                           strict=True)]
        overlay_rasters(ax, layer_runs, sample=sample, window=window, legend=k == 0)
        errs = ", ".join(f"{r.layers[k].time_error * 1e3:.2g} ms" for r, _ in picked)
        ax.set_title(f"{names[k]} — mean spike-time error vs reference: {errs}")
        if k < n_layers - 1:
            ax.set_xlabel("")
    ref = comparison.reference
    fig.suptitle(f"Spikes of {len(picked)} runs (reference: {ref.time}, dt = "
                 f"{ref.dt * 1e3:g} ms)")
    return fig


__all__ = [
    "RUN_STYLES", "comparison_figure", "legend_outside", "membrane_traces", "overlay_rasters",
    "spike_raster", "time_mode_figure",
]
