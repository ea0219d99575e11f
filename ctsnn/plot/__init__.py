"""Figures (matplotlib, no pyplot state): rasters, membrane traces, training and study plots.

Every function builds a :class:`matplotlib.figure.Figure` directly (or draws on a given
``Axes``) and never touches pyplot's global state or backend: save with ``fig.savefig(path)``.
Time axes are in seconds, delays in ms; every axes has a title and labelled axes, and legends
sit outside the data area.

* :mod:`ctsnn.plot.rasters` — :func:`spike_raster`, :func:`overlay_rasters` (runs offset
  within each neuron's row, zoom window), :func:`membrane_traces` (threshold and spike
  markers), :func:`time_mode_figure` (``ctsnn demo``), :func:`comparison_figure` (a
  :func:`ctsnn.compare_time_modes` result).
* :mod:`ctsnn.plot.training` — :func:`learning_curves` (from a CSV / JSONL run log),
  :func:`delay_distributions`, :func:`kernel_evolution` (DCLS kernel positions and widths over
  epochs).
* :mod:`ctsnn.plot.study` — :func:`work_precision_plot`, :func:`convergence_plot`.
"""

from .rasters import (
    RUN_STYLES,
    comparison_figure,
    legend_outside,
    membrane_traces,
    overlay_rasters,
    spike_raster,
    time_mode_figure,
)
from .study import convergence_plot, work_precision_plot
from .training import delay_distributions, kernel_evolution, learning_curves, read_training_log

__all__ = [
    "RUN_STYLES", "comparison_figure", "convergence_plot", "delay_distributions",
    "kernel_evolution", "learning_curves", "legend_outside", "membrane_traces",
    "overlay_rasters", "read_training_log", "spike_raster", "time_mode_figure",
    "work_precision_plot",
]
