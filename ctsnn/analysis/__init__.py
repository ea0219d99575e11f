"""Study tools: measuring how runs, time modes and solvers differ.

What lives here today:

* :mod:`ctsnn.analysis.spike_matching` — match the spikes of two runs: nearest-spike distances,
  :func:`spike_time_error`, :func:`compare_spikes` (counts, count differences, time error).
* :mod:`ctsnn.analysis.time_modes` — :func:`run_time_modes` (one network under several
  ``(time, dt)`` settings) and :func:`compare_runs` (every layer against a reference run), the
  study behind ``ctsnn demo``.
* :mod:`ctsnn.analysis.compare` — :func:`compare_time_modes` (one call: the same network in
  both time modes at several ``dt``, every layer against a reference run, with wall times and
  observed orders) and :func:`work_precision` (error against wall time over modes, grid steps and
  solvers), both returning a :class:`TimeModeComparison`.
* :mod:`ctsnn.analysis.spike_distance` — the van Rossum distance in closed form.
* :mod:`ctsnn.analysis.orders` — observed and fitted convergence orders.
* :mod:`ctsnn.analysis.convergence_orders` — observed convergence orders of spike times in both
  time modes against a tight adaptive reference (``python -m ctsnn.analysis.convergence_orders``;
  the figures of ``docs/accuracy.md``).

Figures of these results: :mod:`ctsnn.plot`.
"""

from .compare import (
    LayerDifference,
    RunSummary,
    TimeModeComparison,
    compare_time_modes,
    work_precision,
)
from .orders import fitted_order, observed_orders
from .spike_distance import van_rossum_distance, van_rossum_pair
from .spike_matching import (
    SpikeComparison,
    compare_spikes,
    mean_nearest_distance,
    nearest_spike_distances,
    spike_time_error,
)
from .time_modes import TimeModeRun, compare_runs, run_time_modes

__all__ = [
    "LayerDifference", "RunSummary", "SpikeComparison", "TimeModeComparison", "TimeModeRun",
    "compare_runs", "compare_spikes", "compare_time_modes", "fitted_order",
    "mean_nearest_distance", "nearest_spike_distances", "observed_orders", "run_time_modes",
    "spike_time_error", "van_rossum_distance", "van_rossum_pair", "work_precision",
]
