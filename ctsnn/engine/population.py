"""One population, simulated for ``n_steps`` steps: the functional core of the engine.

Time convention: step ``n`` covers ``(n dt, (n+1) dt]``; a recorded state at index ``n`` is the
state at ``(n+1) dt``; input current ``[T, B, N]`` is held constant over its step; ``jumps``
``[T, B, N]`` are added to the model's ``jump_target`` at ``(n+1) dt`` (this with
``method="euler"`` is the ``u[t] = (1 - dt/tau) u[t-1] + I[t]`` update of SpikingJelly, DCLS
and DelRec). Units: seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._checks import as_int, check_choice, check_finite, check_positive
from ..models.base import NeuronModel
from ..surrogate import Surrogate
from ..synapses import Arrivals
from .compiled.event_driven import event_driven_refusal, event_driven_spikes, run_event_driven
from .compiled.event_recurrent import (
    event_recurrent_refusal,
    event_recurrent_spikes,
    run_event_recurrent,
)
from .compiled.generic_loop import generic_loop_refusal, generic_spikes, run_generic_loop
from .compiled.lif_bptt import fused_lif_applies, run_fused_lif
from .compiled.lif_recurrent import run_fused_recurrent
from .continuous import run_continuous
from .discrete import run_discrete
from .limits import check_grid
from .recurrence import Recurrent
from .result import SimulationResult
from .saveat import check_saveat
from .setup import Population
from .stepping import Method, as_method, elementwise

TIME_MODES = ("discrete", "continuous")
INTEGRAL_RULES = ("exact", "grid")


def run_population(
    model: NeuronModel,
    *,
    dt: float,
    n_steps: int,
    batch_size: int,
    current: Tensor | None = None,
    jumps: Tensor | None = None,
    arrivals: Arrivals | None = None,
    time: str = "discrete",
    method: Method | None = None,
    state: tuple | None = None,
    record: Sequence[str] = (),
    record_every: int = 1,
    saveat: Tensor | Sequence[float] | None = None,
    xtol: float | None = None,
    surrogate: Surrogate | None = None,
    detach_reset: bool = False,
    recurrent: Recurrent | None = None,
    integrand: Callable[[Tensor, tuple], Tensor] | None = None,
    integral_rule: str = "exact",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SimulationResult:
    """Simulate one population for ``n_steps`` steps of ``dt`` seconds (functional core).

    Args:
        current: input current ``[T, B, N]`` held constant over each step (or ``None``).
        jumps: summed jumps ``[T, B, N]`` applied at the end of each step (or ``None``).
        arrivals: exact arrival schedule (continuous time; in discrete time, use ``jumps``).
        state: initial state (``[B, N]`` per variable, finite); default
            ``model.initial_state``.
        record: names of the variables to record at the end of every step.
        record_every: record only at the end of every ``record_every``-th step (checkpoints:
            index ``k`` holds the state at ``(k + 1) record_every dt``).
        saveat: times (s; 1-D, sorted ascending, within ``[0, n_steps dt]``) at which to save
            the ``record`` variables, returned as ``result.saved[name]`` ``[S, B, N]``.
            Continuous time: the engine's own trajectory at those times (exact for closed-form
            flows, the Runge-Kutta dense output otherwise; right-continuous: after a jump or a
            reset at that very time), without changing the run. Discrete time: grid points
            only. See :mod:`ctsnn.engine.saveat`.
        xtol: tolerance of spike times (s, finite, ``>= 0``; 0: to the last bit); default
            ``64 eps dt`` of the dtype.
        surrogate: discrete mode: spikes are ``surrogate(threshold(state))`` (0/1 forward,
            surrogate derivative backward) and the reset is blended as
            ``state + s (reset(state) - state)`` so gradients flow through it.
        detach_reset: with a surrogate, stop the gradient through the reset's spike factor.
        recurrent: the population's own delayed recurrent connection. Discrete time: read
            before the threshold test of each step, written with the step's spikes.
            Continuous time (an exact recurrent synapse): its scheduled
            arrivals join the step's input, and the step's spikes are handed to ``emit``.
        integrand: ``l(t, state) -> [B, N]``; its time integral is returned as ``output``
            (e.g. a voltage loss ``∫ l(V) dt``). Continuous mode: Gauss-Legendre on every smooth
            piece between events, exact to rounding for steps well below the time constants,
            and differentiable (also w.r.t. event and arrival times); the integrand must act
            neuron by neuron (each neuron's pieces have their own ends). Discrete mode: the
            rectangle rule ``Σ dt l(t_{n+1}, state_n)``.
        integral_rule: continuous mode: ``"exact"`` (the quadrature above) or ``"grid"`` (the
            rectangle rule on the grid points, as in discrete mode: all neurons are sampled at
            the same instants, so the integrand may couple them, e.g. a softmax over neurons —
            DCLS's time-summed softmax readout is ``output / dt``).
    Returns:
        a :class:`SimulationResult` (time-first recordings).

    Raises ``ValueError`` for a run too large to fit (see :mod:`ctsnn.engine.limits`), before
    anything is allocated.
    """
    check_choice("time", time, TIME_MODES)
    batch_size = as_int("batch_size", batch_size, minimum=1)
    n_steps = as_int("n_steps", n_steps, minimum=0)
    if xtol is not None:
        check_positive("xtol", xtol, allow_zero=True)
    check_choice("integral_rule", integral_rule, INTEGRAL_RULES)
    grid_rule = integrand is not None and (time == "discrete" or integral_rule == "grid")
    if integrand is not None and not grid_rule and not elementwise(integrand, model):
        raise ValueError("integrand couples the neurons (its value for one neuron depends on "
                         "another's state): the exact continuous-time quadrature integrates each "
                         "neuron between its own events; use integral_rule='grid'")
    method = as_method(method, model, time)
    for name in record:
        if name not in model.state_names:
            raise ValueError(
                f"record: {type(model).__name__} has no state variable {name!r} "
                f"(it has {list(model.state_names)})"
            )
    saveat = check_saveat(saveat, dt, n_steps, time)
    if saveat is not None and not record:
        raise ValueError("saveat: name the variables to save with record= (e.g. record=('v',))")
    ref_param = model.refractory
    dtype = dtype or ref_param.dtype
    device = device or ref_param.device
    width = model.n * (1 + len(model.state_names))
    check_grid(n_steps, batch_size, width, torch.finfo(dtype).bits // 8,
               cause=f"n_steps = {n_steps} (dt = {dt} s)")
    if state is None:
        state = model.initial_state(batch_size, dtype=dtype, device=device)
    else:
        if not isinstance(state, tuple) or len(state) != len(model.state_names):
            raise ValueError(f"state must be a {type(model).__name__}.State named tuple")
        state = model.State(*state)
        _check_state(model, state, batch_size)
    fast = _compiled_run(model, time=time, method=method, dt=dt, n_steps=n_steps,
                         batch_size=batch_size, current=current, jumps=jumps, arrivals=arrivals,
                         state=state, record=tuple(record), record_every=record_every,
                         saveat=saveat, xtol=xtol, surrogate=surrogate,
                         detach_reset=detach_reset, recurrent=recurrent, integrand=integrand,
                         dtype=dtype, device=device)
    if fast is not None:
        return fast
    run = Population(
        model=model, dt=dt, n_steps=n_steps, batch_size=batch_size, method=method, state=state,
        dtype=dtype, device=torch.device(device),
        current=None if current is None else current.unbind(0),
        jumps=None if jumps is None else jumps.unbind(0),
        arrivals=arrivals, recurrent=recurrent, record=tuple(record), record_every=record_every,
        xtol=xtol, surrogate=surrogate, detach_reset=detach_reset, integrand=integrand,
        grid_rule=grid_rule, saveat=saveat,
    )
    return run_discrete(run) if time == "discrete" else run_continuous(run)


def _compiled_run(model: NeuronModel, *, time: str, method: Method, dt: float, n_steps: int,
                  batch_size: int, current: Tensor | None, jumps: Tensor | None,
                  arrivals: Arrivals | None, state: tuple, record: tuple[str, ...],
                  record_every: int, saveat: Tensor | None, xtol: float | None,
                  surrogate: Surrogate | None, detach_reset: bool, recurrent: Recurrent | None,
                  integrand: Callable[[Tensor, tuple], Tensor] | None, dtype: torch.dtype,
                  device: torch.device | str) -> SimulationResult | None:
    """The run on the first compiled kernel that takes it exactly (each one's refusal says
    why not), or ``None``: the reference engine's step loop."""
    if event_driven_refusal(model, time=time, method=method, arrivals=arrivals, dt=dt,
                            n_steps=n_steps, current=current, jumps=jumps, recurrent=recurrent,
                            record=record, saveat=saveat, integrand=integrand,
                            state=state, dtype=dtype) is None:
        out = run_event_driven(model, arrivals, n_steps=n_steps, batch_size=batch_size,
                               state=state, dtype=dtype)
        spikes = event_driven_spikes(out, dt=dt, n_steps=n_steps, batch_size=batch_size,
                                     n_units=model.n)
        return SimulationResult(spikes=spikes, states={}, final_state=out.final_state)
    if generic_loop_refusal(model, time=time, method=method, arrivals=arrivals, dt=dt,
                            n_steps=n_steps, current=current, jumps=jumps, recurrent=recurrent,
                            record=record, saveat=saveat, integrand=integrand,
                            state=state, dtype=dtype) is None:
        fast = run_generic_loop(model, arrivals, method=method, n_steps=n_steps,
                                batch_size=batch_size, state=state, dtype=dtype, xtol=xtol)
        if fast is not None:  # None: the state diverged; the reference engine says why
            spikes = generic_spikes(fast, dt=dt, n_steps=n_steps, batch_size=batch_size,
                                    n_units=model.n)
            return SimulationResult(spikes=spikes, states={}, final_state=fast.final_state)
    if recurrent is not None and event_recurrent_refusal(
            model, time=time, method=method, arrivals=arrivals, dt=dt, n_steps=n_steps,
            current=current, jumps=jumps, recurrent=recurrent, saveat=saveat,
            integrand=integrand, state=state, dtype=dtype) is None:
        out = run_event_recurrent(model, arrivals, recurrent, dt=dt, n_steps=n_steps,
                                  batch_size=batch_size, state=state, dtype=dtype,
                                  record=record, record_every=record_every)
        spikes = event_recurrent_spikes(out, dt=dt, n_steps=n_steps, batch_size=batch_size,
                                        n_units=model.n)
        return SimulationResult(spikes=spikes, states=out.states, final_state=out.final_state)
    if arrivals is None and n_steps > 0 and fused_lif_applies(
            model, time=time, method=method, state=state, recurrent=recurrent,
            record=record, record_every=record_every, saveat=saveat,
            integrand=integrand, tensors=(current, jumps)):
        # the whole input is known: all steps in one compiled kernel (same update and
        # gradients); a recurrent connection on DelRec's spike scatter joins the kernel
        if recurrent is not None:
            return run_fused_recurrent(
                model, recurrent, dt=dt, n_steps=n_steps, batch_size=batch_size, state=state,
                jumps=jumps, current=current, method=method, surrogate=surrogate,
                detach_reset=detach_reset, record=record, dtype=dtype, device=device)
        return run_fused_lif(model, dt=dt, n_steps=n_steps, state=state, jumps=jumps,
                             current=current, method=method, surrogate=surrogate,
                             detach_reset=detach_reset, record=record)
    return None


def _check_state(model: NeuronModel, state: tuple, batch_size: int) -> None:
    """An initial state: one finite floating tensor ``[B, N]`` per variable."""
    want = (batch_size, model.n)
    for name, value in zip(model.state_names, state, strict=True):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            what = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"state.{name} must be a floating-point tensor [B, N], got {what}")
        if tuple(value.shape) != want:
            raise ValueError(f"state.{name} must have shape [B, N] = {list(want)} "
                             f"({type(model).__name__} with n = {model.n}, batch_size = "
                             f"{batch_size}), got {list(value.shape)}")
        check_finite(f"initial state.{name}", value.detach())
