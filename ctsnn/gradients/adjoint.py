"""Generic adjoint: exact event-based gradients for any :class:`~ctsnn.models.base.NeuronModel`.

``gradient="adjoint"`` for models without a hand-derived EventProp (AdEx, Izhikevich, QIF,
models from equation strings, ...) and for recurrent layers. Nothing here is written per
model: the adjoint equations between events and the jump conditions at spikes and arrivals
are obtained from vector-Jacobian products of the model's ``dynamics`` (through the same
step map the forward used), ``threshold`` and ``reset``.

Forward: the continuous engine (:func:`ctsnn.engine.run_population`) under
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
* Recurrent arrivals of the layer's own spikes (:class:`~ctsnn.synapses.RecurrentDense`) add
  their ``dL/ds`` to ``G`` of the spike that sent them (``ds/dt_k = 1``, ``ds/dd = 1``). An
  arrival in a later step is processed first in reverse time. Sub-step and zero delays (an
  arrival inside the step of its spike, the forward's :mod:`ctsnn.engine.substep`): such a step
  is walked by each neuron at its own pace, a spike waiting until every in-step arrival it sent
  has its ``dL/ds``; the events of one instant (zero delays) are in the forward's causal order
  (:mod:`ctsnn.gradients.instants`: the crossing, the jumps by wave, a neuron firing at its
  first jump over threshold), so gradients do not depend on ``dt``.

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

from ..engine import Method, as_method, make_flow, run_population
from ..models.base import NeuronModel
from ..spikes import Spikes
from ..synapses import Dense, RecurrentDense
from .adjoint_events import Events, Pairs, build_pairs
from .cascade import decidable, firing_arrivals

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
    method: Method
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

    def __init__(self, ev: Events, e0: int, e1: int, shape: tuple[int, int], dt: float,
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
        self.setup = setup
        self.model = setup.model
        self.zero_input = like.new_zeros(setup.batch_size, setup.model.n)

    def flow(self, n: int):
        return make_flow(self.model, self.setup.method, n * self.setup.dt, self.zero_input)

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
        z = res.output if res.output is not None else weight.new_zeros(0)
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
    forced: dict[int, int] = {}
    while True:
        pairs = build_pairs(setup, t_in, v_in, b_in, j_in, weight, delay, rec_w, rec_d, t_out,
                            b_out, n_out, forced)
        back = _Backward(setup, params, pairs, states, weight, t_out, g_t, g_z)
        if not pairs.ambiguous:
            break
        # zero-delay instants whose firing jumps the event times do not tell: from the state.
        # A neuron's replayed state depends on its own events only, so an instant is decided
        # once the earlier spikes of every neuron spiking at it are (then the table is rebuilt)
        tol = 256 * torch.finfo(weight.dtype).eps * setup.dt * setup.n_steps
        chosen = decidable(list(pairs.ambiguous), t_out, b_out, n_out, tol)
        decided = firing_arrivals(back, chosen)
        if all(forced.get(k) == v for k, v in decided.items()):
            raise RuntimeError("gradient='adjoint': the events of a zero-delay cascade could "
                               "not be ordered; use gradient='surrogate'")
        forced.update(decided)
    back.run()
    last_replay_error = back.worst
    return (*_input_gradients(setup, pairs, back, t_in, v_in, j_in, weight, rec_w, n_out),
            back.g_params)


class _Backward:
    """The reverse pass of one layer: the adjoint ``lam`` and the gradient accumulators,
    updated block by block (replayed from its checkpoint), step by step in reverse."""

    def __init__(self, setup: _Setup, params: list[Tensor], pairs: Pairs, states: Tensor,
                 weight: Tensor, t_out: Tensor, g_t: Tensor | None, g_z: Tensor | None) -> None:
        model = setup.model
        self.setup, self.model, self.params, self.pairs = setup, model, params, pairs
        self.states = states  # [K, S, B, N]: the checkpoints, one per block
        self.dt, self.dtype, self.device = setup.dt, weight.dtype, weight.device
        self.like = weight
        self.t_out = t_out
        self.shape = (setup.batch_size, model.n)
        self.maps = _StepMaps(setup, weight)
        self.n_vars = len(model.state_names)
        self.target = (None if model.jump_target is None
                       else model.state_names.index(model.jump_target))
        n_pairs = pairs.jump.numel()
        self.d_jump = pairs.jump.new_zeros(n_pairs)  # dL/dJ per pair
        self.d_time = pairs.jump.new_zeros(n_pairs)  # dL/ds per pair
        # G: incoming gradient of each output spike time (recurrent arrivals add theirs)
        self.big_g = (torch.zeros_like(t_out) if g_t is None else g_t.clone()).to(self.dtype)
        self.g_params = [torch.zeros_like(p) for p in params]
        self.lam = tuple(torch.zeros(self.shape, dtype=self.dtype, device=self.device)
                         for _ in model.state_names)
        self.drive = None if g_z is None else g_z.to(self.dtype)
        self.initial = model.initial_state(setup.batch_size, dtype=self.dtype,
                                           device=self.device)
        self.worst = 0.0  # largest replay mismatch

    def run(self) -> None:
        """Every step in reverse, one checkpoint block at a time (memory: one block)."""
        every, n_steps = self.setup.checkpoint_every, self.setup.n_steps
        for n0 in reversed(range(0, n_steps, every)):
            n1 = min(n0 + every, n_steps)
            replays = self.replay_block(n0, n1)
            for step in range(n1 - 1, n0 - 1, -1):
                self.backward_step(step, replays[step - n0])

    # ------------------------------------------------------------------ forward replay
    def checkpoint(self, step: int) -> tuple | None:
        """The state at the start of ``step`` (a multiple of ``every``) or None past the end."""
        if step == 0:
            return self.initial
        every = self.setup.checkpoint_every
        if step % every:
            return None
        k = step // every - 1
        return self.model.State(*self.states[k].unbind(0)) if k < self.states.shape[0] else None

    def replay_block(self, n0: int, n1: int) -> list[_Replay]:
        """Steps ``n0 .. n1 - 1`` recomputed from their checkpoint, checked against the next."""
        with torch.no_grad():
            x = self.checkpoint(n0)
            replays = []
            for s_ in range(n0, n1):
                replays.append(self.replay(s_, x))
                x = replays[-1].end
            ref = self.checkpoint(n1)
            if ref is not None:
                err = max(float(((a - b).abs() / (1 + b.abs())).max())
                          for a, b in zip(x, ref, strict=True))
                self.worst = max(self.worst, err)
        return replays

    def replay(self, step: int, x0: tuple) -> _Replay:
        """Forward replay of one step from its start: the state around every event."""
        model, shape, dt = self.model, self.shape, self.dt
        ev = self.pairs.ev
        e0, e1 = ev.bounds[step], ev.bounds[step + 1]
        lay = _Layout(ev, e0, e1, shape, dt, self.like)
        flow = self.maps.flow(step)
        x = x0
        tau = torch.zeros(shape, dtype=self.dtype, device=self.device)
        starts, pres = [x0], []
        for r in range(lay.m):
            end = lay.off[r]
            pre = flow(x, tau, end - tau, None)
            kind = lay.kind[r]
            jr = _pair_values(lay.ref[r], kind == 1, self.pairs.jump)
            post = model.receive(pre, jr) if self.target is not None else pre
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

    # ------------------------------------------------------------------ one step in reverse
    def backward_step(self, step: int, rep: _Replay) -> None:
        """``lam`` from the end of ``step`` to its start: interval m (to the end of the step),
        then event r, interval r, ..., interval 0; then the step's recurrent arrivals."""
        dt, shape, lay = self.dt, self.shape, rep.lay
        m = lay.m
        if self.drive is not None and self.setup.integral_rule == "grid":
            self._grid_readout(step, rep.end)
        pairs = self.pairs
        if m and pairs.r_in_step is not None and bool(pairs.r_in_step.any()):
            ev = pairs.ev
            e0, e1 = ev.bounds[step], ev.bounds[step + 1]
            ids = ev.ref[e0:e1][(ev.kind[e0:e1] == 1) & (ev.ref[e0:e1] >= pairs.n_ext)]
            if bool(pairs.r_in_step[ids - pairs.n_ext].any()):
                self._staged_step(step, rep)
                return
        zeros = torch.zeros(shape, dtype=self.dtype, device=self.device)
        t_hi = torch.full(shape, dt, dtype=self.dtype, device=self.device)
        a_next = None  # dL/d(start time) of the interval after the current event
        pending = None  # time cotangent of a jump-fired spike at rank r + 1, for its arrival
        for r in range(m, -1, -1):
            a = zeros if r == 0 else lay.off[r - 1]
            b = t_hi if r == m else lay.off[r]
            spike_r = e_fired = None
            pre = rep.pres[r] if r < m else None
            if r < m:
                spike_r, e_fired = self._event(lay.kind[r], lay.ref[r], pre, a_next)
            a_bar, b_bar = self._interval(step, rep.flow, rep.starts[r], pre, a, b, spike_r)
            new_pending = None
            if r < m:
                new_pending = self._arrival_times(lay.kind[r], lay.ref[r], b_bar, a_next,
                                                  pending, e_fired)
            pending = new_pending
            a_next = a_bar
        if self.setup.recurrent:
            self._recurrent_arrivals(step)

    def _staged_step(self, step: int, rep: _Replay) -> None:
        """:meth:`backward_step` for a step with recurrent arrivals sent within it (sub-step
        and zero delays): each element walks its events in reverse at its own pace, and a spike
        waits until every in-step arrival it sent has its ``dL/ds`` (added to its ``G``), so the
        arrivals are processed after (in reverse time: before) the spike that sent them."""
        dt, shape, lay, pairs = self.dt, self.shape, rep.lay, self.pairs
        m, n_ext = lay.m, pairs.n_ext
        cur = torch.full(shape, m, dtype=torch.long, device=self.device)
        remaining = torch.zeros(self.big_g.numel(), dtype=torch.long, device=self.device)
        ev = pairs.ev
        e0, e1 = ev.bounds[step], ev.bounds[step + 1]
        ids = ev.ref[e0:e1][(ev.kind[e0:e1] == 1) & (ev.ref[e0:e1] >= n_ext)]
        in_step = ids[pairs.r_in_step[ids - n_ext]]
        remaining.index_add_(0, pairs.r_src[in_step - n_ext], torch.ones_like(in_step))
        in_step_pair = torch.zeros(pairs.jump.numel(), dtype=torch.bool, device=self.device)
        in_step_pair[in_step] = True
        starts = tuple(torch.stack(v) for v in zip(*rep.starts, strict=True))
        pres = tuple(torch.stack(v) for v in zip(*rep.pres, strict=True))

        def at(x: Tensor, idx: Tensor) -> Tensor:
            return x.gather(0, idx[None])[0]

        zeros = torch.zeros(shape, dtype=self.dtype, device=self.device)
        a_next, pending = zeros, zeros
        while True:
            done = cur < 0
            if bool(done.all()):
                break
            r = cur.clamp_min(0)
            ev_r = r.clamp_max(m - 1)
            is_event = (r < m) & ~done
            kind = torch.where(is_event, at(lay.kind, ev_r), torch.zeros_like(r))
            ref = at(lay.ref, ev_r)
            spike = (kind == 2) | (kind == 3)
            blocked = spike & (remaining[torch.where(spike, ref, 0)] > 0)
            active = ~done & ~blocked
            if not bool(active.any()):
                raise RuntimeError("gradient='adjoint': in-step recurrent arrivals wait on each "
                                   "other (event order inconsistent); use gradient='surrogate'")
            kind = torch.where(active, kind, torch.zeros_like(kind))
            a = torch.where(r == 0, zeros, at(lay.off, (r - 1).clamp_min(0)))
            b = torch.where(r >= m, torch.full_like(zeros, dt), at(lay.off, ev_r))
            start = tuple(at(v, r) for v in starts)
            pre = tuple(at(v, ev_r) for v in pres)
            spike_r, e_fired = self._event(kind, ref, pre, a_next)
            a_bar, b_bar = self._interval(step, rep.flow, start, pre, a, b, spike_r, active)
            new_pending = self._arrival_times(kind, ref, b_bar, a_next, pending, e_fired)
            pending = torch.where(active, zeros if new_pending is None else new_pending,
                                  pending)
            a_next = torch.where(active, a_bar, a_next)
            sent = active & (kind == 1) & in_step_pair[torch.where(kind == 1, ref, 0)]
            if bool(sent.any()):  # dL/ds of in-step arrivals: G of the spikes that sent them
                p = ref[sent]
                self.big_g.index_add_(0, pairs.r_src[p - n_ext], self.d_time[p])
                remaining.index_add_(0, pairs.r_src[p - n_ext], -torch.ones_like(p))
            cur = torch.where(active, cur - 1, cur)
        self._recurrent_arrivals(step, skip=in_step_pair)

    def _grid_readout(self, step: int, end: tuple) -> None:
        """``z += dt l((n+1) dt, x)``: a jump of ``lam`` at the grid point."""
        setup, model = self.setup, self.model
        xe = tuple(v.detach().requires_grad_() for v in end)
        t_e = torch.tensor((step + 1) * self.dt, dtype=self.dtype, device=self.device)
        term = self.dt * setup.integrand(t_e, model.State(*xe))
        res_e = _vjp([term], [*xe, *self.params], [self.drive])
        self.lam = tuple(lv + g for lv, g in zip(self.lam, res_e[:self.n_vars], strict=True))
        _add(self.g_params, res_e[self.n_vars:])

    def _event(self, kind: Tensor, ref: Tensor, pre: tuple, a_next: Tensor
               ) -> tuple[tuple | None, Tensor | None]:
        """Event at one rank (``kind``, ``ref`` ``[B, N]``, at the end of its interval; ``pre``
        the state just before its reset): ``lam(b+) -> lam(b-)`` through the resets of the
        neurons that spike there, and ``dL/dJ`` of the arrivals.

        Returns ``(crossing mask, E_k)`` if threshold crossings are at this rank (else None),
        and ``E_k`` if spikes fired by an arrival's jump are (else None).
        """
        arrive = kind == 1
        fire = (kind == 2) | (kind == 3)
        lam_pre = self.lam
        spike_r = e_fired = None
        if bool(fire.any()):
            k = torch.where(fire, ref, torch.zeros_like(ref))
            e_k = torch.where(fire, self.big_g[k] + a_next, torch.zeros_like(a_next))
            lam_pre = self._through_reset(pre, fire)
            crossing = kind == 2
            if bool(crossing.any()):
                spike_r = (crossing, e_k)
            if bool((kind == 3).any()):
                e_fired = e_k
        if bool(arrive.any()) and self.target is not None:
            _set_pairs(self.d_jump, ref, arrive, lam_pre[self.target])
        self.lam = lam_pre
        return spike_r, e_fired

    def _through_reset(self, pre: tuple, fire: Tensor) -> tuple:
        """``lam_r = r_x^T lam(t_k+)`` where ``fire``, ``lam`` elsewhere; the reset's parameter
        gradients accumulate."""
        model = self.model
        xm = tuple(v.detach().requires_grad_() for v in pre)
        mask = fire.to(self.dtype)
        reset = model.reset(model.State(*xm))
        out = _vjp(list(reset), [*xm, *self.params], [lv * mask for lv in self.lam])
        lam_pre = tuple(torch.where(fire, g, lv)
                        for g, lv in zip(out[:self.n_vars], self.lam, strict=True))
        _add(self.g_params, out[self.n_vars:])
        return lam_pre

    def _interval(self, step: int, flow, start: tuple, pre: tuple | None, a: Tensor,
                  b: Tensor, spike_r: tuple | None, active: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
        """Interval ``[a, b]`` from the state ``start``: ``lam(b-) -> lam(a+)`` through the step
        map and the readout drive (one VJP), with ``nu g_x`` added where it ends at a threshold
        crossing (``pre``: the state there). Parameter gradients accumulate; returns
        ``(dL/da, dL/db)``. ``active``: only these elements take the interval (others keep
        their ``lam``)."""
        xa = tuple(v.detach().requires_grad_() for v in start)
        a_req = a.detach().clone().requires_grad_()
        b_req = b.detach().clone().requires_grad_()
        xb, q = self.maps.interval(step, flow, xa, a_req, b_req)
        outs = [*xb, *([q] if q is not None else [])]
        drive = [self.drive] if q is not None else []  # the readout's cotangent
        cot = list(self.lam)
        if active is not None:
            keep = active.to(self.dtype)
            drive = [d * keep for d in drive]
            cot = [c * keep for c in cot]
        if spike_r is not None:
            cot = self._at_crossing(pre, outs, drive, xb, b_req, cot, *spike_r)
        res = _vjp(outs, [*xa, a_req, b_req, *self.params], [*cot, *drive])
        n_vars = self.n_vars
        lam = tuple(res[:n_vars])
        if active is not None:
            lam = tuple(torch.where(active, new, old)
                        for new, old in zip(lam, self.lam, strict=True))
        self.lam = lam
        _add(self.g_params, res[n_vars + 2:])
        return res[n_vars], res[n_vars + 1]

    def _at_crossing(self, pre: tuple, outs: list[Tensor], drive: list[Tensor], xb: tuple,
                     b_req: Tensor, cot: list[Tensor], crossing: Tensor,
                     e_k: Tensor) -> list[Tensor]:
        """``lam(t_k-) = lam_r + nu g_x`` with ``nu = -(dL/db + E_k) / (dg/db)``, the derivative
        of the crossing time along the interval's own map; the threshold's parameter gradients
        accumulate."""
        model = self.model
        xm = tuple(v.detach().requires_grad_() for v in pre)
        g = model.threshold(model.State(*xm))
        g_x = torch.autograd.grad(g.sum(), xm, allow_unused=True, retain_graph=True)
        g_x = [torch.zeros_like(v) if gg is None else gg for gg, v in zip(g_x, xm, strict=True)]
        # dL/db with the reset cotangent and dg/db along the interval's own map
        b_lam = _vjp(outs, [b_req], [*cot, *drive], retain=True)[0]
        g_dot = _vjp(list(xb), [b_req], g_x, retain=True)[0]
        safe = torch.where(crossing & (g_dot != 0), g_dot, torch.ones_like(g_dot))
        nu = torch.where(crossing, -(b_lam + e_k) / safe, torch.zeros_like(g_dot))
        cot = [c + nu * gx for c, gx in zip(cot, g_x, strict=True)]
        if self.params:
            _add(self.g_params, _vjp([g], self.params, [nu]))
        return cot

    def _arrival_times(self, kind: Tensor, ref: Tensor, b_bar: Tensor, a_next: Tensor,
                       pending: Tensor | None, e_fired: Tensor | None) -> Tensor | None:
        """``dL/ds`` of the arrivals at this rank (the time derivatives of the intervals ending
        and starting there, plus a jump-fired spike's, ``pending``); returns the time cotangent
        of this rank's jump-fired spikes, handed to the arrivals before them (or None)."""
        arrive = kind == 1
        if bool(arrive.any()):
            ds = b_bar + a_next if pending is None else b_bar + a_next + pending
            _set_pairs(self.d_time, ref, arrive, ds)
        if e_fired is None:
            return None
        # the spike's time is its arrival's: hand it over
        return torch.where(kind == 3, e_fired + b_bar, torch.zeros_like(b_bar))

    def _recurrent_arrivals(self, step: int, skip: Tensor | None = None) -> None:
        """Recurrent arrivals of this step: hand their ``dL/ds`` to the spikes that sent them
        (``skip [P]``: pairs already handed over)."""
        ev, rec_start = self.pairs.ev, self.pairs.n_ext
        e0, e1 = ev.bounds[step], ev.bounds[step + 1]
        ids = ev.ref[e0:e1][(ev.kind[e0:e1] == 1) & (ev.ref[e0:e1] >= rec_start)]
        if skip is not None:
            ids = ids[~skip[ids]]
        if ids.numel():
            self.big_g.index_add_(0, self.pairs.r_src[ids - rec_start], self.d_time[ids])


def _input_gradients(setup: _Setup, pairs: Pairs, back: _Backward, t_in, v_in, j_in, weight,
                     rec_w, n_out) -> tuple:
    """``(dL/dt_in, dL/dv_in, dL/dW, dL/dD, dL/dW_rec, dL/dD_rec)`` from the per-pair ``dL/dJ``
    and ``dL/ds`` (the recurrent ones None without recurrence)."""
    n_ext, e_src, e_tgt = pairs.n_ext, pairs.e_src, pairs.e_tgt
    d_jump, d_time, dtype = back.d_jump, back.d_time, back.dtype
    e_j = j_in[e_src]
    g_w = torch.zeros_like(weight).index_put_(
        (e_tgt, e_j), v_in[e_src].to(dtype) * d_jump[:n_ext], accumulate=True)
    g_vin = torch.zeros_like(v_in).index_add_(
        0, e_src, (weight[e_tgt, e_j] * d_jump[:n_ext]).to(v_in.dtype))
    g_tin = torch.zeros_like(t_in).index_add_(0, e_src, d_time[:n_ext].to(t_in.dtype))
    g_d = torch.zeros_like(weight).index_put_((e_tgt, e_j), d_time[:n_ext], accumulate=True)
    if setup.recurrent:
        r_j = n_out[pairs.r_src]
        g_rw = torch.zeros_like(rec_w).index_put_((pairs.r_tgt, r_j), d_jump[n_ext:],
                                                  accumulate=True)
        g_rd = torch.zeros_like(rec_w).index_put_((pairs.r_tgt, r_j), d_time[n_ext:],
                                                  accumulate=True)
    else:
        g_rw = g_rd = None
    return g_tin, g_vin, g_w, g_d, g_rw, g_rd


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
    method: Method | None = None,
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
        recurrent: the layer's own delayed recurrent synapses (any delays ``>= 0``: shorter
            than a step and zero delays act within the step that sent them).
        integrand: ``l(t, state) -> [B, N]``; the readout is ``∫_0^T l dt`` ``[B, N]``.
        integral_rule: ``"exact"`` (quadrature between events, neuron-wise integrands) or
            ``"grid"`` (``Σ_n dt l((n+1) dt, x)``; the integrand may couple neurons).
        checkpoint_every: steps between the state checkpoints kept for the backward (memory
            ``T / checkpoint_every`` states; the backward replays one block at a time, so
            larger values trade memory for a larger transient block).
        method: ``"exact"`` (closed-form flow), a Runge-Kutta method or an adaptive pair
            (``"dopri5"``, ``"bosh3"``, :class:`solvers.embedded.Adaptive`); default as
            :func:`ctsnn.engine.run_population`.
        xtol: spike-time tolerance (s).
        record: state variables whose (detached) trajectories ``[T, B, N]`` to return.

    Returns:
        ``(output spikes with differentiable times, readout [B, N] or None, final state,
        recordings)``.
    """
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
    method = as_method(method, model)
    if recurrent is not None and not isinstance(recurrent, RecurrentDense):
        raise TypeError("gradient='adjoint' supports recurrent=ctsnn.synapses.RecurrentDense "
                        f"(exact delayed recurrence), got {type(recurrent).__name__}")
    if recurrent is not None:
        recurrent.check_delays()  # finite and in [0, max_delay], else an error naming it
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
