"""Discrete-time EventProp with learnable delays on mlGeNN's time grid (SEEDS C1.2-C1.4).

The continuous module :mod:`ctsnn.gradients.eventprop` solves the forward and adjoint
equations exactly in continuous time. This module is the *time-stepped* variant that mlGeNN
uses: the forward runs on a grid of step ``dt``, spikes and arrivals happen at grid points,
delays are whole numbers of steps, and the backward integrates the same adjoint equations in
reverse on the same grid, with jumps at the saved spikes. Its gradients converge to the exact
continuous ones as ``dt -> 0`` (first order, see ``tests/ctsnn/gradients/test_discrete.py``).

Units: seconds for times, time constants, ``dt`` and delays at the API boundary (the delay
gradient is per second). Models: ``CubaLIF`` hidden / spiking layers and a ``CubaLI``
readout, feed-forward, per-synapse delays, default initial state, no refractory period.

Grid and forward (C1.2)
-----------------------
Grid points ``t_n = n dt``, ``n = 0 .. N_T`` (``N_T = spikes.n_steps``, ``T = N_T dt``);
step ``n`` integrates the interval ``[t_n, t_{n+1}]``. Per neuron, with ``alpha =
e^{-dt/tau_m}``, ``beta = e^{-dt/tau_s}``::

    syn  += sum of a w over the arrivals at grid point n        (mlGeNN ``inSyn += w``)
    I     = syn (tau_s/dt)(1 - beta)                            (``scale_i``: mean of I on the step)
    V     = v_leak + alpha (V - v_leak) + (1 - alpha) r I       (exact exponential Euler)
    syn  *= beta
    V >= v_threshold  ->  spike at t_{n+1}, V = v_reset

``syn`` is the exact continuous current at grid points (``w e^{-(t - s)/tau_s}`` after an
arrival at ``s``), ``I`` its average over the step. An input event at time ``t_e`` is placed
at the nearest grid point ``m_e = round(t_e/dt)``; a delay ``d`` (s) becomes
``K = clamp(round(d/dt), 0, max_delay_steps)`` steps (round half to even, never truncated; a
delay equal to ``max_delay_steps`` is honoured), and the event arrives at grid point
``m_e + K`` (arrivals at ``>= N_T`` have no effect). Arrivals wait in a per-neuron ring
buffer of ``max_delay_steps + 1`` slots (GeNN's dendritic delay buffer). A spike recorded at
``t_{n+1}`` arrives downstream at ``t_{n+1} + K dt``, so the same event convention as the
continuous engine holds: an event at ``t`` with delay ``d`` acts from ``t + d`` on.

Readout (mlGeNN ``avg_var_exp_weight``): ``z = (1/N_T) sum_{n=1}^{N_T} e^{-t_n/T} V(t_n)``,
the right Riemann sum of the continuous module's ``"avg_exp"`` readout
``(1/T) ∫_0^T e^{-t/T} V dt``.

Saved for backward: the input events (grid points, batch, unit, amplitude), ``W``, the
rounded delays, and per output spike its grid point, batch, unit and ``q = v_leak + r I - V``
(``I`` of the step that crossed, ``V`` before the reset; mlGeNN's ``I - V``). Nothing per time
step. The spike lists grow with the data (no fixed-size tape); ``max_spikes`` optionally
raises on a hard limit.

Adjoint (C1.3, this module uses the spec's multipliers)
-------------------------------------------------------
``lam_V``, ``lam_I`` are SEEDS C1.3's multipliers, i.e. ``lam_V = -(dL/dV)/tau_m``,
``lam_I = -(dL/dI)/tau_s`` in terms of :mod:`ctsnn.gradients.eventprop`'s adjoints. In
reverse time (``' = -d/dt``) from ``lam(T) = 0``::

    tau_m lam_V' = -lam_V - dl/dV,      tau_s lam_I' = -lam_I + r lam_V.

Each reverse step ``t_{n+1} -> t_n`` is the exact solution with the drive held constant
(``D = -dl/dV`` at ``t_{n+1}``; for the readout ``dl/dV = g e^{-t/T}/T`` with
``g = dL/dz``, hidden layers ``D = 0``), ``c = tau_m/(tau_m - tau_s) (alpha - beta)``::

    lam_I <- r D + beta (lam_I - r D) + r c (lam_V - D)
    lam_V <- D + alpha (lam_V - D)

At a saved spike ``k`` of neuron ``i`` at ``t_k = t_n`` (only ``lam_V`` jumps)::

    lam_V(t_k^-) = lam_V(t_k^+) + [(v_threshold - v_reset) lam_V(t_k^+) + G_k] / q_k

with ``G_k = dL/dt_k`` the incoming gradient of the output spike time, i.e. the downstream
layer's ``sum_m w_mi (r lam_V,m - lam_I,m)(t_k + d_mi)`` (C1.3; C1.4's sign). Every reverse
step stores ``lam(t_n^+)`` (after the arrivals of ``t_n``, before the jumps of ``t_n``) in a
per-neuron history ring buffer of ``max_delay_steps + 1`` slots; an input event of grid point
``m_e`` reads it at ``m_e + K`` when the sweep reaches ``m_e`` (C1.4)::

    dL/dW_ij += -tau_s a_e lam_I,i(t_e + d_ij)
    dL/dd_ij += -a_e W_ij (lam_I,i - r lam_V,i)(t_e + d_ij)    (= dL/dt_e, summed over i)

i.e. the continuous formula evaluated at the rounded delay (C5).

Example::

    net = [ctsnn.Layer(ctsnn.CubaLIF(64), w1, delay=d1, max_delay=0.05, gradient="adjoint"),
           ctsnn.Layer(ctsnn.CubaLI(3), w2, delay=d2, max_delay=0.05, gradient="adjoint")]
    z = ctsnn.simulate(net, spikes, time="discrete", readout="avg_exp").output   # [B, 3]
    torch.nn.functional.cross_entropy(z, labels).backward()
    ctsnn.clamp_delays_(net)                # after the optimiser steps
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..models.base import NeuronModel
from ..models.exponentials import coupled_response
from ..models.lif import CubaLI, CubaLIF
from ..spikes import Spikes
from ._weights import full_delay

__all__ = ["DiscreteTrace", "delay_steps", "discrete_layer_forward", "discrete_trace"]

Probe = Callable[[int, Tensor, Tensor, Tensor, Tensor], None]


# =========================================================================== constants
@dataclass(frozen=True)
class _Consts:
    """Per-neuron constants ``[N]`` of one layer on a grid of step ``dt`` (detached)."""

    n: int
    spiking: bool
    alpha: Tensor
    beta: Tensor
    scale: Tensor  # (tau_s/dt)(1 - beta)
    drive_v: Tensor  # (1 - alpha) r
    coupling: Tensor  # r tau_m/(tau_m - tau_s) (alpha - beta)
    r: Tensor
    tau_s: Tensor
    v_leak: Tensor
    v_th: Tensor | None
    v_reset: Tensor | None


def _check_model(model: NeuronModel) -> bool:
    """Validate the model; return whether it spikes."""
    if type(model) not in (CubaLI, CubaLIF):
        raise TypeError("discrete EventProp supports CubaLIF (spiking) and CubaLI (readout) "
                        f"layers, got {type(model).__name__}")
    for name in model.param_names:
        if getattr(model, name).requires_grad:
            raise NotImplementedError(f"{type(model).__name__}.{name} is learnable, but discrete "
                                      "EventProp gives gradients for weights and delays only")
    if bool((model.refractory > 0).any()):
        raise NotImplementedError("discrete EventProp: refractory periods are not supported")
    if getattr(model, "reset_mode", "zero") != "zero":
        raise NotImplementedError(f"discrete EventProp resets v to v_reset; reset="
                                  f"{model.reset_mode!r} needs time='continuous' or "
                                  "gradient='surrogate'")
    spiking = isinstance(model, CubaLIF)
    if spiking and bool((model.v_leak >= model.v_threshold).any()):
        raise ValueError("CubaLIF: v_leak must lie below v_threshold")
    return spiking


def _consts(model: NeuronModel, dt: float, dtype: torch.dtype, device: torch.device) -> _Consts:
    spiking = _check_model(model)

    def get(name: str) -> Tensor:
        return getattr(model, name).detach().to(device=device, dtype=torch.float64)

    tau_m, tau_s, r = get("tau_mem"), get("tau_syn"), get("r")
    alpha, beta = torch.exp(-dt / tau_m), torch.exp(-dt / tau_s)
    scale = -torch.expm1(-dt / tau_s) * tau_s / dt
    # tau_m/(tau_m - tau_s)(alpha - beta) = (tau_m/tau_s) kappa(dt), no cancellation for
    # tau_m ~ tau_s
    coupling = r * tau_m / tau_s * coupled_response(torch.as_tensor(dt, dtype=tau_m.dtype),
                                                     tau_m, tau_s)

    def cast(t: Tensor) -> Tensor:
        return t.to(dtype)

    return _Consts(
        n=model.n, spiking=spiking, alpha=cast(alpha), beta=cast(beta), scale=cast(scale),
        drive_v=cast(-torch.expm1(-dt / tau_m) * r), coupling=cast(coupling), r=cast(r),
        tau_s=cast(tau_s), v_leak=cast(get("v_leak")),
        v_th=cast(get("v_threshold")) if spiking else None,
        v_reset=cast(get("v_reset")) if spiking else None,
    )


@dataclass
class _Config:
    """What one layer pass needs besides its tensors."""

    consts: _Consts
    dt: float
    n_steps: int
    batch_size: int
    n_in: int
    max_delay_steps: int
    max_spikes: int | None = None
    probe: Probe | None = None  # test hook: (n, events, slots, lam_I read, lam_V read)


def delay_steps(delay: Tensor, dt: float, max_delay_steps: int) -> Tensor:
    """Delays (s) -> whole steps ``clamp(round(delay/dt), 0, max_delay_steps)`` (int64).

    Round to nearest, ties to even (``torch.round``), never truncation: 2.6 steps -> 3,
    2.5 -> 2, 3.5 -> 4; a delay of exactly ``max_delay_steps`` steps stays that value.
    """
    k = torch.round(delay.detach().to(torch.float64) / dt)
    return k.clamp(0, max_delay_steps).to(torch.int64)


def _grid_steps(times: Tensor, dt: float, n_steps: int) -> Tensor:
    """Nearest grid point of each event time, ``[E]`` int64 in ``[0, n_steps]``."""
    m = torch.round(times.detach().to(torch.float64) / dt).to(torch.int64)
    return m.clamp(0, n_steps)


def _group(steps: Tensor, n_points: int) -> tuple[Tensor, list[int]]:
    """Order of the events by grid point and the offsets of each point's slice (a list)."""
    order = torch.argsort(steps, stable=True)
    counts = torch.bincount(steps, minlength=n_points)
    offsets = [0, *torch.cumsum(counts, 0).tolist()]
    return order, offsets


def _check_max_delay(max_delay_steps: int) -> int:
    if (not isinstance(max_delay_steps, int) or isinstance(max_delay_steps, bool)
            or max_delay_steps < 0):
        raise ValueError(f"max_delay_steps must be a non-negative int, got {max_delay_steps!r}")
    return max_delay_steps


# =========================================================================== forward
class _Forward(NamedTuple):
    z: Tensor | None  # [B, N] readout (non-spiking layers)
    steps: Tensor  # [K] grid point of each output spike
    batch: Tensor  # [K]
    unit: Tensor  # [K]
    q: Tensor  # [K] v_leak + r I - V just before the spike
    trace: dict[str, Tensor] | None


def _forward(cfg: _Config, m_in: Tensor, b_in: Tensor, j_in: Tensor, a_in: Tensor,
             weight: Tensor, k: Tensor, *, trace: bool = False) -> _Forward:
    """The grid recursion of C1.2 for one layer (no autograd)."""
    c = cfg.consts
    n_t, bsz, n = cfg.n_steps, cfg.batch_size, c.n
    slots_n = cfg.max_delay_steps + 1
    dtype, dev = weight.dtype, weight.device
    v = c.v_leak.expand(bsz, n).clone()
    syn = torch.zeros(bsz, n, dtype=dtype, device=dev)
    buf = torch.zeros(slots_n, bsz, n, dtype=dtype, device=dev)
    order, off = _group(m_in, n_t + 1)
    ar = torch.arange(n, device=dev)
    w_t, k_t = weight.t(), k.t()  # [N_in, N]
    sp_steps: list[Tensor] = []
    sp_idx: list[Tensor] = []
    sp_q: list[Tensor] = []
    n_spikes = 0
    z = None if c.spiking else torch.zeros(bsz, n, dtype=dtype, device=dev)
    if z is not None:
        t_end = n_t * cfg.dt
        grid = torch.arange(1, n_t + 1, dtype=torch.float64, device=dev) * cfg.dt
        ro_w = (torch.exp(-grid / t_end) / n_t).to(dtype)
    tr: dict[str, list[Tensor]] = {"syn": [], "current": [], "v": [v.clone()], "v_pre": [v.clone()]}
    for step in range(n_t):
        lo, hi = off[step], off[step + 1]
        if hi > lo:
            e = order[lo:hi]
            j = j_in[e]
            slots = (step + k_t[j]) % slots_n  # [E, N]
            bb = b_in[e].unsqueeze(1).expand_as(slots)
            buf.index_put_((slots, bb, ar.expand_as(slots)), a_in[e].unsqueeze(1) * w_t[j],
                           accumulate=True)
        s = step % slots_n
        syn += buf[s]
        buf[s].zero_()
        cur = syn * c.scale
        if trace:
            tr["syn"].append(syn.clone())
            tr["current"].append(cur)
        v = c.v_leak + c.alpha * (v - c.v_leak) + c.drive_v * cur
        syn *= c.beta
        if trace:
            tr["v_pre"].append(v.clone())
        if c.spiking:
            fired = v >= c.v_th
            if bool(fired.any()):
                idx = fired.nonzero()
                bi, ni = idx[:, 0], idx[:, 1]
                sp_q.append(c.v_leak[ni] + c.r[ni] * cur[bi, ni] - v[bi, ni])
                sp_idx.append(idx)
                sp_steps.append(torch.full_like(bi, step + 1))
                n_spikes += idx.shape[0]
                if cfg.max_spikes is not None and n_spikes > cfg.max_spikes:
                    raise RuntimeError(f"discrete EventProp: more than max_spikes = "
                                       f"{cfg.max_spikes} spikes in one layer (at step "
                                       f"{step + 1} of {n_t}); raise the limit")
                v = torch.where(fired, c.v_reset, v)
        else:
            z += ro_w[step] * v
        if trace:
            tr["v"].append(v.clone())
    if sp_idx:
        idx = torch.cat(sp_idx)
        steps, q = torch.cat(sp_steps), torch.cat(sp_q)
    else:
        idx = torch.zeros(0, 2, dtype=torch.int64, device=dev)
        steps, q = idx[:, 0].clone(), torch.zeros(0, dtype=dtype, device=dev)
    traces = {key: torch.stack(val) for key, val in tr.items()} if trace else None
    return _Forward(z=z, steps=steps, batch=idx[:, 0], unit=idx[:, 1], q=q, trace=traces)


# =========================================================================== backward
def _backward(cfg: _Config, m_in: Tensor, b_in: Tensor, j_in: Tensor, a_in: Tensor,
              weight: Tensor, k: Tensor, fwd: tuple[Tensor, Tensor, Tensor, Tensor],
              g_t: Tensor | None, g_z: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Reverse sweep on the grid; returns ``dL/dW [N, N_in]``, ``dL/dD [N, N_in]`` (per
    second, at the rounded delays) and ``dL/dt_in [E]``."""
    c = cfg.consts
    n_t, bsz, n, n_in = cfg.n_steps, cfg.batch_size, c.n, cfg.n_in
    slots_n = cfg.max_delay_steps + 1
    dtype, dev = weight.dtype, weight.device
    sp_steps, sp_b, sp_n, sp_q = fwd
    lam_v = torch.zeros(bsz, n, dtype=dtype, device=dev)
    lam_i = torch.zeros_like(lam_v)
    ring_v = torch.zeros(slots_n, bsz, n, dtype=dtype, device=dev)
    ring_i = torch.zeros_like(ring_v)
    g_w = torch.zeros(n * n_in, dtype=dtype, device=dev)
    g_d = torch.zeros_like(g_w)
    g_in = torch.zeros(m_in.numel(), dtype=dtype, device=dev)
    in_order, in_off = _group(m_in, n_t + 1)
    sp_order, sp_off = _group(sp_steps, n_t + 1)
    if c.spiking:
        jump = (c.v_th - c.v_reset)
        g_sp = torch.zeros_like(sp_q) if g_t is None else g_t.to(dtype)
    else:
        t_end = n_t * cfg.dt
        grid = torch.arange(1, n_t + 1, dtype=torch.float64, device=dev) * cfg.dt
        drive_w = (torch.exp(-grid / t_end) / t_end).to(dtype)
        g_neg = -(g_z if g_z is not None else torch.zeros_like(lam_v)).to(dtype)
    ar = torch.arange(n, device=dev)
    w_t, k_t = weight.t(), k.t()
    for step in range(n_t, -1, -1):
        if step < n_t:  # lam(t_step^+) from lam(t_{step+1}^-)
            if c.spiking:
                lam_i = c.beta * lam_i + c.coupling * lam_v
                lam_v = c.alpha * lam_v
            else:
                d = g_neg * drive_w[step]
                rd = c.r * d
                lam_i = rd + c.beta * (lam_i - rd) + c.coupling * (lam_v - d)
                lam_v = d + c.alpha * (lam_v - d)
        s = step % slots_n
        ring_v[s] = lam_v
        ring_i[s] = lam_i
        lo, hi = sp_off[step], sp_off[step + 1]
        if hi > lo:  # jumps of lam_V at the spikes of this grid point
            p = sp_order[lo:hi]
            bi, ni = sp_b[p], sp_n[p]
            lv = lam_v[bi, ni]
            lam_v = lam_v.index_put((bi, ni), lv + (jump[ni] * lv + g_sp[p]) / sp_q[p])
        lo, hi = in_off[step], in_off[step + 1]
        if hi > lo:  # input events of this grid point read lam at their arrivals
            e = in_order[lo:hi]
            j = j_in[e]
            slots = (step + k_t[j]) % slots_n  # [E, N]
            bb = b_in[e].unsqueeze(1).expand_as(slots)
            li = ring_i[slots, bb, ar.expand_as(slots)]
            lv = ring_v[slots, bb, ar.expand_as(slots)]
            if cfg.probe is not None:
                cfg.probe(step, e, step + k_t[j], li, lv)
            a = a_in[e].unsqueeze(1)
            flat = (ar.unsqueeze(0) * n_in + j.unsqueeze(1)).reshape(-1)
            g_w.index_add_(0, flat, (-c.tau_s * a * li).reshape(-1))
            ds = -a * w_t[j] * (li - c.r * lv)
            g_d.index_add_(0, flat, ds.reshape(-1))
            g_in[e] = ds.sum(1)
    return g_w.reshape(n, n_in), g_d.reshape(n, n_in), g_in


class _LayerFn(torch.autograd.Function):
    """Input event times, W, D -> output spike times (spiking) or readout ``z`` (CubaLI)."""

    @staticmethod
    def forward(ctx: Any, t_in: Tensor, weight: Tensor, delay: Tensor | None, b_in: Tensor,
                j_in: Tensor, a_in: Tensor, cfg: _Config) -> Any:
        m_in = _grid_steps(t_in, cfg.dt, cfg.n_steps)
        k = (torch.zeros_like(weight, dtype=torch.int64) if delay is None
             else delay_steps(delay, cfg.dt, cfg.max_delay_steps))
        with torch.no_grad():
            out = _forward(cfg, m_in, b_in, j_in, a_in.to(weight.dtype), weight.detach(), k)
        ctx.save_for_backward(m_in, b_in, j_in, a_in, weight, k, out.steps, out.batch,
                              out.unit, out.q)
        ctx.cfg = cfg
        if cfg.consts.spiking:
            times = (out.steps.to(torch.float64) * cfg.dt).to(weight.dtype)
            ctx.mark_non_differentiable(out.batch, out.unit)
            return times, out.batch, out.unit
        return out.z

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple:
        cfg = ctx.cfg
        m_in, b_in, j_in, a_in, weight, k, steps, batch, unit, q = ctx.saved_tensors
        if cfg.consts.spiking:
            g_t, g_z = grads[0], None
        else:
            g_t, g_z = None, grads[0]
        with torch.no_grad():
            g_w, g_d, g_in = _backward(cfg, m_in, b_in, j_in, a_in.to(weight.dtype),
                                       weight.detach(), k, (steps, batch, unit, q), g_t, g_z)
        need = ctx.needs_input_grad
        return (g_in if need[0] else None, g_w if need[1] else None,
                g_d if need[2] else None, None, None, None, None)


# =========================================================================== functional API
def _prepare(model: NeuronModel, spikes: Spikes, weight: Tensor, max_delay_steps: int,
             max_spikes: int | None, probe: Probe | None) -> _Config:
    if not isinstance(spikes, Spikes):
        raise TypeError(f"spikes must be a ctsnn.Spikes, got {type(spikes).__name__}")
    if weight.ndim != 2 or weight.shape != (model.n, spikes.n_units):
        raise ValueError(f"weight must have shape [N, N_in] = [{model.n}, {spikes.n_units}], "
                         f"got {list(weight.shape)}")
    consts = _consts(model, spikes.dt, weight.dtype, weight.device)
    return _Config(consts=consts, dt=spikes.dt, n_steps=spikes.n_steps,
                   batch_size=spikes.batch_size, n_in=spikes.n_units,
                   max_delay_steps=_check_max_delay(max_delay_steps), max_spikes=max_spikes,
                   probe=probe)


def discrete_layer_forward(
    model: NeuronModel,
    spikes: Spikes,
    weight: Tensor,
    delay: Tensor | None = None,
    *,
    max_delay_steps: int,
    max_spikes: int | None = None,
    _probe: Probe | None = None,
) -> Spikes | Tensor:
    """One layer on the grid of ``spikes`` with discrete EventProp gradients (functional).

    Args:
        model: ``CubaLIF`` (spiking; returns spikes) or ``CubaLI`` (returns the
            ``avg_var_exp_weight`` readout), ``N`` neurons, parameters in seconds.
        spikes: input events, ``n_units = N_in``; the grid is ``spikes.dt`` (s) and
            ``spikes.n_steps``; event times are placed at the nearest grid point. ``times``
            may require grad (``dL/dt`` of each input event).
        weight: ``[N, N_in]``.
        delay: seconds, ``[N, N_in]`` or per axon ``[N_in]``, or ``None`` (0); rounded to
            ``clamp(round(delay/dt), 0, max_delay_steps)`` steps in the forward.
        max_delay_steps: longest delay in steps (ring buffers hold ``max_delay_steps + 1``).
        max_spikes: optional hard limit on the output spikes of the layer (raises if exceeded).

    Returns:
        :class:`ctsnn.Spikes` (times on the grid, differentiable) for ``CubaLIF``, or
        ``z [B, N]`` for ``CubaLI``.
    """
    cfg = _prepare(model, spikes, weight, max_delay_steps, max_spikes, _probe)
    delay = full_delay(weight, delay)
    times = spikes.times.to(weight.dtype)
    values = spikes.values.to(weight.dtype)
    if not cfg.consts.spiking:
        return _LayerFn.apply(times, weight, delay, spikes.batch, spikes.units, values, cfg)
    t_out, b_out, n_out = _LayerFn.apply(times, weight, delay, spikes.batch, spikes.units,
                                         values, cfg)
    return Spikes(t_out, n_out, b_out, dt=spikes.dt, n_steps=spikes.n_steps,
                  batch_size=spikes.batch_size, n_units=model.n)


class DiscreteTrace(NamedTuple):
    """Trajectories of :func:`discrete_trace` (no gradients).

    Attributes:
        syn: ``[N_T, B, N]`` synaptic accumulator ``syn`` at ``t_n`` after the arrivals
            (the exact PSC at grid points).
        current: ``[N_T, B, N]`` the current ``I`` used on step ``n`` (``syn`` times
            ``(tau_s/dt)(1 - beta)``).
        v: ``[N_T + 1, B, N]`` voltage at ``t_n`` after any reset.
        v_pre: ``[N_T + 1, B, N]`` voltage at ``t_n`` before the reset.
        spikes: output spikes (empty for ``CubaLI``).
        z: ``[B, N]`` readout (``CubaLI``) or ``None``.
    """

    syn: Tensor
    current: Tensor
    v: Tensor
    v_pre: Tensor
    spikes: Spikes
    z: Tensor | None


@torch.no_grad()
def discrete_trace(model: NeuronModel, spikes: Spikes, weight: Tensor,
                   delay: Tensor | None = None, *, max_delay_steps: int) -> DiscreteTrace:
    """Run one layer's discrete forward and return its whole trajectory (diagnostics, tests)."""
    cfg = _prepare(model, spikes, weight, max_delay_steps, None, None)
    delay = full_delay(weight, delay)
    k = (torch.zeros_like(weight, dtype=torch.int64) if delay is None
         else delay_steps(delay, cfg.dt, cfg.max_delay_steps))
    out = _forward(cfg, _grid_steps(spikes.times, cfg.dt, cfg.n_steps), spikes.batch,
                   spikes.units, spikes.values.to(weight.dtype), weight.detach(), k, trace=True)
    times = (out.steps.to(torch.float64) * cfg.dt).to(weight.dtype)
    sp = Spikes(times, out.unit, out.batch, dt=spikes.dt, n_steps=spikes.n_steps,
                batch_size=spikes.batch_size, n_units=model.n)
    tr = out.trace
    return DiscreteTrace(syn=tr["syn"], current=tr["current"], v=tr["v"], v_pre=tr["v_pre"],
                         spikes=sp, z=out.z)
