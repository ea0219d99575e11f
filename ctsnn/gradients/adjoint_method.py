"""``gradient="adjoint"``: exact event-based adjoint gradients (EventProp), chosen per layer.

The forward keeps spike events, not the autograd graph of the trajectory; the backward solves
the adjoint equations in reverse and hands the layer below the gradient w.r.t. the times and
amplitudes of the spikes it received, so adjoint and surrogate layers mix in one network.

* continuous time, feed-forward ``LIF`` / ``CubaLIF`` / ``LI`` / ``CubaLI`` (reset to
  ``v_reset``): the closed-form EventProp (:mod:`ctsnn.gradients.eventprop`; memory grows with
  the number of spikes, not with T) — the automatic fast path;
* continuous time, recurrent ``LIF`` / ``CubaLIF`` layers (exact recurrent synapses) on the
  CPU with kernels on: the same closed form with a compiled backward
  (:mod:`ctsnn.gradients.eventprop.recurrent`, memory flat in T; instants it cannot order fall
  back to the generic adjoint);
* continuous time, any other model, other recurrent layers, learnable neuron parameters,
  recordings: the generic adjoint (:mod:`ctsnn.gradients.adjoint`);
* discrete time: EventProp on the grid (:mod:`ctsnn.gradients.discrete`, mlGeNN's
  discretisation; ``CubaLIF`` hidden layers and a ``CubaLI`` readout with ``readout="avg_exp"``);
  its gradients converge to the continuous ones as ``dt -> 0``.

A raster (or a dense-backed :class:`~ctsnn.Spikes`) from a discrete surrogate layer below
enters as events at its spikes: gradient w.r.t. the amplitudes of those spikes; entries
without a spike get none.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..compiled import kernels_enabled
from ..engine import SimulationResult
from ..engine.stepping import elementwise
from ..losses import Readout
from ..models.lif import CubaLI, CubaLIF
from ..spikes import Spikes
from ..synapses import Dense, RecurrentDense
from ..synapses.kernels import Exact
from . import eventprop
from .adjoint import adjoint_layer, check_adjoint_model
from .base import GradientMethod, LayerCall, LayerLike
from .discrete import discrete_layer_forward


class Adjoint(GradientMethod):
    """Exact adjoint gradients (shorthand ``"adjoint"``); see the module docstring.

    Args:
        spike_reg: spiking layers on the closed-form path: ``(strength, target count)``; every
            spike of neuron ``n`` adds ``strength (mean count_n - target) / B`` to ``dL/dV``
            just before it (EventProp's heuristic spike-count regulariser).
        max_pairs: (input spike, target) pairs processed at once by the closed-form path
            (memory bound).
        checkpoint_every: generic adjoint: steps between the state checkpoints the backward
            replays from (memory ``T / checkpoint_every`` states).
        max_spikes: discrete time: optional hard limit on one layer's output spikes.
    """

    name = "adjoint"

    def __init__(self, *, spike_reg: tuple[float, float] | None = None,
                 max_pairs: int = 4_000_000, checkpoint_every: int = 32,
                 max_spikes: int | None = None) -> None:
        if spike_reg is not None and (len(spike_reg) != 2 or spike_reg[0] < 0):
            raise ValueError(f"spike_reg must be (strength >= 0, target), got {spike_reg!r}")
        for name, value in (("max_pairs", max_pairs), ("checkpoint_every", checkpoint_every)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.spike_reg, self.max_pairs = spike_reg, max_pairs
        self.checkpoint_every, self.max_spikes = checkpoint_every, max_spikes

    # ----------------------------------------------------------------- construction checks
    def check(self, layer: LayerLike) -> None:
        if layer.surrogate is not None:
            raise ValueError("a surrogate is for gradient='surrogate'; the adjoint needs none "
                             "(drop surrogate=, or choose gradient='surrogate')")
        if not isinstance(layer.synapse, Dense) or not isinstance(layer.synapse.kernel, Exact):
            raise ValueError("gradient='adjoint' needs exact synapses: pass a weight tensor or a "
                             "ctsnn.synapses.Dense with kernel=Exact() (grid kernels spread spikes "
                             "over the grid: train those with gradient='surrogate')")
        if layer.recurrent is not None and not (isinstance(layer.recurrent, RecurrentDense)
                                                and isinstance(layer.recurrent.kernel, Exact)):
            raise ValueError("gradient='adjoint' supports recurrence through "
                             "ctsnn.synapses.RecurrentDense with kernel=Exact() (exact delays); "
                             f"{type(layer.recurrent).__name__} needs gradient='surrogate'")
        if layer.time == "discrete":
            self._check_discrete(layer)
        else:
            check_adjoint_model(layer.model)

    @staticmethod
    def _check_discrete(layer: LayerLike) -> None:
        if (type(layer.model) not in (CubaLIF, CubaLI) or layer.recurrent is not None
                or getattr(layer.model, "reset_mode", "zero") != "zero"):
            raise ValueError("gradient='adjoint' in discrete time is EventProp on the grid "
                             "(mlGeNN): feed-forward CubaLIF layers (reset to v_reset) and a "
                             "CubaLI readout; for "
                             f"{type(layer.model).__name__}"
                             f"{' with recurrence' if layer.recurrent is not None else ''} use "
                             "time='continuous' (exact adjoint) or gradient='surrogate'")

    # ----------------------------------------------------------------- running
    def run(self, layer: LayerLike, signal: Tensor | Spikes | None,
            call: LayerCall) -> SimulationResult:
        if call.saveat is not None:
            raise ValueError("saveat= is not supported with gradient='adjoint' (its backward "
                             "pass does not see saved values); use gradient='surrogate' for "
                             "gradients through values saved between grid points")
        if call.state is not None:
            raise ValueError("gradient='adjoint' starts from the model's resting state; "
                             "state= is not supported")
        if call.as_current or not isinstance(signal, (Spikes, Tensor)):
            raise TypeError("gradient='adjoint' layers are driven by spikes (Spikes or a raster "
                            "with input_as='jump'); a current input needs gradient='surrogate'")
        if isinstance(signal, Tensor):  # a (surrogate) raster: its spikes become events
            signal = Spikes.from_raster(signal, call.dt)
        layer.synapse.check_input(signal)
        if call.time == "discrete":
            self._check_discrete(layer)
            return self._run_discrete(layer, signal, call)
        if not layer.model.spiking and call.readout is None and not call.record:
            raise ValueError(f"gradient='adjoint': {type(layer.model).__name__} does not spike, "
                             "so it needs a readout (simulate(..., readout=...)) for its output "
                             "to have a gradient")
        if self._closed_form(layer, call):
            return self._run_eventprop(layer, signal, call)
        return self._run_generic(layer, signal, call)

    def _closed_form(self, layer: LayerLike, call: LayerCall) -> bool:
        """The closed-form LIF-family EventProp applies (cheaper than the generic adjoint)."""
        readout = call.readout
        integral = readout is not None and readout.kind == "integral"
        if call.record or not eventprop.supports(layer.model, integrand=integral):
            return False
        if layer.recurrent is not None:  # the compiled recurrent backward (CPU kernels only)
            return (layer.model.spiking and (readout is None or readout.kind == "first_spike")
                    and kernels_enabled(layer.synapse.effective_weight, layer.recurrent.weight))
        if layer.model.spiking:
            return readout is None or readout.kind == "first_spike"
        if readout is None or call.integral_rule != "exact":
            return False
        if readout.kind == "integral":
            return elementwise(readout.integrand, layer.model)
        return True

    def _run_eventprop(self, layer: LayerLike, signal: Spikes,
                       call: LayerCall) -> SimulationResult:
        syn, readout = layer.synapse, call.readout
        named = readout is not None and readout.kind not in ("integral", "first_spike")
        if layer.recurrent is not None:
            out = eventprop.recurrent_layer_forward(
                layer.model, signal, syn.effective_weight, syn.synapse_delay(),
                layer.recurrent.weight, layer.recurrent.synapse_delay(),
                spike_reg=self.spike_reg, xtol=call.xtol)
            first = out.first_times() if readout is not None else None
            return SimulationResult(spikes=out, states={}, final_state=None, output=first)
        out = eventprop.layer_forward(
            layer.model, signal, syn.effective_weight, syn.synapse_delay(),
            readout=readout.kind if named else None,
            integrand=readout.integrand if readout is not None and not named else None,
            spike_reg=self.spike_reg if layer.model.spiking else None,
            max_pairs=self.max_pairs, xtol=call.xtol)
        if isinstance(out, Spikes):
            first = out.first_times() if readout is not None else None
            return SimulationResult(spikes=out, states={}, final_state=None, output=first)
        empty = Spikes.empty(dt=signal.dt, n_steps=signal.n_steps,
                             batch_size=signal.batch_size, n_units=layer.model.n,
                             dtype=out.dtype, device=out.device)
        return SimulationResult(spikes=empty, states={}, final_state=None, output=out)

    def _run_generic(self, layer: LayerLike, signal: Spikes, call: LayerCall) -> SimulationResult:
        readout: Readout | None = call.readout
        if readout is not None and readout.kind == "max":
            raise ValueError("readout='max' with gradient='adjoint' needs a LI/CubaLI readout "
                             "layer without recurrence (the closed-form EventProp); use an "
                             "integral readout here")
        if self.spike_reg is not None:
            raise ValueError("spike_reg is implemented by the closed-form EventProp (LIF/CubaLIF "
                             "layers; recurrent ones only with the CPU kernels on); this layer "
                             "runs the generic adjoint")
        integrand = None if readout is None else readout.integrand_on(signal.dt, signal.n_steps)
        syn = layer.synapse
        spikes, z, final, states = adjoint_layer(
            layer.model, signal, syn.effective_weight, syn.synapse_delay(),
            recurrent=layer.recurrent, integrand=integrand, integral_rule=call.integral_rule,
            method=call.method, xtol=call.xtol, record=tuple(call.record),
            checkpoint_every=self.checkpoint_every)
        if readout is not None and readout.kind == "first_spike":
            z = spikes.first_times()
        return SimulationResult(spikes=spikes, states=states, final_state=final, output=z)

    def _run_discrete(self, layer: LayerLike, signal: Spikes, call: LayerCall
                      ) -> SimulationResult:
        model, syn, readout = layer.model, layer.synapse, call.readout
        if call.record:
            raise ValueError("gradient='adjoint' in discrete time records nothing; use "
                             "gradient='surrogate' to record states")
        if model.spiking and readout is not None:
            raise ValueError("discrete-time EventProp reads out a CubaLI layer "
                             "(readout='avg_exp'); put the readout on a CubaLI output layer")
        if not model.spiking and (readout is None or readout.kind != "avg_exp"):
            raise ValueError("discrete-time EventProp's CubaLI readout is readout='avg_exp' "
                             "(mlGeNN's avg_var_exp_weight)")
        out = discrete_layer_forward(model, signal, syn.effective_weight, syn.synapse_delay(),
                                     max_delay_steps=_max_delay_steps(syn, call.dt),
                                     max_spikes=self.max_spikes)
        if isinstance(out, Spikes):
            return SimulationResult(spikes=out, states={}, final_state=None)
        empty = Spikes.empty(dt=signal.dt, n_steps=signal.n_steps, batch_size=signal.batch_size,
                             n_units=model.n, dtype=out.dtype, device=out.device)
        return SimulationResult(spikes=empty, states={}, final_state=None, output=out)


def _max_delay_steps(synapse: Dense, dt: float) -> int:
    """The ring-buffer length of discrete EventProp: ``max_delay`` in steps (else the longest
    delay rounded up)."""
    max_delay = getattr(synapse, "max_delay", None)
    if max_delay is not None:
        return int(round(max_delay / dt))
    if synapse.delay is None:
        return 0
    return int(math.ceil(float(synapse.delay.detach().max()) / dt - 1e-9))
