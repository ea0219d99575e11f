"""Closed-form EventProp of spiking layers (LIF / CubaLIF): forward through the engine,
adjoint jumps at output spikes, gradients at input arrivals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ...compiled import kernels_enabled
from ...engine import run_population
from ...engine.compiled.event_driven import event_driven_refusal, run_event_driven
from ...spikes import Spikes
from ...synapses import Arrivals, DelayedArrivals
from . import kernels
from .common import (
    LayerConfig,
    PairGrads,
    Pairs,
    as_tau_dtypes,
    batch_chunks,
    decay_prev,
    kappa,
    linear_scan,
    make_pairs,
    next_marked,
    pair_rates,
    propagate,
    same_prev,
    segment_order,
    tau_dtypes,
)
from .taus import piece_terms


# =========================================================================== spiking layers
def _in_spikes_order(times: Tensor, units: Tensor, batch: Tensor) -> bool:
    """Whether events ``[E]`` are in :class:`Spikes` order (by batch, then time, then unit):
    one vectorised pass instead of the three stable sorts of the validating constructor."""
    if times.numel() < 2:
        return True
    t = times.detach()
    db, dtm, du = batch[1:] - batch[:-1], t[1:] - t[:-1], units[1:] - units[:-1]
    ok = (db > 0) | ((db == 0) & ((dtm > 0) | ((dtm == 0) & (du >= 0))))
    return bool(ok.all())


def _engine_spikes(cfg: LayerConfig, t_in: Tensor, b_in: Tensor, j_in: Tensor, v_in: Tensor,
                   weight: Tensor, delay: Tensor | None
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Output spikes ``(times, batch, units)`` ``[K]`` of the layer from the continuous engine
    (exact spike times, in :class:`Spikes` order), and the synaptic current just before each
    spike when the compiled event-driven engine ran (it gives it for free; ``None`` otherwise:
    :func:`_current_at_spikes` computes it). ``weight`` and ``delay`` were validated by
    :func:`ctsnn.gradients.eventprop.layer_forward`: the schedule is built from them directly."""
    kw = {"dt": cfg.dt, "n_steps": cfg.n_steps, "batch_size": cfg.batch_size,
          "n_units": cfg.n_in}
    if _in_spikes_order(t_in, j_in, b_in):  # (they come from a Spikes: checked, only the dtype
        spikes = Spikes.from_sorted_events(t_in, j_in, b_in, values=v_in, **kw)  # may differ)
    else:
        spikes = Spikes(t_in, j_in, b_in, v_in, **kw)
    # the schedule Dense(weight, delay).arrivals(spikes) builds, without the module's copies
    arrivals = (Arrivals(spikes, weight) if delay is None else
                DelayedArrivals(spikes, weight, delay))
    model = cfg.nrn.model
    if event_driven_refusal(model, time="continuous", method="exact", arrivals=arrivals,
                            dt=cfg.dt, n_steps=cfg.n_steps, current=None, jumps=None,
                            recurrent=None, record=(), saveat=None, integrand=None, state=None,
                            dtype=weight.dtype) is None:
        out = run_event_driven(model, arrivals, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                               state=None, dtype=weight.dtype)
        return out.times, out.batch, out.units, out.current
    res = run_population(model, dt=cfg.dt, n_steps=cfg.n_steps,
                         batch_size=cfg.batch_size, arrivals=arrivals,
                         time="continuous", method="exact", dtype=weight.dtype,
                         device=weight.device, xtol=cfg.xtol)
    return res.spikes.times, res.spikes.batch, res.spikes.units, None


def _current_at_spikes(cfg: LayerConfig, tensors: tuple, t_out: Tensor, b_out: Tensor,
                       n_out: Tensor) -> Tensor:
    """``I(t_k^-)`` ``[K]`` of every output spike: the arrivals strictly before it, filtered."""
    t_in, b_in, j_in, v_in, weight, delay = tensors
    nrn = cfg.nrn
    current = t_out.new_zeros(t_out.numel())
    seg_out = b_out * nrn.n + n_out
    for b0, b1, ev in batch_chunks(cfg, b_in):
        k = ((b_out >= b0) & (b_out < b1)).nonzero().squeeze(1)
        if k.numel() == 0 or ev.numel() == 0:
            continue
        p = make_pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
        seg = torch.cat([seg_out[k], p.seg])
        time = torch.cat([t_out[k], p.s])  # spikes first: equal-time arrivals come after
        x = torch.cat([t_out.new_zeros(k.numel()), p.x])
        rate = 1.0 / nrn.tau_s[torch.cat([n_out[k], p.tgt])]
        o = segment_order(seg, time)
        y = linear_scan(decay_prev(seg[o], time[o], rate[o]), x[o])
        val = torch.empty_like(y)
        val[o] = y
        current[k] = val[: k.numel()]
    return current


def reg_jumps(cfg: LayerConfig, n_out: Tensor, dtype: torch.dtype) -> Tensor:
    """``[K]`` the spike-count regulariser's ``dL/dV`` jump at each output spike (0 without)."""
    if cfg.spike_reg is None or n_out.numel() == 0:
        return torch.zeros(n_out.numel(), dtype=dtype, device=n_out.device)
    strength, target = cfg.spike_reg
    mean_count = torch.bincount(n_out, minlength=cfg.nrn.n).to(dtype) / cfg.batch_size
    return strength * (mean_count[n_out] - target) / cfg.batch_size


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


def _spike_adjoints(cfg: LayerConfig, t_out: Tensor, b_out: Tensor, n_out: Tensor,
                    current: Tensor, g_t: Tensor) -> _SpikeAdjoint:
    """Backward recursion over each neuron's spikes (latest first), vectorised over neurons."""
    nrn = cfg.nrn
    seg_all = b_out * nrn.n + n_out
    order = segment_order(seg_all, t_out)
    seg, t, n = seg_all[order], t_out[order], n_out[order]
    g = g_t[order]
    k_count = t.numel()
    reg = reg_jumps(cfg, n_out, t_out.dtype)[order]
    v_minus, v_plus = torch.zeros_like(t), torch.zeros_like(t)
    i_minus = torch.zeros_like(t) if nrn.cuba else None
    idx = torch.arange(k_count, device=t.device)
    same_next = torch.zeros(k_count, dtype=torch.bool, device=t.device)
    if k_count > 1:
        same_next[:-1] = seg[1:] == seg[:-1]
    rank_end = next_marked(~same_next) - idx  # 0 for each neuron's last spike
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
            vp, ip = propagate(nrn, n[p], v_minus[nx], i_minus[nx] if nrn.cuba else None,
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


def _spiking_backward(cfg: LayerConfig, saved: tuple, g_t: Tensor | None, need: tuple,
                      need_tau: tuple[bool, bool] = (False, False)) -> tuple:
    """``(dL/dt_in, dL/dW, dL/dD, dL/da, dL/dtau_mem, dL/dtau_syn)`` (``None`` where not
    needed): the compiled kernels where enabled, else this reference."""
    t_in, weight, delay, b_in, j_in, v_in, t_out, b_out, n_out, current = saved
    nrn = cfg.nrn
    if g_t is None:
        g_t = torch.zeros_like(t_out)
    if kernels_enabled(t_in, weight, t_out):
        reg = (reg_jumps(cfg, n_out, t_out.dtype) if cfg.spike_reg is not None
               else t_out.new_zeros(0))  # (no regulariser: the kernel reads none)
        return kernels.spiking_backward(cfg, saved, g_t, need, reg, need_tau)
    grads = PairGrads(weight, delay, t_in.numel(), need)
    taus = _tau_grads(cfg, saved, g_t, need_tau) if any(need_tau) else (None, None)
    if t_out.numel() == 0:  # a silent layer: nothing downstream depends on its inputs
        return (*grads.result(weight), *taus)
    adj = _spike_adjoints(cfg, t_out, b_out, n_out, current, g_t)
    g_sorted = g_t[adj.order]
    tol = 256 * torch.finfo(t_out.dtype).eps * max(cfg.t_end, cfg.dt)
    for b0, b1, ev in batch_chunks(cfg, b_in):
        if ev.numel() == 0:
            continue
        p = make_pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
        k0 = int(torch.searchsorted(adj.seg, b0 * nrn.n))
        k1 = int(torch.searchsorted(adj.seg, b1 * nrn.n))
        nk = k1 - k0
        seg = torch.cat([adj.seg[k0:k1], p.seg])
        time = torch.cat([adj.t[k0:k1], p.s])  # spikes sort before equal-time arrivals
        o = segment_order(seg, time)
        seg_o = seg[o]
        m = o.numel()
        is_spike = o < nk
        nxt = next_marked(is_spike)
        pos = (~is_spike).nonzero().squeeze(1)
        pid = o[pos] - nk  # pair index of each sorted pair position
        nx = nxt[pos]
        nxc = nx.clamp(max=max(m - 1, 0))
        valid = (nx < m) & (seg_o[nxc] == seg_o[pos])
        k = torch.where(valid, k0 + o[nxc], torch.zeros_like(nx))
        lam_v = torch.zeros_like(p.s)
        lam_i = torch.zeros_like(p.s) if nrn.cuba else None
        h = (adj.t[k] - p.s[pid]).clamp(min=0)
        vv, ii = propagate(nrn, p.tgt[pid], adj.v_minus[k],
                            adj.i_minus[k] if nrn.cuba else None, h)
        lam_v[pid] = torch.where(valid, vv, torch.zeros_like(vv))
        if nrn.cuba:
            lam_i[pid] = torch.where(valid, ii, torch.zeros_like(ii))
        dj, ds = pair_rates(nrn, p, lam_v, lam_i)
        if not nrn.cuba and nk:
            dj, ds = _lif_triggers(cfg, adj, p, o, seg_o, time, nk, k0, g_sorted, dj, ds, tol)
        grads.add(p, dj, ds)
    return (*grads.result(weight), *taus)


def _lif_triggers(cfg: LayerConfig, adj: _SpikeAdjoint, p: Pairs, o: Tensor, seg_o: Tensor,
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


def _tau_grads(cfg: LayerConfig, saved: tuple, g_t: Tensor,
               need: tuple[bool, bool]) -> tuple[Tensor | None, Tensor | None]:
    """``(dL/dtau_mem, dL/dtau_syn)`` ``[N]``: ``∫ lam . df/dtau dt`` over every piece between
    consecutive events (arrivals and output spikes) of every neuron and sample, closed form
    (:func:`.taus.piece_terms`) from the state after the piece's first event and the adjoint
    before its last. ``None`` where not ``need``-ed."""
    t_in, weight, delay, b_in, j_in, v_in, t_out, b_out, n_out, current = saved
    nrn = cfg.nrn
    g_m = t_out.new_zeros(nrn.n) if need[0] else None
    g_s = t_out.new_zeros(nrn.n) if need[1] and nrn.cuba else None
    if t_out.numel() == 0 or not (g_m is not None or g_s is not None):
        return g_m, g_s  # a silent layer: lam = 0
    adj = _spike_adjoints(cfg, t_out, b_out, n_out, current, g_t)
    for b0, b1, ev in batch_chunks(cfg, b_in):
        k0 = int(torch.searchsorted(adj.seg, b0 * nrn.n))
        k1 = int(torch.searchsorted(adj.seg, b1 * nrn.n))
        if ev.numel() == 0 or k1 == k0:
            continue
        p = make_pairs(cfg, ev, t_in, b_in, j_in, v_in, weight, delay)
        _add_piece_terms(cfg, adj, p, k0, k1, g_m, g_s)
    return g_m, g_s


def _add_piece_terms(cfg: LayerConfig, adj: _SpikeAdjoint, p: Pairs, k0: int, k1: int,
                     g_m: Tensor | None, g_s: Tensor | None) -> None:
    """One batch chunk of :func:`_tau_grads`: merge spikes and arrivals per neuron (CubaLIF:
    a spike sorts before an equal-time arrival; LIF: after, the arrival fires it), the state
    after every event by two scans, the adjoint before it from the next spike."""
    nrn = cfg.nrn
    nk, npair = k1 - k0, p.s.numel()
    ks = torch.arange(k0, k1, device=p.s.device)
    spk = [torch.ones(nk, dtype=torch.bool, device=ks.device),
           torch.zeros(npair, dtype=torch.bool, device=ks.device)]
    parts = [(adj.seg[ks], p.seg), (adj.t[ks], p.s), (adj.n[ks], p.tgt),
             (torch.zeros_like(adj.t[ks]), p.x), spk, (ks - k0, torch.full_like(p.tgt, -1))]
    first = 0 if nrn.cuba else 1  # which block sorts first at equal times
    seg, t, n, x, is_spk, kloc = (torch.cat([a, b] if first == 0 else [b, a]) for a, b in parts)
    o = segment_order(seg, t)
    seg, t, n, x, is_spk, kloc = seg[o], t[o], n[o], x[o], is_spk[o], kloc[o]
    m = t.numel()
    same = same_prev(seg)
    h_prev = torch.zeros_like(t)
    h_prev[1:] = t[1:] - t[:-1]
    h_prev = torch.where(same, h_prev, torch.zeros_like(h_prev))
    reset = nrn.v_reset[n] - nrn.v_leak[n]
    if nrn.cuba:
        i_after = linear_scan(decay_prev(seg, t, 1.0 / nrn.tau_s[n]), x)
        i_prev = torch.zeros_like(t)
        i_prev[1:] = i_after[:-1]
        drive = nrn.r[n] * kappa(h_prev, nrn.tau_m[n], nrn.tau_s[n]) * i_prev * same
    else:
        i_after, drive = None, x
    dec = torch.where(is_spk, torch.zeros_like(t), decay_prev(seg, t, 1.0 / nrn.tau_m[n]))
    y_after = linear_scan(dec, torch.where(is_spk, reset, drive))
    # adjoint just before every event: propagated from the next spike at or after it
    nxt = next_marked(is_spk)
    nxc = nxt.clamp(max=m - 1)
    valid = (nxt < m) & (seg[nxc] == seg)
    kk = k0 + torch.where(valid, kloc[nxc], torch.zeros_like(nxc))
    lv, li = propagate(nrn, n, adj.v_minus[kk], adj.i_minus[kk] if nrn.cuba else None,
                       (t[nxc] - t).clamp(min=0))
    lv = torch.where(valid, lv, torch.zeros_like(lv))
    li = torch.where(valid, li, torch.zeros_like(li)) if nrn.cuba else None
    # piece q -> q + 1 (same neuron and sample)
    has = torch.zeros_like(same)
    has[:-1] = same[1:]
    q = has.nonzero().squeeze(1)
    jm, js = piece_terms(nrn, n[q], t[q + 1] - t[q], y_after[q],
                         i_after[q] if nrn.cuba else None, lv[q + 1],
                         li[q + 1] if nrn.cuba else None)
    if g_m is not None:
        g_m.index_add_(0, n[q], jm)
    if g_s is not None:
        g_s.index_add_(0, n[q], js)


class SpikingLayerFn(torch.autograd.Function):
    """Input spike times, W, D -> output spike times (exact), adjoint backward."""

    @staticmethod
    def forward(ctx: Any, t_in: Tensor, weight: Tensor, delay: Tensor | None, b_in: Tensor,
                j_in: Tensor, v_in: Tensor, cfg: LayerConfig, tau_m: Tensor | None = None,
                tau_s: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        ctx.tau_dtypes = tau_dtypes(tau_m, tau_s)  # (inputs so autograd routes their gradients;
        # cfg.nrn has the values)
        t_out, b_out, n_out, current = _engine_spikes(cfg, t_in, b_in, j_in, v_in, weight,
                                                      delay)
        if not cfg.nrn.cuba:
            current = t_out.new_zeros(0)
        elif current is None:  # (the compiled forward saves I(t_k^-) as it goes)
            current = _current_at_spikes(cfg, (t_in, b_in, j_in, v_in, weight, delay), t_out,
                                         b_out, n_out)
        ctx.save_for_backward(t_in, weight, delay, b_in, j_in, v_in, t_out, b_out, n_out,
                              current)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(b_out, n_out)
        # no zero-filled int64 gradients [K] for the index outputs (16 B per spike at the
        # backward's start); an unused time output arrives as None (zeros below)
        ctx.set_materialize_grads(False)
        return t_out, b_out, n_out

    @staticmethod
    def backward(ctx: Any, g_t: Tensor | None, _gb: Any, _gn: Any) -> tuple:
        need = tuple(ctx.needs_input_grad[i] for i in (0, 1, 2, 5))
        need_tau = (ctx.needs_input_grad[7], ctx.needs_input_grad[8])
        g_tin, g_w, g_d, g_a, g_m, g_s = _spiking_backward(ctx.cfg, ctx.saved_tensors, g_t,
                                                           need, need_tau)
        return (g_tin, g_w, g_d, None, None, g_a, None,
                *as_tau_dtypes((g_m, g_s), ctx.tau_dtypes))
