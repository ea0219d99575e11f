"""Compiled (numba) EventProp of the closed-form layers: the spiking backward and the
``"avg_exp"`` / ``"sum"`` / ``"max"`` readouts (forward and backward).

Same equations as the pure-PyTorch reference (:mod:`.spiking`, :mod:`.readout`), which the
tests compare these kernels against; selected by :func:`ctsnn.compiled.kernels_enabled`.
Instead of materialising every (input spike, target neuron) pair, the kernels loop over
``(sample, neuron)`` and, for each, over the sample's input spikes (arrival ``s = t + D``,
skipped past ``T``) and the neuron's output spikes: memory is the spikes plus per-spike
adjoints, flat in the number of time steps. Everything is computed in float64 and cast back.

Event ordering follows the reference: an output spike sorts before an arrival at the same
time (an arrival at a spike time belongs to the next inter-spike interval), equal arrival
times keep the input order.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from ...compiled import kernel_threads, numba_threads
from ...engine.compiled.closed_forms import decays, kappa, phi_series
from ...engine.compiled.schedule import chunk_bounds
from .common import LayerConfig, Neurons
from .layout import (
    arrivals_at,
    bucket,
    by_neuron,
    index_dtype,
    neuron_layout,
    next_spike_index,
    sample_order,
)
from .readout_kernels import (
    factors_fit,
    linear_factors,
    linear_parallel,
    linear_serial,
    max_backward_kernel,
    max_forward_kernel,
)
from .tau_kernels import neuron_tau_terms

__all__ = ["max_readout_forward", "readout_backward", "linear_readout_forward",
           "spiking_backward"]

_F64 = np.float64
_MAX_FIELDS = ("t", "side", "src", "vdot")
#: Below this many (input spike, target) pairs a layer runs as one chunk on one thread (waking
#: other threads costs more than it saves); above, as :data:`_CHUNKS` chunks of samples.
_PARALLEL_PAIRS = 200_000
#: Chunks of samples of a large call. Fixed (not the thread count): the chunks' partial sums
#: of the weight and delay gradients are added in chunk order, so results are the same on any
#: number of threads.
_CHUNKS = 8
#: Buckets per spike of a neuron's next-spike index (:func:`.layout.next_spike_index`): 8
#: make a forward step past the bucket's first spike rare (W2 T = 1000: the lookup's cost went
#: 0.52 s -> 0.27 s from 2 buckets).
_BUCKETS_PER_SPIKE = 8


# =========================================================================== scalar closed forms
# =========================================================================== spiking layers
@numba.njit(cache=True, error_model="numpy")
def spike_adjoint(k: int, has_next: bool, n: int, g: float, sp_t: np.ndarray,
                  sp_cur: np.ndarray, sp_reg: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray,
                  r: np.ndarray, v_leak: np.ndarray, v_th: np.ndarray, v_reset: np.ndarray,
                  cuba: bool, v_minus: np.ndarray, i_minus: np.ndarray,
                  v_plus: np.ndarray) -> None:
    """The adjoint jump at spike ``k`` of neuron ``n`` (``g``: the loss's and later spikes'
    total ``dL/dt_k``): ``v_plus[k]`` (after the spike, carried back from spike ``k + 1`` when
    ``has_next``), then ``v_minus[k]`` and ``i_minus[k]`` just before it. Shared by the
    feed-forward and recurrent backward kernels."""
    tm = tau_m[n]
    vp = 0.0
    ip = 0.0
    if has_next:
        h = sp_t[k + 1] - sp_t[k]
        vp = math.exp(-h / tm) * v_minus[k + 1]
        if cuba:
            ip = (math.exp(-h / tau_s[n]) * i_minus[k + 1]
                  + r[n] * kappa(h, tm, tau_s[n]) * v_minus[k + 1])
    v_plus[k] = vp
    if cuba:
        vdot_minus = (v_leak[n] - v_th[n] + r[n] * sp_cur[k]) / tm
        vdot_plus = (v_leak[n] - v_reset[n] + r[n] * sp_cur[k]) / tm
        v_minus[k] = (vp * vdot_plus - g) / vdot_minus + sp_reg[k]
        i_minus[k] = ip
    else:
        v_minus[k] = sp_reg[k]


@numba.njit(cache=True, error_model="numpy")
def _spike_adjoints(k0: int, k1: int, n: int, sp_t: np.ndarray, sp_cur: np.ndarray,
                    sp_g: np.ndarray, sp_reg: np.ndarray, tau_m: np.ndarray,
                    tau_s: np.ndarray, r: np.ndarray, v_leak: np.ndarray, v_th: np.ndarray,
                    v_reset: np.ndarray, cuba: bool, v_minus: np.ndarray,
                    i_minus: np.ndarray, v_plus: np.ndarray) -> None:
    """Adjoints just before (``v_minus``, ``i_minus``) and after (``v_plus``) each spike
    ``k0..k1-1`` of one neuron (sorted by time), latest first."""
    for k in range(k1 - 1, k0 - 1, -1):
        spike_adjoint(k, k < k1 - 1, n, sp_g[k], sp_t, sp_cur, sp_reg, tau_m, tau_s, r, v_leak,
                      v_th, v_reset, cuba, v_minus, i_minus, v_plus)


@numba.njit(cache=True, error_model="numpy")
def _lif_trigger(k: int, k0: int, k1: int, sp_t: np.ndarray, s_sorted: np.ndarray,
                 tol: float) -> int:
    """Position (in ``s_sorted``) of the arrival that fired LIF spike ``k``: the arrival sorted
    right after the spike (an exact tie), else the one right before, within ``tol``; -1 if
    neither is adjacent to the spike."""
    t_k = sp_t[k]
    m = s_sorted.shape[0]
    pos = np.searchsorted(s_sorted, t_k, side="left")  # first arrival with s >= t_k
    if pos < m and abs(s_sorted[pos] - t_k) <= tol:
        if k + 1 >= k1 or sp_t[k + 1] > s_sorted[pos]:
            return pos
    if pos > 0 and abs(s_sorted[pos - 1] - t_k) <= tol:
        if k == k0 or sp_t[k - 1] <= s_sorted[pos - 1]:
            return pos - 1
    return -1


@numba.njit(cache=True, error_model="numpy")
def _factored_decays(h: float, em_p: float, es_p: float, a: float, b: float,
                     tau_m: float) -> tuple[float, float, float]:
    """``decays(h)``, ``h = t_k - s``, given ``em_p = e^{-t_k/tau_m} e^{t/tau_m} e^{D/tau_m}``
    (``es_p`` likewise; ``a, b = 1/tau_m, 1/tau_s``). For ``x = h |a - b| >= 0.5``,
    ``kappa = tau_s/(tau_m - tau_s) (em - es)`` does not cancel (``min/max <= e^{-0.5}``);
    below, the slower decay's product and one ``expm1``, as ``decays``."""
    x = h * abs(a - b)
    if x < 0.5:
        xm = math.expm1(-x)
        ex = 1.0 + xm
        phi = 1.0 if x == 0.0 else -xm / x
        if a <= b:
            return em_p, em_p * ex, em_p * h * phi / tau_m
        return es_p * ex, es_p, es_p * h * phi / tau_m
    return em_p, es_p, (em_p - es_p) / (tau_m * (b - a))


@numba.njit(inline="always", error_model="numpy")
def _add_pair(n: int, j: int, e: int, lam_v: float, lam_i: float, inv_s: float, r_m: float,
              weight: np.ndarray, a_in: np.ndarray, g_t: np.ndarray, g_w: np.ndarray,
              g_d: np.ndarray, g_a: np.ndarray) -> None:
    """One (input spike ``e`` of input ``j``, neuron ``n``) pair's terms of ``dL/dW``,
    ``dL/dD``, ``dL/dt_in`` and ``dL/da`` from the adjoints ``lam_v, lam_i`` at its arrival
    (``r_m = r / tau_m``); ``g_a`` of size 0: not needed, not added (``g_t`` is always added
    to: a second test per pair measured 20 % slower on W2's hidden layer 2)."""
    wt = weight[n, j]
    dsq = wt * a_in[e] * (lam_i * inv_s - r_m * lam_v)
    g_w[n, j] += a_in[e] * lam_i
    g_d[n, j] += dsq
    g_t[e] += dsq
    if g_a.shape[0] > 0:
        g_a[e] += wt * lam_i


@numba.njit(cache=True, error_model="numpy")
def _cuba_factored_row(n: int, k0: int, k1: int, e0: int, e1: int, ev_order: np.ndarray,
                       t_in: np.ndarray, j_in: np.ndarray, a_in: np.ndarray,
                       weight: np.ndarray, delay: np.ndarray, has_delay: bool, t_end: float,
                       sp_t: np.ndarray, v_minus: np.ndarray, i_minus: np.ndarray,
                       row: np.ndarray, inv_w: float, nb: int, pm: np.ndarray, ps: np.ndarray,
                       fac: np.ndarray, tm: float, ts: float, r: float, coef: np.ndarray,
                       close: np.ndarray, in_order: bool, g_t: np.ndarray, g_w: np.ndarray,
                       g_d: np.ndarray, g_a: np.ndarray) -> None:
    """The pairs of ``CubaLIF`` neuron ``n`` (spikes ``k0..k1-1``, adjoints known) and its
    sample's input spikes ``ev_order[e0:e1]``, shared time constants.

    With ``u = e^{(t + D)/tau_m}`` and ``w = e^{(t + D)/tau_s}`` (products of the input spike's
    ``pm``/``ps`` and the synapse's ``fac``) and ``c = 1/(tau_m (1/tau_s - 1/tau_m))``, the
    adjoint carried back from the next spike ``k`` is ``lam_V = A_k u``, ``lam_I = B_k w +
    C_k u`` with per-spike ``A_k = e^{-t_k/tau_m} lam_V^-``, ``B_k = e^{-t_k/tau_s} (lam_I^- -
    r c lam_V^-)``, ``C_k = e^{-t_k/tau_m} r c lam_V^-`` (``kappa = c (e_m - e_s)`` expanded):
    valid where ``x = h |1/tau_m - 1/tau_s| >= 0.5`` (no cancellation in ``e_m - e_s``); closer
    pairs take both decays as products and ``kappa = e_slow h phi1(x) / tau_m`` with
    :func:`phi_series` (as :func:`_factored_decays`, without its ``expm1``).

    Two passes, without a data-dependent branch per pair in the first: it adds every pair's
    factored terms with ``u, w`` multiplied by 0 for a close pair (adding exact zeros) and
    notes the close pairs (position, next spike) in ``close [2, >= e1 - e0]``; the second adds
    theirs. Each input spike still gets one term per neuron (``dL/dt_in``, ``dL/da`` as one
    pass would give); ``dL/dW``, ``dL/dD`` add the close pairs after the others (rounding
    order only). ``in_order``: ``ev_order[e0:e1]`` is ``e0..e1-1`` (the usual case: input
    spikes in :class:`~ctsnn.Spikes` order), read without the indirection (one dependent load
    less per pair). ``coef [5, >= k1 - k0]`` is scratch.
    """
    n_units_in = weight.shape[1]
    n_syn = weight.shape[0] * n_units_in
    inv_m, inv_s = 1.0 / tm, 1.0 / ts
    gap = abs(inv_m - inv_s)
    h_fast = 0.5 / gap if gap > 0.0 else math.inf
    c = 1.0 / (tm * (inv_s - inv_m)) if gap > 0.0 else 0.0
    for k in range(k0, k1):
        em_k = math.exp(-sp_t[k] * inv_m)
        es_k = math.exp(-sp_t[k] * inv_s)
        rcv = r * c * v_minus[k]
        coef[0, k - k0] = em_k * v_minus[k]
        coef[1, k - k0] = es_k * (i_minus[k] - rcv)
        coef[2, k - k0] = em_k * rcv
        coef[3, k - k0] = em_k
        coef[4, k - k0] = es_k
    t_last = sp_t[k1 - 1]
    r_m = r * inv_m
    n_close = 0
    for q in range(e0, e1):
        e = q if in_order else ev_order[q]
        j = j_in[e]
        s = t_in[e] + delay[n, j] if has_delay else t_in[e]
        if not (s < t_last and s <= t_end):  # no later spike: zero adjoint, zero terms
            continue
        k = row[bucket(s, inv_w, nb)]
        while sp_t[k] <= s:  # ends: sp_t[k1 - 1] > s
            k += 1
        near = sp_t[k] - s < h_fast
        close[0, n_close] = q
        close[1, n_close] = k
        n_close += near
        far = 0.0 if near else 1.0
        syn = n * n_units_in + j
        u = pm[q - e0] * fac[syn] * far
        w = ps[q - e0] * fac[syn + n_syn] * far
        i = k - k0
        lam_v = coef[0, i] * u
        lam_i = coef[1, i] * w + coef[2, i] * u
        _add_pair(n, j, e, lam_v, lam_i, inv_s, r_m, weight, a_in, g_t, g_w, g_d, g_a)
    for p in range(n_close):  # kappa = e_slow h phi1(x) / tau_m, phi1 by its series
        q, k = close[0, p], close[1, p]
        e = q if in_order else ev_order[q]
        j = j_in[e]
        s = t_in[e] + delay[n, j] if has_delay else t_in[e]
        h = sp_t[k] - s
        syn = n * n_units_in + j
        em = coef[3, k - k0] * (pm[q - e0] * fac[syn])
        es = coef[4, k - k0] * (ps[q - e0] * fac[syn + n_syn])
        kap = (em if inv_m <= inv_s else es) * h * phi_series(h * gap) * inv_m
        lam_v = em * v_minus[k]
        lam_i = es * i_minus[k] + r * kap * v_minus[k]
        _add_pair(n, j, e, lam_v, lam_i, inv_s, r_m, weight, a_in, g_t, g_w, g_d, g_a)


@numba.njit(cache=True, error_model="numpy")
def _spiking_range(b0: int, b1: int, t_in: np.ndarray, j_in: np.ndarray, a_in: np.ndarray,
                   ev_order: np.ndarray, ev_ptr: np.ndarray, weight: np.ndarray,
                   delay: np.ndarray, has_delay: bool, sp_t: np.ndarray, sp_ptr: np.ndarray,
                   sp_cur: np.ndarray, sp_g: np.ndarray, sp_reg: np.ndarray,
                   tau_m: np.ndarray, tau_s: np.ndarray, r: np.ndarray, v_leak: np.ndarray,
                   v_th: np.ndarray, v_reset: np.ndarray, cuba: bool, t_end: float, tol: float,
                   g_t: np.ndarray, g_w: np.ndarray, g_d: np.ndarray, g_a: np.ndarray,
                   need_tau: bool, g_tau: np.ndarray, fac: np.ndarray) -> int:
    """Backward of samples ``b0..b1-1`` of one spiking layer; returns -1, or the index of a
    LIF spike no arrival fired. With ``need_tau``, ``g_tau [2, N]`` is added
    ``(dL/dtau_m, dL/dtau_s)`` (:func:`.tau_kernels.neuron_tau_terms`).

    Spikes are sorted by (sample, neuron, time), ``sp_ptr[b * N + n]`` starts each neuron's;
    ``ev_order[ev_ptr[b]:ev_ptr[b + 1]]`` are sample ``b``'s input spikes in input order. A
    neuron's spike adjoints (``v_minus``, ``i_minus``, ``v_plus``) live in scratch of its
    chunk's largest spike count (only one neuron's are read at a time: memory flat in the
    number of spikes). The samples own their input spikes' gradients (``g_t``, ``g_a``);
    ``g_w``, ``g_d`` ``[N, N_in]`` are added to. An arrival's next spike:
    :func:`.layout.next_spike_index`; none (zero adjoint): skipped.
    With ``fac`` (:func:`_factors`) the decays are products of per-spike, per-input-spike and
    per-synapse exponentials (:func:`_factored_decays`); ``fac`` of size 0: ``decays``.
    """
    n_units, n_units_in = weight.shape
    n_syn = n_units * n_units_in
    width = 0
    most = 0
    for b in range(b0, b1):
        width = max(width, ev_ptr[b + 1] - ev_ptr[b])
        for n in range(n_units):
            most = max(most, sp_ptr[b * n_units + n + 1] - sp_ptr[b * n_units + n])
    s_loc, e_loc, p_loc = np.empty(width), np.empty(width, np.int64), np.empty(width, np.int64)
    dj = np.empty(0 if cuba else width)
    ds = np.empty(0 if cuba else width)
    x_loc = np.empty(width if need_tau else 0)
    first = np.empty(_BUCKETS_PER_SPIKE * most + 1, dtype=np.int64)
    use_fac = fac.shape[0] > 0
    em_k, es_k = np.empty(most if use_fac else 0), np.empty(most if use_fac else 0)
    coef = np.empty((5, most if use_fac and cuba else 0))
    v_minus, i_minus, v_plus = np.empty(most), np.empty(most), np.empty(most)
    pm, ps = np.empty(width if use_fac else 0), np.empty(width if use_fac else 0)
    close = np.empty((2, width if use_fac and cuba else 0), dtype=np.int64)
    for b in range(b0, b1):
        e0, e1 = ev_ptr[b], ev_ptr[b + 1]
        in_order = True
        for q in range(e0, e1):
            in_order &= ev_order[q] == q
        if use_fac:  # the sample's input-spike factors e^{t/tau} (shared tau_m, tau_s)
            for q in range(e0, e1):
                pm[q - e0] = math.exp(t_in[ev_order[q]] / tau_m[0])
                ps[q - e0] = math.exp(t_in[ev_order[q]] / tau_s[0])
        for n in range(n_units):
            k_start, k_stop = sp_ptr[b * n_units + n], sp_ptr[b * n_units + n + 1]
            if k_stop == k_start:  # a silent neuron: zero adjoint, zero pair gradients
                continue
            # the neuron's spikes as local arrays 0..k1-1 (views): the scratch is per neuron
            k0, k1 = 0, k_stop - k_start
            sp_t_n = sp_t[k_start:k_stop]
            sp_g_n = sp_g[k_start:k_stop]
            _spike_adjoints(k0, k1, n, sp_t_n, sp_cur[k_start:k_stop], sp_g_n,
                            sp_reg[k_start:k_stop], tau_m, tau_s, r, v_leak, v_th, v_reset,
                            cuba, v_minus, i_minus, v_plus)
            nb = _BUCKETS_PER_SPIKE * (k1 - k0)
            inv_w = nb / t_end if t_end > 0.0 else 0.0
            row = first[:nb + 1]
            next_spike_index(k0, k1, sp_t_n, inv_w, row)
            t_last = sp_t_n[k1 - 1]
            tm = tau_m[n]
            inv_m, inv_s = 1.0 / tm, 1.0 / tau_s[n]
            if cuba and use_fac and not need_tau:  # W2's case: one fused pass, no gather
                _cuba_factored_row(n, k0, k1, e0, e1, ev_order, t_in, j_in, a_in, weight, delay,
                                   has_delay, t_end, sp_t_n, v_minus, i_minus, row, inv_w, nb,
                                   pm, ps, fac, tm, tau_s[n], r[n], coef, close, in_order, g_t,
                                   g_w, g_d, g_a)
                continue
            m = arrivals_at(n, e0, e1, ev_order, t_in, j_in, delay, has_delay, t_end, s_loc,
                             e_loc, p_loc)
            if use_fac:
                for k in range(k0, k1):
                    em_k[k - k0] = math.exp(-sp_t_n[k] * inv_m)
                    es_k[k - k0] = math.exp(-sp_t_n[k] * inv_s)
            for q in range(m):
                s = s_loc[q]
                if not s < t_last:  # no spike after the arrival: zero adjoint, zero terms
                    if not cuba:
                        dj[q] = 0.0
                        ds[q] = 0.0
                    continue
                k = row[bucket(s, inv_w, nb)]
                while sp_t_n[k] <= s:  # ends: sp_t_n[k1 - 1] > s
                    k += 1
                e = e_loc[q]
                j = j_in[e]
                h = sp_t_n[k] - s
                if cuba:
                    x = weight[n, j] * a_in[e]
                    ts = tau_s[n]
                    if use_fac:
                        syn = n * n_units_in + j
                        pq = p_loc[q]
                        em, es, kappa = _factored_decays(
                            h, em_k[k - k0] * pm[pq] * fac[syn],
                            es_k[k - k0] * ps[pq] * fac[syn + n_syn], inv_m, inv_s, tm)
                    else:
                        em, es, kappa = decays(h, tm, ts)
                    lam_v = em * v_minus[k]
                    lam_i = es * i_minus[k] + r[n] * kappa * v_minus[k]
                    dsq = x * (lam_i / ts - r[n] * lam_v / tm)
                    g_w[n, j] += a_in[e] * lam_i
                    g_d[n, j] += dsq
                    g_t[e] += dsq
                    if g_a.shape[0] > 0:
                        g_a[e] += weight[n, j] * lam_i
                else:
                    x = weight[n, j] * a_in[e]
                    if use_fac:
                        em = em_k[k - k0] * pm[p_loc[q]] * fac[n * n_units_in + j]
                    else:
                        em = math.exp(-h / tm)
                    lam_v = em * v_minus[k]
                    dj[q] = lam_v
                    ds[q] = x * lam_v / tm
            if not cuba:
                order = np.argsort(s_loc[:m], kind="mergesort")
                s_sorted = s_loc[:m][order]
                for k in range(k0, k1):
                    pos = _lif_trigger(k, k0, k1, sp_t_n, s_sorted, tol)
                    if pos < 0:
                        return k_start + k
                    q = order[pos]
                    dj[q] = 0.0
                    ds[q] = sp_g_n[k] - v_plus[k] * (v_leak[n] - v_reset[n]) / tm
                for q in range(m):
                    e = e_loc[q]
                    j = j_in[e]
                    g_w[n, j] += a_in[e] * dj[q]
                    g_d[n, j] += ds[q]
                    g_t[e] += ds[q]
                    if g_a.shape[0] > 0:
                        g_a[e] += weight[n, j] * dj[q]
            if need_tau:
                for q in range(m):
                    x_loc[q] = weight[n, j_in[e_loc[q]]] * a_in[e_loc[q]]
                jm, js = neuron_tau_terms(k0, k1, m, s_loc, x_loc, sp_t_n, v_minus, i_minus, tm,
                                          tau_s[n], r[n], v_reset[n] - v_leak[n], cuba)
                g_tau[0, n] += jm
                g_tau[1, n] += js
    return -1


@numba.njit(cache=True, error_model="numpy")
def _spiking_serial(n_chunks: int, t_in: np.ndarray, j_in: np.ndarray, a_in: np.ndarray,
                    ev_order: np.ndarray, ev_ptr: np.ndarray, weight: np.ndarray,
                    delay: np.ndarray, has_delay: bool, sp_t: np.ndarray, sp_ptr: np.ndarray,
                    sp_cur: np.ndarray, sp_g: np.ndarray, sp_reg: np.ndarray,
                    tau_m: np.ndarray, tau_s: np.ndarray, r: np.ndarray, v_leak: np.ndarray,
                    v_th: np.ndarray, v_reset: np.ndarray, cuba: bool, t_end: float,
                    tol: float, g_t: np.ndarray, g_w: np.ndarray, g_d: np.ndarray,
                    g_a: np.ndarray, need_tau: bool, g_tau: np.ndarray,
                    fac: np.ndarray) -> np.ndarray:
    """:func:`_spiking_range` over ``n_chunks`` chunks of samples, one after the other; chunk
    ``c`` adds into ``g_w[c]``, ``g_d[c]``, ``g_tau[c]``. Returns each chunk's -1 / bad
    spike."""
    bad = np.full(n_chunks, -1, dtype=np.int64)
    for c in range(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, ev_ptr.shape[0] - 1)
        bad[c] = _spiking_range(b0, b1, t_in, j_in, a_in, ev_order, ev_ptr, weight, delay,
                                has_delay, sp_t, sp_ptr, sp_cur, sp_g, sp_reg, tau_m, tau_s, r,
                                v_leak, v_th, v_reset, cuba, t_end, tol, g_t, g_w[c], g_d[c],
                                g_a, need_tau, g_tau[c], fac)
    return bad


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _spiking_parallel(n_chunks: int, t_in: np.ndarray, j_in: np.ndarray, a_in: np.ndarray,
                      ev_order: np.ndarray, ev_ptr: np.ndarray, weight: np.ndarray,
                      delay: np.ndarray, has_delay: bool, sp_t: np.ndarray,
                      sp_ptr: np.ndarray, sp_cur: np.ndarray, sp_g: np.ndarray,
                      sp_reg: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray, r: np.ndarray,
                      v_leak: np.ndarray, v_th: np.ndarray, v_reset: np.ndarray, cuba: bool,
                      t_end: float, tol: float, g_t: np.ndarray, g_w: np.ndarray,
                      g_d: np.ndarray, g_a: np.ndarray, need_tau: bool, g_tau: np.ndarray,
                      fac: np.ndarray) -> np.ndarray:
    """:func:`_spiking_serial` with the chunks in parallel (same chunks, same results)."""
    bad = np.full(n_chunks, -1, dtype=np.int64)
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, ev_ptr.shape[0] - 1)
        bad[c] = _spiking_range(b0, b1, t_in, j_in, a_in, ev_order, ev_ptr, weight, delay,
                                has_delay, sp_t, sp_ptr, sp_cur, sp_g, sp_reg, tau_m, tau_s, r,
                                v_leak, v_th, v_reset, cuba, t_end, tol, g_t, g_w[c], g_d[c],
                                g_a, need_tau, g_tau[c], fac)
    return bad


@numba.njit(cache=True)
def _sum_chunks(parts: np.ndarray) -> np.ndarray:
    """``parts [C, ...]`` summed over ``C`` in chunk order (a fixed order: deterministic)."""
    out = parts[0].copy()
    for c in range(1, parts.shape[0]):
        out += parts[c]
    return out


# =========================================================================== readouts
# =========================================================================== wrappers
def _chunks(batch_size: int, pairs: int) -> int:
    """How many chunks of samples a call of ``pairs`` (input spike, target) pairs runs as."""
    return 1 if pairs < _PARALLEL_PAIRS else max(1, min(batch_size, _CHUNKS))


def _run_chunks(serial: object, parallel: object, args: tuple) -> object:
    """``parallel(*args)`` on up to ``n_chunks = args[0]`` threads, or ``serial(*args)`` when
    there is one chunk or one thread (identical results)."""
    threads = min(kernel_threads(), args[0]) if args[0] > 1 else 1
    if threads > 1:
        with numba_threads(threads):
            return parallel(*args)
    return serial(*args)


def _np(x: Tensor) -> np.ndarray:
    return x.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()


def _idx(x: Tensor) -> np.ndarray:
    return x.detach().to(device="cpu", dtype=torch.int64).contiguous().numpy()


def _native(x: Tensor) -> np.ndarray:
    """``x`` (per input spike: times, amplitudes) as a CPU array in its own dtype when float32 /
    float64: the kernels combine these values only with float64 ones (a float32 value is
    upcast exactly), so a float32 run needs no float64 copy (4 B instead of 8 per spike and no
    conversion). Other dtypes: float64."""
    x = x.detach().cpu()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float64)
    return x.contiguous().numpy()


def _constants(nrn: Neurons) -> tuple[np.ndarray, ...]:
    """``tau_m, tau_s, r, v_leak, v_th, v_reset`` as float64 arrays (unused ones are ones)."""
    ones = torch.ones(nrn.n, dtype=torch.float64)

    def arr(x: Tensor | None) -> np.ndarray:
        return _np(ones if x is None else x.expand(nrn.n))

    return (arr(nrn.tau_m), arr(nrn.tau_s), arr(nrn.r), arr(nrn.v_leak), arr(nrn.v_th),
            arr(nrn.v_reset))


def _by_sample(b_in: Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input spikes grouped by sample, input order kept: ``(order, start pointers [B + 1])``;
    ``order`` is int32 when the events fit (:func:`.layout.sample_order`, a counting sort: the
    permutation of a stable argsort)."""
    b = _idx(b_in)
    order = np.empty(b.size, dtype=index_dtype(b.size))
    return order, sample_order(b, batch_size, order)


def _weights(weight: Tensor, delay: Tensor | None) -> tuple[np.ndarray, np.ndarray, bool]:
    w = _np(weight)
    return w, (_np(delay) if delay is not None else np.zeros((1, 1))), delay is not None


def _results(weight: Tensor, delay: Tensor | None, need: tuple, g_t: np.ndarray,
             g_w: np.ndarray, g_d: np.ndarray, g_a: np.ndarray) -> tuple[Tensor | None, ...]:
    """``(dL/dt_in, dL/dW, dL/dD, dL/da)`` in the layer's dtype, ``None`` where not needed."""
    need_t, need_w, need_d, need_a = need

    def out(x: np.ndarray, flag: bool) -> Tensor | None:
        return torch.from_numpy(x).to(dtype=weight.dtype, device=weight.device) if flag else None

    return (out(g_t, need_t), out(g_w, need_w), out(g_d, need_d and delay is not None),
            out(g_a, need_a))


def _input_grads(n_events: int, need: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``(dL/dt_in, dL/da)`` accumulators ``[E]`` float64, each of size 0 when not needed
    (the kernels then skip it: 8 B per input spike each)."""
    need_t, _, _, need_a = need
    return np.zeros(n_events if need_t else 0), np.zeros(n_events if need_a else 0)


def _zeros(weight: Tensor, n_events: int) -> tuple[np.ndarray, ...]:
    shape = tuple(weight.shape)
    return np.zeros(n_events), np.zeros(shape), np.zeros(shape), np.zeros(n_events)


def _factors(t_in: np.ndarray, delay: np.ndarray, has_delay: bool, n_syn: int,
             tau_m: np.ndarray, tau_s: np.ndarray, t_end: float) -> np.ndarray:
    """``[e^{D/tau_m} (N N_in), e^{D/tau_s} (N N_in)]`` flat, float64: the synapse factors of
    ``e^{-(t_k - t - D)/tau}`` that :func:`_spiking_range` multiplies with the spikes'
    ``e^{-t_k/tau}`` and the input spikes' ``e^{t/tau}``. Empty (the kernel then calls
    ``decays`` per pair) unless every neuron has the same ``tau_m`` and ``tau_s`` and every
    exponent stays within range (:func:`.readout_kernels.factors_fit`)."""
    if tau_m.size == 0 or (tau_m != tau_m[0]).any() or (tau_s != tau_s[0]).any():
        return np.zeros(0)
    if not factors_fit(t_in, delay, has_delay, t_end, max(1.0 / tau_m[0], 1.0 / tau_s[0])):
        return np.zeros(0)
    d = delay.reshape(-1) if has_delay else np.zeros(n_syn)
    return np.concatenate([np.exp(d / tau_m[0]), np.exp(d / tau_s[0])])


def spiking_backward(cfg: LayerConfig, saved: tuple, g_t: Tensor, need: tuple,
                     reg: Tensor, need_tau: tuple[bool, bool] = (False, False)
                     ) -> tuple[Tensor | None, ...]:
    """Compiled form of the spiking layers' backward (see ``spiking._spiking_backward``).

    Args:
        saved: the forward's ``(t_in, weight, delay, b_in, j_in, v_in, t_out, b_out, n_out,
            current)``; ``g_t [K]``: ``dL/d(output spike times)``; ``reg [K]``: the spike-count
            regulariser's ``dL/dV`` jump per spike (not read without ``cfg.spike_reg``);
            ``need_tau``: whether ``(tau_mem, tau_syn)`` need gradients (computed only then).
    Returns:
        ``(dL/dt_in [E], dL/dW [N, N_in], dL/dD [N, N_in], dL/da [E], dL/dtau_mem [N],
        dL/dtau_syn [N])`` (``None`` where not needed).
    """
    t_in, weight, delay, b_in, j_in, v_in, t_out, b_out, n_out, current = saved
    nrn = cfg.nrn
    n, k = nrn.n, t_out.numel()
    # the spikes by (sample, neuron), time order kept (they come sorted by time in a sample)
    pos = np.empty(k, dtype=index_dtype(k))
    sp_ptr = neuron_layout(_idx(b_out), _idx(n_out), n, cfg.batch_size * n, pos)
    # float64 times (read in the per-pair loop: float32 reads measured 5 % slower there);
    # current, dL/dt_k and the regulariser's jump enter only sums and products with float64
    # values: kept in the run's dtype (float32 -> float64 is exact), no regulariser: a view
    sp_t = by_neuron(pos, t_out)
    own = np.float32 if t_out.dtype == torch.float32 else np.float64
    cur = by_neuron(pos, current, own) if nrn.cuba else np.zeros(k)
    sp_g = by_neuron(pos, g_t.to(t_out.dtype), own)
    sp_reg = (by_neuron(pos, reg.to(t_out.dtype), own) if cfg.spike_reg is not None
              else np.broadcast_to(np.zeros(1, dtype=own), (k,)))
    del pos
    ev_order, ev_ptr = _by_sample(b_in, cfg.batch_size)
    w, d, has_d = _weights(weight, delay)
    tol = 256 * torch.finfo(t_out.dtype).eps * max(cfg.t_end, cfg.dt)
    n_chunks = _chunks(cfg.batch_size, t_in.numel() * n)
    g_t_in, g_a = np.zeros(t_in.numel()), _input_grads(t_in.numel(), need)[1]
    g_w, g_d = np.zeros((n_chunks, *w.shape)), np.zeros((n_chunks, *w.shape))
    g_tau = np.zeros((n_chunks, 2, n if any(need_tau) else 0))
    t_np, consts = _np(t_in), _constants(nrn)  # (float64: read per pair, as sp_t)
    fac = _factors(t_np, d, has_d, w.size, consts[0], consts[1], float(cfg.t_end))
    args = (n_chunks, t_np, _idx(j_in), _native(v_in), ev_order, ev_ptr, w, d, has_d,
            sp_t, sp_ptr, cur, sp_g, sp_reg, *consts,
            nrn.cuba, float(cfg.t_end), float(tol), g_t_in, g_w, g_d, g_a, any(need_tau), g_tau,
            fac)
    bad = _run_chunks(_spiking_serial, _spiking_parallel, args)
    if (bad >= 0).any():
        raise RuntimeError("adjoint LIF: could not match a spike to the arrival that fired it")
    g = (g_t_in, _sum_chunks(g_w), _sum_chunks(g_d), g_a)
    tau = _sum_chunks(g_tau)

    def out(x: np.ndarray, flag: bool) -> Tensor | None:
        return torch.from_numpy(x).to(dtype=weight.dtype, device=weight.device) if flag else None

    return (*_results(weight, delay, need, *g), out(tau[0], need_tau[0]),
            out(tau[1], need_tau[1] and nrn.cuba))


def linear_readout_forward(cfg: LayerConfig, t_in: Tensor, b_in: Tensor, j_in: Tensor,
                           v_in: Tensor, weight: Tensor, delay: Tensor | None,
                           alpha: float, inv_w: float) -> Tensor:
    """The arrivals' part of the ``"avg_exp"`` / ``"sum"`` readout, ``[B, N]``, float64."""
    tau_m, tau_s, r, *_ = _constants(cfg.nrn)
    w, d, has_d = _weights(weight, delay)
    n_chunks = _chunks(t_in.numel(), t_in.numel() * cfg.nrn.n)
    z = np.zeros((n_chunks, cfg.batch_size, cfg.nrn.n))
    empty, none = np.zeros(0), np.zeros((1, 1, 1))
    t_np = _native(t_in)
    qf = linear_factors(t_np, d, has_d, w.shape, tau_m, tau_s, cfg.nrn.cuba, float(cfg.t_end),
                        inv_w)
    _run_chunks(linear_serial, linear_parallel,
                (n_chunks, t_np, _idx(b_in), _idx(j_in), _native(v_in), w, d, has_d, z[0], tau_m,
                 tau_s, r, cfg.nrn.cuba, alpha, inv_w, float(cfg.t_end), False, z, empty, none,
                 none, empty, False, np.zeros((1, 2, 0)), qf))
    return torch.from_numpy(_sum_chunks(z))


def max_readout_forward(cfg: LayerConfig, t_in: Tensor, b_in: Tensor, j_in: Tensor,
                        v_in: Tensor, weight: Tensor,
                        delay: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
    """``z = max_t V`` ``[B, N]`` and where it is attained (``t``, ``side``, ``src``, ``vdot``,
    flat ``[B N]``, as the reference's forward saves them)."""
    nrn = cfg.nrn
    tau_m, tau_s, r, v_leak, *_ = _constants(nrn)
    ev_order, ev_ptr = _by_sample(b_in, cfg.batch_size)
    w, d, has_d = _weights(weight, delay)
    shape = (cfg.batch_size, nrn.n)
    z, t_star, vdot = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    side, src = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    bad = max_forward_kernel(_np(t_in), _idx(j_in), _np(v_in), ev_order, ev_ptr, w, d, has_d, tau_m,
                      tau_s, r, v_leak, nrn.cuba, float(cfg.t_end), z, t_star, side, src, vdot)
    if bad >= 0:
        raise NotImplementedError("max/integrand readouts on CubaLI need tau_syn != tau_mem")
    dev, dt = weight.device, weight.dtype
    keep = {"t": torch.from_numpy(t_star).reshape(-1).to(device=dev, dtype=dt),
            "side": torch.from_numpy(side).reshape(-1).to(dev),
            "src": torch.from_numpy(src).reshape(-1).to(dev),
            "vdot": torch.from_numpy(vdot).reshape(-1).to(device=dev, dtype=dt)}
    return torch.from_numpy(z).to(device=dev, dtype=dt), keep


def readout_backward(cfg: LayerConfig, saved: tuple, g_z: Tensor, need: tuple,
                     alpha: float = 0.0, inv_w: float = 0.0,
                     need_tau: tuple[bool, bool] = (False, False)) -> tuple[Tensor | None, ...]:
    """Compiled backward of the ``"avg_exp"`` / ``"sum"`` (give ``alpha``, ``inv_w``) and
    ``"max"`` readouts; ``saved`` is the reference forward's saved tensors, ``g_z [B, N]``.
    Returns ``(dL/dt_in, dL/dW, dL/dD, dL/da, dL/dtau_mem, dL/dtau_syn)`` (``None`` where not
    needed; the time constants' only computed when ``need_tau``)."""
    t_in, weight, delay, b_in, j_in, v_in, *keep = saved
    nrn = cfg.nrn
    tau_m, tau_s, r, *_ = _constants(nrn)
    w, d, has_d = _weights(weight, delay)
    shape = (cfg.batch_size, nrn.n)
    gz = _np(g_z).reshape(shape)
    width = nrn.n if any(need_tau) else 0
    if cfg.readout == "max":
        g = _zeros(weight, t_in.numel())
        args = (_np(t_in), _idx(b_in), _idx(j_in), _np(v_in), w, d, has_d, gz, tau_m, tau_s, r,
                nrn.cuba)
        t_star, side, src, vdot = keep
        tau = np.zeros((2, width))
        max_backward_kernel(*args, float(cfg.t_end), _np(t_star).reshape(shape),
                             _idx(side).reshape(shape), _idx(src).reshape(shape),
                             _np(vdot).reshape(shape), *g, any(need_tau), tau)
    else:
        n_chunks = _chunks(t_in.numel(), t_in.numel() * nrn.n)
        g_t_in, g_a = _input_grads(t_in.numel(), need)
        g_w, g_d = np.zeros((n_chunks, *w.shape)), np.zeros((n_chunks, *w.shape))
        g_tau = np.zeros((n_chunks, 2, width))
        t_np = _native(t_in)
        args = (t_np, _idx(b_in), _idx(j_in), _native(v_in), w, d, has_d, gz, tau_m, tau_s, r,
                nrn.cuba)
        qf = linear_factors(t_np, d, has_d, w.shape, tau_m, tau_s, nrn.cuba, float(cfg.t_end),
                            inv_w)
        _run_chunks(linear_serial, linear_parallel,
                    (n_chunks, *args, alpha, inv_w, float(cfg.t_end), True, np.zeros((1, 1, 1)),
                     g_t_in, g_w, g_d, g_a, any(need_tau), g_tau, qf))
        g = (g_t_in, _sum_chunks(g_w), _sum_chunks(g_d), g_a)
        tau = _sum_chunks(g_tau)

    def out(x: np.ndarray, flag: bool) -> Tensor | None:
        return torch.from_numpy(x).to(dtype=weight.dtype, device=weight.device) if flag else None

    return (*_results(weight, delay, need, *g), out(tau[0], need_tau[0]),
            out(tau[1], need_tau[1] and nrn.cuba))
