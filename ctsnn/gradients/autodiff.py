"""``gradient="surrogate"``: backpropagation through the simulation itself.

In discrete time the spike's derivative is a surrogate (``Layer(surrogate=...)``; without one the
spikes carry no gradient). In continuous time spike *times* are differentiable: at each located
crossing the implicit function theorem gives ``dt*/dθ = -(∂g/∂θ) / (dg/dt)``, so autograd through
the engine is exact (memory grows with the number of steps). With an adaptive pair
(``method="dopri5"``/``"bosh3"``) autograd runs through the replayed accepted steps (step sizes
fixed by a search without gradient) and the event times located on them.
"""

from __future__ import annotations

import warnings

from torch import Tensor

from ..engine import SimulationResult, run_population
from ..engine.drive import drive
from ..spikes import Spikes
from .base import GradientMethod, LayerCall, LayerLike


class Autodiff(GradientMethod):
    """Autograd through the engine (shorthand ``"surrogate"``); see the module docstring."""

    name = "surrogate"

    def run(self, layer: LayerLike, signal: Tensor | Spikes | None,
            call: LayerCall) -> SimulationResult:
        if call.time == "continuous" and (call.surrogate is not None or call.detach_reset):
            warnings.warn("surrogate= / detach_reset= have no effect in continuous time: spike "
                          "times are differentiated exactly there (implicit function theorem)",
                          stacklevel=4)
        readout = call.readout
        kw = drive(layer.synapse, signal, time=call.time, as_current=call.as_current, dt=call.dt)
        n_steps = kw.pop("n_steps", call.n_steps)
        batch_size = kw.pop("batch_size", call.batch_size)
        integrand = None if readout is None else readout.integrand_on(call.dt, n_steps)
        record = call.record
        if readout is not None and readout.kind == "max":
            if call.time == "continuous":
                raise ValueError("readout='max' in continuous time needs gradient='adjoint' on a "
                                 "LI/CubaLI readout (the exact maximum); with "
                                 "gradient='surrogate' use time='discrete' (maximum over grid "
                                 "points) or an integral readout")
            record = tuple(dict.fromkeys((*record, "v")))
        result = run_population(
            layer.model, dt=call.dt, n_steps=n_steps, batch_size=batch_size, time=call.time,
            method=call.method, state=call.state, record=record, xtol=call.xtol,
            surrogate=call.surrogate if call.time == "discrete" else None,
            detach_reset=call.detach_reset, recurrent=layer.recurrent, integrand=integrand,
            integral_rule=call.integral_rule, saveat=call.saveat, **kw)
        if readout is not None and readout.kind == "max":
            result.output = result.states["v"].amax(0)
            if "v" not in call.record:
                del result.states["v"]
                result.saved.pop("v", None)
        elif readout is not None and readout.kind == "first_spike":
            result.output = result.spikes.first_times()
        return result
