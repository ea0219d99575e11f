"""EventProp: exact adjoint gradients for delayed feed-forward layers of the linear LIF family.

``gradient="adjoint"`` for continuous-time networks. Every layer is one
:class:`torch.autograd.Function`: its forward runs the continuous engine
(:func:`ctsnn.engine.run_population`) under ``torch.no_grad()`` and keeps only the input and
output spike events and, per output spike, the synaptic current just before it; its backward
solves the adjoint equations exactly, event by event, and returns ``dL/dW``, ``dL/dD``,
``dL/d(input spike times)`` and, where ``tau_mem`` / ``tau_syn`` require grad, their gradients
(``docs/eventprop-time-constants.md``), so layers compose through ordinary autograd. Nothing is
stored per time step: the saved state grows with the number of spikes, not with ``T``.

Models (feed-forward input through per-synapse delays, default initial state, no refractory
period):

* ``CubaLIF`` (hidden / spiking output), ``CubaLI`` (readout):
  ``tau_m V' = v_leak - V + r I``, ``tau_s I' = -I``, an input spike jumps ``I`` by ``w``.
* ``LIF`` (spiking), ``LI`` (readout): ``tau_m V' = v_leak - V``, an input spike jumps ``V``
  by ``w``. (A spike-driven ``LIF`` can only fire at an arrival, so its spike times are
  arrival times: exact gradients w.r.t. its input weights vanish; delays and upstream spike
  times still get gradients.)

Convention (this module; see ``docs/eventprop.md`` for the derivation)
----------------------------------------------------------------------
The adjoint is the sensitivity of the loss to the state: ``lam_V(t) = dL/dV(t)``,
``lam_I(t) = dL/dI(t)`` (units 1/V and 1/A-equivalents, time in seconds). Between events,
with a voltage drive ``c(t) = dL/dV`` density from the readout,

    d lam_V/dt = lam_V / tau_m - c(t),      d lam_I/dt = lam_I / tau_s - r lam_V / tau_m,

with ``lam(T) = 0``, solved in closed form. The spec's (SEEDS C1.3) multipliers are
``lam_V^spec = -lam_V / tau_m`` and ``lam_I^spec = -lam_I / tau_s`` (for ``r = 1``).

* Output spike ``k`` of neuron ``n`` at ``t_k`` (``CubaLIF``): with ``Vdot^- = (v_leak -
  theta + r I)/tau_m`` and ``Vdot^+ = (v_leak - v_reset + r I)/tau_m`` (``I`` just before the
  spike, saved in the forward), ``lam_I`` is continuous and

      lam_V(t_k^-) = (lam_V(t_k^+) Vdot^+ - G_k) / Vdot^-,

  where ``G_k = dL/dt_k`` is the total derivative of the loss w.r.t. the spike time through
  everything downstream (the incoming gradient of the output spike time: downstream layers
  read their adjoints at the delayed arrival times ``t_k + d``, spike-time losses add
  ``dl/dt_k``).
* Arrival of input spike ``e`` (time ``t_e``, amplitude ``a_e``) at neuron ``i`` through
  synapse ``(i, j)`` at ``s = t_e + D_ij`` (adjoints at ``s``, after the arrival):

      dL/dW_ij += a_e lam_I(s),     dL/dD_ij = dL/dt_e += a_e W_ij (lam_I/tau_s - r lam_V/tau_m)

  (= ``a_e W_ij d lam_I/dt``; for V-jump models ``lam_V`` replaces ``lam_I``, the rate is
  ``lam_V/tau_m`` and a voltage drive adds the boundary term ``l(s, V^-) - l(s, V^+)``).

Readouts (non-spiking output layers): ``"avg_exp"`` ``z = (1/T) ∫_0^T e^{-t/T} V dt``
(mlGeNN's ``avg_var_exp_weight``), ``"sum"`` ``z = (1/dt) ∫_0^T V dt`` (time-summed voltage),
``"max"`` ``z = max_t V(t)``, or any ``integrand(t, state)`` (``z = ∫_0^T l dt``). Spiking
outputs: first-spike times + :func:`ctsnn.losses.time_invariant_mse`. Hidden layers:
spike-count regularisation (``spike_reg``).

Example::

    net = [ctsnn.Layer(ctsnn.CubaLIF(64), w1, delay=d1, max_delay=0.02, gradient="adjoint"),
           ctsnn.Layer(ctsnn.CubaLI(3), w2, delay=d2, max_delay=0.02, gradient="adjoint")]
    z = ctsnn.simulate(net, spikes, time="continuous", readout="avg_exp").output  # [B, 3]
    torch.nn.functional.cross_entropy(z, labels).backward()
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..._checks import check_finite
from ...models.base import NeuronModel
from ...spikes import Spikes
from .._weights import full_delay
from .common import READOUTS, Integrand, LayerConfig, learnable_taus, neuron_constants, supports
from .readout import ReadoutFn
from .recurrent import recurrent_layer_forward
from .spiking import SpikingLayerFn

__all__ = ["READOUTS", "layer_forward", "recurrent_layer_forward", "supports"]


# =========================================================================== public API
def layer_forward(
    model: NeuronModel,
    spikes: Spikes,
    weight: Tensor,
    delay: Tensor | None = None,
    *,
    readout: str | None = None,
    integrand: Integrand | None = None,
    spike_reg: tuple[float, float] | None = None,
    max_pairs: int = 4_000_000,
    xtol: float | None = None,
) -> Spikes | Tensor:
    """One layer with adjoint gradients (functional form).

    Args:
        model: ``LIF`` / ``CubaLIF`` (spiking) or ``LI`` / ``CubaLI`` (readout), ``N`` neurons;
            learnable ``tau_mem`` / ``tau_syn`` (``[N]``, seconds) get gradients (not with an
            ``integrand`` readout), other learnable parameters are refused.
        spikes: input events (``n_units = N_in``); their ``times`` may require grad. The
            grid (``dt``, ``n_steps``) sets the simulated interval ``[0, n_steps dt]``.
        weight: ``[N, N_in]``.
        delay: seconds, ``[N, N_in]`` or per axon ``[N_in]``, non-negative, or ``None``.
        readout: spiking layers: ``None`` (return the spikes) or ``"first_spike"`` (``[B, N]``
            first spike times, as ``Spikes.first_times``); non-spiking layers:
            ``"avg_exp"``, ``"sum"`` or ``"max"`` (``[B, N]``), or pass ``integrand``.
        integrand: ``l(t, state) -> [..., N]`` elementwise; the readout is ``∫_0^T l dt``.
        spike_reg: spiking layers: ``(strength, target)``: every spike of neuron ``n`` adds
            ``strength (mean count_n - target) / B`` to ``dL/dV`` just before it (EventProp's
            spike-count regulariser, a heuristic gradient; see :func:`spike_count_penalty`).
        max_pairs: (input spike, target) pairs processed at once (memory bound).
        xtol: spike-time tolerance of the engine (s).

    Returns:
        :class:`Spikes` with differentiable ``times``, or the readout ``[B, N]``.
    """
    if not isinstance(spikes, Spikes):
        raise TypeError(f"spikes must be a ctsnn.Spikes, got {type(spikes).__name__}")
    nrn = neuron_constants(model)
    if weight.ndim != 2 or weight.shape != (nrn.n, spikes.n_units):
        raise ValueError(f"weight must have shape [N, N_in] = [{nrn.n}, {spikes.n_units}], got "
                         f"{list(weight.shape)}")
    delay = full_delay(weight, delay)
    check_finite("weight", weight.detach())
    if delay is not None:
        check_finite("delay", delay.detach())
    if delay is not None and bool((delay.detach() < 0).any()):
        raise ValueError(f"delay must be non-negative, got minimum {delay.min().item()!r}")
    if integrand is not None:
        if readout is not None:
            raise ValueError("give either readout or integrand")
        readout = "integrand"
    if nrn.spiking:
        if readout not in (None, "first_spike"):
            raise ValueError(f"{type(model).__name__} spikes: readout must be None or "
                             f"'first_spike', got {readout!r}")
    elif readout not in (*READOUTS, "integrand"):
        raise ValueError(f"{type(model).__name__} does not spike: give readout= one of "
                         f"{READOUTS} or an integrand")
    taus = learnable_taus(model)
    if readout == "integrand" and any(t is not None for t in taus):
        raise NotImplementedError(f"{type(model).__name__}: learnable time constants with an "
                                  "integrand readout (use the generic adjoint, "
                                  "ctsnn.gradients.adjoint)")
    t_end = float(torch.tensor(spikes.n_steps, dtype=torch.float64) * spikes.dt)
    cfg = LayerConfig(nrn=nrn, dt=spikes.dt, n_steps=spikes.n_steps, batch_size=spikes.batch_size,
                  n_in=spikes.n_units, t_end=t_end, max_pairs=max_pairs, spike_reg=spike_reg,
                  readout=readout, integrand=integrand, xtol=xtol)
    times = spikes.times.to(weight.dtype)
    values = spikes.values.to(weight.dtype)
    if not nrn.spiking:
        return ReadoutFn.apply(times, weight, delay, spikes.batch, spikes.units, values, cfg,
                               *taus)
    t_out, b_out, n_out = SpikingLayerFn.apply(times, weight, delay, spikes.batch,
                                                spikes.units, values, cfg, *taus)
    # the layer's output comes from the engine in Spikes order, valid: no re-validation/sort;
    # unit amplitudes as one stored 1 expanded to [K] (read-only; 4 B per spike less to keep)
    ones = t_out.detach().new_ones(()).expand(t_out.shape)
    out = Spikes.from_sorted_events(t_out, n_out, b_out, dt=spikes.dt, n_steps=spikes.n_steps,
                                    batch_size=spikes.batch_size, n_units=nrn.n, values=ones)
    return out.first_times() if readout == "first_spike" else out
