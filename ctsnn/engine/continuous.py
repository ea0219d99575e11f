"""The continuous-time loop: exact arrivals, located crossings, resets at the crossing.

Every grid step is integrated with the model's closed-form flow (``"exact"``) or a Runge-Kutta
step used as dense output. Inputs arrive at their exact times inside the step; every upward
threshold crossing is located by a safeguarded root finder independently for each neuron and
sample; the reset is applied at that instant and integration resumes (several spikes per step
are fine). Spike times are real numbers (seconds).
"""

from __future__ import annotations

import torch
from torch import Tensor

from solvers.events import advance_with_events, quadrature, where_state

from ..synapses import StepArrivals, coalesce, merge_arrivals, snap_to_grid
from .recurrence import start_recurrent
from .result import SimulationResult
from .setup import Population
from .stepping import make_dense, make_flow, receive, slope_fn
from .substep import Rows, Start, settle_step


def _pieces(run: Population, n: int):
    """The save-time recorder of step ``n`` (``piece(y, tau, held)``), or ``None``."""
    return run.saver.piece if run.saver is not None and run.saver.active(n) else None


Bound = tuple[Tensor, Tensor, "Tensor | None"]
"""One jump slot of a step: ``(local time [.., B, N], value [B, N], causal depth [B, N] or
None for 0)``."""


def _boundaries(run: Population, n: int, end_of_step: Tensor) -> list[Bound]:
    """The step's jumps in time order; jumps of an element at the same instant are summed
    (one threshold test, whatever their order; see :mod:`.substep`)."""
    step_arr: StepArrivals | None = None if run.arrivals is None else run.arrivals(n)
    if run.recurrent is not None:
        other = run.recurrent.arrivals(n)
        if step_arr is not None and other is not None:
            merged = merge_arrivals(step_arr, other)
            offset, value, _ = coalesce(merged.offset.expand(merged.value.shape), merged.value)
            step_arr = StepArrivals(offset, value)
        elif other is not None:
            step_arr = other
    out = [] if step_arr is None else [(o, v, None) for o, v in zip(step_arr.offset,
                                                                    step_arr.value,
                                                                    strict=True)]
    if run.jumps is not None:
        out.append((end_of_step, run.jumps[n], None))
    return out


def _insert(bounds: list[Bound], extra: Rows, has_jumps: bool) -> list[Bound]:
    """``bounds`` (from :func:`_boundaries`) with the in-step arrivals ``extra`` merged in:
    one jump per (instant, depth) and element, in time then depth order."""
    tail = bounds[-1:] if has_jumps else []
    head = bounds[:-1] if has_jumps else bounds
    offset, value, depth = extra
    if head:
        shape = value.shape[1:]
        offset = torch.cat([torch.stack([o.expand(shape) for o, _, _ in head]), offset])
        value = torch.cat([torch.stack([v.expand(shape) for _, v, _ in head]), value])
        depth = torch.cat([torch.zeros((len(head), *shape), dtype=depth.dtype,
                                       device=depth.device), depth])
    offset, value, depth = coalesce(offset, value, depth)
    return list(zip(offset, value, depth, strict=True)) + tail


def _begin(run: Population, start: Start | None) -> tuple[tuple, Tensor, Tensor | None]:
    """``(state, local time, last spike time or None)`` where a (pass of a) step begins."""
    if start is None:
        return run.state, run.zero, None
    time = torch.full(run.shape, start.time, dtype=run.dtype, device=run.device)
    return start.state, start.tau, torch.where(start.fired, time, torch.full_like(time,
                                                                                 -torch.inf))


def _jump_only_step(run: Population, n: int, x: Tensor, bounds: list, end_of_step: Tensor,
                    start: Start | None = None) -> None:
    """Spikes can only happen at jumps: the flow approaches a sub-threshold fixed point
    monotonically, so no root finding is needed between arrivals."""
    model = run.model
    state, tau, last = _begin(run, start)  # last: one spike per instant (.substep)
    piece = _pieces(run, n)
    for k in range(len(bounds) + 1):
        end = bounds[k][0] if k < len(bounds) else end_of_step
        if piece is not None:
            piece(state, tau, None)
        if run.trace is not None:
            run.trace.append((state, tau))
        state = model.flow(state, x, end - tau)
        tau = end
        if k == len(bounds):
            break
        before = run.threshold(state) < 0  # an upward crossing, as in _general_step
        state = model.receive(state, bounds[k][1])
        fire = (run.threshold(state) >= 0) & before
        if last is not None:
            fire = fire & (last != tau)
        if bool(fire.any()):
            state = where_state(fire, model.reset(state), state)
            run.log.add(fire, tau, n, run.dt, bounds[k][2])
            last = _last_spike(last, fire, tau)
    run.state = state


def _last_spike(last: Tensor | None, fire: Tensor, tau: Tensor) -> Tensor:
    """Each element's latest spike time (local, detached), ``-inf`` before the first."""
    if last is None:
        last = torch.full(fire.shape, -torch.inf, dtype=tau.dtype, device=fire.device)
    return torch.where(fire, tau.detach().expand(fire.shape), last)


def _general_step(run: Population, n: int, x: Tensor, bounds: list, end_of_step: Tensor,
                  hold: Tensor | None, xtol: float, start: Start | None = None
                  ) -> Tensor | None:
    """Integrate step ``n`` piece by piece between jumps, locating every crossing; returns the
    refractory ends (local time) for the next step."""
    model, dt, t0 = run.model, run.dt, n * run.dt
    flow = make_flow(model, run.method, t0, x, run.delays)
    dense = make_dense(model, run.method, t0, x, run.delays)
    threshold = run.threshold
    rate = slope_fn(model, t0, x, run.delays) if threshold is not None else None
    slope = None if model.monotone else rate
    local = None if run.integrand is None or run.grid_rule else (
        lambda t, y, t0=t0: run.integrand(t0 + t, y)
    )
    state, tau, last = _begin(run, start)  # last: one spike per instant (.substep)
    piece = _pieces(run, n)
    if run.trace is not None:  # the pieces of a pass (.substep continues from them)
        trace = run.trace

        def piece(y, tau, held, trace=trace):
            trace.append((y, tau))

    for k in range(len(bounds) + 1):
        end = bounds[k][0] if k < len(bounds) else end_of_step
        if threshold is None:
            if piece is not None:
                piece(state, tau, None)
            if local is not None:
                run.integral = quadrature(flow, local, state, tau, end, None, run.integral)
            state = flow(state, tau, end - tau, None)
            tau = end
        else:
            out = advance_with_events(
                flow, state, tau, end, threshold, model.reset, slope=slope, rate=rate,
                hold_until=hold, hold_time=run.ref_param, xtol=xtol, integrand=local,
                integral=run.integral, on_piece=piece, dense=dense,
            )
            state, tau, hold, events = out[:4]
            if local is not None:
                run.integral = out[4]
            for ev in events:
                run.log.add(ev.mask, ev.time, n, dt)
                last = _last_spike(last, ev.mask, ev.time)
        if k == len(bounds):
            break
        held = None if hold is None else hold > tau
        before = state
        state = receive(model, state, bounds[k][1], held)
        if threshold is not None and model.spiking:
            fire = (threshold(state) >= 0) & (threshold(before) < 0)
            if held is not None:
                fire = fire & ~held
            if last is not None:
                fire = fire & (last != tau)
            if bool(fire.any()):
                state = where_state(fire, model.reset(state), state)
                run.log.add(fire, tau, n, dt, bounds[k][2])
                last = _last_spike(last, fire, tau)
                if hold is not None:
                    hold = torch.where(fire, tau + run.ref_param, hold)
    run.state = state
    return hold


def _after(bounds: list[Bound], start: Start, has_jumps: bool) -> list[Bound]:
    """``bounds`` with the jumps at or before ``start.time`` (applied already) made empty and
    moved to each element's start (so that they split no piece)."""
    tail = bounds[-1:] if has_jumps else []
    begin = start.tau
    out = []
    for o, v, d in bounds[:len(bounds) - len(tail)]:
        done = o.detach() <= start.time
        out.append((torch.where(done, begin, o), torch.where(done, torch.zeros_like(v.detach()),
                                                             v), d))
    return out + tail


def _resumable(run: Population, n: int) -> bool:
    """Whether a settled step can continue from an in-step arrival
    (:func:`.substep.settle_step`) rather than integrate again from the step's start (not
    with refractoriness, an integrand or saved times)."""
    return not (run.has_ref or run.integrand is not None or _pieces(run, n) is not None)


def run_continuous(run: Population) -> SimulationResult:
    """Simulate ``run`` in continuous time (see the module docstring)."""
    run.start()
    model, dt, zero = run.model, run.dt, run.zero
    xtol = run.xtol if run.xtol is not None else 64 * torch.finfo(run.dtype).eps * dt
    end_of_step = zero + dt
    infinity = torch.full_like(zero, torch.inf)
    # Fast path for jump-driven monotone models with a closed form (e.g. LIF with v += w).
    jump_only_possible = (
        run.method == "exact" and model.monotone and run.threshold is not None
        and not run.has_ref and (run.integrand is None or run.grid_rule) and model.has_flow
    )
    # A NaN fixed point (a flow that cannot take h = inf) means "unknown": general path.
    fixed_point_ok = jump_only_possible and bool(
        (run.threshold(model.flow(run.state, zero, infinity)) < 0).all()
    )
    recurrent = run.recurrent
    if recurrent is not None:
        if not hasattr(recurrent, "emit"):
            raise ValueError(
                f"{type(recurrent).__name__} runs in discrete time only; for exact delayed "
                "recurrence in continuous time use an exact recurrent synapse (kernel Exact)"
            )
        start_recurrent(recurrent, run.batch_size, run.dtype, run.device, dt, "continuous")
    for n in range(run.n_steps):
        t0 = n * dt
        logged = len(run.log.times)
        x = zero if run.current is None else run.current[n]
        # Local refractory ends, snapped (value only) onto 0 or dt when within a few ulps: a
        # hold ending on a grid point must end at this step's end or the next one's start, not
        # an ulp past the end here and at 0 there (its release would be in neither step).
        hold = snap_to_grid(run.ref_end - t0, dt) if run.has_ref else None
        bounds = _boundaries(run, n, end_of_step)
        jump_only = jump_only_possible and (
            fixed_point_ok if run.current is None
            else bool((run.threshold(model.flow(run.state, x, infinity)) < 0).all())
        )

        def step(extra: Rows | None, start: Start | None = None, n=n, x=x, bounds=bounds,
                 hold=hold, jump_only=jump_only) -> Tensor | None:
            if _pieces(run, n) is not None:  # the state at the step's start; a pass of
                run.saver.pieces = []            # .substep re-runs the step from there
                run.saver.piece(run.state, zero, None)
            if start is not None:  # a pass from an in-step arrival: the jumps up to it are in
                bounds = _after(bounds, start, run.jumps is not None)
            if extra is not None:  # in-step recurrent arrivals (sub-step delays)
                bounds = _insert(bounds, extra, run.jumps is not None)
            if jump_only:
                _jump_only_step(run, n, x, bounds, end_of_step, start)
                return hold
            return _general_step(run, n, x, bounds, end_of_step, hold, xtol, start)

        if getattr(recurrent, "substep", False):
            hold = settle_step(run, n, logged, step, _resumable(run, n))
        else:
            hold = step(None)
        if hold is not None:
            run.ref_end = hold + t0
        if _pieces(run, n) is not None:
            run.saver.evaluate(n, make_flow(model, run.method, t0, x, run.delays))
        run.end_of_step(n, x)
        if recurrent is not None:  # schedule this step's spikes on the recurrent synapses
            recurrent.emit(n, *run.log.since(logged), local=run.log.local_since(logged))
    if run.saver is not None:
        run.saver.grid(run.n_steps, run.state)
    spikes = run.log.spikes(dt=dt, n_steps=run.n_steps, shape=run.shape, like=zero)
    return SimulationResult(spikes=spikes, states=run.recordings(), final_state=run.state,
                            output=run.integral, saved=run.saved())
