"""Figures of :mod:`ctsnn.analysis` results: work-precision and convergence diagrams."""

from __future__ import annotations

import math
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..analysis.compare import EXACT_BELOW
from .rasters import legend_outside

METRICS = {"time_error": "mean spike-time error (s)", "distance": "van Rossum distance"}


def _groups(comparison: Any) -> dict[tuple[str, str | None], list[Any]]:
    groups: dict[tuple[str, str | None], list[Any]] = {}
    for run in comparison.runs:
        groups.setdefault((run.time, run.method), []).append(run)
    return groups


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    return metric


def _finish(ax: Axes, comparison: Any, layer: int, kind: str, zeros: int,
            title: str | None) -> None:
    """Log axes without crowded minor labels, a grid, the title and an outside legend."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    n_layers = len(comparison.reference.layers)
    index = layer % n_layers
    ref = comparison.reference
    ax.set_title(title or (f"{kind}, layer {index} of {n_layers}\n(reference: {ref.time}, "
                           f"dt = {ref.dt * 1e3:g} ms; point labels: dt in ms"
                           + (f"; {zeros} run(s) with error 0 not shown)" if zeros else ")")),
                 fontsize=10)
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax)


def _draw_series(ax: Axes, comparison: Any, x_of: Any, metric: str, layer: int) -> int:
    """One line per (time, method) group; returns the number of points with error 0."""
    zeros = 0
    markers = ("o", "s", "^", "D", "v", "P")
    for i, ((mode, method), runs) in enumerate(_groups(comparison).items()):
        runs = sorted(runs, key=lambda r: r.dt)
        pts = [(x_of(r), getattr(r.layers[layer], metric), r.dt) for r in runs]
        zeros += sum(1 for _, e, _ in pts if not e > 0)
        pts = [p for p in pts if p[1] > 0 and math.isfinite(p[1])]
        if not pts:
            continue
        label = mode + (f", {method}" if method else "")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)],
                ms=5, lw=1.2, label=label)
        for x, e, dt in pts:
            ax.annotate(f"{dt * 1e3:g}", (x, e), textcoords="offset points", xytext=(4, 3),
                        fontsize=7)
    return zeros


def work_precision_plot(comparison: Any, *, layer: int = -1, metric: str = "time_error",
                        title: str | None = None) -> Figure:
    """Error against wall time (log-log) of every run of a
    :func:`ctsnn.analysis.work_precision` / :func:`ctsnn.compare_time_modes` result: one line
    per (time mode, method), each point labelled with its ``dt`` in ms. Lower left is better.

    Args:
        comparison: a :class:`~ctsnn.analysis.TimeModeComparison`.
        layer: the layer whose error is drawn (default the last).
        metric: ``"time_error"`` (s) or ``"distance"`` (van Rossum).
        title: axes title (default names the reference).

    Runs with error 0 (e.g. the reference itself) cannot sit on a log axis; the title says how
    many were left out.
    """
    _check_metric(metric)
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    zeros = _draw_series(ax, comparison, lambda r: r.wall_s, metric, layer)
    ax.set_xlabel("wall time per run (s)")
    ax.set_ylabel(METRICS[metric])
    _finish(ax, comparison, layer, "Work-precision", zeros, title)
    return fig


def convergence_plot(comparison: Any, *, layer: int = -1, metric: str = "time_error",
                     title: str | None = None) -> Figure:
    """Error against grid step ``dt`` (log-log) per (time mode, method), with the observed
    (fitted) order in the legend and dotted first- and second-order guide lines.

    Args: as :func:`work_precision_plot`.
    """
    _check_metric(metric)
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    zeros = _draw_series(ax, comparison, lambda r: r.dt, metric, layer)
    for line in ax.get_lines():
        mode, _, method = line.get_label().partition(", ")
        order = comparison.order(mode, method or None, layer=layer, metric=metric)
        note = f"order {order:.2f}" if math.isfinite(order) else "no order: exact to rounding" \
            if all(r.layers[layer].time_error <= EXACT_BELOW for r in comparison.runs
                   if (r.time, r.method) == (mode, method or None)) else "order n/a"
        line.set_label(f"{line.get_label()} ({note})")
    finite = [(x, y) for line in ax.get_lines() for x, y in zip(line.get_xdata(),
                                                                 line.get_ydata(), strict=True)]
    if finite:
        x0, y0 = max(finite)
        xs = sorted({x for x, _ in finite})
        for p, style in ((1, ":"), (2, "--")):
            ax.plot(xs, [y0 * (x / x0) ** p for x in xs], color="gray", ls=style, lw=0.8,
                    label=f"slope {p}")
    ax.set_xlabel("grid step dt (s)")
    ax.set_ylabel(METRICS[metric])
    _finish(ax, comparison, layer, "Convergence", zeros, title)
    return fig


__all__ = ["METRICS", "convergence_plot", "work_precision_plot"]
