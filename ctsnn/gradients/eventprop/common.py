"""Shared pieces of the closed-form EventProp: neuron constants, closed forms, segment
scans, (input spike, target) pairs and their gradient accumulation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...models.base import NeuronModel
from ...models.exponentials import coupled_response, expm1_ratio
from ...models.lif import LI, LIF, CubaLI, CubaLIF

READOUTS = ("avg_exp", "sum", "max")
TAU_NAMES = ("tau_mem", "tau_syn")  # the learnable parameters this path differentiates
GL_X, GL_W = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(8))
Integrand = Callable[[Tensor, tuple], Tensor]



# =========================================================================== neuron constants
@dataclass(frozen=True)
class Neurons:
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


def supports(model: NeuronModel, *, integrand: bool = False) -> bool:
    """Whether this module's closed-form adjoint applies to ``model`` (else use the generic
    adjoint, :mod:`ctsnn.gradients.adjoint`).

    Learnable ``tau_mem`` / ``tau_syn`` are supported (spike outputs, feed-forward or
    recurrent, and the ``avg_exp`` / ``sum`` / ``max`` readouts), except with an
    ``integrand`` readout.
    """
    try:
        neuron_constants(model)
    except (TypeError, NotImplementedError, ValueError):
        return False
    return not (integrand and any(t is not None for t in learnable_taus(model)))


def learnable_taus(model: NeuronModel) -> tuple[Tensor | None, Tensor | None]:
    """``(tau_mem, tau_syn)`` of ``model`` where they require grad (the live ``[N]``
    parameters, so autograd routes their gradients), ``None`` where not (or absent)."""
    out = []
    for name in TAU_NAMES:
        tau = getattr(model, name, None)
        out.append(tau if isinstance(tau, Tensor) and tau.requires_grad else None)
    return out[0], out[1]


def neuron_constants(model: NeuronModel) -> Neurons:
    if type(model) not in (LI, LIF, CubaLI, CubaLIF):
        raise TypeError(
            f"adjoint gradients support LI, LIF, CubaLI and CubaLIF, got {type(model).__name__} "
            "(use autograd through the engine, ctsnn.simulate(..., time='continuous'), for others)"
        )
    for name in model.param_names:
        if getattr(model, name).requires_grad and name not in TAU_NAMES:
            raise NotImplementedError(
                f"{type(model).__name__}.{name} is learnable, but the adjoint path gives "
                "gradients for weights, delays, input spike times and time constants only"
            )
    if bool((model.refractory > 0).any()):
        raise NotImplementedError("adjoint gradients: refractory periods are not supported")
    if getattr(model, "reset_mode", "zero") != "zero":
        # the jump conditions below are derived for v <- v_reset
        raise NotImplementedError(f"closed-form EventProp: reset={model.reset_mode!r} (the "
                                  "generic adjoint handles it)")
    cuba = isinstance(model, CubaLI)
    spiking = isinstance(model, (LIF, CubaLIF))
    if spiking and bool((model.v_leak >= model.v_threshold).any()):
        raise ValueError(f"{type(model).__name__}: v_leak must lie below v_threshold for the "
                         "adjoint path (a neuron resting above threshold fires by itself)")
    if cuba and not spiking and bool((model.r == 0).any()):
        raise ValueError("CubaLI: r must be non-zero")
    return Neurons(
        model=model, n=model.n, cuba=cuba, spiking=spiking,
        tau_m=model.tau_mem.detach(), tau_s=model.tau_syn.detach() if cuba else None,
        r=model.r.detach(), v_leak=model.v_leak.detach(),
        v_th=model.v_threshold.detach() if spiking else None,
        v_reset=model.v_reset.detach() if spiking else None,
    )


def tau_dtypes(tau_m: Tensor | None, tau_s: Tensor | None) -> tuple:
    """The dtypes of the time-constant inputs of an autograd function (``None`` if absent)."""
    return tuple(None if t is None else t.dtype for t in (tau_m, tau_s))


def as_tau_dtypes(grads: tuple, dtypes: tuple) -> tuple:
    """Time-constant gradients (computed in the layer's dtype) cast to their parameters'."""
    return tuple(g if g is None or d is None else g.to(d)
                 for g, d in zip(grads, dtypes, strict=True))


# =========================================================================== closed forms
def phi1(x: Tensor) -> Tensor:
    """``(1 - e^{-x}) / x`` (1 at 0), without cancellation, differentiable at 0."""
    return expm1_ratio(-x)


#: ``tau_s/(tau_m - tau_s) (e^{-h/tau_m} - e^{-h/tau_s})``: the voltage response ``r kappa(h)``
#: to a unit jump of ``I`` at time 0 (:func:`ctsnn.models.exponentials.coupled_response`)
kappa = coupled_response


def q_decay(h: Tensor, beta: Tensor) -> Tensor:
    """``∫_0^h e^{-u beta} du`` (seconds)."""
    return h * phi1(h * beta)


def divided_q(h: Tensor, b1: Tensor, b2: Tensor) -> Tensor:
    """``∫_0^h (e^{-u b1} - e^{-u b2}) / (b2 - b1) du`` for rates ``b1, b2 > 0``: the triple
    convolution ``(E_0 * E_b1 * E_b2)(h) = h^2 exp[0, -h b1, -h b2]`` (exact for equal and
    nearly equal rates)."""
    return h * h * dd_exp(torch.zeros_like(h * b1), -h * b1, -h * b2)


_TAYLOR_TERMS = 20  # Taylor terms of a divided difference whose points spread less than 1


def _dd_taylor(x: Tensor) -> Tensor:
    """``exp[x_0, ..., x_{n-1}]`` (``x`` is ``[n, ...]``) by the Taylor series about the centre
    ``c``: ``e^c Σ_j h_j(x - c) / (j + n - 1)!`` (``h_j`` complete homogeneous polynomials)."""
    n = x.shape[0]
    c = 0.5 * (x.min(0).values + x.max(0).values)
    d = x - c
    h = [torch.ones_like(c)] + [torch.zeros_like(c)] * _TAYLOR_TERMS  # h_j of no variable
    for k in range(n):  # add variable k: h_j <- h_j + d_k h_{j-1} (in increasing j)
        for j in range(1, _TAYLOR_TERMS + 1):
            h[j] = h[j] + d[k] * h[j - 1]
    total = torch.zeros_like(c)
    for j in range(_TAYLOR_TERMS, -1, -1):
        total = total + h[j] * (1.0 / math.factorial(j + n - 1))
    return torch.exp(c) * total


def dd_exp(*xs: Tensor) -> Tensor:
    """Divided difference ``exp[x_0, ..., x_{n-1}]`` (elementwise, ``1 <= n <= 4``; repeated
    points allowed), e.g. ``exp[a, b] = (e^b - e^a)/(b - a)``, ``exp[a, a] = e^a``.

    The convolution of exponentials ``E_a * E_b * ...`` (``E_a(u) = e^{-a u}``, ``n`` factors)
    at ``h`` is ``h^{n-1} exp[-a h, -b h, ...]``. Points that spread by less than 1 use the
    Taylor series (no cancellation), others the recursion on the extreme points (sorted)."""
    if len(xs) == 1:
        return torch.exp(xs[0])
    x = torch.stack(torch.broadcast_tensors(*xs)).sort(0).values
    spread = x[-1] - x[0]
    close = spread < 1.0
    taylor = _dd_taylor(x)
    if bool(close.all()):
        return taylor
    rec = (dd_exp(*x[1:]) - dd_exp(*x[:-1])) / torch.where(close, torch.ones_like(spread), spread)
    return torch.where(close, taylor, rec)




def propagate(nrn: Neurons, n: Tensor, lam_v: Tensor, lam_i: Tensor | None,
               h: Tensor) -> tuple[Tensor, Tensor | None]:
    """Adjoint at ``t`` from its value at ``t + h`` (``h >= 0``) without drive: ``e^{A^T h}``."""
    tau_m = nrn.tau_m[n]
    v = torch.exp(-h / tau_m) * lam_v
    if not nrn.cuba:
        return v, None
    tau_s = nrn.tau_s[n]
    i = torch.exp(-h / tau_s) * lam_i + nrn.r[n] * kappa(h, tau_m, tau_s) * lam_v
    return v, i


# =========================================================================== sorting and scans
def segment_order(seg: Tensor, time: Tensor) -> Tensor:
    """Stable permutation sorting by ``(seg, time)``; ties keep their input order."""
    o = torch.argsort(time, stable=True)
    return o[torch.argsort(seg[o], stable=True)]


def linear_scan(decay: Tensor, x: Tensor) -> Tensor:
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


def same_prev(seg_sorted: Tensor) -> Tensor:
    """``[M]`` bool: element ``q`` has the same segment as ``q - 1``."""
    same = torch.zeros_like(seg_sorted, dtype=torch.bool)
    if seg_sorted.numel() > 1:
        same[1:] = seg_sorted[1:] == seg_sorted[:-1]
    return same


def decay_prev(seg: Tensor, t: Tensor, rate: Tensor) -> Tensor:
    """``e^{-(t[q] - t[q-1]) rate[q]}`` within a segment, 0 at segment starts (sorted input)."""
    d = torch.zeros_like(t)
    if t.numel() > 1:
        d[1:] = torch.exp(-(t[1:] - t[:-1]) * rate[1:])
    return torch.where(same_prev(seg), d, torch.zeros_like(d))


def reverse_tail(seg: Tensor, t: Tensor, rate: Tensor, j: Tensor) -> Tensor:
    """``tail[q] = j[q] + e^{-(t[q+1] - t[q]) rate} tail[q+1]`` within segments (sorted input)."""
    same_next = torch.zeros_like(seg, dtype=torch.bool)
    dec = torch.zeros_like(t)
    if t.numel() > 1:
        same_next[:-1] = seg[1:] == seg[:-1]
        dec[:-1] = torch.exp(-(t[1:] - t[:-1]) * rate[:-1])
    dec = torch.where(same_next, dec, torch.zeros_like(dec))
    return linear_scan(dec.flip(0), j.flip(0)).flip(0)


def next_marked(marked: Tensor) -> Tensor:
    """For every position, the first marked position at or after it (``len`` if none)."""
    m = marked.numel()
    idx = torch.arange(m, device=marked.device)
    cand = torch.where(marked, idx, torch.full_like(idx, m))
    if m == 0:
        return cand
    return torch.cummin(cand.flip(0), 0).values.flip(0)


# =========================================================================== events and pairs
@dataclass
class LayerConfig:
    """What a layer pass needs besides its tensors (no tensors here grow with T)."""

    nrn: Neurons
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
class Pairs:
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


def make_pairs(cfg: LayerConfig, ev: Tensor, t_in: Tensor, b_in: Tensor, j_in: Tensor, v_in: Tensor,
           weight: Tensor, delay: Tensor | None) -> Pairs:
    n = cfg.nrn.n
    src = ev.repeat_interleave(n)
    tgt = torch.arange(n, device=ev.device).repeat(ev.numel())
    j = j_in[src]
    s = t_in[src] if delay is None else t_in[src] + delay[tgt, j]
    keep = s <= cfg.t_end
    src, tgt, j, s = src[keep], tgt[keep], j[keep], s[keep]
    return Pairs(src=src, tgt=tgt, j=j, seg=b_in[src] * n + tgt, s=s, w=weight[tgt, j],
                  a=v_in[src])


def batch_chunks(cfg: LayerConfig, b_in: Tensor) -> list[tuple[int, int, Tensor]]:
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


class PairGrads:
    """Accumulators of ``dL/dW``, ``dL/dD``, ``dL/d(input times)`` and ``dL/d(amplitudes)``."""

    def __init__(self, weight: Tensor, delay: Tensor | None, n_events: int, need: tuple) -> None:
        self.need_t, self.need_w, self.need_d, self.need_a = need
        self.n_in = weight.shape[1]
        self.w = torch.zeros_like(weight).reshape(-1) if self.need_w else None
        self.d = (torch.zeros_like(weight).reshape(-1)
                  if self.need_d and delay is not None else None)
        self.t = weight.new_zeros(n_events) if self.need_t else None
        self.a = weight.new_zeros(n_events) if self.need_a else None

    def add(self, p: Pairs, dj: Tensor, ds: Tensor) -> None:
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


def pair_rates(nrn: Neurons, p: Pairs, lam_v: Tensor, lam_i: Tensor | None) -> tuple:
    """``(dL/dJ, dL/ds)`` of each pair from the adjoint just after its arrival (no drive)."""
    if nrn.cuba:
        rate = lam_i / nrn.tau_s[p.tgt] - nrn.r[p.tgt] * lam_v / nrn.tau_m[p.tgt]
        return lam_i, p.x * rate
    return lam_v, p.x * lam_v / nrn.tau_m[p.tgt]
