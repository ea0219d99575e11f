"""Gradient methods beyond autograd through the engine (``Layer(gradient="adjoint")``).

* :mod:`ctsnn.gradients.eventprop` — exact adjoint (EventProp) gradients with learnable
  delays for feed-forward layers of the linear LIF family, in continuous time, in closed form;
  memory grows with the number of spikes, not with the number of time steps.
* :mod:`ctsnn.gradients.adjoint` — the generic adjoint for any neuron model (user-defined or
  from equation strings) and for recurrent layers: adjoint equations and jump conditions from
  vector-Jacobian products of the model's dynamics, threshold and reset.
* :mod:`ctsnn.gradients.discrete` — EventProp on the time grid (mlGeNN's discretisation), whose
  gradients converge to the continuous ones as ``dt -> 0``.
"""

from .adjoint import adjoint_layer, check_adjoint_model
from .discrete import (
    DiscreteEventPropLayer,
    DiscreteEventPropNetwork,
    discrete_eventprop,
    discrete_layer_forward,
)
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
    "DiscreteEventPropLayer",
    "DiscreteEventPropNetwork",
    "EventPropLayer",
    "EventPropNetwork",
    "adjoint_layer",
    "check_adjoint_model",
    "discrete_eventprop",
    "discrete_layer_forward",
    "first_spike_times",
    "measure_saved_bytes",
    "simulate_adjoint",
    "spike_count_penalty",
    "time_invariant_mse",
]
