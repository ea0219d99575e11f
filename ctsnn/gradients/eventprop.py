"""EventProp: exact adjoint gradients for delayed feed-forward layers of the linear LIF family.

``gradient="adjoint"`` for continuous-time networks. Every layer is one
:class:`torch.autograd.Function`: its forward runs the continuous engine
(:func:`ctsnn.simulation.run_population`) under ``torch.no_grad()`` and keeps only the input and
output spike events and, per output spike, the synaptic current just before it; its backward
solves the adjoint equations exactly, event by event, and returns ``dL/dW``, ``dL/dD`` and
``dL/d(input spike times)``, so layers compose through ordinary autograd. Nothing is stored
per time step: the saved state grows with the number of spikes, not with ``T``.

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
outputs: :func:`first_spike_times` + :func:`time_invariant_mse`. Hidden layers:
spike-count regularisation (``spike_reg``).

Example::

    net = EventPropNetwork([
        EventPropLayer(ctsnn.CubaLIF(64), w1, delay=d1, max_delay=0.02),
        EventPropLayer(ctsnn.CubaLI(3), w2, delay=d2, max_delay=0.02),
    ], readout="avg_exp")
    z = net(spikes)                        # [B, 3]; spikes: ctsnn.Spikes, their dt is the grid
    torch.nn.functional.cross_entropy(z, labels).backward()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..models.base import NeuronModel
from ..models.lif import LI, LIF, CubaLI, CubaLIF
from ..simulation import Layer, run_population
from ..spikes import Spikes
from ..synapses import Dense
from ._weights import full_delay, register_weight_delay

__all__ = [
    "AdjointResult",
    "EventPropLayer",
    "EventPropNetwork",
    "first_spike_times",
    "measure_saved_bytes",
    "simulate_adjoint",
    "spike_count_penalty",
    "time_invariant_mse",
]

READOUTS = ("avg_exp", "sum", "max")
_GL_X, _GL_W = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(8))
Integrand = Callable[[Tensor, tuple], Tensor]


# =========================================================================== neuron constants
@dataclass(frozen=True)
class _Neurons:
    """Constants of one layer's neurons (per neuron ``[N]``, detached; seconds)."""

    model: NeuronModel
    n: int
    cuba: bool  # input spikes jump I (CubaLI/CubaLIF) rather than V (LI/LIF)
    spiking: bool
    tau_m: Tensor
    tau_s: Tensor | None
    r: Tensor
    v_leak: Tensor
    v_th: Tensor | None
    v_reset: Tensor | None


def supports(model: NeuronModel) -> bool:
    """Whether this module's closed-form adjoint applies to ``model`` (else use the generic
    adjoint, :mod:`ctsnn.gradients.adjoint`)."""
    try:
        _neurons(model)
    except (TypeError, NotImplementedError, ValueError):
        return False
    return True


def _neurons(model: NeuronModel) -> _Neurons:
    if type(model) not in (LI, LIF, CubaLI, CubaLIF):
        raise TypeError(
            f"adjoint gradients support LI, LIF, CubaLI and CubaLIF, got {type(model).__name__} "
            "(use autograd through the engine, ctsnn.simulate(..., time='continuous'), for others)"
        )
    for name in model.param_names:
        if getattr(model, name).requires_grad:
            raise NotImplementedError(
                f"{type(model).__name__}.{name} is learnable, but the adjoint path gives "
                "gradients for weights, delays and input spike times only"
            )
    if bool((model.refractory > 0).any()):
        raise NotImplementedError("adjoint gradients: refractory periods are not supported")
    cuba = isinstance(model, CubaLI)
    spiking = isinstance(model, (LIF, CubaLIF))
    if spiking and bool((model.v_leak >= model.v_threshold).any()):
        raise ValueError(f"{type(model).__name__}: v_leak must lie below v_threshold for the "
                         "adjoint path (a neuron resting above threshold fires by itself)")
    if cuba and not spiking and bool((model.r == 0).any()):
        raise ValueError("CubaLI: r must be non-zero")
    return _Neurons(
        model=model, n=model.n, cuba=cuba, spiking=spiking,
        tau_m=model.tau_mem.detach(), tau_s=model.tau_syn.detach() if cuba else None,
        r=model.r.detach(), v_leak=model.v_leak.detach(),
        v_th=model.v_threshold.detach() if spiking else None,
        v_reset=model.v_reset.detach() if spiking else None,
    )


# =========================================================================== closed forms
def _phi1(x: Tensor) -> Tensor:
    """``(1 - e^{-x}) / x`` for ``x >= 0`` (1 at 0), without cancellation."""
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.ones_like(x), -torch.expm1(-safe) / safe)


def _kappa(h: Tensor, tau_m: Tensor, tau_s: Tensor) -> Tensor:
    """``tau_s/(tau_m - tau_s) (e^{-h/tau_m} - e^{-h/tau_s})`` for ``h >= 0``.

    The voltage response ``r kappa(h)`` to a unit jump of ``I`` at time 0 (limit
    ``(h/tau) e^{-h/tau}`` for equal time constants), written as ``e^{-h min rate} h
    phi1(h |rate difference|) / tau_m`` so it neither cancels nor overflows.
    """
    a, b = 1.0 / tau_m, 1.0 / tau_s
    return torch.exp(-h * torch.minimum(a, b)) * h * _phi1(h * (a - b).abs()) / tau_m


def _q(h: Tensor, beta: Tensor) -> Tensor:
    """``∫_0^h e^{-u beta} du`` (seconds)."""
    return h * _phi1(h * beta)


def _divided_q(h: Tensor, b1: Tensor, b2: Tensor) -> Tensor:
    """``∫_0^h (e^{-u b1} - e^{-u b2}) / (b2 - b1) du`` for rates ``b1, b2 > 0``."""
    diff = b2 - b1
    close = diff.abs() <= 1e-5 * torch.maximum(b1, b2)
    safe = torch.where(close, torch.ones_like(diff), diff)
    direct = (_q(h, b1) - _q(h, b2)) / safe
    bm = 0.5 * (b1 + b2)
    x = h * bm
    deriv = (-torch.expm1(-x) - x * torch.exp(-x)) / (bm * bm)  # ∫_0^h u e^{-u bm} du
    return torch.where(close, deriv, direct)


def _propagate(nrn: _Neurons, n: Tensor, lam_v: Tensor, lam_i: Tensor | None,
               h: Tensor) -> tuple[Tensor, Tensor | None]:
    """Adjoint at ``t`` from its value at ``t + h`` (``h >= 0``) without drive: ``e^{A^T h}``."""
    tau_m = nrn.tau_m[n]
    v = torch.exp(-h / tau_m) * lam_v
    if not nrn.cuba:
        return v, None
    tau_s = nrn.tau_s[n]
    i = torch.exp(-h / tau_s) * lam_i + nrn.r[n] * _kappa(h, tau_m, tau_s) * lam_v
    return v, i


# =========================================================================== sorting and scans
def _order(seg: Tensor, time: Tensor) -> Tensor:
    """Stable permutation sorting by ``(seg, time)``; ties keep their input order."""
    o = torch.argsort(time, stable=True)
    return o[torch.argsort(seg[o], stable=True)]


def _linear_scan(decay: Tensor, x: Tensor) -> Tensor:
    """``y[k] = decay[k] y[k-1] + x[k]`` (``y[-1] = 0``) by recursive doubling.

    ``log2(len)`` vectorised passes; the decays are products of numbers in ``[0, 1]``, so the
    recursion is as stable as the sequential loop. ``decay = 0`` cuts the chain (segment start).
    """
    y, a = x.clone(), decay.clone()
    n, off = y.numel(), 1
    while off < n:
        if not bool(a[off:].any()):
            break
        y = torch.cat([y[:off], y[off:] + a[off:] * y[:-off]])
        a = torch.cat([a[:off], a[off:] * a[:-off]])
        off *= 2
    return y


def _same_prev(seg_sorted: Tensor) -> Tensor:
    """``[M]`` bool: element ``q`` has the same segment as ``q - 1``."""
    same = torch.zeros_like(seg_sorted, dtype=torch.bool)
    if seg_sorted.numel() > 1:
        same[1:] = seg_sorted[1:] == seg_sorted[:-1]
    return same


def _decay_prev(seg: Tensor, t: Tensor, rate: Tensor) -> Tensor:
    """``e^{-(t[q] - t[q-1]) rate[q]}`` within a segment, 0 at segment starts (sorted input)."""
    d = torch.zeros_like(t)
    if t.numel() > 1:
        d[1:] = torch.exp(-(t[1:] - t[:-1]) * rate[1:])
    return torch.where(_same_prev(seg), d, torch.zeros_like(d))


def _reverse_tail(seg: Tensor, t: Tensor, rate: Tensor, j: Tensor) -> Tensor:
    """``tail[q] = j[q] + e^{-(t[q+1] - t[q]) rate} tail[q+1]`` within segments (sorted input)."""
    same_next = torch.zeros_like(seg, dtype=torch.bool)
    dec = torch.zeros_like(t)
    if t.numel() > 1:
        same_next[:-1] = seg[1:] == seg[:-1]
        dec[:-1] = torch.exp(-(t[1:] - t[:-1]) * rate[:-1])
    dec = torch.where(same_next, dec, torch.zeros_like(dec))
    return _linear_scan(dec.flip(0), j.flip(0)).flip(0)


def _next_marked(marked: Tensor) -> Tensor:
    """For every position, the first marked position at or after it (``len`` if none)."""
    m = marked.numel()
    idx = torch.arange(m, device=marked.device)
    cand = torch.where(marked, idx, torch.full_like(idx, m))
    if m == 0:
        return cand
    return torch.cummin(cand.flip(0), 0).values.flip(0)


# =========================================================================== events and pairs
@dataclass
class _Config:
    """What a layer pass needs besides its tensors (no tensors here grow with T)."""

    nrn: _Neurons
    dt: float
    n_steps: int
    batch_size: int
    n_in: int
    t_end: float
    max_pairs: int = 4_000_000
    spike_reg: tuple[float, float] | None = None
    readout: str | None = None
    integrand: Integrand | None = None
    xtol: float | None = None


@dataclass
class _Pairs:
    """(input spike, target neuron) pairs of one batch chunk whose arrival is ``<= T``."""

    src: Tensor  # [P] index of the input spike
    tgt: Tensor  # [P] target neuron
    j: Tensor  # [P] presynaptic unit
    seg: Tensor  # [P] b * N + tgt
    s: Tensor  # [P] arrival time (s)
    w: Tensor  # [P] weight
    a: Tensor  # [P] spike amplitude

    @property
    def x(self) -> Tensor:
        """Jump size ``w a``."""
        return self.w * self.a


def _pairs(cfg: _Config, ev: Tensor, t_in: Tensor, b_in: Tensor, j_in: Tensor, v_in: Tensor,
           weight: Tensor, delay: Tensor | None) -> _Pairs:
    n = cfg.nrn.n
    src = ev.repeat_interleave(n)
    tgt = torch.arange(n, device=ev.device).repeat(ev.numel())
    j = j_in[src]
    s = t_in[src] if delay is None else t_in[src] + delay[tgt, j]
    keep = s <= cfg.t_end
    src, tgt, j, s = src[keep], tgt[keep], j[keep], s[keep]
    return _Pairs(src=src, tgt=tgt, j=j, seg=b_in[src] * n + tgt, s=s, w=weight[tgt, j],
                  a=v_in[src])


def _chunks(cfg: _Config, b_in: Tensor) -> list[tuple[int, int, Tensor]]:
    """Batch ranges ``[b0, b1)`` with about ``max_pairs`` pairs each, and their input events."""
    bsz = cfg.batch_size
    per = torch.bincount(b_in, minlength=bsz) if b_in.numel() else b_in.new_zeros(bsz)
    biggest = int(per.max()) if bsz else 0
    step = max(1, cfg.max_pairs // max(1, biggest * cfg.nrn.n))
    out = []
    for b0 in range(0, bsz, step):
        b1 = min(bsz, b0 + step)
        out.append((b0, b1, ((b_in >= b0) & (b_in < b1)).nonzero().squeeze(1)))
    return out


class _Grads:
    """Accumulators of ``dL/dW``, ``dL/dD``, ``dL/d(input times)`` and ``dL/d(amplitudes)``."""

    def __init__(self, weight: Tensor, delay: Tensor | None, n_events: int, need: tuple) -> None:
        self.need_t, self.need_w, self.need_d, self.need_a = need
        self.n_in = weight.shape[1]
        self.w = torch.zeros_like(weight).reshape(-1) if self.need_w else None
        self.d = (torch.zeros_like(weight).reshape(-1)
                  if self.need_d and delay is not None else None)
        self.t = weight.new_zeros(n_events) if self.need_t else None
        self.a = weight.new_zeros(n_events) if self.need_a else None

    def add(self, p: _Pairs, dj: Tensor, ds: Tensor) -> None:
        """``dj = dL/dJ`` per pair (jump ``J = w a``) and ``ds = dL/d(arrival time)``."""
        flat = p.tgt * self.n_in + p.j
        if self.w is not None:
            self.w.index_add_(0, flat, p.a * dj)
        if self.d is not None:
            self.d.index_add_(0, flat, ds)
        if self.t is not None:
            self.t.index_add_(0, p.src, ds)
        if self.a is not None:
            self.a.index_add_(0, p.src, p.w * dj)

    def result(self, weight: Tensor) -> tuple[Tensor | None, ...]:
        shape = weight.shape
        return (self.t, None if self.w is None else self.w.reshape(shape),
                None if self.d is None else self.d.reshape(shape), self.a)


# =========================================================================== spiking layers
def _engine_spikes(cfg: _Config, t_in: Tensor, b_in: Tensor, j_in: Tensor, v_in: Tensor,
                   weight: Tensor, delay: Tensor | None) -> Spikes:
    """Output spikes of the layer from the continuous engine (exact spike times)."""
    spikes = Spikes(t_in, j_in, b_in, v_in, dt=cfg.dt, n_steps=cfg.n_steps,
                    batch_size=cfg.batch_size, n_units=cfg.n_in)
    syn = Dense(weight=weight, delay=delay, learn_weight=False)
    res = run_population(cfg.nrn.model, dt=cfg.dt, n_steps=cfg.n_steps,
                         batch_size=cfg.batch_size, arrivals=syn.arrivals(spikes),
                         time="continuous", method="exact", dtype=weight.dtype,
                         device=weight.device, xtol=cfg.xtol)
    return res.spikes


def _current_at_spikes(cfg: _Config, tensors: tuple, t_out: Tensor, b_out: Tensor,
                       n_out: Tensor) -> Tensor:
    """``I(t_k^-)`` ``[K]`` of every output spike: the arrivals strictly before it, filtered."""
    t_in, b_in, j_in, v_in, weight, delay = tensors
    nrn = cfg.nrn
    current = t_out.new_zeros(t_out.numel())
    seg_out = b_out * nrn.n + n_out
    for b0, b1, ev in _chunks(cfg, b_in):
        k = ((b_out >= b0) & (b_out < b1)).nonzero().squeeze(1)
        if k.numel() == 0 or ev.numel() == 0:
            continue
        p = _pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
        seg = torch.cat([seg_out[k], p.seg])
        time = torch.cat([t_out[k], p.s])  # spikes first: equal-time arrivals come after
        x = torch.cat([t_out.new_zeros(k.numel()), p.x])
        rate = 1.0 / nrn.tau_s[torch.cat([n_out[k], p.tgt])]
        o = _order(seg, time)
        y = _linear_scan(_decay_prev(seg[o], time[o], rate[o]), x[o])
        val = torch.empty_like(y)
        val[o] = y
        current[k] = val[: k.numel()]
    return current


@dataclass
class _SpikeAdjoint:
    """Adjoints at the output spikes, sorted by (neuron segment, time)."""

    order: Tensor  # [K] original index of each sorted spike
    seg: Tensor
    t: Tensor
    n: Tensor
    v_minus: Tensor
    i_minus: Tensor | None
    v_plus: Tensor


def _spike_adjoints(cfg: _Config, t_out: Tensor, b_out: Tensor, n_out: Tensor,
                    current: Tensor, g_t: Tensor) -> _SpikeAdjoint:
    """Backward recursion over each neuron's spikes (latest first), vectorised over neurons."""
    nrn = cfg.nrn
    seg_all = b_out * nrn.n + n_out
    order = _order(seg_all, t_out)
    seg, t, n = seg_all[order], t_out[order], n_out[order]
    g = g_t[order]
    k_count = t.numel()
    reg = torch.zeros_like(t)
    if cfg.spike_reg is not None and k_count:
        strength, target = cfg.spike_reg
        mean_count = torch.bincount(n_out, minlength=nrn.n).to(t.dtype) / cfg.batch_size
        reg = strength * (mean_count[n] - target) / cfg.batch_size
    v_minus, v_plus = torch.zeros_like(t), torch.zeros_like(t)
    i_minus = torch.zeros_like(t) if nrn.cuba else None
    idx = torch.arange(k_count, device=t.device)
    same_next = torch.zeros(k_count, dtype=torch.bool, device=t.device)
    if k_count > 1:
        same_next[:-1] = seg[1:] == seg[:-1]
    rank_end = _next_marked(~same_next) - idx  # 0 for each neuron's last spike
    if k_count:
        by_rank = torch.argsort(rank_end, stable=True)
        groups = torch.split(by_rank, torch.bincount(rank_end).tolist())
    else:
        groups = ()
    cur = current[order] if nrn.cuba else None
    for r, p in enumerate(groups):
        if r == 0:
            vp = torch.zeros_like(t[p])
            ip = torch.zeros_like(vp) if nrn.cuba else None
        else:
            nx = p + 1
            vp, ip = _propagate(nrn, n[p], v_minus[nx], i_minus[nx] if nrn.cuba else None,
                                t[nx] - t[p])
        v_plus[p] = vp
        if nrn.cuba:
            tau_m, rr, vl = nrn.tau_m[n[p]], nrn.r[n[p]], nrn.v_leak[n[p]]
            vdot_minus = (vl - nrn.v_th[n[p]] + rr * cur[p]) / tau_m
            vdot_plus = (vl - nrn.v_reset[n[p]] + rr * cur[p]) / tau_m
            v_minus[p] = (vp * vdot_plus - g[p]) / vdot_minus + reg[p]
            i_minus[p] = ip
        else:  # LIF: fired by a jump; the state before it does not matter
            v_minus[p] = reg[p]
    return _SpikeAdjoint(order=order, seg=seg, t=t, n=n, v_minus=v_minus, i_minus=i_minus,
                         v_plus=v_plus)


def _pair_rates(nrn: _Neurons, p: _Pairs, lam_v: Tensor, lam_i: Tensor | None) -> tuple:
    """``(dL/dJ, dL/ds)`` of each pair from the adjoint just after its arrival (no drive)."""
    if nrn.cuba:
        rate = lam_i / nrn.tau_s[p.tgt] - nrn.r[p.tgt] * lam_v / nrn.tau_m[p.tgt]
        return lam_i, p.x * rate
    return lam_v, p.x * lam_v / nrn.tau_m[p.tgt]


def _spiking_backward(cfg: _Config, saved: tuple, g_t: Tensor | None, need: tuple) -> tuple:
    t_in, weight, delay, b_in, j_in, v_in, t_out, b_out, n_out, current = saved
    nrn = cfg.nrn
    if g_t is None:
        g_t = torch.zeros_like(t_out)
    grads = _Grads(weight, delay, t_in.numel(), need)
    if t_out.numel() == 0:  # a silent layer: nothing downstream depends on its inputs
        return grads.result(weight)
    adj = _spike_adjoints(cfg, t_out, b_out, n_out, current, g_t)
    g_sorted = g_t[adj.order]
    tol = 256 * torch.finfo(t_out.dtype).eps * max(cfg.t_end, cfg.dt)
    for b0, b1, ev in _chunks(cfg, b_in):
        if ev.numel() == 0:
            continue
        p = _pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
        k0 = int(torch.searchsorted(adj.seg, b0 * nrn.n))
        k1 = int(torch.searchsorted(adj.seg, b1 * nrn.n))
        nk = k1 - k0
        seg = torch.cat([adj.seg[k0:k1], p.seg])
        time = torch.cat([adj.t[k0:k1], p.s])  # spikes sort before equal-time arrivals
        o = _order(seg, time)
        seg_o = seg[o]
        m = o.numel()
        is_spike = o < nk
        nxt = _next_marked(is_spike)
        pos = (~is_spike).nonzero().squeeze(1)
        pid = o[pos] - nk  # pair index of each sorted pair position
        nx = nxt[pos]
        nxc = nx.clamp(max=max(m - 1, 0))
        valid = (nx < m) & (seg_o[nxc] == seg_o[pos])
        k = torch.where(valid, k0 + o[nxc], torch.zeros_like(nx))
        lam_v = torch.zeros_like(p.s)
        lam_i = torch.zeros_like(p.s) if nrn.cuba else None
        h = (adj.t[k] - p.s[pid]).clamp(min=0)
        vv, ii = _propagate(nrn, p.tgt[pid], adj.v_minus[k],
                            adj.i_minus[k] if nrn.cuba else None, h)
        lam_v[pid] = torch.where(valid, vv, torch.zeros_like(vv))
        if nrn.cuba:
            lam_i[pid] = torch.where(valid, ii, torch.zeros_like(ii))
        dj, ds = _pair_rates(nrn, p, lam_v, lam_i)
        if not nrn.cuba and nk:
            dj, ds = _lif_triggers(cfg, adj, p, o, seg_o, time, nk, k0, g_sorted, dj, ds, tol)
        grads.add(p, dj, ds)
    return grads.result(weight)


def _lif_triggers(cfg: _Config, adj: _SpikeAdjoint, p: _Pairs, o: Tensor, seg_o: Tensor,
                  time: Tensor, nk: int, k0: int, g_sorted: Tensor, dj: Tensor, ds: Tensor,
                  tol: float) -> tuple[Tensor, Tensor]:
    """LIF spikes happen at the arrival that carries ``V`` over threshold: that arrival's
    time sets the spike time (``dL/ds = G_k - lam_V(t_k^+) (v_leak - v_reset)/tau_m``) and its
    weight has no effect (``dL/dJ = 0``)."""
    nrn = cfg.nrn
    m = o.numel()
    t_o = time[o]
    spos = (o < nk).nonzero().squeeze(1)
    trig = torch.full_like(spos, -1)
    for step in (1, -1):  # the arrival sorted right after the spike (exact tie), then before
        c = spos + step
        ok = (c >= 0) & (c < m) & (trig < 0)
        cc = c.clamp(0, max(m - 1, 0))
        ok &= (o[cc] >= nk) & (seg_o[cc] == seg_o[spos]) & ((t_o[cc] - t_o[spos]).abs() <= tol)
        trig = torch.where(ok, cc, trig)
    if bool((trig < 0).any()):
        raise RuntimeError("adjoint LIF: could not match a spike to the arrival that fired it")
    kk = k0 + o[spos]  # sorted spike index
    pid = o[trig] - nk
    nrn_k = adj.n[kk]
    dj = dj.clone()
    ds = ds.clone()
    dj[pid] = 0.0
    ds[pid] = g_sorted[kk] - adj.v_plus[kk] * (nrn.v_leak[nrn_k] - nrn.v_reset[nrn_k]) / \
        nrn.tau_m[nrn_k]
    return dj, ds


class _SpikingLayerFn(torch.autograd.Function):
    """Input spike times, W, D -> output spike times (exact), adjoint backward."""

    @staticmethod
    def forward(ctx: Any, t_in: Tensor, weight: Tensor, delay: Tensor | None, b_in: Tensor,
                j_in: Tensor, v_in: Tensor, cfg: _Config) -> tuple[Tensor, Tensor, Tensor]:
        out = _engine_spikes(cfg, t_in, b_in, j_in, v_in, weight, delay)
        t_out, b_out, n_out = out.times, out.batch, out.units
        if cfg.nrn.cuba:
            current = _current_at_spikes(cfg, (t_in, b_in, j_in, v_in, weight, delay), t_out,
                                         b_out, n_out)
        else:
            current = t_out.new_zeros(0)
        ctx.save_for_backward(t_in, weight, delay, b_in, j_in, v_in, t_out, b_out, n_out,
                              current)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(b_out, n_out)
        return t_out, b_out, n_out

    @staticmethod
    def backward(ctx: Any, g_t: Tensor | None, _gb: Any, _gn: Any) -> tuple:
        need = tuple(ctx.needs_input_grad[i] for i in (0, 1, 2, 5))
        g_tin, g_w, g_d, g_a = _spiking_backward(ctx.cfg, ctx.saved_tensors, g_t, need)
        return g_tin, g_w, g_d, None, None, g_a, None


# =========================================================================== readouts
def _linear_kernel(cfg: _Config) -> tuple[float, float]:
    """``(alpha, 1/tau_w)`` of the readout weight ``k(t) = alpha e^{-t/tau_w}``."""
    if cfg.readout == "avg_exp":
        return 1.0 / cfg.t_end, 1.0 / cfg.t_end
    return 1.0 / cfg.dt, 0.0  # "sum"


def _linear_response(cfg: _Config, p: _Pairs) -> tuple[Tensor, Tensor, Tensor]:
    """Per pair: ``R_target(s) = ∫_s^T k(u) psi(u - s) du`` (the response of z to a unit jump),
    ``R_V(s) = ∫_s^T k(u) e^{-(u-s)/tau_m} du`` and ``k(s)``."""
    nrn = cfg.nrn
    alpha, inv_w = _linear_kernel(cfg)
    h = cfg.t_end - p.s
    ks = alpha * torch.exp(-p.s * inv_w)
    rate_m = 1.0 / nrn.tau_m[p.tgt]
    r_v = ks * _q(h, rate_m + inv_w)
    if not nrn.cuba:
        return r_v, r_v, ks
    rate_s = 1.0 / nrn.tau_s[p.tgt]
    r_i = ks * nrn.r[p.tgt] * rate_m * _divided_q(h, rate_m + inv_w, rate_s + inv_w)
    return r_i, r_v, ks


@dataclass
class _Filtered:
    """Readout state at every arrival of a chunk (sorted by segment, time)."""

    o: Tensor  # permutation of the pairs
    seg: Tensor
    s: Tensor
    tgt: Tensor
    x: Tensor
    modes: list[tuple[Tensor, Tensor, Tensor]]  # (rate [P], coefficient [P], F incl. [P])


def _filtered(cfg: _Config, p: _Pairs) -> _Filtered:
    """Exponential filters ``F_tau(s^+) = Σ_{s' <= s} x e^{-(s - s')/tau}`` at the arrivals.

    The readout voltage is ``V = v_leak + Σ_modes c F`` (LI: one mode ``tau_m``, ``c = 1``;
    CubaLI: ``tau_s`` and ``tau_m`` with ``c = ± r tau_s/(tau_s - tau_m)``), ``I = F_{tau_s}``.
    """
    nrn = cfg.nrn
    o = _order(p.seg, p.s)
    seg, s, tgt, x = p.seg[o], p.s[o], p.tgt[o], p.x[o]
    rates = [1.0 / nrn.tau_m[tgt]]
    coefs = [torch.ones_like(s)]
    if nrn.cuba:
        ts, tm = nrn.tau_s[tgt], nrn.tau_m[tgt]
        if bool(((ts - tm).abs() <= 1e-6 * tm).any()):
            raise NotImplementedError("max/integrand readouts on CubaLI need tau_syn != tau_mem")
        c = nrn.r[tgt] * ts / (ts - tm)
        rates = [1.0 / ts, 1.0 / tm]
        coefs = [c, -c]
    modes = [(rate, c, _linear_scan(_decay_prev(seg, s, rate), x))
             for rate, c in zip(rates, coefs, strict=True)]
    return _Filtered(o=o, seg=seg, s=s, tgt=tgt, x=x, modes=modes)


def _max_forward(cfg: _Config, p: _Pairs, b0: int, b1: int, out: dict) -> None:
    """``z = max_t V(t)`` per neuron of the chunk and where it is attained."""
    nrn = cfg.nrn
    n = nrn.n
    segs = torch.arange(b0 * n, b1 * n, device=p.s.device)
    nloc = segs % n
    vl_all = nrn.v_leak[nloc]
    cand_seg, cand_val, cand_t, cand_side, cand_src, cand_vdot = (
        [segs], [vl_all], [torch.zeros_like(vl_all)], [torch.zeros_like(segs)],
        [torch.full_like(segs, -1)], [torch.zeros_like(vl_all)])
    if p.s.numel():
        f = _filtered(cfg, p)
        vl, tau_m = nrn.v_leak[f.tgt], nrn.tau_m[f.tgt]
        v_plus = vl + sum(c * fv for _, c, fv in f.modes)
        psi0 = 0.0 if nrn.cuba else 1.0
        v_minus = v_plus - psi0 * f.x
        if nrn.cuba:
            i_plus = f.modes[0][2]
            i_minus = i_plus - f.x
            rr = nrn.r[f.tgt]
            vdot_plus = (vl - v_plus + rr * i_plus) / tau_m
            vdot_minus = (vl - v_minus + rr * i_minus) / tau_m
        else:
            vdot_plus, vdot_minus = (vl - v_plus) / tau_m, (vl - v_minus) / tau_m
        src_sorted = p.src[f.o]
        same_next = torch.zeros_like(f.seg, dtype=torch.bool)
        nxt_s = torch.full_like(f.s, cfg.t_end)
        if f.s.numel() > 1:
            same_next[:-1] = f.seg[1:] == f.seg[:-1]
            nxt_s[:-1] = torch.where(same_next[:-1], f.s[1:], nxt_s[:-1])
        length = nxt_s - f.s
        zero = torch.zeros_like(f.seg)
        for side, val, vdot in ((-1, v_minus, vdot_minus), (1, v_plus, vdot_plus)):
            cand_seg.append(f.seg)
            cand_val.append(val)
            cand_t.append(f.s)
            cand_side.append(zero + side)
            cand_src.append(src_sorted)
            cand_vdot.append(vdot)
        if nrn.cuba:  # interior stationary point of each piece
            (ra, ca, fa), (rb, cb, fb) = f.modes
            ratio = -(cb * fb * rb) / (ca * fa * ra)  # e^{h (rb - ra)} where V' = 0
            ok = (ratio > 0) & torch.isfinite(ratio)
            hh = torch.log(torch.where(ok, ratio, torch.ones_like(ratio))) / (rb - ra)
            ok &= (hh > 0) & (hh < length)
            hh = torch.where(ok, hh, torch.zeros_like(hh))
            v_in = vl + ca * fa * torch.exp(-ra * hh) + cb * fb * torch.exp(-rb * hh)
            cand_seg.append(f.seg[ok])
            cand_val.append(v_in[ok])
            cand_t.append((f.s + hh)[ok])
            cand_side.append(zero[ok])
            cand_src.append(torch.full_like(zero[ok], -1))
            cand_vdot.append(torch.zeros_like(v_in[ok]))
        last = ~same_next  # value at T after each neuron's last arrival
        v_end = vl + sum(c * fv * torch.exp(-rate * length) for rate, c, fv in f.modes)
        cand_seg.append(f.seg[last])
        cand_val.append(v_end[last])
        cand_t.append(torch.full_like(v_end[last], cfg.t_end))
        cand_side.append(zero[last])
        cand_src.append(torch.full_like(zero[last], -1))
        cand_vdot.append(torch.zeros_like(v_end[last]))
    seg_c = torch.cat(cand_seg) - b0 * n
    val = torch.cat(cand_val)
    best = torch.full((segs.numel(),), -math.inf, dtype=val.dtype, device=val.device)
    best = best.scatter_reduce(0, seg_c, val, reduce="amax")
    idx = torch.arange(val.numel(), device=val.device)
    first = torch.full((segs.numel(),), val.numel(), dtype=torch.long, device=val.device)
    first = first.scatter_reduce(0, seg_c, torch.where(val == best[seg_c], idx, val.numel()),
                                 reduce="amin")
    sl = slice(b0 * n, b1 * n)
    out["z"][sl] = best
    out["t"][sl] = torch.cat(cand_t)[first]
    out["side"][sl] = torch.cat(cand_side)[first]
    out["src"][sl] = torch.cat(cand_src)[first]
    out["vdot"][sl] = torch.cat(cand_vdot)[first]


def _max_backward(cfg: _Config, p: _Pairs, g: Tensor, t_star: Tensor, side: Tensor,
                  pin_src: Tensor, vdot: Tensor) -> tuple[Tensor, Tensor]:
    """Point drive ``g`` at ``t*``: ``lam(s) = g e^{A^T (t* - s)} e_V`` for arrivals before it,
    plus ``g V'(t*)`` for the arrival ``t*`` is pinned to (a kink of V)."""
    nrn = cfg.nrn
    ts, sd, gs = t_star[p.seg], side[p.seg], g[p.seg]
    before = (p.s < ts) | ((p.s == ts) & (sd > 0))
    h = (ts - p.s).clamp(min=0)
    lam_v = torch.where(before, gs, torch.zeros_like(gs))
    lam_i = torch.zeros_like(lam_v) if nrn.cuba else None
    lam_v, lam_i = _propagate(nrn, p.tgt, lam_v, lam_i, h)
    dj, ds = _pair_rates(nrn, p, lam_v, lam_i)
    pinned = (sd != 0) & (p.src == pin_src[p.seg])
    ds = ds + torch.where(pinned, gs * vdot[p.seg], torch.zeros_like(ds))
    return dj, ds


@dataclass
class _Pieces:
    """Smooth pieces of the readout trajectory (between arrivals and quadrature grid points)
    in a padded ``[R, B_chunk, N]`` layout."""

    f: _Filtered  # filters over the merged (arrival + grid point) elements
    is_pair: Tensor  # [M] merged element is an arrival
    pair_id: Tensor  # [M] its pair index (or -1)
    layout: Tensor  # [M] flat index into R * B_chunk * N
    shape: tuple[int, int, int]
    a: Tensor  # [R, Bc, N] piece start (s)
    h: Tensor  # [R, Bc, N] piece length (s)
    fv: list[Tensor]  # per mode: F at the piece start [R, Bc, N]


def _pieces(cfg: _Config, p: _Pairs, b0: int, b1: int) -> _Pieces:
    nrn = cfg.nrn
    n, bc = nrn.n, b1 - b0
    taus = [nrn.tau_m] + ([nrn.tau_s] if nrn.cuba else [])
    h_max = min(cfg.dt, 0.5 * min(float(t.min()) for t in taus))
    n_sub = max(1, math.ceil(cfg.t_end / h_max - 1e-9))
    dtype, dev = p.s.dtype, p.s.device
    grid = torch.linspace(0.0, cfg.t_end, n_sub + 1, dtype=dtype, device=dev)
    segs = torch.arange(b0 * n, b1 * n, device=dev)
    g_seg = segs.repeat_interleave(n_sub + 1)
    g_t = grid.repeat(segs.numel())
    g_tgt = g_seg % n
    merged = _Pairs(
        src=torch.cat([p.src, torch.full_like(g_seg, -1)]), tgt=torch.cat([p.tgt, g_tgt]),
        j=torch.cat([p.j, torch.zeros_like(g_seg)]), seg=torch.cat([p.seg, g_seg]),
        s=torch.cat([p.s, g_t]), w=torch.cat([p.w, torch.zeros_like(g_t)]),
        a=torch.cat([p.a, torch.zeros_like(g_t)]),
    )
    f = _filtered(cfg, merged)  # arrivals sort before grid points at the same time
    m = f.s.numel()
    ids = torch.arange(m, device=dev)
    pair_id = torch.where(f.o < p.s.numel(), f.o, torch.full_like(f.o, -1))
    start = torch.cummax(torch.where(~_same_prev(f.seg), ids, torch.zeros_like(ids)), 0).values
    rank = ids - start
    r_max = int(rank.max()) + 1
    layout = rank * (bc * n) + (f.seg - b0 * n)
    length = torch.zeros_like(f.s)
    if m > 1:
        length[:-1] = torch.where(f.seg[1:] == f.seg[:-1], f.s[1:] - f.s[:-1],
                                  torch.zeros_like(f.s[:-1]))

    def pad(x: Tensor) -> Tensor:
        out = x.new_zeros(r_max * bc * n)
        out[layout] = x
        return out.reshape(r_max, bc, n)

    return _Pieces(f=f, is_pair=pair_id >= 0, pair_id=pair_id, layout=layout,
                   shape=(r_max, bc, n), a=pad(f.s), h=pad(length),
                   fv=[pad(fv) for _, _, fv in f.modes])


def _piece_rates(cfg: _Config) -> list[Tensor]:
    nrn = cfg.nrn
    return [1.0 / nrn.tau_s, 1.0 / nrn.tau_m] if nrn.cuba else [1.0 / nrn.tau_m]


def _piece_state(cfg: _Config, pc: _Pieces, u: Tensor, a: Tensor, fv: list[Tensor]) -> tuple:
    """Readout state at times ``u`` from the filters ``fv`` at the piece starts ``a``."""
    nrn = cfg.nrn
    rates = _piece_rates(cfg)
    decays = [f * torch.exp(-(u - a) * rate) for f, rate in zip(fv, rates, strict=True)]
    if nrn.cuba:
        c = nrn.r * nrn.tau_s / (nrn.tau_s - nrn.tau_m)
        v = nrn.v_leak + c * (decays[0] - decays[1])
        return nrn.model.State(v=v, i=decays[0])
    return nrn.model.State(v=nrn.v_leak + decays[0])


def _integrand_nodes(cfg: _Config, pc: _Pieces) -> tuple[Tensor, Tensor, Tensor, list]:
    """Gauss-Legendre nodes ``u`` and weights ``[R, 8, Bc, N]`` of every piece."""
    x = _GL_X.to(pc.a).reshape(1, -1, 1, 1)
    wq = _GL_W.to(pc.a).reshape(1, -1, 1, 1)
    a, h = pc.a.unsqueeze(1), pc.h.unsqueeze(1)
    u = a + 0.5 * h * (x + 1.0)
    return u, 0.5 * h * wq, a, [f.unsqueeze(1) for f in pc.fv]


def _integrand_forward(cfg: _Config, p: _Pairs, b0: int, b1: int) -> Tensor:
    pc = _pieces(cfg, p, b0, b1)
    u, wq, a, fv = _integrand_nodes(cfg, pc)
    vals = cfg.integrand(u, _piece_state(cfg, pc, u, a, fv))
    return (torch.where(wq != 0, wq * vals, torch.zeros_like(wq))).sum(dim=(0, 1))


def _integrand_backward(cfg: _Config, p: _Pairs, g: Tensor, b0: int,
                        b1: int) -> tuple[Tensor, Tensor]:
    """``lam(s) = ∫_s^T e^{A^T (u - s)} c(u) du`` with the drive ``c = g (dl/dV, dl/dI)``:
    per-piece quadrature of the exponentially weighted drive, summed backward over pieces;
    moving an arrival also moves the jump of ``l`` there: ``g (l(s, x^-) - l(s, x^+))``."""
    nrn = cfg.nrn
    pc = _pieces(cfg, p, b0, b1)
    u, wq, a, fv = _integrand_nodes(cfg, pc)
    gb = g.reshape(b1 - b0, nrn.n)
    names = ("v", "i") if nrn.cuba else ("v",)
    with torch.enable_grad():
        state = _piece_state(cfg, pc, u, a, fv)
        leaves = {k: getattr(state, k).detach().requires_grad_() for k in names}
        vals = cfg.integrand(u, state._replace(**leaves))
        grads = torch.autograd.grad(vals, list(leaves.values()), torch.ones_like(vals),
                                    allow_unused=True)
    f = pc.f
    pid = pc.pair_id[pc.is_pair]
    sel = pc.is_pair

    def tail(dl: Tensor | None, rate: Tensor) -> Tensor:
        if dl is None:
            return torch.zeros_like(pid, dtype=p.s.dtype)
        drive = torch.where(wq != 0, wq * gb * dl, torch.zeros_like(wq))
        j = (drive * torch.exp(-(u - a) * rate)).sum(1).reshape(-1)[pc.layout]
        return _reverse_tail(f.seg, f.s, rate[f.tgt], j)[sel]

    tgt = p.tgt[pid]
    lam_v = torch.zeros_like(p.s)
    lam_v[pid] = tail(grads[0], 1.0 / nrn.tau_m)
    lam_i = None
    if nrn.cuba:
        c = nrn.r[tgt] * nrn.tau_s[tgt] / (nrn.tau_s[tgt] - nrn.tau_m[tgt])
        lam_i = torch.zeros_like(p.s)
        lam_i[pid] = (c * (tail(grads[0], 1.0 / nrn.tau_s) - lam_v[pid])
                      + tail(grads[1], 1.0 / nrn.tau_s))
    dj, ds = _pair_rates(nrn, p, lam_v, lam_i)
    # The jump target is discontinuous at the arrival: l(s, x^-) - l(s, x^+) per unit shift.
    with torch.no_grad():
        target = "i" if nrn.cuba else "v"
        x_pad = torch.zeros(pc.shape, dtype=p.s.dtype, device=p.s.device).reshape(-1)
        x_pad[pc.layout[sel]] = p.x[pid]
        plus = _piece_state(cfg, pc, pc.a, pc.a, pc.fv)
        minus = plus._replace(**{target: getattr(plus, target) - x_pad.reshape(pc.shape)})
        jump = cfg.integrand(pc.a, minus) - cfg.integrand(pc.a, plus)
        jump = (gb * jump).reshape(-1)[pc.layout[sel]]
    ds = ds.clone()
    ds[pid] = ds[pid] + jump
    return dj, ds


class _ReadoutFn(torch.autograd.Function):
    """Input spike times, W, D -> readout ``z [B, N]`` of a non-spiking layer."""

    @staticmethod
    def forward(ctx: Any, t_in: Tensor, weight: Tensor, delay: Tensor | None, b_in: Tensor,
                j_in: Tensor, v_in: Tensor, cfg: _Config) -> Tensor:
        nrn = cfg.nrn
        n, bsz = nrn.n, cfg.batch_size
        dtype = weight.dtype
        z = weight.new_zeros(bsz * n)
        extra: dict[str, Tensor] = {}
        if cfg.readout == "max":
            extra = {"z": z, "t": torch.zeros_like(z), "side": torch.zeros(bsz * n,
                     dtype=torch.long, device=z.device), "src": torch.zeros(bsz * n,
                     dtype=torch.long, device=z.device), "vdot": torch.zeros_like(z)}
        elif cfg.readout in ("avg_exp", "sum"):
            alpha, inv_w = _linear_kernel(cfg)
            base = alpha * _q(torch.tensor(cfg.t_end, dtype=dtype), torch.tensor(inv_w,
                                                                                   dtype=dtype))
            z += (nrn.v_leak * base).repeat(bsz)
        for b0, b1, ev in _chunks(cfg, b_in):
            p = _pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
            if cfg.readout == "max":
                _max_forward(cfg, p, b0, b1, extra)
            elif cfg.readout == "integrand":
                z[b0 * n:b1 * n] = _integrand_forward(cfg, p, b0, b1).reshape(-1)
            else:
                r_t, _, _ = _linear_response(cfg, p)
                z.index_add_(0, p.seg, p.x * r_t)
        keep = (extra["t"], extra["side"], extra["src"], extra["vdot"]) if extra else ()
        ctx.save_for_backward(t_in, weight, delay, b_in, j_in, v_in, *keep)
        ctx.cfg = cfg
        return z.reshape(bsz, n)

    @staticmethod
    def backward(ctx: Any, g_z: Tensor) -> tuple:
        cfg = ctx.cfg
        t_in, weight, delay, b_in, j_in, v_in, *keep = ctx.saved_tensors
        need = tuple(ctx.needs_input_grad[i] for i in (0, 1, 2, 5))
        grads = _Grads(weight, delay, t_in.numel(), need)
        g = g_z.reshape(-1)
        for b0, b1, ev in _chunks(cfg, b_in):
            if ev.numel() == 0:
                continue
            p = _pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
            if cfg.readout == "max":
                dj, ds = _max_backward(cfg, p, g, *keep)
            elif cfg.readout == "integrand":
                dj, ds = _integrand_backward(cfg, p, g[b0 * cfg.nrn.n:b1 * cfg.nrn.n], b0, b1)
            else:
                r_t, r_v, ks = _linear_response(cfg, p)
                gp = g[p.seg]
                nrn = cfg.nrn
                if nrn.cuba:
                    lam_i, lam_v = gp * r_t, gp * r_v
                    dj, ds = _pair_rates(nrn, p, lam_v, lam_i)
                else:
                    lam_v = gp * r_v
                    dj = lam_v
                    ds = p.x * (lam_v / nrn.tau_m[p.tgt] - gp * ks)
            grads.add(p, dj, ds)
        g_tin, g_w, g_d, g_a = grads.result(weight)
        return g_tin, g_w, g_d, None, None, g_a, None


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
        model: ``LIF`` / ``CubaLIF`` (spiking) or ``LI`` / ``CubaLI`` (readout), ``N`` neurons.
        spikes: input events (``n_units = N_in``); their ``times`` may require grad. The
            grid (``dt``, ``n_steps``) sets the simulated interval ``[0, n_steps dt]``.
        weight: ``[N, N_in]``.
        delay: seconds, ``[N, N_in]`` or per axon ``[N_in]``, non-negative, or ``None``.
        readout: spiking layers: ``None`` (return the spikes) or ``"first_spike"`` (``[B, N]``
            first spike times, see :func:`first_spike_times`); non-spiking layers:
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
    nrn = _neurons(model)
    if weight.ndim != 2 or weight.shape != (nrn.n, spikes.n_units):
        raise ValueError(f"weight must have shape [N, N_in] = [{nrn.n}, {spikes.n_units}], got "
                         f"{list(weight.shape)}")
    delay = full_delay(weight, delay)
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
    t_end = float(torch.tensor(spikes.n_steps, dtype=torch.float64) * spikes.dt)
    cfg = _Config(nrn=nrn, dt=spikes.dt, n_steps=spikes.n_steps, batch_size=spikes.batch_size,
                  n_in=spikes.n_units, t_end=t_end, max_pairs=max_pairs, spike_reg=spike_reg,
                  readout=readout, integrand=integrand, xtol=xtol)
    times = spikes.times.to(weight.dtype)
    values = spikes.values.to(weight.dtype)
    if not nrn.spiking:
        return _ReadoutFn.apply(times, weight, delay, spikes.batch, spikes.units, values, cfg)
    t_out, b_out, n_out = _SpikingLayerFn.apply(times, weight, delay, spikes.batch,
                                                spikes.units, values, cfg)
    out = Spikes(t_out, n_out, b_out, dt=spikes.dt, n_steps=spikes.n_steps,
                 batch_size=spikes.batch_size, n_units=nrn.n)
    return first_spike_times(out) if readout == "first_spike" else out


class EventPropLayer(nn.Module):
    """A feed-forward layer trained with exact adjoint (EventProp) gradients.

    Args:
        model: ``CubaLIF`` / ``LIF`` (spiking) or ``CubaLI`` / ``LI`` (readout).
        weight: initial weight ``[N, N_in]``.
        delay: initial delay (seconds) ``[N, N_in]`` or per axon ``[N_in]``; ``None`` = no
            delays (zero, not learnable).
        learn_weight, learn_delay: make them ``nn.Parameter``s.
        max_delay: upper bound (s) applied by :meth:`clamp_delays_`.
        spike_reg: spiking layers: ``(strength, target count)`` regularisation.

    ``forward(spikes, readout=None, integrand=None)``: see :func:`layer_forward`.
    """

    def __init__(self, model: NeuronModel, weight: Tensor, delay: Tensor | None = None, *,
                 learn_weight: bool = True, learn_delay: bool = True,
                 max_delay: float | None = None,
                 spike_reg: tuple[float, float] | None = None,
                 max_pairs: int = 4_000_000) -> None:
        super().__init__()
        _neurons(model)
        self.model = model
        register_weight_delay(self, weight, delay, learn_weight=learn_weight,
                              learn_delay=learn_delay)
        self.max_delay, self.spike_reg, self.max_pairs = max_delay, spike_reg, max_pairs

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def spiking(self) -> bool:
        return _neurons(self.model).spiking

    def forward(self, spikes: Spikes, readout: str | None = None,
                integrand: Integrand | None = None) -> Spikes | Tensor:
        """Input :class:`Spikes` -> output spikes (differentiable times) or a readout."""
        return layer_forward(self.model, spikes, self.weight, self.delay, readout=readout,
                             integrand=integrand, spike_reg=self.spike_reg,
                             max_pairs=self.max_pairs)

    @torch.no_grad()
    def clamp_delays_(self) -> None:
        """Clamp the delays to ``[0, max_delay]`` in place (call after each optimiser step)."""
        if self.delay is not None:
            self.delay.clamp_(min=0.0, max=self.max_delay)

    def extra_repr(self) -> str:
        kind = ("none" if self.delay is None else
                "per-axon" if self.delay.ndim == 1 else "per-synapse")
        return f"n_in={self.n_in}, n_out={self.weight.shape[0]}, delay={kind}"


class EventPropNetwork(nn.Module):
    """Feed-forward stack of :class:`EventPropLayer`\\ s with a readout.

    Args:
        layers: the layers, input first.
        readout: of the last layer: ``"avg_exp"``, ``"sum"``, ``"max"`` (non-spiking),
            ``"first_spike"`` (spiking) or ``None`` (return its spikes).
        integrand: instead of ``readout``, ``l(t, state)`` of a non-spiking last layer.

    ``forward(spikes, return_spikes=False)`` -> readout ``[B, N_out]`` (and, with
    ``return_spikes``, the list of every spiking layer's output :class:`Spikes`). Nothing
    is kept between calls.
    """

    def __init__(self, layers: Sequence[EventPropLayer], readout: str | None = "avg_exp",
                 integrand: Integrand | None = None) -> None:
        super().__init__()
        if not layers or not all(isinstance(x, EventPropLayer) for x in layers):
            raise TypeError("layers must be a non-empty sequence of EventPropLayer")
        self.layers = nn.ModuleList(layers)
        self.readout, self.integrand = (None if integrand is not None else readout), integrand

    def forward(self, spikes: Spikes, return_spikes: bool = False) -> Any:
        hidden: list[Spikes] = []
        x: Any = spikes
        for k, layer in enumerate(self.layers):
            last = k == len(self.layers) - 1
            ro = self.readout if last and self.readout != "first_spike" else None
            x = layer(x, readout=ro, integrand=self.integrand if last else None)
            if isinstance(x, Spikes):
                hidden.append(x)
        if self.readout == "first_spike":
            x = first_spike_times(x)
        return (x, hidden) if return_spikes else x

    def clamp_delays_(self) -> None:
        """Clamp every layer's delays to ``[0, max_delay]``."""
        for layer in self.layers:
            layer.clamp_delays_()

    def delay_parameters(self) -> list[nn.Parameter]:
        """The learnable delays (for a separate optimiser)."""
        return [x.delay for x in self.layers if isinstance(x.delay, nn.Parameter)]

    def weight_parameters(self) -> list[nn.Parameter]:
        """The learnable weights."""
        return [x.weight for x in self.layers if isinstance(x.weight, nn.Parameter)]


@dataclass
class AdjointResult:
    """Output of :func:`simulate_adjoint`.

    Attributes:
        output: the readout ``[B, N]`` of the last layer (``None`` if it returns spikes).
        spikes: every spiking layer's output (the last one's too with ``"first_spike"``),
            differentiable w.r.t. times.
        integral: alias of ``output`` when an integrand was given (as in ``simulate``).
    """

    output: Tensor | None
    spikes: list[Spikes] = field(default_factory=list)
    integral: Tensor | None = None


def simulate_adjoint(
    target: Layer | EventPropLayer | Sequence[Layer | EventPropLayer],
    input: Spikes,
    *,
    dt: float | None = None,
    readout: str | None = None,
    integrand: Integrand | None = None,
    spike_reg: tuple[float, float] | None = None,
) -> AdjointResult:
    """``gradient="adjoint"``: run ``ctsnn.Layer``\\ s (or :class:`EventPropLayer`\\ s) in
    continuous time with exact EventProp gradients instead of autograd through the engine.

    ``ctsnn.Layer(model, weight, delay=...)`` layers use their synapse's ``weight`` and
    ``delay`` tensors as they are (make the delay buffer ``requires_grad_()`` to get its
    gradient). ``dt`` re-grids the input (default: the input's grid). ``readout`` /
    ``integrand`` apply to the last layer, ``spike_reg`` to the spiking ``ctsnn.Layer``\\ s.
    """
    layers = list(target) if isinstance(target, (list, tuple, nn.ModuleList)) else [target]
    if dt is not None and abs(dt - input.dt) > 1e-12 * dt:
        input = input.rebin(dt)
    x: Any = input
    hidden: list[Spikes] = []
    for k, layer in enumerate(layers):
        last = k == len(layers) - 1
        ro, ig = (readout, integrand) if last else (None, None)
        if ro == "first_spike":
            ro = None
        if isinstance(layer, EventPropLayer):
            x = layer(x, readout=ro, integrand=ig)
        elif isinstance(layer, Layer):
            syn = layer.synapse
            if not isinstance(syn, Dense) or layer.recurrent is not None:
                raise NotImplementedError("the adjoint path supports feed-forward Dense "
                                          "synapses (recurrent connections are not in the "
                                          "continuous engine yet)")
            x = layer_forward(layer.model, x, syn.effective_weight, syn.synapse_delay(), readout=ro,
                              integrand=ig, spike_reg=spike_reg)
        else:
            raise TypeError(f"expected ctsnn.Layer or EventPropLayer, got {type(layer).__name__}")
        if isinstance(x, Spikes):
            hidden.append(x)
    if readout == "first_spike":
        x = first_spike_times(x)
    out = None if isinstance(x, Spikes) else x
    return AdjointResult(output=out, spikes=hidden,
                         integral=out if integrand is not None else None)


# =========================================================================== losses
def first_spike_times(spikes: Spikes, fill: float | None = None) -> Tensor:
    """``[B, N]`` time of each neuron's first spike (s), differentiable.

    Silent neurons get ``fill`` (default: the end of the grid ``n_steps dt``), a constant
    without gradient (exact gradients cannot revive a silent neuron). Same as
    :meth:`ctsnn.Spikes.first_times`.
    """
    return spikes.first_times(fill)


def time_invariant_mse(first_times: Tensor, labels: Tensor, delta: float) -> Tensor:
    """Time-invariant MSE on first-spike times (SEEDS C1.5, Göltz et al.), batch mean:

    ``L = 1/2 Σ_{i≠c} (t_i - t_c - delta)^2`` with ``c`` the label; times and ``delta`` in s.

    Args:
        first_times: ``[B, N]`` (from :func:`first_spike_times`).
        labels: ``[B]`` class indices.
        delta: target lag of the wrong classes behind the right one (s).
    """
    t_c = first_times.gather(1, labels.reshape(-1, 1))
    diff = first_times - t_c - delta
    mask = torch.ones_like(first_times, dtype=torch.bool)
    mask.scatter_(1, labels.reshape(-1, 1), False)
    return 0.5 * (diff.square() * mask).sum(1).mean()


def spike_count_penalty(spikes: Spikes, strength: float, target: float) -> Tensor:
    """The value ``strength/2 Σ_n (mean count_n - target)^2`` whose (heuristic) gradient the
    layers' ``spike_reg=(strength, target)`` injects; for logging (no gradient)."""
    counts = torch.bincount(spikes.units, minlength=spikes.n_units).to(spikes.times.dtype)
    mean = counts / max(spikes.batch_size, 1)
    return 0.5 * strength * (mean - target).square().sum().detach()


# =========================================================================== diagnostics
@contextmanager
def _count_saved(box: list[int]):
    def pack(t: Tensor) -> Tensor:
        box[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def measure_saved_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return ``(its result, bytes of all tensors saved for backward)``.

    Counts every tensor autograd keeps during ``fn`` (custom ``Function``\\ s included); the
    memory the backward pass will hold on to.
    """
    box = [0]
    with _count_saved(box):
        out = fn()
    return out, box[0]
