"""The discrete-time loop: the classic SNN grid update.

Each step of ``dt`` applies one integrator step (closed-form flow or a Runge-Kutta step), adds
the jumps that arrived during the step, then tests the threshold on the grid point and resets.
Spikes sit on grid points. With a surrogate the spike is ``surrogate(threshold(state))``
(0/1 forward, surrogate derivative backward) and the reset is blended as
``state + s (reset(state) - state)`` so that gradients flow through it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from solvers.events import where_state

from .recurrence import start_recurrent
from .result import SimulationResult
from .setup import Population
from .spike_log import raster_spikes
from .stepping import make_flow, receive


def _fire(run: Population, state: tuple, new: tuple, held: Tensor | None) -> tuple[tuple, Tensor]:
    """Threshold test and reset at the grid point: ``(state after reset, spike [B, N])``."""
    model, threshold = run.model, run.threshold
    g = threshold(new)
    # Spikes are disallowed while refractory, and for models without reset unless the
    # threshold was crossed upwards during this step.
    allowed = None if model.resets else threshold(state) < 0
    if held is not None:
        allowed = ~held if allowed is None else allowed & ~held
    if run.surrogate is not None:
        spike = run.surrogate(g)
        if allowed is not None:  # exact zeros there, and no gradient
            spike = spike * allowed.to(run.dtype)
        factor = spike.detach() if run.detach_reset else spike
        reset = model.reset(new)
        # a + s (r - a) in one operator; variables the reset leaves alone are kept
        new = model.State(*(a if r is a else torch.lerp(a, r, factor)
                            for a, r in zip(new, reset, strict=True)))
        return new, spike
    fire = g >= 0 if allowed is None else (g >= 0) & allowed
    return where_state(fire, model.reset(new), new), fire.to(run.dtype)


def run_discrete(run: Population) -> SimulationResult:
    """Simulate ``run`` on the grid (see the module docstring)."""
    run.start()
    model, dt, zero, shape = run.model, run.dt, run.zero, run.shape
    rows: list[Tensor] = []
    h = float(dt)  # a Python step: fused ``y + h k`` updates
    n_ref = torch.round(run.ref_param / dt)
    # Grid-step countdown; a spike at t = 0 starts it as well.
    count = (torch.where(run.fired, n_ref.expand(shape), zero) if run.fired is not None
             else zero.clone())
    recurrent = run.recurrent
    if recurrent is not None:
        start_recurrent(recurrent, run.batch_size, run.dtype, run.device, dt, "discrete")
    if run.saver is not None:
        run.saver.grid(0, run.state)
    for n in range(run.n_steps):
        x = zero if run.current is None else run.current[n]
        held = (count > 0) if run.has_ref else None
        state = run.state
        new = make_flow(model, run.method, n * dt, x, run.delays)(state, zero, h, held)
        if run.jumps is not None:
            new = receive(model, new, run.jumps[n], held)
        if recurrent is not None:
            new = receive(model, new, recurrent.read(n), held)
        if run.threshold is not None:
            new, spike = _fire(run, state, new, held)
            rows.append(spike)
            if run.has_ref:
                count = torch.where(spike > 0, n_ref.expand(shape), count - 1)
            if recurrent is not None:
                recurrent.write(n, spike)
        run.state = new
        run.end_of_step(n, x)
        if run.saver is not None:
            run.saver.grid(n + 1, new)
    raster = torch.stack(rows) if rows else torch.zeros((run.n_steps, *shape), dtype=run.dtype,
                                                        device=run.device)
    spikes = raster_spikes(raster, dt, run.log if run.fired is not None else None,
                           run.n_steps, shape, zero)
    return SimulationResult(spikes=spikes, states=run.recordings(), final_state=run.state,
                            raster=raster, output=run.integral, saved=run.saved())
