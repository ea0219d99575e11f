"""Study tools: measuring how runs, time modes and solvers differ.

What lives here today:

* :mod:`ctsnn.analysis.spike_matching` — match the spikes of two runs: nearest-spike distances,
  :func:`spike_time_error`, :func:`compare_spikes` (counts, count differences, time error).
* :mod:`ctsnn.analysis.time_modes` — :func:`run_time_modes` (one network under several
  ``(time, dt)`` settings) and :func:`compare_runs` (every layer against a reference run), the
  study behind ``ctsnn demo``.
* :mod:`ctsnn.analysis.convergence_orders` — observed convergence orders of spike times in both
  time modes against a tight adaptive reference (``python -m ctsnn.analysis.convergence_orders``;
  the figures of ``docs/accuracy.md``).

What will live here: convergence studies as a public call (error against ``dt``),
work-precision diagrams (error against wall time per solver), and gradient checks of the two
gradient methods against each other and against finite differences.
"""

from .spike_matching import (
    SpikeComparison,
    compare_spikes,
    mean_nearest_distance,
    nearest_spike_distances,
    spike_time_error,
)
from .time_modes import TimeModeRun, compare_runs, run_time_modes

__all__ = [
    "SpikeComparison", "TimeModeRun", "compare_runs", "compare_spikes", "mean_nearest_distance",
    "nearest_spike_distances", "run_time_modes", "spike_time_error",
]
