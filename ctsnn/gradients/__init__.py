"""Gradient methods beyond autograd through the engine.

* :mod:`ctsnn.gradients.eventprop` — exact adjoint (EventProp) gradients with learnable
  delays for feed-forward layers of the linear LIF family, in continuous time; memory grows
  with the number of spikes, not with the number of time steps.
"""

from .eventprop import (
    AdjointResult,
    EventPropLayer,
    EventPropNetwork,
    first_spike_times,
    measure_saved_bytes,
    simulate_adjoint,
    spike_count_penalty,
    time_invariant_mse,
)

__all__ = [
    "AdjointResult",
    "EventPropLayer",
    "EventPropNetwork",
    "first_spike_times",
    "measure_saved_bytes",
    "simulate_adjoint",
    "spike_count_penalty",
    "time_invariant_mse",
]
