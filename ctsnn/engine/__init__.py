"""The stepping engine: below the network layer, knows no gradient method.

* :mod:`~ctsnn.engine.population` — :func:`run_population`, one population for ``n_steps``
  steps (the functional core every network layer and gradient method runs on);
* :mod:`~ctsnn.engine.discrete` and :mod:`~ctsnn.engine.continuous` — the two time-mode loops;
* :mod:`~ctsnn.engine.stepping` — step maps (closed-form flow, Runge-Kutta dense output),
  refractory clamping, delayed reads of the model's own state;
* :mod:`~ctsnn.engine.setup`, :mod:`~ctsnn.engine.spike_log`, :mod:`~ctsnn.engine.recurrence`
  — what the loops share; :mod:`~ctsnn.engine.result` — :class:`SimulationResult`;
* :mod:`~ctsnn.engine.compiled` — numba kernels beside their reference paths (the event-driven
  continuous-time engine that :func:`run_population` selects, see docs/kernels.md).
"""

from .population import INTEGRAL_RULES, TIME_MODES, run_population
from .recurrence import Recurrent
from .result import SimulationResult
from .stepping import METHODS, Method, as_method, is_adaptive, make_flow

__all__ = ["INTEGRAL_RULES", "METHODS", "TIME_MODES", "Method", "Recurrent",
           "SimulationResult", "as_method", "is_adaptive", "make_flow", "run_population"]
