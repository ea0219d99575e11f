"""Compiled event-driven simulation of a feed-forward layer of LIF / CubaLIF / LI / CubaLI.

The grid-stepping continuous engine (:mod:`ctsnn.engine.continuous`) advances every neuron
together, step by step, with many small tensor operations per step. For the linear leaky models
(closed-form affine flow) a neuron's trajectory is known between events, so this kernel jumps
from event to event instead, one (sample, neuron) at a time, in float64:

1. the arrival schedule of the neuron: ``t_e + D_ij`` for every input spike ``e`` of its sample
   (sorted once per sample when the delays do not depend on the target — no delay or per-axon
   delays — else per target), rounded onto the grid exactly as the reference schedule does
   (:func:`ctsnn.synapses.snap_to_grid`, in the run's dtype) and dropped after ``T dt``;
   simultaneous arrivals are summed into one jump;
2. between arrivals the closed-form flow; an upward threshold crossing is bracketed on the
   interval (for CubaLIF also a crossing hidden between two points where ``v`` is below the
   threshold: the one interior maximum is located first), then refined to the last bit by a
   safeguarded Illinois / bisection search (it returns the first float with ``v >= v_th``);
3. resets and refractory ends at their exact times (a refractory end within 8 ulps of a grid
   point is put on it, as the reference does), arrivals during the refractory period do not
   move a held ``v`` (CubaLIF's current still jumps), an arrival fires a neuron when it carries
   ``v`` from below to at or above the threshold (one spike per instant).

Cost: the arrivals and spikes of every neuron, not ``T x N``. Every (sample, neuron) is
independent: numba ``prange`` runs them in parallel. Results equal the reference engine's to
rounding (float64: spike times to ~1e-15 s); float32 runs are computed in float64 and rounded
at the end, so their spike times do not drift with ``dt``.

When it runs: :func:`event_driven_refusal` (the one selection rule, also documented in
docs/kernels.md).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from ...compiled import kernel_threads, kernels_enabled, numba_threads
from ...models.base import NeuronModel
from ...models.lif import LI, LIF, CubaLI, CubaLIF
from ...spikes import Spikes
from ...synapses import Arrivals, DelayedArrivals
from .closed_forms import decays
from .schedule import bucket_of, chunk_bounds, sort_arrivals, sort_counted

__all__ = ["EventDrivenOutput", "event_driven_refusal", "event_driven_spikes",
           "run_event_driven"]

#: The models served, and whether each has a synaptic current (CubaLI / CubaLIF).
MODELS = {LI: False, LIF: False, CubaLI: True, CubaLIF: True}
_RESET_CODES = {"zero": 0, "subtract": 1, "none": 2}
_SNAP_ULPS = 8.0  # as ctsnn.synapses.snap_to_grid
_BUDGET = 1 << 22  # spike slots of the first pass (16 to 256 per neuron, at most the widest
# sample's input spikes; neurons that fire more are run again with room)
#: Below this many (input spike, target) pairs a call runs on one thread: waking the others
#: costs more (measured ~50 ms per parallel region on the loaded 2-core machine, 0.6 ms alone).
_PARALLEL_PAIRS = 200_000
#: Bins per input event of the per-synapse arrival sort (fewer arrivals share a bin).
BINS_PER_EVENT = 2


# =========================================================================== numba kernels
@numba.njit(cache=True)
def _flow(cuba, v, i, h, tm, ts, r, vl, near):
    """The closed-form flow over ``h`` seconds without input current (see ctsnn.models.lif;
    the coupling ``kappa`` without cancellation at any ``tau_s / tau_m``)."""
    if not cuba:
        return vl + (v - vl) * math.exp(-h / tm), i
    em, es, k = decays(h, tm, ts)
    return vl + (v - vl) * em + r * i * k, i * es


@numba.njit(cache=True)
def _g(which, cuba, v, i, h, tm, ts, r, vl, near, thr):
    """``v(h) - v_th`` (``which == 0``), minus ``dv/dt`` (``1``) or ``dv/dt`` (``2``) at ``h``."""
    vv, ii = _flow(cuba, v, i, h, tm, ts, r, vl, near)
    if which == 0:
        return vv - thr
    if which == 1:
        return -(vl - vv + r * ii) / tm
    return (vl - vv + r * ii) / tm


@numba.njit(cache=True)
def _root(which, cuba, v, i, lo, hi, g_lo, g_hi, tm, ts, r, vl, near, thr):
    """The first ``h`` in ``(lo, hi]`` with ``g(h) >= 0`` to the last bit (``g(lo) < 0 <=
    g(hi)``): Illinois steps, bisection when a step leaves the bracket or two steps fail to
    halve it (as :func:`solvers.roots.find_root` with ``xtol = 0``)."""
    side = 0
    window = hi - lo
    for it in range(400):
        width = hi - lo
        mid = lo + 0.5 * width
        if not (mid > lo and mid < hi):
            break
        stalled = False
        if it % 2 == 0 and it > 0:
            stalled = width > 0.5 * window
            window = width
        x = mid
        if not stalled and math.isfinite(g_hi) and g_hi != g_lo:
            sec = lo - g_lo * width / (g_hi - g_lo)
            if lo < sec < hi:
                x = sec
        gx = _g(which, cuba, v, i, x, tm, ts, r, vl, near, thr)
        if gx >= 0:
            if side > 0:
                g_lo *= 0.5
            hi, g_hi, side = x, gx, 1
            if gx == 0:
                break
        else:
            if side < 0:
                g_hi *= 0.5
            lo, g_lo, side = x, gx, -1
    return hi


@numba.njit(cache=True)
def _snap(t, dt, eps):
    """``t`` moved onto the grid point ``k dt`` when within 8 ulps (``eps``) of it."""
    g = np.round(t / dt) * dt
    if abs(t - g) <= _SNAP_ULPS * eps * max(abs(g), dt):
        return g
    return t


@numba.njit(cache=True)
def _arrival(a, snap, is32, dt, eps):
    """``(key, time)`` of an arrival computed in the run's dtype: ``key`` is its value in that
    dtype after the reference's grid snapping (decides ties and the drop after ``T dt``),
    ``time`` the float64 instant simulated (the float64 grid point when it was snapped).

    Most arrivals are far from every grid point: ``x = a / dt`` (by a multiplication) more than
    ``32 eps max(|x|, 1)`` from the nearest integer rules out the snap (it needs ``|a / dt -
    k| <= 8 eps max(|k|, 1)`` plus rounding, well inside that margin) without the division."""
    a64 = np.float64(a)
    if is32 or snap:
        x = a64 * (1.0 / dt)
        if abs(x - np.rint(x)) > 32.0 * eps * max(abs(x), 1.0):
            return a64, a64
    if is32:
        k = np.round(np.float64(a) / dt)
        g = np.float32(k * dt)
        tol = np.float32(_SNAP_ULPS * eps) * max(abs(g), np.float32(dt))
        if abs(np.float32(a) - g) <= tol:
            return np.float64(g), k * dt
        return a64, a64
    if snap:
        k = np.round(a64 / dt)
        g = k * dt
        if abs(a64 - g) <= _SNAP_ULPS * eps * max(abs(g), dt):
            return g, g
    return a64, a64


@numba.njit(cache=True)
def _log(out_t, out_c, row, count, t, i):
    if count < out_t.shape[1]:
        out_t[row, count] = t
        if out_c.shape[1] > 0:
            out_c[row, count] = i
    return count + 1


@numba.njit(cache=True)
def _reset(mode, v, thr, vr):
    if mode == 0:
        return vr
    if mode == 1:
        return v - (thr - vr)
    return v


@numba.njit(cache=True)
def _stationary(which, v, i, h1, s0, s1, tm, ts, r, vl, near, thr):
    """Where ``dv/dt = 0`` inside ``(0, h1)`` for CubaLIF (``v = vl + A e^{-h/tm} + B
    e^{-h/ts}``): in closed form (one ``log``), else by the root search when the closed form
    falls outside the interval (rounding at its ends)."""
    c = r * i
    if near:  # v = vl + (v - vl) e^{-h/tm} + c (h/tm) e^{-h/tm}
        h = tm * (1.0 - (v - vl) / c) if c != 0 else -1.0
    else:
        b = c * ts / (ts - tm)
        a = (v - vl) - b
        ratio = -(b * tm) / (a * ts) if a != 0 else -1.0
        h = math.log(ratio) / (1.0 / ts - 1.0 / tm) if ratio > 0 else -1.0
    if h > 0 and h < h1:
        return h
    if which == 1:
        return _root(1, True, v, i, 0.0, h1, -s0, -s1, tm, ts, r, vl, near, thr)
    return _root(2, True, v, i, 0.0, h1, s0, s1, tm, ts, r, vl, near, thr)


@numba.njit(cache=True)
def _below_tangent(v, i, h1, s0, tm, ts, r, vl, near, thr):
    """Whether CubaLIF's ``v`` stays clearly below the threshold on ``[0, h1]``, from its
    tangent at 0: when ``r i >= 0`` and ``v`` rises (``s0 = dv/dt > 0``), ``d2v/dt2 = -(r i /
    ts + dv/dt) / tm < 0`` while ``v`` rises, and ``v`` has one extremum, so ``v(h) <= v + h1
    s0`` on the interval. "Clearly": by a margin far above the rounding of the closed forms
    (``1e-9`` of the magnitudes involved), so the answer is the one the located maximum would
    give. Saves the maximum's ``log`` and flow on most intervals that hold one."""
    c = r * i
    if c < 0 or near:
        return False
    scale = abs(thr) + abs(vl) + abs(v) + c * (1.0 + ts / abs(ts - tm))
    margin = 1e-9 * scale * (1.0 + h1 / tm)
    return v + h1 * s0 < thr - margin


@numba.njit(cache=True)
def _bracket(cuba, v, i, h1, v1, i1, tm, ts, r, vl, near, thr):
    """The first upward threshold crossing on ``[0, h1]`` from ``(v, i)`` (``(v1, i1)`` at
    ``h1``), bracketed: ``(lo, g(lo) < 0, upper, g(upper) >= 0)``, or ``upper = -1`` if none.
    ``v`` has at most one interior extremum (LIF: none): a crossing can hide behind a maximum
    (both ends below threshold), or follow a minimum below threshold when ``v`` starts at or
    above it (after ``reset="none"``)."""
    g0, g1 = v - thr, v1 - thr
    if not cuba:
        return 0.0, g0, (h1 if g0 < 0 and g1 >= 0 else -1.0), g1
    n0, n1 = vl - v + r * i, vl - v1 + r * i1  # tm dv/dt at both ends (signs of the slopes)
    if g0 < 0:
        if g1 >= 0:
            return 0.0, g0, h1, g1
        if n0 > 0 and n1 < 0:  # a maximum inside: is it above the threshold?
            s0, s1 = n0 / tm, n1 / tm
            if _below_tangent(v, i, h1, s0, tm, ts, r, vl, near, thr):
                return 0.0, g0, -1.0, g1
            hm = _stationary(1, v, i, h1, s0, s1, tm, ts, r, vl, near, thr)
            vm, _ = _flow(cuba, v, i, hm, tm, ts, r, vl, near)
            if vm - thr >= 0:
                return 0.0, g0, hm, vm - thr
        return 0.0, g0, -1.0, g1
    if g1 >= 0 and n0 < 0 and n1 > 0:  # a minimum inside: below the threshold?
        hm = _stationary(2, v, i, h1, n0 / tm, n1 / tm, tm, ts, r, vl, near, thr)
        vm, _ = _flow(cuba, v, i, hm, tm, ts, r, vl, near)
        if vm - thr < 0:
            return hm, vm - thr, h1, g1
    return 0.0, g0, -1.0, g1


@numba.njit(cache=True)
def _advance(t, t1, v, i, hold, count, cuba, spiking, mode, p, dt, eps, out_t, out_c, row):
    """Flow from ``t`` to ``t1`` (no arrival in between), spiking at every upward crossing."""
    tm, ts, r, vl, thr, vr, ref, near = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7] > 0
    last = np.nan
    while t < t1:
        if hold > t:  # refractory: v is held, the current decays
            stop = min(hold, t1)
            if cuba:
                i = i * math.exp(-(stop - t) / ts)
            t = stop
            continue
        h1 = t1 - t
        v1, i1 = _flow(cuba, v, i, h1, tm, ts, r, vl, near)
        if spiking:
            lo, g_lo, upper, g_up = _bracket(cuba, v, i, h1, v1, i1, tm, ts, r, vl, near, thr)
            if upper >= 0:
                hs = _root(0, cuba, v, i, lo, upper, g_lo, g_up, tm, ts, r, vl, near, thr)
                ve, ie = _flow(cuba, v, i, hs, tm, ts, r, vl, near)
                t = min(t + hs, t1)
                count = _log(out_t, out_c, row, count, t, ie)
                v, i, last = _reset(mode, ve, thr, vr), ie, t
                if ref > 0:
                    hold = _snap(t + ref, dt, eps)
                continue
        v, i, t = v1, i1, t1
    return t, v, i, hold, last, count


@numba.njit(cache=True)
def _element(at, aw, n, v, i, cuba, spiking, mode, p, t_end, dt, eps, out_t, out_c, row):
    """One (sample, neuron) from 0 to ``t_end``: arrivals ``at`` (sorted, float64 s) with
    jumps ``aw``; returns the spike count and the final state."""
    tm, ts, r, vl, thr, vr, ref, near = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7] > 0
    count, hold, last, t, k = 0, -np.inf, np.nan, 0.0, 0
    if spiking and mode != 2 and v - thr >= 0:  # starts at threshold: fires at t = 0
        count = _log(out_t, out_c, row, count, 0.0, i)
        v = _reset(mode, v, thr, vr)
        if ref > 0:
            hold = _snap(ref, dt, eps)
    while k < n:
        ta = at[k]
        jump = aw[k]
        k += 1
        while k < n and at[k] == ta:  # simultaneous arrivals: one jump
            jump += aw[k]
            k += 1
        if jump == 0:  # moves nothing, fires nothing
            continue
        if hold <= t < ta:  # most pairs: one flow, no crossing (else the general advance)
            v1, i1 = _flow(cuba, v, i, ta - t, tm, ts, r, vl, near)
            if (not spiking or (v < thr and v1 < thr and not (  # no crossing, no maximum
                    cuba and vl - v + r * i > 0 and vl - v1 + r * i1 < 0))
                    or _bracket(cuba, v, i, ta - t, v1, i1, tm, ts, r, vl, near, thr)[2] < 0):
                v, i, t = v1, i1, ta
        if t < ta:
            t, v, i, hold, seen, count = _advance(t, ta, v, i, hold, count, cuba, spiking, mode,
                                                  p, dt, eps, out_t, out_c, row)
            if not math.isnan(seen):
                last = seen
        held = hold > ta
        before = v - thr
        if cuba:
            i += jump
        elif not held:
            v += jump
        if spiking and not held and before < 0 and v - thr >= 0 and last != ta:
            count = _log(out_t, out_c, row, count, ta, i - (jump if cuba else 0.0))
            v, last = _reset(mode, v, thr, vr), ta
            if ref > 0:
                hold = _snap(ta + ref, dt, eps)
    t, v, i, hold, seen, count = _advance(t, t_end, v, i, hold, count, cuba, spiking, mode, p,
                                          dt, eps, out_t, out_c, row)
    return count, v, i


@numba.njit(cache=True)
def _shared_range(b0, b1, ev_t, ev_u, ptr, axon_delay, has_delay, is32, dt, eps, t_end,
                  t_end_key, s_time, s_src, s_n):
    """Samples ``b0..b1-1`` of :func:`_shared_schedules` (scratch allocated once)."""
    width = 0
    for b in range(b0, b1):
        width = max(width, ptr[b + 1] - ptr[b])
    tmp, idx = np.empty(width), np.empty(width)
    at, src = np.empty(width), np.empty(width)
    bins = np.empty(width + 1, dtype=np.int64)
    for b in range(b0, b1):
        e0, e1 = ptr[b], ptr[b + 1]
        m = 0
        for e in range(e0, e1):
            a = ev_t[e] + axon_delay[ev_u[e]] if has_delay else ev_t[e]
            key, sim = _arrival(a, has_delay, is32, dt, eps)
            if key > t_end_key:
                continue
            tmp[m], idx[m] = sim, e
            m += 1
        sort_arrivals(tmp, idx, m, t_end, bins, at, src)
        for q in range(m):
            s_time[e0 + q] = at[q]
            s_src[e0 + q] = np.int64(src[q])
        s_n[b] = m


@numba.njit(cache=True, parallel=True)
def _shared_parallel(n_chunks, ev_t, ev_u, ptr, axon_delay, has_delay, is32, dt, eps, t_end,
                     t_end_key, s_time, s_src, s_n):
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, ptr.shape[0] - 1)
        _shared_range(b0, b1, ev_t, ev_u, ptr, axon_delay, has_delay, is32, dt, eps, t_end,
                      t_end_key, s_time, s_src, s_n)


def _shared_schedules(ev_t, ev_u, ptr, axon_delay, has_delay, is32, dt, eps, t_end, t_end_key,
                      threads=1):
    """Per sample, the arrivals of a target-independent schedule (no delay or per-axon
    delays) sorted by time: ``(time [E], event [E], count [B])`` (sample ``b`` at ``ptr[b]``);
    samples in parallel chunks when ``threads > 1`` (same result: each sample is one task)."""
    batch_size = ptr.shape[0] - 1
    s_time, s_src = np.empty(ev_t.size), np.empty(ev_t.size, dtype=np.int64)
    s_n = np.zeros(batch_size, dtype=np.int64)
    args = (ev_t, ev_u, ptr, axon_delay, has_delay, is32, dt, eps, t_end, t_end_key, s_time,
            s_src, s_n)
    if threads > 1 and batch_size > 1:
        with numba_threads(threads):
            _shared_parallel(min(batch_size, 4 * threads), *args)
    else:
        _shared_range(0, batch_size, *args)
    return s_time, s_src, s_n


@numba.njit(cache=True)
def synapse_schedule(j, e0, e1, ev_t, ev_u, ev_x, weight, delay, is32, dt, eps, t_end_key,
                     t_end, tmp, val, bins, at, aw):
    """Per-synapse delays: the arrivals at neuron ``j`` of input events ``e0..e1-1`` (zero
    weights and arrivals after the run dropped) sorted by time (stably: equal times keep event
    order) into ``at``, ``aw``; shared by the feed-forward and recurrent kernels. The gather
    counts the arrivals into ``2 (e1 - e0)`` equal bins over ``[0, t_end]`` for
    :func:`~.schedule.sort_counted`, without a branch per arrival (each is written, and
    counted only when kept). ``tmp``, ``val``, ``at``, ``aw``: scratch
    of ``>= e1 - e0`` entries, ``bins`` of ``>= 2 (e1 - e0) + 1``; returns the number."""
    n_bins = BINS_PER_EVENT * (e1 - e0)
    if n_bins == 0:
        return 0
    scale = n_bins / t_end if t_end > 0 else 0.0
    for q in range(n_bins + 1):
        bins[q] = 0
    m = 0
    for e in range(e0, e1):
        u = ev_u[e]
        w = weight[j, u]
        key, sim = _arrival(ev_t[e] + delay[j, u], True, is32, dt, eps)
        keep = not ((key > t_end_key) | (w == 0))
        tmp[m], val[m] = sim, ev_x[e] * w
        bins[bucket_of(sim, scale, n_bins) + 1] += keep
        m += keep
    sort_counted(tmp, val, m, bins, n_bins, scale, at, aw)
    return m


@numba.njit(cache=True)
def _rows_range(r0, r1, rows, ev_t, ev_u, ev_x, ptr, weight, delay, shared, s_time, s_src, s_n,
                is32, p, cuba, spiking, mode, v0, i0, t_end, t_end_key, dt, eps, out_t, out_c,
                counts, start, v_end, i_end):
    """The (sample, neuron) ``rows[r0:r1]`` (flat ``b N + j``), one after the other, with one
    set of scratch arrays, the final state into ``v_end``, ``i_end``.

    Spike slots: ``out_t`` / ``out_c`` are flat; the rows ``r0..r1-1`` own the slots ``r0 cap
    .. r1 cap`` (``cap = out_t.size // rows.size``) and write their spikes one row after the
    other from the first of them (dense: the memory touched is the spikes', not ``cap`` per
    row). Row ``r``'s spikes are ``counts[r]`` slots from ``start[r]``; a row that does not fit
    in what is left (``start[r] = -1``) is counted but not kept (the caller runs it again)."""
    n = v0.shape[1]
    cap = out_t.size // rows.shape[0]
    used, end = r0 * cap, r1 * cap
    width = 0
    for r in range(r0, r1):
        b = rows[r] // n
        width = max(width, ptr[b + 1] - ptr[b])
    tmp, val = np.empty(width), np.empty(width)
    at, aw = np.empty(width), np.empty(width)
    bins = np.empty(BINS_PER_EVENT * width + 1, dtype=np.int32)
    for r in range(r0, r1):
        q = rows[r]
        b, j = q // n, q % n
        e0, e1 = ptr[b], ptr[b + 1]
        if shared:
            m = s_n[b]
            for k in range(m):
                e = s_src[e0 + k]
                at[k] = s_time[e0 + k]
                aw[k] = ev_x[e] * weight[j, ev_u[e]]
        else:
            m = synapse_schedule(j, e0, e1, ev_t, ev_u, ev_x, weight, delay, is32, dt, eps,
                                 t_end_key, t_end, tmp, val, bins, at, aw)
        room_t = out_t[used:end].reshape((1, end - used))
        room_c = out_c[used:end].reshape((1, end - used)) if out_c.size else out_c.reshape((1, 0))
        c, v, i = _element(at, aw, m, v0[b, j], i0[b, j], cuba, spiking, mode, p[j], t_end,
                           dt, eps, room_t, room_c, 0)
        counts[r] = c
        start[r] = used if c <= end - used else -1
        used += c if c <= end - used else 0
        v_end[b, j] = v
        i_end[b, j] = i


@numba.njit(cache=True, parallel=True)
def _rows_parallel(n_chunks, rows, ev_t, ev_u, ev_x, ptr, weight, delay, shared, s_time, s_src,
                   s_n, is32, p, cuba, spiking, mode, v0, i0, t_end, t_end_key, dt, eps, out_t,
                   out_c, counts, start, v_end, i_end):
    """:func:`_rows_range` over ``n_chunks`` chunks of rows in parallel (each chunk owns its
    rows: results do not depend on the number of threads)."""
    for c in prange(n_chunks):
        r0, r1 = chunk_bounds(c, n_chunks, rows.shape[0])
        _rows_range(r0, r1, rows, ev_t, ev_u, ev_x, ptr, weight, delay, shared, s_time, s_src,
                    s_n, is32, p, cuba, spiking, mode, v0, i0, t_end, t_end_key, dt, eps, out_t,
                    out_c, counts, start, v_end, i_end)


@numba.njit(cache=True)
def _gather_start(n_b, n, counts, where, more_counts):
    """Where each sample's spikes start in the output ``[B + 1]``."""
    start = np.zeros(n_b + 1, dtype=np.int64)
    for b in range(n_b):
        total = 0
        for j in range(n):
            q = b * n + j
            total += counts[q] if where[q] < 0 else more_counts[where[q]]
        start[b + 1] = start[b] + total
    return start


@numba.njit(cache=True)
def _gather_range(b0, b1, n, start, out_t, out_c, counts, first, where, more_t, more_c,
                  more_counts, more_first, is32, times, current, batch, units):
    """Samples ``b0..b1-1`` of :func:`_gather_spikes` (see there)."""
    size_max = 0
    for b in range(b0, b1):
        size_max = max(size_max, start[b + 1] - start[b])
    t = np.empty(size_max)
    c = np.zeros(size_max)
    u = np.empty(size_max, dtype=np.int64)
    for b in range(b0, b1):
        k0, size = start[b], start[b + 1] - start[b]
        k = 0
        for j in range(n):
            q = b * n + j
            src_t, src_c = out_t, out_c
            cnt, at = counts[q], first[q]
            if where[q] >= 0:
                src_t, src_c = more_t, more_c
                cnt, at = more_counts[where[q]], more_first[where[q]]
            for s in range(cnt):
                t[k] = np.float64(np.float32(src_t[at + s])) if is32 else src_t[at + s]
                if src_c.shape[0] > 0:
                    c[k] = src_c[at + s]
                u[k] = j
                k += 1
        order = np.argsort(t[:size], kind="mergesort")  # stable: equal times keep unit order
        for s in range(size):
            times[k0 + s] = t[order[s]]
            if current.shape[0] > 0:
                current[k0 + s] = c[order[s]]
            batch[k0 + s] = b
            units[k0 + s] = u[order[s]]


@numba.njit(cache=True, parallel=True)
def _gather_parallel(n_chunks, n_b, n, start, out_t, out_c, counts, first, where, more_t, more_c,
                     more_counts, more_first, is32, times, current, batch, units):
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, n_b)
        _gather_range(b0, b1, n, start, out_t, out_c, counts, first, where, more_t, more_c,
                      more_counts, more_first, is32, times, current, batch, units)


def _gather_spikes(n_b: int, n: int, slots: tuple, where: np.ndarray, more: tuple, is32: bool,
                   threads: int) -> tuple[np.ndarray, ...]:
    """Every spike in the order of :class:`Spikes` (by sample, then time, then unit): rows
    ``q = b N + j`` come from the first pass (``where[q] < 0``) or from row ``where[q]`` of the
    second; each pass is ``(times, current, counts, first)`` (flat slots; row ``r``'s
    ``counts[r]`` spikes from slot ``first[r]``, :func:`_rows_range`). Times are sorted as
    rounded to the run's dtype (float32 when ``is32``), so the order holds for the returned
    values. Returns ``(times, current, batch, unit)`` (``current`` empty when not recorded;
    times and current in the dtype of the slots, float32 or float64)."""
    out_t, out_c, counts, first = slots
    more_t, more_c, more_counts, more_first = more
    start = _gather_start(n_b, n, counts, where, more_counts)
    total = int(start[n_b])
    times = np.empty(total, dtype=out_t.dtype)
    current = np.empty(total if out_c.size > 0 or more_c.size > 0 else 0, dtype=out_t.dtype)
    batch = np.empty(total, dtype=np.int64)
    units = np.empty(total, dtype=np.int64)
    args = (n, start, out_t, out_c, counts, first, where, more_t, more_c, more_counts,
            more_first, is32, times, current, batch, units)
    if threads > 1 and n_b > 1:
        _gather_parallel(min(n_b, 4 * threads), n_b, *args)
    else:
        _gather_range(0, n_b, *args)
    return times, current, batch, units


# =========================================================================== selection rule
def event_driven_refusal(model: NeuronModel, *, time: str, method: str, arrivals: object,
                         dt: float, n_steps: int, current: object, jumps: object, recurrent: object,
                         record: tuple, saveat: object, integrand: object, state: tuple | None,
                         dtype: torch.dtype) -> str | None:
    """Why the compiled event-driven engine cannot serve a run, or ``None`` when it does.

    The one selection rule (see docs/kernels.md): continuous time with the closed-form flow
    (``method="exact"``) of exactly :class:`LIF`, :class:`CubaLIF`, :class:`LI` or
    :class:`CubaLI`; input only as spikes through a :class:`~ctsnn.synapses.Dense` synapse
    with the ``Exact`` kernel (zero, per-axon or per-synapse delays); no input current, jumps,
    recurrent synapse, recording, ``saveat`` or integrand; float32 / float64; nothing that
    needs an autograd graph (no grad mode, or no input, weight, delay, parameter or initial
    state requiring grad); and compiled kernels enabled for these CPU tensors
    (:func:`ctsnn.compiled.kernels_enabled`). Otherwise the reference engine runs.
    """
    if time != "continuous" or method != "exact":
        return "not continuous time with the exact flow"
    if type(model) not in MODELS:
        return f"{type(model).__name__} is not one of LIF, CubaLIF, LI, CubaLI"
    reason = input_refusal(arrivals, dt=dt, n_steps=n_steps, dtype=dtype, current=current,
                           jumps=jumps, recurrent=recurrent, saveat=saveat,
                           integrand=integrand, record=tuple(record) or None)
    if reason is not None:
        return reason
    return tensors_refusal([*input_tensors(arrivals), *model.parameters(), *model.buffers(),
                            *(() if state is None else state)])


def input_events(spikes: Spikes, batch_size: int,
                 dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times [E] in dtype, units [E] int64, ptr [B + 1])`` of the input spikes for a kernel:
    :class:`Spikes` keep their events sorted by (sample, time, unit), so sample ``b``'s events
    are ``ptr[b]:ptr[b + 1]`` as they stand."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    ev_t = spikes.times.detach().to(dtype).cpu().numpy().astype(np_dtype, copy=False)
    ev_u = spikes.units.cpu().numpy().astype(np.int64, copy=False)
    ptr = np.zeros(batch_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(spikes.batch.cpu().numpy(), minlength=batch_size), out=ptr[1:])
    return ev_t, ev_u, ptr


def input_refusal(arrivals: object, *, dt: float, n_steps: int, dtype: torch.dtype,
                  **given: object) -> str | None:
    """Why a compiled event kernel can't take this input (``None``: it can): the input must be
    spikes through a ``Dense`` synapse with the ``Exact`` kernel on the run's grid, in float32 /
    float64, and none of ``given`` (other inputs, recordings: ``name=value``) may be set."""
    if not isinstance(arrivals, (Arrivals, DelayedArrivals)) or arrivals.weight is None:
        return "input is not spikes through a Dense synapse with the Exact kernel"
    if arrivals.dt != dt:
        return "the input spikes' dt differs from the run's"
    if n_steps > arrivals.spikes.n_steps:
        return "the run is longer than the input's grid"
    for name, value in given.items():
        if value is not None:
            return f"{name} is given"
    if dtype not in (torch.float32, torch.float64):
        return f"dtype {dtype} (float32 / float64 only)"
    return None


def input_tensors(arrivals: Arrivals | DelayedArrivals) -> list[Tensor]:
    """The tensors of an input schedule a kernel reads (weight, spike times and values, delays)."""
    out = [arrivals.weight, arrivals.spikes.times, arrivals.spikes.values]
    if isinstance(arrivals, DelayedArrivals):
        out.append(arrivals.delay)
    return out


def tensors_refusal(tensors: list[Tensor]) -> str | None:
    """Why the kernels cannot take these tensors (an autograd graph is needed, kernels are off
    or a tensor is not on the CPU), or ``None``: the part of the refusal both event kernels
    (feed-forward and recurrent) share."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "an input needs an autograd graph"
    if not kernels_enabled(*tensors):
        return "compiled kernels are off or a tensor is not on the CPU"
    return None


# =========================================================================== entry point
class EventDrivenOutput(NamedTuple):
    """Spikes of the layer (``[K]`` each, in the order of :class:`Spikes`: by sample, then
    time, then unit), ``current`` ``[K]`` the synaptic current just before each spike
    (CubaLIF; zeros otherwise) and the final state (the model's named tuple of ``[B, N]``)."""

    times: Tensor
    batch: Tensor
    units: Tensor
    current: Tensor
    final_state: tuple


def _params(model: NeuronModel, cuba: bool) -> np.ndarray:
    """Per-neuron float64 parameters ``[N, 8]``: tau_mem, tau_syn, r, v_leak, v_th, v_reset,
    refractory, near (tau_syn within 1e-9 tau_mem, as the reference flow decides)."""
    n = model.n

    def get(name: str, default: float) -> Tensor:
        value = getattr(model, name, None)
        if value is None:
            return torch.full((n,), default, dtype=torch.float64)
        return value.detach().to(torch.float64).cpu()

    tm, ts = get("tau_mem", 1.0), get("tau_syn", 1.0)
    near = torch.zeros(n, dtype=torch.bool)
    if cuba:  # decided in the model's dtype, as the reference flow does
        tm_m, ts_m = model.tau_mem.detach(), model.tau_syn.detach()
        near = ((ts_m - tm_m).abs() <= 1e-9 * tm_m).cpu()
    cols = [tm, ts, get("r", 1.0), get("v_leak", 0.0), get("v_threshold", math.inf),
            get("v_reset", 0.0), get("refractory", 0.0), near.to(torch.float64)]
    return torch.stack(cols, dim=1).contiguous().numpy()


def run_event_driven(model: NeuronModel, arrivals: Arrivals | DelayedArrivals, *,
                     n_steps: int, batch_size: int, state: tuple | None,
                     dtype: torch.dtype) -> EventDrivenOutput:
    """Simulate the layer event by event (see the module docstring).

    Args:
        model: an LIF, CubaLIF, LI or CubaLI population of ``N`` neurons.
        arrivals: the schedule :meth:`ctsnn.synapses.Dense.arrivals` built (its input spikes,
            weight ``[N, N_in]`` and delays ``[N, N_in]`` seconds).
        n_steps, batch_size: the grid (``T = n_steps dt`` seconds) and ``B``.
        state: initial state (``[B, N]`` per variable), default ``model.initial_state``.
        dtype: dtype of the results (the computation is float64).
    """
    cuba, spiking = MODELS[type(model)], model.spiking
    spikes, dt = arrivals.spikes, arrivals.dt
    if state is None:
        state = model.initial_state(batch_size, dtype=dtype)
    is32 = dtype == torch.float32
    np_dtype = np.float32 if is32 else np.float64
    ev_t, ev_u, ptr = input_events(spikes, batch_size, dtype)
    ev_x = spikes.values.detach().to(torch.float64).cpu().numpy()
    weight = arrivals.weight.detach().to(torch.float64).cpu().contiguous().numpy()
    delay_t = arrivals.delay.detach() if isinstance(arrivals, DelayedArrivals) else None
    shared = delay_t is None or delay_t.shape[0] <= 1 or delay_t.stride(0) == 0
    has_delay = delay_t is not None
    delay = np.zeros((1, 1), dtype=np_dtype)
    axon = np.zeros(1, dtype=np_dtype)
    if has_delay and shared:
        axon = (delay_t[0].to(dtype).cpu().contiguous().numpy() if delay_t.shape[0]
                else np.zeros(weight.shape[1], dtype=np_dtype))
    elif has_delay:
        delay = delay_t.to(dtype).cpu().contiguous().numpy()
    eps = float(torch.finfo(dtype).eps)
    t_end = n_steps * dt
    t_end_key = float(torch.tensor(t_end, dtype=torch.float64).to(dtype))  # later ones drop
    n, n_rows = model.n, batch_size * model.n
    threads = kernel_threads() if ev_t.size * n >= _PARALLEL_PAIRS else 1
    s_time, s_src, s_n = np.empty(0), np.empty(0, dtype=np.int64), np.zeros(0, np.int64)
    if shared:
        s_time, s_src, s_n = _shared_schedules(ev_t, ev_u, ptr, axon, has_delay, is32, dt, eps,
                                               t_end, t_end_key, threads)
    v0 = state[0].detach().to(torch.float64).cpu().numpy()
    i0 = (state[1] if cuba else state[0] * 0).detach().to(torch.float64).cpu().numpy()
    p = _params(model, cuba)
    mode = _RESET_CODES.get(getattr(model, "reset_mode", "none"), 2)
    v_end, i_end = np.empty((batch_size, n)), np.empty((batch_size, n))

    def simulate(rows: np.ndarray, cap: int) -> tuple[np.ndarray, ...]:
        # spike slots in the run's dtype: a float32 run stores each float64 spike time and
        # current rounded once, as the float64 slots were rounded at the end (half the memory).
        # cap per row on average, written densely per chunk of rows (_rows_range); torch's
        # allocator: numpy advises huge pages for large arrays, which would make the sparse
        # part of the slots resident in 2 MiB pieces
        out_t = torch.empty(rows.size * cap, dtype=dtype).numpy()
        out_c = torch.empty(rows.size * cap if cuba else 0, dtype=dtype).numpy()
        counts = np.zeros(rows.size, dtype=np.int64)
        first = np.empty(rows.size, dtype=np.int64)
        args = (rows, ev_t, ev_u, ev_x, ptr, weight, delay, shared, s_time, s_src, s_n, is32, p,
                cuba, spiking, mode, v0, i0, t_end, t_end_key, dt, eps, out_t, out_c, counts,
                first, v_end, i_end)
        if threads > 1 and rows.size > 1:
            with numba_threads(threads):
                _rows_parallel(min(rows.size, 16 * threads), *args)
        else:
            _rows_range(0, rows.size, *args)
        return out_t, out_c, counts, first

    rows = np.arange(n_rows, dtype=np.int64)
    # spike slots per row: rarely more than the sample's input spikes (a neuron that fires
    # more often is run again with room), so small inputs do not page in a large buffer
    widest = int(np.diff(ptr).max()) if batch_size else 0
    cap = int(min(max(_BUDGET // max(n_rows, 1), 16), 256, max(widest, 16)))
    slots = simulate(rows, cap)
    counts, first = slots[2], slots[3]
    where = np.full(n_rows, -1, dtype=np.int64)
    over = np.nonzero(first < 0)[0]
    more = (slots[0][:0], slots[1][:0], counts[:0], first[:0])
    if over.size:  # rows whose spikes did not fit in their chunk's slots: again with room
        where[over] = np.arange(over.size)
        more = simulate(over, int(counts[over].max()))
    times, current, batch, units = _gather_spikes(batch_size, n, slots, where, more, is32,
                                                  threads)
    del slots, more
    parts = [torch.from_numpy(v_end).to(dtype)]
    if cuba:
        parts.append(torch.from_numpy(i_end).to(dtype))
    times = torch.from_numpy(times).to(dtype)
    current = torch.from_numpy(current).to(dtype) if cuba else torch.zeros_like(times)
    return EventDrivenOutput(times, torch.from_numpy(batch), torch.from_numpy(units), current,
                             model.State(*parts))


def event_driven_spikes(out: EventDrivenOutput, *, dt: float, n_steps: int, batch_size: int,
                        n_units: int) -> Spikes:
    """The output spikes of :func:`run_event_driven` as :class:`Spikes` (already in order)."""
    return Spikes.from_sorted_events(out.times, out.units, out.batch, dt=dt, n_steps=n_steps,
                                     batch_size=batch_size, n_units=n_units)
