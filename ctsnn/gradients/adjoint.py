"""Generic adjoint: exact event-based gradients for any :class:`~ctsnn.models.base.NeuronModel`.

``gradient="adjoint"`` for models without a hand-derived EventProp (AdEx, Izhikevich, QIF,
models from equation strings, ...) and for recurrent layers. Nothing here is written per
model: the adjoint equations between events and the jump conditions at spikes and arrivals
are obtained from vector-Jacobian products of the model's ``dynamics`` (through the same
step map the forward used), ``threshold`` and ``reset``.

Forward: the continuous engine (:func:`ctsnn.simulation.run_population`) under
``torch.no_grad()``; kept are the input and output spike events and the state at every grid
point (``[T, B, N]`` per variable: the checkpoints the backward replays each step from).

Backward, step by step in reverse (state ``x``, adjoint ``lam = dL/dx``, seconds):

* Between events (an interval ``[a, b]`` of one neuron and sample), ``x(b) = F(x(a), b - a)``
  with ``F`` the engine's step map (closed-form flow or Runge-Kutta step): ``lam(a+) =
  F_x^T lam(b-)`` plus the readout drive, the vector-Jacobian product of the interval's
  integral ``∫_a^b l(t, x) dt``. For a closed-form flow this is the exact continuous adjoint;
  for a Runge-Kutta step it is the adjoint of that step, so gradients are exact for the
  simulated trajectory. Parameter gradients accumulate from the same products.
* Input arrival at ``s`` (jump ``J = w a`` into the model's ``jump_target``): ``lam`` is
  continuous; ``dL/dJ = lam_target(s)``, so ``dL/dw = a lam_target``, ``dL/da = w lam_target``;
  ``dL/ds = dL/dd = dL/dt_in`` is the sum of the time derivatives of the intervals ending and
  starting at ``s`` (``lam.(f(x-) - f(x+)) + l(x-) - l(x+)``).
* Spike at ``t_k`` (crossing ``g(x) = 0`` upwards, reset ``x+ = r(x-)``): with
  ``lam_r = r_x^T lam(t_k+)`` and ``E_k = G_k + dL/dt_k|explicit`` (``G_k`` the incoming
  gradient of the spike time: downstream layers, recurrent arrivals, spike-time losses),

      lam(t_k-) = lam_r + nu g_x,    nu = -(lam_r . F_h + l(x-) - l(x+) ... + E_k) / (g_x . F_h),

  i.e. the implicit-function-theorem derivative of the crossing time, applied through the
  interval's own time derivative ``F_h``. A spike fired by an arrival's jump (the jump carried
  the state over threshold) has the arrival's time: its ``E_k`` goes to that arrival.
* Recurrent arrivals of the layer's own spikes (:class:`~ctsnn.synapses.RecurrentDense`,
  delays of at least one step) add their ``dL/ds`` to ``G`` of the spike that sent them; in
  reverse time they are always processed first.

Limits (checked, with a clear error): no refractory period, no ``delayed_reads``, spike-driven
input only (no continuous current), default initial state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from solvers.events import quadrature

from ..models.base import NeuronModel
from ..spikes import Spikes, locate
from ..synapses import Dense, RecurrentDense, snap_to_grid

Integrand = Callable[[Tensor, tuple], Tensor]

#: Largest replay mismatch (max |x_replay - x_engine| / (1 + |x_engine|)) of the last backward;
#: the tests read it to confirm the backward replays exactly what the forward simulated.
last_replay_error: float = 0.0


def check_adjoint_model(model: NeuronModel) -> None:
    """Raise a clear error if ``model`` cannot be trained with the generic adjoint."""
    name = type(model).__name__
    if bool((model.refractory > 0).any()):
        raise ValueError(f"gradient='adjoint': {name} has a refractory period, which the adjoint "
                         "does not support; use gradient='surrogate' with time='continuous' "
                         "(autograd through the engine, also exact)")
    if model.delayed_reads:
        raise ValueError(f"gradient='adjoint': {name} reads delayed state (a DDE model); use "
                         "gradient='surrogate' with time='continuous'")
    if model.spiking:
        gen = torch.Generator().manual_seed(0)
        state = model.initial_state(2)
        probe = tuple((v + 0.1 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
                       .to(v.device)).requires_grad_() for v in state)
        with torch.enable_grad():
            g = model.threshold(model.State(*probe))
            ok = isinstance(g, Tensor) and g.requires_grad
            if ok:
                grads = torch.autograd.grad(g.sum(), probe, allow_unused=True)
                ok = any(x is not None and bool(torch.isfinite(x).all()) and bool(x.any())
                         for x in grads)
        if not ok:
            raise ValueError(f"gradient='adjoint': {name}.threshold(state) is not differentiable "
                             "w.r.t. the state (the adjoint needs its gradient at each crossing); "
                             "use gradient='surrogate'")


@dataclass
class _Setup:
    """What one layer pass needs besides its tensors."""

    model: NeuronModel
    method: str
    dt: float
    n_steps: int
    batch_size: int
    n_in: int
    integrand: Integrand | None
    xtol: float | None
    recurrent: bool
    has_delay: bool
    integral_rule: str = "exact"
    checkpoint_every: int = 32
    final_state: tuple | None = None
    states: dict | None = None


def _params(model: NeuronModel) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


# =========================================================================== forward
def _run(setup: _Setup, t_in, v_in, b_in, j_in, weight, delay, rec_w, rec_d):
    from ..simulation import run_population

    spikes = Spikes(t_in, j_in, b_in, v_in, dt=setup.dt, n_steps=setup.n_steps,
                    batch_size=setup.batch_size, n_units=setup.n_in)
    syn = Dense(weight=weight, delay=delay if setup.has_delay else None, learn_weight=False)
    rec = (RecurrentDense(weight=rec_w, delay=rec_d, learn_weight=False) if setup.recurrent
           else None)
    model = setup.model
    return run_population(
        model, dt=setup.dt, n_steps=setup.n_steps, batch_size=setup.batch_size,
        arrivals=syn.arrivals(spikes), recurrent=rec, time="continuous", method=setup.method,
        record=model.state_names, record_every=setup.checkpoint_every,
        integrand=setup.integrand, integral_rule=setup.integral_rule, dtype=weight.dtype,
        device=weight.device, xtol=setup.xtol,
    )


# =========================================================================== event table
@dataclass
class _Events:
    """Every event of the layer, sorted by (step, element, time, arrival-before-spike)."""

    step: Tensor  # [E]
    elem: Tensor  # [E] b * N + i
    off: Tensor  # [E] offset in the step (s)
    kind: Tensor  # [E] 1 arrival, 2 spike (crossing), 3 spike fired by the arrival before it
    ref: Tensor  # [E] pair index (arrivals) or spike index (spikes)
    bounds: list[int]  # events of step n: [bounds[n], bounds[n + 1])


def _arrival_pairs(t: Tensor, b: Tensor, j: Tensor, delay: Tensor | None, n_out: int,
                   dt: float, t_end: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(source event, target, batch, arrival time, kept) of every (event, target) pair."""
    n_ev = t.numel()
    src = torch.repeat_interleave(torch.arange(n_ev, device=t.device), n_out)
    tgt = torch.arange(n_out, device=t.device).repeat(n_ev)
    if delay is None:
        s = t[src]
    else:
        s = snap_to_grid(t[src] + delay[tgt, j[src]], dt)
    keep = s <= torch.tensor(t_end, dtype=s.dtype)
    return src[keep], tgt[keep], b[src][keep], s[keep], keep


def _sort_events(step, elem, off, kind) -> Tensor:
    order = torch.argsort(kind, stable=True)
    for key in (off, elem, step):
        order = order[torch.argsort(key[order], stable=True)]
    return order


def _event_table(setup: _Setup, arr_step, arr_elem, arr_off, sp_step, sp_elem, sp_off,
                 tol: float) -> _Events:
    n_arr = arr_step.numel()
    step = torch.cat([arr_step, sp_step])
    elem = torch.cat([arr_elem, sp_elem])
    off = torch.cat([arr_off, sp_off])
    kind = torch.cat([torch.ones_like(arr_step), torch.full_like(sp_step, 2)])
    ref = torch.cat([torch.arange(n_arr, device=step.device),
                     torch.arange(sp_step.numel(), device=step.device)])
    order = _sort_events(step, elem, off, kind)
    step, elem, off, kind, ref = (x[order] for x in (step, elem, off, kind, ref))
    if kind.numel() > 1:
        # A spike within tol of an arrival of the same neuron was fired by that arrival's jump
        # (the engine logs it at the arrival's time; rounding may sort it either side).
        def near(i: Tensor, j: Tensor) -> Tensor:
            return ((elem[i] == elem[j]) & (step[i] == step[j])
                    & ((off[i] - off[j]).abs() <= tol))

        i = torch.arange(kind.numel() - 1, device=kind.device)
        swap = (kind[i] == 2) & (kind[i + 1] == 1) & near(i, i + 1)
        if bool(swap.any()):
            s = i[swap]
            perm = torch.arange(kind.numel(), device=kind.device)
            perm[s], perm[s + 1] = s + 1, s
            step, elem, off, kind, ref = (x[perm] for x in (step, elem, off, kind, ref))
        fired = torch.zeros_like(kind, dtype=torch.bool)
        fired[1:] = (kind[1:] == 2) & (kind[:-1] == 1) & near(i + 1, i)
        kind = torch.where(fired, torch.full_like(kind, 3), kind)
        off = torch.where(fired, torch.roll(off, 1), off)
    bounds = torch.searchsorted(step, torch.arange(setup.n_steps + 1, device=step.device))
    return _Events(step=step, elem=elem, off=off, kind=kind, ref=ref, bounds=bounds.tolist())


# =========================================================================== backward
@dataclass
class _Replay:
    """One step replayed forward: its events, step map, and the state around every event."""

    lay: _Layout
    flow: Any
    starts: list  # state at the start of interval r (after event r - 1)
    pres: list  # state at event r before its reset
    end: tuple  # state at the end of the step


class _Layout:
    """Per-rank views ``[M, B, N]`` of one step's events."""

    def __init__(self, ev: _Events, e0: int, e1: int, shape: tuple[int, int], dt: float,
                 like: Tensor) -> None:
        elem, kind = ev.elem[e0:e1], ev.kind[e0:e1]
        m = e1 - e0
        first = torch.ones(m, dtype=torch.bool, device=elem.device)
        if m > 1:
            first[1:] = elem[1:] != elem[:-1]
        pos = torch.arange(m, device=elem.device)
        start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values
        rank = pos - start
        self.m = int(rank.max()) + 1 if m else 0
        size = shape[0] * shape[1]
        self.off = like.new_full((self.m, size), dt)
        self.kind = torch.zeros((self.m, size), dtype=torch.long, device=elem.device)
        self.ref = torch.full((self.m, size), -1, dtype=torch.long, device=elem.device)
        self.off[rank, elem] = ev.off[e0:e1].to(like.dtype)
        self.kind[rank, elem] = kind
        self.ref[rank, elem] = ev.ref[e0:e1]
        self.shape = shape
        # Padding after an element's last event sits at the end of the step (offset dt, as the
        # engine pads): the element's last real interval then runs from its last event to dt,
        # so that event's start-time cotangent is that interval's, and the zero-length intervals
        # all sit at the fixed grid point (a Runge-Kutta map does not conserve lam.f exactly,
        # so zero-length intervals at an event's time would misattribute its time derivative).
        self.off = self.off.reshape(self.m, *shape)
        self.kind = self.kind.reshape(self.m, *shape)
        self.ref = self.ref.reshape(self.m, *shape)


def _vjp(outputs: list[Tensor], inputs: list[Tensor], cotangents: list[Tensor],
         retain: bool = False) -> list[Tensor]:
    pairs = [(o, c) for o, c in zip(outputs, cotangents, strict=True)
             if c is not None and o.requires_grad]
    if not pairs:
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad([o for o, _ in pairs], inputs, [c for _, c in pairs],
                                allow_unused=True, retain_graph=retain)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]


class _StepMaps:
    """The engine's step map of one layer, per grid step, and one interval's forward map."""

    def __init__(self, setup: _Setup, like: Tensor) -> None:
        from ..simulation import _make_flow

        self.setup = setup
        self.model = setup.model
        self.zero_input = like.new_zeros(setup.batch_size, setup.model.n)
        self._make_flow = _make_flow

    def flow(self, n: int):
        return self._make_flow(self.model, self.setup.method, n * self.setup.dt,
                               self.zero_input)

    def interval(self, n: int, flow, xa: tuple, a: Tensor, b: Tensor):
        """``(x(b-), ∫_a^b l dt)`` from ``x(a+)`` (the forward map of one interval)."""
        xa = self.model.State(*xa)
        xb = flow(xa, a, b - a, None)
        q = None
        integrand = self.setup.integrand
        if integrand is not None and self.setup.integral_rule == "exact":
            t0 = n * self.setup.dt
            q = quadrature(flow, lambda t, y: integrand(t0 + t, y), xa, a, b, None, None)
        return xb, q


class _AdjointFn(torch.autograd.Function):
    """(input times, amplitudes, W, D, W_rec, D_rec, model params) -> (spike times, readout)."""

    @staticmethod
    def forward(ctx: Any, setup: _Setup, t_in: Tensor, v_in: Tensor, b_in: Tensor, j_in: Tensor,
                weight: Tensor, delay: Tensor, rec_w: Tensor, rec_d: Tensor, *params: Tensor):
        res = _run(setup, t_in, v_in, b_in, j_in, weight, delay, rec_w, rec_d)
        model = setup.model
        states = torch.stack([res.states[name] for name in model.state_names], 1)  # [T,S,B,N]
        out = res.spikes
        if len(out) and bool((out.times == 0).any()):
            raise ValueError("gradient='adjoint': a neuron starts at or above threshold and fires "
                             "at t = 0; the adjoint needs a sub-threshold initial state")
        z = res.integral if res.integral is not None else weight.new_zeros(0)
        ctx.setup = setup
        setup.final_state, setup.states = res.final_state, res.states
        ctx.save_for_backward(t_in, v_in, b_in, j_in, weight, delay, rec_w, rec_d, out.times,
                              out.batch, out.units, states)
        ctx.mark_non_differentiable(out.batch, out.units)
        return out.times, out.batch, out.units, z

    @staticmethod
    def backward(ctx: Any, g_t: Tensor | None, _gb: Any, _gn: Any, g_z: Tensor | None) -> tuple:
        setup: _Setup = ctx.setup
        (t_in, v_in, b_in, j_in, weight, delay, rec_w, rec_d, t_out, b_out, n_out,
         states) = ctx.saved_tensors
        params = _params(setup.model)
        with torch.enable_grad():
            grads = _adjoint(setup, params, t_in, v_in, b_in, j_in, weight, delay, rec_w, rec_d,
                             t_out, b_out, n_out, states, g_t,
                             g_z if setup.integrand is not None else None)
        g_tin, g_vin, g_w, g_d, g_rw, g_rd, g_params = grads
        return (None, g_tin, g_vin, None, None, g_w, g_d if setup.has_delay else None,
                g_rw if setup.recurrent else None, g_rd if setup.recurrent else None, *g_params)


def _adjoint(setup: _Setup, params, t_in, v_in, b_in, j_in, weight, delay, rec_w, rec_d,
             t_out, b_out, n_out, states, g_t, g_z):
    global last_replay_error
    model = setup.model
    dt, n_steps = setup.dt, setup.n_steps
    n = model.n
    shape = (setup.batch_size, n)
    dtype = weight.dtype
    t_end = float(torch.tensor(n_steps, dtype=torch.float64) * dt)
    tol = 256 * torch.finfo(dtype).eps * max(t_end, dt)
    bw = _StepMaps(setup, weight)
    names = model.state_names
    target = None if model.jump_target is None else names.index(model.jump_target)

    # ---- pairs: external (input event, target) and recurrent (output spike, target)
    ext = _arrival_pairs(t_in, b_in, j_in, delay if setup.has_delay else None, n, dt, t_end)
    e_src, e_tgt, e_b, e_s, _ = ext
    e_x = weight[e_tgt, j_in[e_src]] * v_in[e_src]
    if setup.recurrent:
        r_src, r_tgt, r_b, r_s, _ = _arrival_pairs(t_out, b_out, n_out, rec_d, n, dt, t_end)
        r_x = rec_w[r_tgt, n_out[r_src]]
    else:
        r_src = r_tgt = r_b = torch.zeros(0, dtype=torch.long, device=t_in.device)
        r_s = r_x = t_in.new_zeros(0)
    n_ext = e_s.numel()
    s_all = torch.cat([e_s, r_s]).to(dtype)
    x_all = torch.cat([e_x, r_x]).to(dtype)
    elem_all = torch.cat([e_b * n + e_tgt, r_b * n + r_tgt])
    a_step, a_off = locate(s_all, dt)
    sp_step, sp_off = locate(t_out.to(dtype), dt)
    ev = _event_table(setup, a_step, elem_all, a_off, sp_step, b_out * n + n_out,
                      sp_off, tol)

    # ---- accumulators
    n_pairs = s_all.numel()
    d_jump = x_all.new_zeros(n_pairs)  # dL/dJ per pair
    d_time = x_all.new_zeros(n_pairs)  # dL/ds per pair
    big_g = (torch.zeros_like(t_out) if g_t is None else g_t.clone()).to(dtype)
    g_params = [torch.zeros_like(p) for p in params]
    lam = tuple(torch.zeros(shape, dtype=dtype, device=weight.device) for _ in names)
    drive = None if g_z is None else g_z.to(dtype)
    initial = model.initial_state(setup.batch_size, dtype=dtype, device=weight.device)
    worst = 0.0
    rec_start = n_ext

    every = setup.checkpoint_every

    def checkpoint(step: int) -> tuple:
        """The state at the start of ``step`` (a multiple of ``every``) or None past the end."""
        if step == 0:
            return initial
        if step % every:
            return None
        k = step // every - 1
        return model.State(*states[k].unbind(0)) if k < states.shape[0] else None

    def replay(step: int, x0: tuple) -> _Replay:
        """Forward replay of one step from its start: the state around every event."""
        e0, e1 = ev.bounds[step], ev.bounds[step + 1]
        lay = _Layout(ev, e0, e1, shape, dt, weight)
        flow = bw.flow(step)
        x = x0
        tau = torch.zeros(shape, dtype=dtype, device=weight.device)
        starts, pres = [x0], []
        for r in range(lay.m):
            end = lay.off[r]
            pre = flow(x, tau, end - tau, None)
            kind = lay.kind[r]
            jr = _pair_values(lay.ref[r], kind == 1, x_all)
            post = model.receive(pre, jr) if target is not None else pre
            fire = (kind == 2) | (kind == 3)
            mid = post
            if bool(fire.any()):
                post = model.State(*(torch.where(fire, a, b) for a, b in
                                     zip(model.reset(post), post, strict=True)))
            pres.append(mid)  # state just before the reset (after a same-time jump)
            starts.append(post)
            x, tau = post, end
        return _Replay(lay=lay, flow=flow, starts=starts, pres=pres,
                       end=flow(x, tau, dt - tau, None))

    blocks = list(range(0, n_steps, every))
    for n0 in reversed(blocks):
        n1 = min(n0 + every, n_steps)
        # ---- recompute the block's steps from its checkpoint (memory: one block)
        with torch.no_grad():
            x = checkpoint(n0)
            replays = []
            for s_ in range(n0, n1):
                replays.append(replay(s_, x))
                x = replays[-1].end
            ref = checkpoint(n1)
            if ref is not None:
                err = max(float(((a - b).abs() / (1 + b.abs())).max())
                          for a, b in zip(x, ref, strict=True))
                worst = max(worst, err)
        for step in range(n1 - 1, n0 - 1, -1):
            rep = replays[step - n0]
            lay, flow, starts, pres = rep.lay, rep.flow, rep.starts, rep.pres
            m = lay.m
            e0, e1 = ev.bounds[step], ev.bounds[step + 1]
            zeros = torch.zeros(shape, dtype=dtype, device=weight.device)
            if drive is not None and setup.integral_rule == "grid":
                # z += dt l((n+1) dt, x): a jump of lam at the grid point
                xe = tuple(v.detach().requires_grad_() for v in rep.end)
                t_e = torch.tensor((step + 1) * dt, dtype=dtype, device=weight.device)
                term = dt * setup.integrand(t_e, model.State(*xe))
                res_e = _vjp([term], [*xe, *params], [drive])
                lam = tuple(lv + g for lv, g in zip(lam, res_e[:len(names)], strict=True))
                _add(g_params, res_e[len(names):])
            # ---- reverse: interval m (to the end of the step), then event r, interval r, ...
            t_hi = torch.full(shape, dt, dtype=dtype, device=weight.device)
            a_next = None  # dL/d(start time) of the interval after the current event
            pending = None  # time cotangent of a jump-fired spike at rank r + 1, for its arrival
            e_fired = None
            for r in range(m, -1, -1):
                a = zeros if r == 0 else lay.off[r - 1]
                b = t_hi if r == m else lay.off[r]
                spike_r = None
                if r < m:
                    kind = lay.kind[r]
                    # ---- event r at time b: lam is lam(b+), a_next its start-time cotangent
                    arrive = kind == 1
                    fire = (kind == 2) | (kind == 3)
                    lam_pre = lam
                    e_k = None
                    if bool(fire.any()):
                        k = torch.where(fire, lay.ref[r], torch.zeros_like(lay.ref[r]))
                        e_k = torch.where(fire, big_g[k] + a_next, torch.zeros_like(a_next))
                        xm = tuple(v.detach().requires_grad_() for v in pres[r])
                        mask = fire.to(dtype)
                        reset = model.reset(model.State(*xm))
                        out = _vjp(list(reset), [*xm, *params], [lv * mask for lv in lam])
                        lam_pre = tuple(torch.where(fire, g, lv)
                                        for g, lv in zip(out[:len(names)], lam, strict=True))
                        _add(g_params, out[len(names):])
                        crossing = kind == 2
                        if bool(crossing.any()):
                            spike_r = (crossing, e_k)
                        if bool((kind == 3).any()):
                            e_fired = e_k
                    if bool(arrive.any()) and target is not None:
                        dj = lam_pre[target]
                        _set_pairs(d_jump, lay.ref[r], arrive, dj)
                    lam = lam_pre
                # ---- interval r: [a, b]
                xa = tuple(v.detach().requires_grad_() for v in starts[r])
                a_req = a.detach().clone().requires_grad_()
                b_req = b.detach().clone().requires_grad_()
                xb, q = bw.interval(step, flow, xa, a_req, b_req)
                cot = list(lam)
                if spike_r is not None:
                    crossing, e_k = spike_r
                    xm = tuple(v.detach().requires_grad_() for v in pres[r])
                    g = model.threshold(model.State(*xm))
                    g_x = torch.autograd.grad(g.sum(), xm, allow_unused=True, retain_graph=True)
                    g_x = [torch.zeros_like(v) if gg is None else gg for gg, v in zip(g_x, xm,
                                                                                       strict=True)]
                    # dL/db with the reset cotangent and dg/db along the interval's own map
                    b_lam = _vjp([*xb, *([q] if q is not None else [])], [b_req],
                                 [*cot, *([drive] if q is not None else [])], retain=True)[0]
                    g_dot = _vjp(list(xb), [b_req], g_x, retain=True)[0]
                    safe = torch.where(crossing & (g_dot != 0), g_dot, torch.ones_like(g_dot))
                    nu = torch.where(crossing, -(b_lam + e_k) / safe, torch.zeros_like(g_dot))
                    cot = [c + nu * gx for c, gx in zip(cot, g_x, strict=True)]
                    if params:
                        _add(g_params, _vjp([g], params, [nu]))
                outs = [*xb, *([q] if q is not None else [])]
                cots = [*cot, *([drive] if q is not None else [])]
                res = _vjp(outs, [*xa, a_req, b_req, *params], cots)
                lam_a = tuple(res[:len(names)])
                a_bar, b_bar = res[len(names)], res[len(names) + 1]
                _add(g_params, res[len(names) + 2:])
                new_pending = None
                if r < m:
                    kind = lay.kind[r]
                    arrive = kind == 1
                    if bool(arrive.any()):
                        ds = b_bar + a_next if pending is None else b_bar + a_next + pending
                        _set_pairs(d_time, lay.ref[r], arrive, ds)
                    if e_fired is not None:  # the spike's time is its arrival's: hand it over
                        new_pending = torch.where(kind == 3, e_fired + b_bar,
                                                  torch.zeros_like(b_bar))
                pending, e_fired = new_pending, None
                lam = lam_a
                a_next = a_bar
            # ---- recurrent arrivals of this step: hand dL/ds to the spikes that sent them
            if setup.recurrent:
                ids = ev.ref[e0:e1][(ev.kind[e0:e1] == 1) & (ev.ref[e0:e1] >= rec_start)]
                if ids.numel():
                    big_g.index_add_(0, r_src[ids - rec_start], d_time[ids])
    last_replay_error = worst

    # ---- assemble
    e_j = j_in[e_src]
    g_w = torch.zeros_like(weight).index_put_(
        (e_tgt, e_j), v_in[e_src].to(dtype) * d_jump[:n_ext], accumulate=True)
    g_vin = torch.zeros_like(v_in).index_add_(
        0, e_src, (weight[e_tgt, e_j] * d_jump[:n_ext]).to(v_in.dtype))
    g_tin = torch.zeros_like(t_in).index_add_(0, e_src, d_time[:n_ext].to(t_in.dtype))
    g_d = torch.zeros_like(weight).index_put_((e_tgt, e_j), d_time[:n_ext], accumulate=True)
    if setup.recurrent:
        r_j = n_out[r_src]
        g_rw = torch.zeros_like(rec_w).index_put_((r_tgt, r_j), d_jump[n_ext:], accumulate=True)
        g_rd = torch.zeros_like(rec_w).index_put_((r_tgt, r_j), d_time[n_ext:], accumulate=True)
    else:
        g_rw = g_rd = None
    return g_tin, g_vin, g_w, g_d, g_rw, g_rd, g_params


def _pair_values(ref: Tensor, mask: Tensor, values: Tensor) -> Tensor:
    idx = torch.where(mask, ref, torch.zeros_like(ref))
    if values.numel() == 0:
        return torch.zeros(ref.shape, dtype=values.dtype, device=values.device)
    return torch.where(mask, values[idx], torch.zeros_like(values[idx]))


def _set_pairs(acc: Tensor, ref: Tensor, mask: Tensor, value: Tensor) -> None:
    acc[ref[mask]] = value[mask].detach()


def _add(acc: list[Tensor], grads: list[Tensor]) -> None:
    for a, g in zip(acc, grads, strict=True):
        a.add_(g.detach())


# =========================================================================== public API
def adjoint_layer(
    model: NeuronModel,
    spikes: Spikes,
    weight: Tensor,
    delay: Tensor | None = None,
    *,
    recurrent: RecurrentDense | None = None,
    integrand: Integrand | None = None,
    method: str | None = None,
    xtol: float | None = None,
    record: tuple[str, ...] = (),
    integral_rule: str = "exact",
    checkpoint_every: int = 32,
) -> tuple[Spikes, Tensor | None, tuple, dict[str, Tensor]]:
    """One continuous-time layer with generic adjoint gradients (functional form).

    Args:
        model: any spike-driven :class:`NeuronModel` (see the module docstring for limits); its
            learnable parameters get gradients.
        spikes: input events (``n_units = N_in``); ``times`` and ``values`` (amplitudes) may
            require grad. Their grid (``dt``, ``n_steps``) is the simulated interval.
        weight: ``[N, N_in]``.
        delay: seconds, ``[N, N_in]`` or per axon ``[N_in]``, or ``None``.
        recurrent: the layer's own delayed recurrent synapses (delays >= one step).
        integrand: ``l(t, state) -> [B, N]``; the readout is ``∫_0^T l dt`` ``[B, N]``.
        integral_rule: ``"exact"`` (quadrature between events, neuron-wise integrands) or
            ``"grid"`` (``Σ_n dt l((n+1) dt, x)``; the integrand may couple neurons).
        checkpoint_every: steps between the state checkpoints kept for the backward (memory
            ``T / checkpoint_every`` states; the backward replays one block at a time, so
            larger values trade memory for a larger transient block).
        method: ``"exact"`` (closed-form flow) or a Runge-Kutta method; default as
            :func:`ctsnn.simulation.run_population`.
        xtol: spike-time tolerance (s).
        record: state variables whose (detached) trajectories ``[T, B, N]`` to return.

    Returns:
        ``(output spikes with differentiable times, readout [B, N] or None, final state,
        recordings)``.
    """
    from ..simulation import METHODS

    if not isinstance(spikes, Spikes):
        raise TypeError(f"spikes must be a ctsnn.Spikes, got {type(spikes).__name__}")
    check_adjoint_model(model)
    if model.jump_target is None:
        raise ValueError(f"{type(model).__name__} has no jump_target: it cannot receive spikes")
    if weight.ndim != 2 or weight.shape != (model.n, spikes.n_units):
        raise ValueError(f"weight must have shape [N, N_in] = [{model.n}, {spikes.n_units}], "
                         f"got {list(weight.shape)}")
    if delay is not None:
        if delay.shape == (weight.shape[1],):
            delay = delay.expand_as(weight)
        if delay.shape != weight.shape:
            raise ValueError(f"delay must have shape {list(weight.shape)} or "
                             f"[{weight.shape[1]}], got {list(delay.shape)}")
        if bool((delay.detach() < 0).any()):
            raise ValueError(f"delay must be non-negative, got minimum {delay.min().item()!r}")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
    method = method or ("exact" if model.has_flow else "rk4")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if recurrent is not None and not isinstance(recurrent, RecurrentDense):
        raise TypeError("gradient='adjoint' supports recurrent=ctsnn.synapses.RecurrentDense "
                        f"(exact delayed recurrence), got {type(recurrent).__name__}")
    if recurrent is not None:
        low = float(recurrent.delay.detach().min())
        if low < spikes.dt * (1 - 1e-9):
            raise ValueError(f"recurrent delays must be at least one grid step ({spikes.dt} s), "
                             f"got {low} s")
    params = _params(model)
    setup = _Setup(model=model, method=method, dt=spikes.dt, n_steps=spikes.n_steps,
                   batch_size=spikes.batch_size, n_in=spikes.n_units, integrand=integrand,
                   xtol=xtol, recurrent=recurrent is not None,
                   has_delay=delay is not None, integral_rule=integral_rule,
                   checkpoint_every=checkpoint_every)
    empty = weight.new_zeros(0)
    rec_w = recurrent.weight if recurrent is not None else empty
    rec_d = recurrent.synapse_delay() if recurrent is not None else empty
    t_out, b_out, n_out, z = _AdjointFn.apply(
        setup, spikes.times.to(weight.dtype), spikes.values.to(weight.dtype), spikes.batch,
        spikes.units, weight, delay if delay is not None else empty, rec_w, rec_d, *params)
    out = Spikes(t_out, n_out, b_out, dt=spikes.dt, n_steps=spikes.n_steps,
                 batch_size=spikes.batch_size, n_units=model.n)
    states = {name: setup.states[name] for name in record}
    return out, (z if integrand is not None else None), setup.final_state, states
