"""Closed-form EventProp of readout layers (LI / CubaLI): avg_exp, sum, max and integrand
readouts and their adjoints."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...compiled import kernels_enabled
from . import kernels
from .common import (
    GL_W,
    GL_X,
    LayerConfig,
    PairGrads,
    Pairs,
    as_tau_dtypes,
    batch_chunks,
    decay_prev,
    divided_q,
    linear_scan,
    make_pairs,
    pair_rates,
    propagate,
    q_decay,
    reverse_tail,
    same_prev,
    segment_order,
    tau_dtypes,
)
from .taus import linear_response_terms, response_terms


# =========================================================================== readouts
def _linear_kernel(cfg: LayerConfig) -> tuple[float, float]:
    """``(alpha, 1/tau_w)`` of the readout weight ``k(t) = alpha e^{-t/tau_w}``."""
    if cfg.readout == "avg_exp":
        return 1.0 / cfg.t_end, 1.0 / cfg.t_end
    return 1.0 / cfg.dt, 0.0  # "sum"


def _linear_response(cfg: LayerConfig, p: Pairs) -> tuple[Tensor, Tensor, Tensor]:
    """Per pair: ``R_target(s) = ∫_s^T k(u) psi(u - s) du`` (the response of z to a unit jump),
    ``R_V(s) = ∫_s^T k(u) e^{-(u-s)/tau_m} du`` and ``k(s)``."""
    nrn = cfg.nrn
    alpha, inv_w = _linear_kernel(cfg)
    h = cfg.t_end - p.s
    ks = alpha * torch.exp(-p.s * inv_w)
    rate_m = 1.0 / nrn.tau_m[p.tgt]
    r_v = ks * q_decay(h, rate_m + inv_w)
    if not nrn.cuba:
        return r_v, r_v, ks
    rate_s = 1.0 / nrn.tau_s[p.tgt]
    r_i = ks * nrn.r[p.tgt] * rate_m * divided_q(h, rate_m + inv_w, rate_s + inv_w)
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


def _filtered(cfg: LayerConfig, p: Pairs) -> _Filtered:
    """Exponential filters ``F_tau(s^+) = Σ_{s' <= s} x e^{-(s - s')/tau}`` at the arrivals.

    The readout voltage is ``V = v_leak + Σ_modes c F`` (LI: one mode ``tau_m``, ``c = 1``;
    CubaLI: ``tau_s`` and ``tau_m`` with ``c = ± r tau_s/(tau_s - tau_m)``), ``I = F_{tau_s}``.
    """
    nrn = cfg.nrn
    o = segment_order(p.seg, p.s)
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
    modes = [(rate, c, linear_scan(decay_prev(seg, s, rate), x))
             for rate, c in zip(rates, coefs, strict=True)]
    return _Filtered(o=o, seg=seg, s=s, tgt=tgt, x=x, modes=modes)


def _max_forward(cfg: LayerConfig, p: Pairs, b0: int, b1: int, out: dict) -> None:
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
        # Arrivals at one instant jump together: V takes only the left limit before the first
        # of them and the value after the last, never a state between two of their jumps.
        tied_next = same_next & (length == 0)
        tied_prev = torch.zeros_like(tied_next)
        tied_prev[1:] = tied_next[:-1]
        for side, val, vdot, ok in ((-1, v_minus, vdot_minus, ~tied_prev),
                                    (1, v_plus, vdot_plus, ~tied_next)):
            cand_seg.append(f.seg[ok])
            cand_val.append(val[ok])
            cand_t.append(f.s[ok])
            cand_side.append(zero[ok] + side)
            cand_src.append(src_sorted[ok])
            cand_vdot.append(vdot[ok])
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


def _max_backward(cfg: LayerConfig, p: Pairs, g: Tensor, t_star: Tensor, side: Tensor,
                  pin_src: Tensor, vdot: Tensor) -> tuple[Tensor, Tensor]:
    """Point drive ``g`` at ``t*``: ``lam(s) = g e^{A^T (t* - s)} e_V`` for arrivals before it,
    plus ``g V'(t*)`` for the arrival ``t*`` is pinned to (a kink of V)."""
    nrn = cfg.nrn
    ts, sd, gs = t_star[p.seg], side[p.seg], g[p.seg]
    before = (p.s < ts) | ((p.s == ts) & (sd > 0))
    h = (ts - p.s).clamp(min=0)
    lam_v = torch.where(before, gs, torch.zeros_like(gs))
    lam_i = torch.zeros_like(lam_v) if nrn.cuba else None
    lam_v, lam_i = propagate(nrn, p.tgt, lam_v, lam_i, h)
    dj, ds = pair_rates(nrn, p, lam_v, lam_i)
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


def _pieces(cfg: LayerConfig, p: Pairs, b0: int, b1: int) -> _Pieces:
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
    merged = Pairs(
        src=torch.cat([p.src, torch.full_like(g_seg, -1)]), tgt=torch.cat([p.tgt, g_tgt]),
        j=torch.cat([p.j, torch.zeros_like(g_seg)]), seg=torch.cat([p.seg, g_seg]),
        s=torch.cat([p.s, g_t]), w=torch.cat([p.w, torch.zeros_like(g_t)]),
        a=torch.cat([p.a, torch.zeros_like(g_t)]),
    )
    f = _filtered(cfg, merged)  # arrivals sort before grid points at the same time
    m = f.s.numel()
    ids = torch.arange(m, device=dev)
    pair_id = torch.where(f.o < p.s.numel(), f.o, torch.full_like(f.o, -1))
    start = torch.cummax(torch.where(~same_prev(f.seg), ids, torch.zeros_like(ids)), 0).values
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


def _piece_rates(cfg: LayerConfig) -> list[Tensor]:
    nrn = cfg.nrn
    return [1.0 / nrn.tau_s, 1.0 / nrn.tau_m] if nrn.cuba else [1.0 / nrn.tau_m]


def _piece_state(cfg: LayerConfig, pc: _Pieces, u: Tensor, a: Tensor, fv: list[Tensor]) -> tuple:
    """Readout state at times ``u`` from the filters ``fv`` at the piece starts ``a``."""
    nrn = cfg.nrn
    rates = _piece_rates(cfg)
    decays = [f * torch.exp(-(u - a) * rate) for f, rate in zip(fv, rates, strict=True)]
    if nrn.cuba:
        c = nrn.r * nrn.tau_s / (nrn.tau_s - nrn.tau_m)
        v = nrn.v_leak + c * (decays[0] - decays[1])
        return nrn.model.State(v=v, i=decays[0])
    return nrn.model.State(v=nrn.v_leak + decays[0])


def _integrand_nodes(cfg: LayerConfig, pc: _Pieces) -> tuple[Tensor, Tensor, Tensor, list]:
    """Gauss-Legendre nodes ``u`` and weights ``[R, 8, Bc, N]`` of every piece."""
    x = GL_X.to(pc.a).reshape(1, -1, 1, 1)
    wq = GL_W.to(pc.a).reshape(1, -1, 1, 1)
    a, h = pc.a.unsqueeze(1), pc.h.unsqueeze(1)
    u = a + 0.5 * h * (x + 1.0)
    return u, 0.5 * h * wq, a, [f.unsqueeze(1) for f in pc.fv]


def _integrand_forward(cfg: LayerConfig, p: Pairs, b0: int, b1: int) -> Tensor:
    pc = _pieces(cfg, p, b0, b1)
    u, wq, a, fv = _integrand_nodes(cfg, pc)
    vals = cfg.integrand(u, _piece_state(cfg, pc, u, a, fv))
    return (torch.where(wq != 0, wq * vals, torch.zeros_like(wq))).sum(dim=(0, 1))


def _integrand_backward(cfg: LayerConfig, p: Pairs, g: Tensor, b0: int,
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
        return reverse_tail(f.seg, f.s, rate[f.tgt], j)[sel]

    tgt = p.tgt[pid]
    lam_v = torch.zeros_like(p.s)
    lam_v[pid] = tail(grads[0], 1.0 / nrn.tau_m)
    lam_i = None
    if nrn.cuba:
        c = nrn.r[tgt] * nrn.tau_s[tgt] / (nrn.tau_s[tgt] - nrn.tau_m[tgt])
        lam_i = torch.zeros_like(p.s)
        lam_i[pid] = (c * (tail(grads[0], 1.0 / nrn.tau_s) - lam_v[pid])
                      + tail(grads[1], 1.0 / nrn.tau_s))
    dj, ds = pair_rates(nrn, p, lam_v, lam_i)
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


def _tau_grads(cfg: LayerConfig, saved: tuple, g_z: Tensor,
               need: tuple[bool, bool]) -> tuple[Tensor | None, Tensor | None]:
    """``(dL/dtau_mem, dL/dtau_syn)`` ``[N]`` of a readout layer: ``z`` is linear in the jumps,
    ``z = v_leak-part + Σ_pairs x R(s)`` (``avg_exp`` / ``sum``) or ``V(t*) = v_leak +
    Σ_{s before t*} x psi(t* - s)`` (``max``, where ``t*`` does not move to first order: ``V' = 0``
    there or it is pinned to an arrival or an end), so ``dz/dtau`` is the sum of the closed-form
    derivatives of the responses (:mod:`.taus`)."""
    t_in, weight, delay, b_in, j_in, v_in, *keep = saved
    nrn = cfg.nrn
    g_m = weight.new_zeros(nrn.n) if need[0] else None
    g_s = weight.new_zeros(nrn.n) if need[1] and nrn.cuba else None
    g = g_z.reshape(-1).to(weight.dtype)
    for _, _, ev in batch_chunks(cfg, b_in):
        if ev.numel() == 0:
            continue
        p = make_pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
        if cfg.readout == "max":
            t_star, side = keep[0][p.seg], keep[1][p.seg]
            before = (p.s < t_star) | ((p.s == t_star) & (side > 0))
            dm, ds = response_terms(nrn, p.tgt, (t_star - p.s).clamp(min=0))
            coef = torch.where(before, g[p.seg] * p.x, torch.zeros_like(p.x))
        else:
            alpha, inv_w = _linear_kernel(cfg)
            dm, ds = linear_response_terms(nrn, p.tgt, p.s, cfg.t_end, alpha, inv_w)
            coef = g[p.seg] * p.x
        if g_m is not None:
            g_m.index_add_(0, p.tgt, coef * dm)
        if g_s is not None:
            g_s.index_add_(0, p.tgt, coef * ds)
    return g_m, g_s


class ReadoutFn(torch.autograd.Function):
    """Input spike times, W, D -> readout ``z [B, N]`` of a non-spiking layer."""

    @staticmethod
    def forward(ctx: Any, t_in: Tensor, weight: Tensor, delay: Tensor | None, b_in: Tensor,
                j_in: Tensor, v_in: Tensor, cfg: LayerConfig, tau_m: Tensor | None = None,
                tau_s: Tensor | None = None) -> Tensor:
        ctx.tau_dtypes = tau_dtypes(tau_m, tau_s)  # (inputs so autograd routes their gradients;
        # cfg.nrn has the values)
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
            base = alpha * q_decay(torch.tensor(cfg.t_end, dtype=dtype), torch.tensor(inv_w,
                                                                                   dtype=dtype))
            z += (nrn.v_leak * base).repeat(bsz)
        compiled = cfg.readout != "integrand" and kernels_enabled(t_in, weight)
        if compiled and cfg.readout == "max":
            z, extra = kernels.max_readout_forward(cfg, t_in, b_in, j_in, v_in, weight, delay)
            z = z.reshape(-1)
        elif compiled:
            alpha, inv_w = _linear_kernel(cfg)
            z += kernels.linear_readout_forward(cfg, t_in, b_in, j_in, v_in, weight, delay,
                                                alpha, inv_w).reshape(-1).to(z)
        for b0, b1, ev in () if compiled else batch_chunks(cfg, b_in):
            p = make_pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
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
        need_tau = (ctx.needs_input_grad[7], ctx.needs_input_grad[8])
        if cfg.readout != "integrand" and kernels_enabled(t_in, weight, g_z):
            lin = _linear_kernel(cfg) if cfg.readout != "max" else (0.0, 0.0)
            g_tin, g_w, g_d, g_a, *g_tau = kernels.readout_backward(
                cfg, ctx.saved_tensors, g_z, need, *lin, need_tau)
            return g_tin, g_w, g_d, None, None, g_a, None, *as_tau_dtypes(g_tau, ctx.tau_dtypes)
        g_tau = (_tau_grads(cfg, ctx.saved_tensors, g_z, need_tau) if any(need_tau)
                 else (None, None))
        grads = PairGrads(weight, delay, t_in.numel(), need)
        g = g_z.reshape(-1)
        for b0, b1, ev in batch_chunks(cfg, b_in):
            if ev.numel() == 0:
                continue
            p = make_pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
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
                    dj, ds = pair_rates(nrn, p, lam_v, lam_i)
                else:
                    lam_v = gp * r_v
                    dj = lam_v
                    ds = p.x * (lam_v / nrn.tau_m[p.tgt] - gp * ks)
            grads.add(p, dj, ds)
        g_tin, g_w, g_d, g_a = grads.result(weight)
        return g_tin, g_w, g_d, None, None, g_a, None, *as_tau_dtypes(g_tau, ctx.tau_dtypes)
