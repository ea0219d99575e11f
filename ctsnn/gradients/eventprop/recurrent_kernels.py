"""Compiled (numba) EventProp backward of recurrent spiking layers (``LIF`` / ``CubaLIF`` with
:class:`~ctsnn.synapses.RecurrentDense` delayed recurrence).

The equations are those of the feed-forward closed form (:mod:`.spiking`, derivation in
``docs/eventprop.md``); what recurrence adds is that an output spike ``k`` of neuron ``n`` at
``t_k`` is also an input: its arrival at neuron ``i`` at ``s = t_k + D^rec_in`` contributes

    dL/dW^rec_in += lam_I^i(s),      dL/dD^rec_in += x (lam_I^i/tau_s - r lam_V^i/tau_m),

(``x = W^rec_in``; for ``LIF`` ``lam_V`` and ``x lam_V/tau_m``) and the same ``dL/ds`` to the
incoming gradient ``G_k`` of the spike time, which the jump of ``lam_V`` at ``t_k`` needs. Every
arrival lands at or after the spike that sent it, so each sample's spikes are processed in
decreasing time: when spike ``k`` is reached, every later spike (of every neuron) has its
adjoints, so ``G_k`` is complete.

Per sample the kernel (1) rebuilds, per neuron, the synaptic current just before each of its
spikes from the external and recurrent arrivals (and, for ``LIF``, the arrival whose jump fired
each spike); (2) walks the sample's spikes in decreasing time, summing ``G_k`` over the
spike's recurrent arrivals and setting the spike's adjoint jump; (3) gives every external
arrival its gradients, as the feed-forward kernel does; (4) only when a time constant requires
grad, walks each neuron's arrivals and spikes in time order and sums the closed-form
``∫ lam . df/dtau`` of every piece (:func:`.tau_kernels.neuron_tau_terms`). Memory is the
spikes, per-spike adjoints and one neuron's arrivals: flat in the number of time steps.
Arrival times are snapped to the grid as the engine and the reference backward snap them
(:func:`ctsnn.synapses.snap_to_grid`).

Refused (the caller then runs the reference, :func:`ctsnn.gradients.adjoint.adjoint_layer`):
events that share an instant in a way the event times alone do not order — a ``LIF`` spike at
no arrival, fired by a zero-delay recurrent arrival (a cascade within one instant), or at several
arrivals when the layer has zero-delay arrivals (the reference decides those from the state);
two spikes of one neuron within ``tol = 256 eps max(T, dt)``.

One deliberate difference: a ``CubaLIF`` spike within ``tol`` of an arrival at its neuron
(a coincidence in float64; frequent in float32, where ``tol`` is ~30 us per second of ``T``)
is, as in the feed-forward closed form, a threshold crossing with the arrival after it (at the
same time) or before it; the generic reference takes such a spike as fired by the arrival's
jump, which a jump of ``I`` cannot do.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from .common import LayerConfig
from .kernels import kappa, spike_adjoint
from .tau_kernels import neuron_tau_terms

__all__ = ["recurrent_backward"]

#: kernel status: done, or why it refused (two spikes of one neuron at one instant; a spike at
#: an arrival's instant that is not the one LIF arrival firing it; a LIF spike fired by a
#: zero-delay recurrent arrival, i.e. a cascade within one instant)
OK, SAME_INSTANT, AT_ARRIVAL, CASCADE, NO_ARRIVAL = 0, 1, 2, 3, 4
REFUSALS = {SAME_INSTANT: "two spikes of one neuron at one instant",
            AT_ARRIVAL: "a LIF spike at several arrivals (or a zero jump) with zero-delay "
                        "arrivals in the layer",
            CASCADE: "a LIF spike fired by a zero-delay recurrent arrival",
            NO_ARRIVAL: "a LIF spike at no arrival"}

#: the reason of the last refusal (None: the last backward ran compiled); read by the tests
last_refusal: str | None = None


@numba.njit(cache=True, error_model="numpy")
def _snap(t: float, dt: float, ulps_eps: float) -> float:
    """``t`` moved onto the grid point ``k dt`` when within a few ulps of it (as the engine)."""
    grid = np.round(t / dt) * dt
    if abs(t - grid) <= ulps_eps * max(abs(grid), dt):
        return grid
    return t


@numba.njit(cache=True, error_model="numpy")
def _neuron_arrivals(b: int, n: int, n_units: int, e0: int, e1: int, ev_order: np.ndarray,
                     t_in: np.ndarray, j_in: np.ndarray, a_in: np.ndarray, weight: np.ndarray,
                     delay: np.ndarray, has_delay: bool, rec_w: np.ndarray, rec_d: np.ndarray,
                     sp_t: np.ndarray, sp_n: np.ndarray, sp_ptr: np.ndarray, dt: float,
                     ulps_eps: float, t_end: float, s_loc: np.ndarray, x_loc: np.ndarray,
                     id_loc: np.ndarray) -> int:
    """Arrivals at neuron ``n`` of sample ``b`` up to ``t_end``: time, jump and id (external
    event ``e >= 0``, or ``-1 - k`` for the recurrent arrival of sorted spike ``k``)."""
    m = 0
    for q in range(e0, e1):
        e = ev_order[q]
        s = _snap(t_in[e] + delay[n, j_in[e]], dt, ulps_eps) if has_delay else t_in[e]
        if s <= t_end:
            s_loc[m] = s
            x_loc[m] = weight[n, j_in[e]] * a_in[e]
            id_loc[m] = e
            m += 1
    for k in range(sp_ptr[b * n_units], sp_ptr[(b + 1) * n_units]):
        j = sp_n[k]
        s = _snap(sp_t[k] + rec_d[n, j], dt, ulps_eps)
        if s <= t_end:
            s_loc[m] = s
            x_loc[m] = rec_w[n, j]
            id_loc[m] = -1 - k
            m += 1
    return m


@numba.njit(cache=True, error_model="numpy")
def _table_key(ident: int, sp_orig: np.ndarray, n_ev: int) -> int:
    """Position of an arrival in the reference's pair order: external pairs by input event,
    then recurrent ones by the sending spike's index in the forward's output."""
    return ident if ident >= 0 else n_ev + sp_orig[-1 - ident]


@numba.njit(cache=True, error_model="numpy")
def _fires_first(s_c: float, key_c: int, s_b: float, key_b: int, t_k: float) -> bool:
    """Whether candidate ``c`` rather than ``b`` fired the LIF spike at ``t_k`` (the
    reference's event table: the first arrival after the spike, else the last at or before
    it, in (time, pair order))."""
    after_c = s_c > t_k
    if after_c != (s_b > t_k):
        return after_c
    if after_c:
        return s_c < s_b or (s_c == s_b and key_c < key_b)
    return s_c > s_b or (s_c == s_b and key_c > key_b)


@numba.njit(cache=True, error_model="numpy")
def _spike_inputs(k0: int, k1: int, m: int, s_loc: np.ndarray, x_loc: np.ndarray,
                  id_loc: np.ndarray, sp_t: np.ndarray, sp_orig: np.ndarray, n_ev: int,
                  tau_s: float, cuba: bool, instants: bool, tol: float, sp_cur: np.ndarray,
                  trig: np.ndarray, cand_s: np.ndarray, cand_n: np.ndarray) -> int:
    """Per spike ``k0..k1-1`` of one neuron (its ``m`` arrivals in ``s_loc`` ...): the current
    just before it (``CubaLIF``) or the id of the arrival that fired it (``LIF``, ``trig``);
    returns ``OK`` or why it refuses. Each arrival finds its spikes by binary search.

    ``CubaLIF``: the arrivals strictly before the spike count (an arrival at the spike time
    comes after it, as in the feed-forward EventProp: a jump of ``I`` cannot fire the neuron;
    the spike's own zero-delay arrival comes after it even if snapped to just before it).
    ``LIF``: a spike at several arrivals (within ``tol``) is fired by :func:`_fires_first`'s
    choice; with zero-delay arrivals in the layer (``instants``) the reference orders instants
    causally and decides such spikes from the state: refused."""
    for k in range(k0 + 1, k1):
        if sp_t[k] - sp_t[k - 1] <= tol:
            return SAME_INSTANT
    if cuba:
        sp_cur[k0:k1] = 0.0
        for a in range(m):
            s = s_loc[a]
            q = k0 + np.searchsorted(sp_t[k0:k1], s, side="right")
            if k0 <= -1 - id_loc[a] < k1:  # its own arrival: after the spike that sent it
                q = max(q, -id_loc[a])
            if q < k1:
                sp_cur[q] += x_loc[a] * math.exp(-(sp_t[q] - s) / tau_s)
        for k in range(k0 + 1, k1):
            sp_cur[k] += sp_cur[k - 1] * math.exp(-(sp_t[k] - sp_t[k - 1]) / tau_s)
        return OK
    cand_n[k0:k1] = 0
    for a in range(m):
        s = s_loc[a]
        ident = id_loc[a]
        key = _table_key(ident, sp_orig, n_ev)
        q = k0 + np.searchsorted(sp_t[k0:k1], s - tol, side="left")
        while q < k1 and sp_t[q] <= s + tol:
            if ident != -1 - q:  # the spike's own zero-delay arrival comes after it
                if instants and x_loc[a] == 0.0:  # not a firing candidate there
                    return AT_ARRIVAL
                if cand_n[q] == 0 or _fires_first(s, key, cand_s[q],
                                                   _table_key(trig[q], sp_orig, n_ev), sp_t[q]):
                    trig[q] = ident
                    cand_s[q] = s
                cand_n[q] += 1
            q += 1
    for k in range(k0, k1):
        if cand_n[k] == 0:
            return NO_ARRIVAL
        if cand_n[k] > 1 and instants:  # the reference decides from the state
            return AT_ARRIVAL
        if trig[k] < 0 and sp_t[k] - sp_t[-1 - trig[k]] <= tol:  # within its sender's instant
            return CASCADE
    return OK


@numba.njit(cache=True, error_model="numpy")
def _arrival_adjoint(i0: int, i1: int, k_min: int, s: float, x: float, sp_t: np.ndarray,
                     v_minus: np.ndarray, i_minus: np.ndarray, tm: float, ts: float, r: float,
                     cuba: bool) -> tuple[float, float]:
    """``(dL/dJ, dL/ds)`` of an arrival at ``s`` (jump ``x``) at a neuron whose spikes are
    ``i0..i1-1``, from the adjoint of its first spike after ``s`` (and at index ``>= k_min``)."""
    q = i0 + np.searchsorted(sp_t[i0:i1], s, side="right")
    q = max(q, k_min)
    if q >= i1:
        return 0.0, 0.0
    h = sp_t[q] - s
    lam_v = math.exp(-h / tm) * v_minus[q]
    if cuba:
        lam_i = math.exp(-h / ts) * i_minus[q] + r * kappa(h, tm, ts) * v_minus[q]
        return lam_i, x * (lam_i / ts - r * lam_v / tm)
    return lam_v, x * lam_v / tm


@numba.njit(cache=True, error_model="numpy")
def _trigger_of(i0: int, i1: int, s: float, ident: int, sp_t: np.ndarray, trig: np.ndarray,
                tol: float) -> int:
    """The spike (index) of a LIF neuron fired by arrival ``ident`` at ``s``, else -1."""
    q = i0 + np.searchsorted(sp_t[i0:i1], s - tol, side="left")
    while q < i1 and sp_t[q] <= s + tol:
        if trig[q] == ident:
            return q
        q += 1
    return -1


@numba.njit(cache=True, error_model="numpy")
def _recurrent_kernel(t_in, j_in, a_in, ev_order, ev_ptr, weight, delay, has_delay, rec_w,
                      rec_d, sp_t, sp_n, sp_orig, sp_ptr, sp_g, sp_reg, tau_m, tau_s, r,
                      v_leak, v_th, v_reset, cuba, dt, ulps_eps, t_end, tol, g_t, g_w, g_d,
                      g_a, g_rw, g_rd, need_tau, g_tm, g_ts) -> int:
    """Backward of one recurrent spiking layer (see the module docstring); ``OK`` or why it
    refuses. Spikes sorted by (sample, neuron, time), ``sp_ptr[b * N + n]`` starts each
    neuron's; ``ev_order[ev_ptr[b]:ev_ptr[b + 1]]`` are sample ``b``'s input spikes."""
    n_units = weight.shape[0]
    n_samples = ev_ptr.shape[0] - 1
    n_spk = sp_t.shape[0]
    v_minus = np.zeros(n_spk)
    i_minus = np.zeros(n_spk)
    v_plus = np.zeros(n_spk)
    big_g = np.zeros(n_spk)
    sp_cur = np.zeros(n_spk)
    trig = np.zeros(n_spk, dtype=np.int64)
    cand_s = np.zeros(n_spk)
    cand_n = np.zeros(n_spk, dtype=np.int64)
    instants = False  # a recurrent arrival at its sender's instant (zero delay) anywhere
    for k in range(n_spk):
        for i in range(n_units):
            s = _snap(sp_t[k] + rec_d[i, sp_n[k]], dt, ulps_eps)
            if s <= t_end and abs(s - sp_t[k]) <= tol:
                instants = True
    for b in range(n_samples):
        e0, e1 = ev_ptr[b], ev_ptr[b + 1]
        s0, s1 = sp_ptr[b * n_units], sp_ptr[(b + 1) * n_units]
        if s1 == s0:  # a silent sample: every adjoint is zero
            continue
        size = (e1 - e0) + (s1 - s0)
        s_loc = np.empty(size)
        x_loc = np.empty(size)
        id_loc = np.empty(size, dtype=np.int64)
        for n in range(n_units):  # (1) currents at the spikes / LIF firing arrivals
            if sp_ptr[b * n_units + n + 1] == sp_ptr[b * n_units + n]:
                continue
            m = _neuron_arrivals(b, n, n_units, e0, e1, ev_order, t_in, j_in, a_in, weight,
                                 delay, has_delay, rec_w, rec_d, sp_t, sp_n, sp_ptr, dt,
                                 ulps_eps, t_end, s_loc, x_loc, id_loc)
            status = _spike_inputs(sp_ptr[b * n_units + n], sp_ptr[b * n_units + n + 1], m,
                                   s_loc, x_loc, id_loc, sp_t, sp_orig, t_in.shape[0],
                                   tau_s[n], cuba, instants, tol, sp_cur, trig, cand_s, cand_n)
            if status != OK:
                return status
        # (2) the sample's spikes, latest first
        by_time = s0 + np.argsort(sp_t[s0:s1], kind="mergesort")
        for u in range(s1 - s0 - 1, -1, -1):
            k = by_time[u]
            n = sp_n[k]
            g = sp_g[k]
            for i in range(n_units):
                s = _snap(sp_t[k] + rec_d[i, n], dt, ulps_eps)
                if s > t_end:
                    continue
                i0, i1 = sp_ptr[b * n_units + i], sp_ptr[b * n_units + i + 1]
                if i1 == i0:
                    continue
                q = -1 if cuba else _trigger_of(i0, i1, s, -1 - k, sp_t, trig, tol)
                if q >= 0:  # the LIF spike this arrival fired: its time is the arrival's
                    dj = 0.0
                    ds = big_g[q] - v_plus[q] * (v_leak[i] - v_reset[i]) / tau_m[i]
                else:
                    dj, ds = _arrival_adjoint(i0, i1, k + 1 if i == n else i0, s, rec_w[i, n],
                                              sp_t, v_minus, i_minus, tau_m[i], tau_s[i], r[i],
                                              cuba)
                g += ds
                g_rw[i, n] += dj
                g_rd[i, n] += ds
            big_g[k] = g
            spike_adjoint(k, k + 1 < sp_ptr[b * n_units + n + 1], n, g, sp_t, sp_cur, sp_reg,
                          tau_m, tau_s, r, v_leak, v_th, v_reset, cuba, v_minus, i_minus,
                          v_plus)
        # (3) the external arrivals
        for n in range(n_units):
            i0, i1 = sp_ptr[b * n_units + n], sp_ptr[b * n_units + n + 1]
            if i1 == i0:  # a silent neuron: its adjoint is zero, so are its pairs' gradients
                continue
            for q_ in range(e0, e1):
                e = ev_order[q_]
                j = j_in[e]
                s = _snap(t_in[e] + delay[n, j], dt, ulps_eps) if has_delay else t_in[e]
                if s > t_end:
                    continue
                x = weight[n, j] * a_in[e]
                q = -1 if cuba else _trigger_of(i0, i1, s, e, sp_t, trig, tol)
                if q >= 0:
                    dj = 0.0
                    ds = big_g[q] - v_plus[q] * (v_leak[n] - v_reset[n]) / tau_m[n]
                else:
                    dj, ds = _arrival_adjoint(i0, i1, i0, s, x, sp_t, v_minus, i_minus,
                                              tau_m[n], tau_s[n], r[n], cuba)
                g_w[n, j] += a_in[e] * dj
                g_d[n, j] += ds
                g_t[e] += ds
                g_a[e] += weight[n, j] * dj
        if need_tau:  # (4) time constants: every neuron's pieces between its events
            for n in range(n_units):
                i0, i1 = sp_ptr[b * n_units + n], sp_ptr[b * n_units + n + 1]
                if i1 == i0:  # lam = 0 on a silent neuron
                    continue
                m = _neuron_arrivals(b, n, n_units, e0, e1, ev_order, t_in, j_in, a_in, weight,
                                     delay, has_delay, rec_w, rec_d, sp_t, sp_n, sp_ptr, dt,
                                     ulps_eps, t_end, s_loc, x_loc, id_loc)
                jm, js = neuron_tau_terms(i0, i1, m, s_loc, x_loc, sp_t, v_minus, i_minus,
                                          tau_m[n], tau_s[n], r[n], v_reset[n] - v_leak[n],
                                          cuba)
                g_tm[n] += jm
                g_ts[n] += js
    return OK


# =========================================================================== wrapper
def recurrent_backward(cfg: LayerConfig, saved: tuple, g_t: Tensor, need: tuple,
                       reg: Tensor,
                       need_tau: tuple[bool, bool] = (False, False)
                       ) -> tuple[Tensor | None, ...] | None:
    """Compiled backward of a recurrent spiking layer, or ``None`` where it refuses (see the
    module docstring; the caller runs the reference then).

    Args:
        cfg: the layer's settings (``cfg.nrn``: ``LIF`` or ``CubaLIF`` constants).
        saved: the forward's ``(t_in [E], weight [N, N_in], delay [N, N_in] or None,
            rec_w [N, N], rec_d [N, N], b_in, j_in, v_in [E], t_out [K], b_out, n_out)``.
        g_t: ``[K]`` ``dL/d(output spike times)`` from outside the layer.
        need: which of ``(t_in, weight, delay, rec_w, rec_d, v_in)`` need gradients.
        reg: ``[K]`` the spike-count regulariser's ``dL/dV`` jump per spike.
        need_tau: whether ``(tau_mem, tau_syn)`` need gradients (computed only then).

    Returns:
        ``(dL/dt_in, dL/dW, dL/dD, dL/dW_rec, dL/dD_rec, dL/dv_in, dL/dtau_mem,
        dL/dtau_syn)`` (``[N]`` for the time constants) in the layer's dtype (``None`` where
        not needed), or ``None`` (refused).
    """
    t_in, weight, delay, rec_w, rec_d, b_in, j_in, v_in, t_out, b_out, n_out = saved
    nrn = cfg.nrn
    n, bsz = nrn.n, cfg.batch_size

    def f64(x: Tensor) -> np.ndarray:
        return x.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()

    def i64(x: Tensor) -> np.ndarray:
        return x.detach().to(device="cpu", dtype=torch.int64).contiguous().numpy()

    seg = i64(b_out) * n + i64(n_out)
    t_np = f64(t_out)
    order = np.lexsort((t_np, seg))  # spikes by (sample, neuron, time)
    sp_ptr = np.zeros(bsz * n + 1, dtype=np.int64)
    np.cumsum(np.bincount(seg, minlength=bsz * n), out=sp_ptr[1:])
    b_np = i64(b_in)
    ev_order = np.argsort(b_np, kind="stable")  # input spikes by sample, input order kept
    ev_ptr = np.zeros(bsz + 1, dtype=np.int64)
    np.cumsum(np.bincount(b_np, minlength=bsz), out=ev_ptr[1:])
    ones = torch.ones(n, dtype=torch.float64)
    consts = [f64(x.expand(n)) for x in (nrn.tau_m, ones if nrn.tau_s is None else nrn.tau_s,
                                         nrn.r, nrn.v_leak, nrn.v_th, nrn.v_reset)]
    shape = tuple(weight.shape)
    g_tin, g_a = np.zeros(t_in.numel()), np.zeros(t_in.numel())
    g_w, g_d = np.zeros(shape), np.zeros(shape)
    g_rw, g_rd = np.zeros((n, n)), np.zeros((n, n))
    g_tm, g_ts = np.zeros(n), np.zeros(n)
    eps = float(torch.finfo(weight.dtype).eps)
    tol = 256 * eps * max(cfg.t_end, cfg.dt)
    status = _recurrent_kernel(
        f64(t_in), i64(j_in), f64(v_in), ev_order, ev_ptr, f64(weight),
        f64(delay) if delay is not None else np.zeros((1, 1)), delay is not None,
        f64(rec_w), f64(rec_d.expand(n, n)), t_np[order], i64(n_out)[order], order, sp_ptr,
        f64(g_t)[order], f64(reg)[order], *consts, nrn.cuba, float(cfg.dt), 8 * eps,
        float(cfg.t_end), float(tol), g_tin, g_w, g_d, g_a, g_rw, g_rd, any(need_tau), g_tm,
        g_ts)
    global last_refusal
    last_refusal = REFUSALS.get(status)
    if status != OK:
        return None
    need_t, need_w, need_d, need_rw, need_rd, need_a = need

    def out(x: np.ndarray, flag: bool) -> Tensor | None:
        return torch.from_numpy(x).to(dtype=weight.dtype, device=weight.device) if flag else None

    return (out(g_tin, need_t), out(g_w, need_w), out(g_d, need_d and delay is not None),
            out(g_rw, need_rw), out(g_rd, need_rd), out(g_a, need_a), out(g_tm, need_tau[0]),
            out(g_ts, need_tau[1] and nrn.cuba))
