"""The numba loop of :mod:`ctsnn.engine.compiled.generic_loop`, as a template.

This module is not imported: :func:`ctsnn.engine.compiled.generic_loop.loop_module` reads its
text, replaces the block between the ``PLACEHOLDERS`` markers by a model's generated functions
(:func:`ctsnn.models.equations.codegen.model_source`, each compiled with :data:`_jit`) and its
constants, writes the result to a file named after a hash of its text in the user's cache
directory and imports it, so that numba's on-disk cache (``cache=True``) keeps the compiled
loop across processes. The placeholders below only make the template valid Python.

Everything is float64 and scalar per (sample, neuron) row; see the loop module for the
semantics (they are the reference engine's).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from ctsnn.engine.compiled.schedule import chunk_bounds, sort_arrivals

_jit = numba.njit(cache=True, error_model="numpy")  # inf / nan as torch, no ZeroDivisionError

SNAP_ULPS = 8.0  # as ctsnn.synapses.snap_to_grid
MAX_ITER = 100  # as solvers.roots.find_root
NEG_MAX = -1.7976931348623157e308

# PLACEHOLDERS BEGIN
METHOD = 3  # index in generic_loop.METHODS: euler, midpoint, heun, rk4
SPIKING = True  # the model has a threshold
RESETS = True  # the model has a reset
HAS_SLOPE = True  # search crossings hidden inside a piece (non-monotone models)
JUMP = 0  # index of the jump target in the state


@_jit
def rhs(y, tt, p, j, out):
    """``out[i] = dy_i/dt`` at time ``tt`` for neuron ``j`` (generated)."""
    raise NotImplementedError


@_jit
def g(y, p, j):
    """The threshold function (generated)."""
    raise NotImplementedError


@_jit
def slope(y, dy, p, j):
    """``dg/dt`` when the state moves with ``dy`` (generated)."""
    raise NotImplementedError


@_jit
def reset(y, p, j):
    """The reset, in place (generated)."""
    raise NotImplementedError
# PLACEHOLDERS END


@_jit
def nan_to_inf(x):
    """As ``torch.nan_to_num(x, nan=inf, posinf=inf)`` (``-inf`` to the lowest float)."""
    if math.isnan(x) or x == math.inf:
        return math.inf
    if x == -math.inf:
        return NEG_MAX
    return x


@_jit
def arrival_key(t, d, snap, is32, dt, eps):
    """An arrival time ``t + d`` in the run's dtype, snapped onto a grid point within 8 ulps
    (:func:`ctsnn.synapses.snap_to_grid`) when ``snap``; returned as float64."""
    if is32:
        a = np.float32(np.float32(t) + np.float32(d))
        if snap:
            at = np.float32(np.round(np.float64(a) / dt) * dt)
            if abs(a - at) <= np.float32(SNAP_ULPS * eps) * max(abs(at), np.float32(dt)):
                a = at
        return np.float64(a)
    a = t + d
    if snap:
        at = np.round(a / dt) * dt
        if abs(a - at) <= SNAP_ULPS * eps * max(abs(at), dt):
            a = at
    return a


@_jit
def grid(n, dt, is32):
    """The grid point ``n dt`` (float64 product) rounded to the run's dtype."""
    return np.float64(np.float32(n * dt)) if is32 else n * dt


@_jit
def locate(t, dt, is32):
    """``(step, offset)`` of a time as :func:`ctsnn.spikes.locate` computes it in the dtype."""
    n = max(math.ceil(t / dt) - 1, 0)
    for _ in range(8):
        lo, hi = grid(n, dt, is32), grid(n + 1, dt, is32)
        if t <= lo and n > 0:
            n -= 1
        elif t > hi:
            n += 1
        else:
            break
    lo, hi = grid(n, dt, is32), grid(n + 1, dt, is32)
    step = grid(1, dt, is32) if is32 else dt
    if t >= hi:
        return n, step
    off = np.float64(np.float32(np.float32(t) - np.float32(lo))) if is32 else t - lo
    return n, min(off, step)


@_jit
def schedule(j, e0, e1, ev_t, ev_u, ev_x, weight, delay, has_delay, is32, dt, eps, key_end,
              n_steps, tmp, val, at, aw, bins, a_step, a_off, a_val):
    """The arrivals at neuron ``j`` of events ``e0..e1-1`` as steps, offsets and summed jumps
    (one per instant, zero jumps kept: they split the step as in the reference); returns
    their number."""
    m = 0
    for e in range(e0, e1):
        u = ev_u[e]
        key = arrival_key(ev_t[e], delay[j, u] if has_delay else 0.0, has_delay, is32, dt, eps)
        if key > key_end:
            continue
        tmp[m], val[m] = key, ev_x[e] * weight[j, u]
        m += 1
    sort_arrivals(tmp, val, m, max(key_end, dt), bins, at, aw)
    k = 0
    q = 0
    while q < m:
        t = at[q]
        jump = aw[q]
        q += 1
        while q < m and at[q] == t:
            jump += aw[q]
            q += 1
        n, off = locate(t, dt, is32)
        if n >= n_steps:
            break
        a_step[k], a_off[k], a_val[k] = n, off, jump
        k += 1
    return k


@_jit
def field(y, t, p, j, out, held, clamp):
    """``rhs`` with the derivatives of the clamped variables zeroed where ``held``."""
    rhs(y, t, p, j, out)
    if held:
        for i in range(y.shape[0]):
            if clamp[i]:
                out[i] = 0.0


@_jit
def step(y, t, h, p, j, out, w, held, clamp):
    """One step of the method from ``(t, y)`` over ``h`` (the reference's op order); where
    ``held``, the clamped variables keep their values (refractory period)."""
    k1, k2, k3, k4, tmp = w[0], w[1], w[2], w[3], w[4]
    s = y.shape[0]
    field(y, t, p, j, k1, held, clamp)
    if METHOD == 0:
        for i in range(s):
            out[i] = y[i] + h * k1[i]
    elif METHOD == 1:
        half = 0.5 * h
        for i in range(s):
            tmp[i] = y[i] + half * k1[i]
        field(tmp, t + half, p, j, k2, held, clamp)
        for i in range(s):
            out[i] = y[i] + h * k2[i]
    elif METHOD == 2:
        for i in range(s):
            tmp[i] = y[i] + h * k1[i]
        field(tmp, t + h, p, j, k2, held, clamp)
        for i in range(s):
            out[i] = y[i] + 0.5 * h * (k1[i] + k2[i])
    else:
        half = 0.5 * h
        for i in range(s):
            tmp[i] = y[i] + half * k1[i]
        field(tmp, t + half, p, j, k2, held, clamp)
        for i in range(s):
            tmp[i] = y[i] + half * k2[i]
        field(tmp, t + half, p, j, k3, held, clamp)
        for i in range(s):
            tmp[i] = y[i] + h * k3[i]
        field(tmp, t + h, p, j, k4, held, clamp)
        sixth = h / 6.0
        for i in range(s):
            out[i] = y[i] + sixth * (((k1[i] + 2.0 * k2[i]) + 2.0 * k3[i]) + k4[i])
    if held:
        for i in range(s):
            if clamp[i]:
                out[i] = y[i]


@_jit
def root(kind, y, tau, lo, hi, g_lo, g_hi, t0, p, j, xtol, w, yx, dy, clamp):
    """:func:`solvers.roots.find_root` for one element: ``g`` (``kind`` 0) or minus the
    slope of ``g`` (1) along the partial step from ``(tau, y)``."""
    g_hi = nan_to_inf(g_hi)
    side = 0
    window = hi - lo
    for it in range(MAX_ITER):
        width = hi - lo
        mid = lo + 0.5 * width
        if not (width > xtol and mid > lo and mid < hi):
            break
        use = False
        secant = mid
        if math.isfinite(g_hi):
            secant = lo - g_lo * width / (g_hi - g_lo)
            use = secant > lo and secant < hi
        if it % 2 == 0 and it > 0:
            use = use and not (width > 0.5 * window)
            window = width
        x = secant if use else mid
        step(y, t0 + tau, x - tau, p, j, yx, w, False, clamp)
        if kind == 0:
            gx = g(yx, p, j)
        else:
            rhs(yx, t0, p, j, dy)
            gx = -slope(yx, dy, p, j)
        gx = nan_to_inf(gx)
        if gx >= 0:
            if side > 0:
                g_lo *= 0.5
            hi, g_hi, side = x, gx, 1
        else:
            if side < 0:
                g_hi *= 0.5
            lo, g_lo, side = x, gx, -1
        if gx == 0:
            break
    return hi


@_jit
def advance(y, tau, end, t0, p, j, xtol, n, count, out_n, out_tau, row, w, y1, ye, dy, hold,
            ref, has_ref, clamp):
    """:func:`solvers.events.advance_with_events` for one element: from ``tau`` to ``end``,
    spiking at every crossing, held (no crossing, clamped variables fixed) until ``hold``
    when ``has_ref``; returns ``(count, last spike, hold)``."""
    s = y.shape[0]
    last = -math.inf
    while tau < end:
        held = has_ref and hold > tau
        stop = hold if held and hold < end else end
        g0 = g(y, p, j) if SPIKING else 0.0
        step(y, t0 + tau, stop - tau, p, j, y1, w, held, clamp)
        cross = False
        upper = stop
        g1 = 0.0
        if SPIKING and g0 < 0 and not held:
            g1 = nan_to_inf(g(y1, p, j))
            cross = g1 >= 0
            if not cross and HAS_SLOPE:
                rhs(y, t0, p, j, dy)
                s0 = slope(y, dy, p, j)
                rhs(y1, t0, p, j, dy)
                s1 = slope(y1, dy, p, j)
                if s0 > 0 and s1 < 0:
                    t_max = root(1, y, tau, tau, stop, -s0, -s1, t0, p, j, xtol, w, ye, dy,
                                 clamp)
                    step(y, t0 + tau, t_max - tau, p, j, ye, w, False, clamp)
                    g_max = g(ye, p, j)
                    if g_max >= 0:
                        cross, upper, g1 = True, t_max, g_max
        if not cross:
            for i in range(s):
                y[i] = y1[i]
            tau = stop
            continue
        t_event = root(0, y, tau, tau, upper, g0, g1, t0, p, j, xtol, w, ye, dy, clamp)
        step(y, t0 + tau, t_event - tau, p, j, ye, w, False, clamp)
        for i in range(s):
            y[i] = ye[i]
        reset(y, p, j)
        tau = t_event
        last = t_event
        if has_ref:
            hold = t_event + ref
        if count < out_n.shape[1]:
            out_n[row, count], out_tau[row, count] = n, t_event
        count += 1
    return count, last, hold


@_jit
def snap(t, dt, eps):
    """``t`` moved onto the grid point ``k dt`` within 8 ulps (as ctsnn.synapses.snap_to_grid)."""
    at = np.round(t / dt) * dt
    if abs(t - at) <= SNAP_ULPS * eps * max(abs(at), dt):
        return t + (at - t)
    return t


@_jit
def element(a_step, a_off, a_val, m, y, p, j, n_steps, dt, dt_end, eps, xtol, out_n, out_tau,
            row, w, y1, ye, dy, ref, has_ref, clamp):
    """One (sample, neuron) over the run; returns ``(spike count, finite throughout)``."""
    count = 0
    ref_end = -math.inf  # absolute time at which the refractory period ends
    if SPIKING and RESETS and g(y, p, j) >= 0:  # at threshold at t = 0: fires at 0
        reset(y, p, j)
        ref_end = ref
        if count < out_n.shape[1]:
            out_n[row, count], out_tau[row, count] = 0, 0.0
        count += 1
    k = 0
    finite = True
    for n in range(n_steps):
        t0 = n * dt
        tau = 0.0
        last = -math.inf
        hold = snap(ref_end - t0, dt, eps) if has_ref else -math.inf
        while True:
            has = k < m and a_step[k] == n
            end = a_off[k] if has else dt_end
            count, seen, hold = advance(y, tau, end, t0, p, j, xtol, n, count, out_n, out_tau,
                                        row, w, y1, ye, dy, hold, ref, has_ref, clamp)
            if seen > -math.inf:
                last = seen
            tau = end
            if not has:
                break
            held = has_ref and hold > tau
            before = g(y, p, j) if SPIKING else 0.0
            if not (held and clamp[JUMP]):
                y[JUMP] += a_val[k]
            k += 1
            if SPIKING and not held and before < 0 and g(y, p, j) >= 0 and last != tau:
                reset(y, p, j)
                last = tau
                if has_ref:
                    hold = tau + ref
                if count < out_n.shape[1]:
                    out_n[row, count], out_tau[row, count] = n, tau
                count += 1
        if has_ref:
            ref_end = hold + t0
        for i in range(y.shape[0]):
            finite = finite and math.isfinite(y[i])
    return count, finite


@_jit
def rows_range(r0, r1, rows, ev_t, ev_u, ev_x, ptr, weight, delay, has_delay, is32, dt,
               eps, key_end, n_steps, dt_end, xtol, p, ref, has_ref, clamp, y0, out_n, out_tau,
               counts, finite, y_end):
    """Rows ``rows[r0:r1]`` (flat ``b N + j``), scratch allocated once."""
    n, s = y0.shape[1], y0.shape[2]
    width = 1
    for r in range(r0, r1):
        b = rows[r] // n
        width = max(width, ptr[b + 1] - ptr[b])
    tmp, val, at, aw = np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    bins = np.empty(width + 1, dtype=np.int64)
    a_step, a_off, a_val = np.empty(width, dtype=np.int64), np.empty(width), np.empty(width)
    w = np.empty((5, s))
    y, y1, ye, dy = np.empty(s), np.empty(s), np.empty(s), np.empty(s)
    for r in range(r0, r1):
        q = rows[r]
        b, j = q // n, q % n
        m = schedule(j, ptr[b], ptr[b + 1], ev_t, ev_u, ev_x, weight, delay, has_delay,
                      is32, dt, eps, key_end, n_steps, tmp, val, at, aw, bins, a_step,
                      a_off, a_val)
        for i in range(s):
            y[i] = y0[b, j, i]
        c, ok = element(a_step, a_off, a_val, m, y, p, j, n_steps, dt, dt_end, eps, xtol,
                        out_n, out_tau, r, w, y1, ye, dy, ref[j], has_ref, clamp)
        counts[r] = c
        finite[r] = ok
        for i in range(s):
            y_end[b, j, i] = y[i]

@numba.njit(cache=True, parallel=True, error_model="numpy")
def rows_parallel(n_chunks, rows, *args):
    for c in prange(n_chunks):
        r0, r1 = chunk_bounds(c, n_chunks, rows.shape[0])
        rows_range(r0, r1, rows, *args)
