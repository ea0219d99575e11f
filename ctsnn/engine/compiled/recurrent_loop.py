"""The per-sample event loop of the compiled recurrent kernel (:mod:`.event_recurrent`).

One sample is simulated in time order in float64 from four event sources, each kept in the
structure that suits it (structure-of-arrays, no per-arrival heap traffic for the common cases):

* **threshold crossings**: a tournament tree (a binary min-tree over the ``N`` neurons, one
  leaf each, ties to the lower index) of each neuron's *lower bound* on its next crossing time;
  the bound is a few flops (:func:`_lower`), and only when a neuron's bound comes first among
  all events is its exact crossing predicted (:func:`_exact`: bracketed and refined to the last
  bit as the feed-forward kernel does). A neuron touched by an arrival gets a new bound; with
  many touched at one instant (zero-delay recurrence: every spike reaches all neurons at once)
  the tree is rebuilt in one ``O(N)`` pass;
* **feed-forward arrivals**: with per-synapse delays each neuron's arrivals sorted once and a
  second tournament tree over the neurons' next arrivals; without delays or with per-axon
  delays one time-sorted list of the sample's input spikes (a pointer);
* **recurrent spikes in flight**: a binary heap of streams, one entry per spike whose arrivals
  are not all delivered (the targets of a source sorted by delay once per call); the arrivals of
  one instant are delivered in one pass, and the stream's next arrival replaces the heap's top
  in place (one sift instead of a pop and a push);
* **recordings**: the next grid point where the state is recorded.

The order of events at one instant and the summed-jump rule are those of
:mod:`.event_recurrent` (its module docstring): crossings, then every arrival not caused at
that instant summed into one jump per neuron (depth 0), then the zero-delay waves.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .event_driven import (
    BINS_PER_EVENT,
    _arrival,
    _bracket,
    _flow,
    _reset,
    _root,
    _snap,
    synapse_schedule,
)

_P_CROSS, _P_ARRIVE = 0.0, 1.0  # depth 0: every arrival not caused at t; wave k: class 1 + k
_P_RECORD = float(2 ** 50)
_H_T, _H_P, _H_SEQ, _H_S, _H_C = 0, 1, 2, 3, 4  # heap columns: time, class, order, spike, target


# =========================================================================== tournament tree
@numba.njit(cache=True)
def tree_new(n, key):
    """A min-tree over ``key[:n]`` (``key[n]`` must be ``inf``: the padding leaves' key):
    ``tree[1]`` is the index of the smallest key, ties to the lower index."""
    size = 1
    while size < n:
        size *= 2
    tree = np.empty(2 * size, dtype=np.int64)
    for k in range(size):
        tree[size + k] = k if k < n else n
    tree_build(tree, key)
    return tree


@numba.njit(cache=True, inline="always")
def tree_build(tree, key):
    """Recompute every inner node (after many leaves changed)."""
    for k in range(tree.shape[0] // 2 - 1, 0, -1):
        a, b = tree[2 * k], tree[2 * k + 1]
        tree[k] = a if key[a] <= key[b] else b


@numba.njit(cache=True, inline="always")
def tree_set(tree, key, j):
    """Restore the tree after ``key[j]`` changed."""
    k = (tree.shape[0] // 2 + j) >> 1
    while k >= 1:
        a, b = tree[2 * k], tree[2 * k + 1]
        tree[k] = a if key[a] <= key[b] else b
        k >>= 1


# =========================================================================== stream heap
@numba.njit(cache=True, inline="always")
def _before(h, a, b):
    if h[a, _H_T] != h[b, _H_T]:
        return h[a, _H_T] < h[b, _H_T]
    if h[a, _H_P] != h[b, _H_P]:
        return h[a, _H_P] < h[b, _H_P]
    return h[a, _H_SEQ] < h[b, _H_SEQ]


@numba.njit(cache=True, inline="always")
def _swap(h, a, b):
    for c in range(5):
        h[a, c], h[b, c] = h[b, c], h[a, c]


@numba.njit(cache=True, inline="always")
def _sift_down(h, size, k):
    while True:
        left, right, best = 2 * k + 1, 2 * k + 2, k
        if left < size and _before(h, left, best):
            best = left
        if right < size and _before(h, right, best):
            best = right
        if best == k:
            return
        _swap(h, k, best)
        k = best


@numba.njit(cache=True, inline="always")
def heap_push(h, size, seq, t, prio, s, c):
    """Push the stream entry ``(t, prio, seq; spike s, target c)``; returns ``(heap, size,
    seq)`` (the heap grows by doubling)."""
    if size == h.shape[0]:
        grown = np.empty((2 * size, 5))
        grown[:size] = h[:size]
        h = grown
    h[size, _H_T], h[size, _H_P], h[size, _H_SEQ] = t, prio, seq
    h[size, _H_S], h[size, _H_C] = s, c
    k = size
    while k > 0:
        parent = (k - 1) // 2
        if not _before(h, k, parent):
            break
        _swap(h, k, parent)
        k = parent
    return h, size + 1, seq + 1


@numba.njit(cache=True, inline="always")
def heap_pop(h, size):
    """Remove the first entry; returns the new size."""
    size -= 1
    _swap(h, 0, size)
    _sift_down(h, size, 0)
    return size


@numba.njit(cache=True, inline="always")
def heap_replace_top(h, size, seq, t, prio, c):
    """Give the first entry (a stream) the time, class and target of its next arrival."""
    h[0, _H_T], h[0, _H_P], h[0, _H_SEQ], h[0, _H_C] = t, prio, seq, c
    _sift_down(h, size, 0)
    return seq + 1


# =========================================================================== neuron pieces
@numba.njit(cache=True, inline="always")
def _advance_s(t, vv, ii, tt, hh, cuba, tm, ts, r, vl, near):
    """A neuron's state ``(v, i)`` flowed from its last event ``tt`` to ``t`` (no crossing in
    between: the queue handled it); during a refractory hold (until ``hh``) ``v`` stays and the
    current decays. Scalars only (no array reference counting in the hot loop)."""
    if hh > tt:
        stop = min(hh, t)
        if cuba and stop > tt:
            ii *= math.exp(-(stop - tt) / ts)
        tt = max(stop, tt)
    if tt < t:
        vv, ii = _flow(cuba, vv, ii, t - tt, tm, ts, r, vl, near)
    return vv, ii


@numba.njit(cache=True)
def _advance(j, t, v, i, tj, hold, cuba, p):
    """Move neuron ``j`` to ``t`` (:func:`_advance_s`)."""
    v[j], i[j] = _advance_s(t, v[j], i[j], tj[j], hold[j], cuba, p[j, 0], p[j, 1], p[j, 2],
                            p[j, 3], p[j, 7] > 0)
    tj[j] = t


@numba.njit(cache=True)
def state_at(j, t, v, i, tj, hold, cuba, p):
    """Neuron ``j``'s state at ``t`` without moving it (recordings, final state)."""
    vv, ii, tt = v[j], i[j], tj[j]
    if hold[j] > tt:
        stop = min(hold[j], t)
        if cuba:
            ii *= math.exp(-(stop - tt) / p[j, 1])
        tt = stop
    if t > tt:
        vv, ii = _flow(cuba, vv, ii, t - tt, p[j, 0], p[j, 1], p[j, 2], p[j, 3], p[j, 7] > 0)
    return vv, ii


@numba.njit(cache=True, inline="always")
def _lower(t0, vv, ii, hh, cuba, tm, r, vl, thr, bnd, horizon):
    """A lower bound of neuron ``j``'s next upward threshold crossing if no input arrives
    before it (``inf``: none before ``horizon``). From its state ``(v0, i0)`` at the start
    ``t0`` (last event or end of its refractory hold, during which ``|i|`` only decays),
    ``v(s) - v_leak = (v0 - v_leak) e^{-s/tm} + r i0 q(s)`` with ``0 <= q(s) <= min(s/tm,
    max q)``, so ``v(s) <= v0 + (max(v_leak - v0, 0) + max(r i0, 0)) s / tm`` (``e^{-x} >=
    1 - x``) and ``v(s) <= v_leak + max(v0 - v_leak, 0) + |r i0| max q``; both keep a margin
    of ``1e-9 (|v_th| + 1)`` over rounding. Scalars only (``hh``: end of the hold, ``bnd``:
    ``max q``)."""
    if hh > t0:
        if hh >= horizon:
            return np.inf
        t0 = hh
    if horizon - t0 <= 0:
        return np.inf
    c = r * ii if cuba else 0.0
    tol = 1e-9 * (abs(thr) + 1.0)
    top = vl + max(vv - vl, 0.0) + (abs(c) * bnd if cuba else 0.0)
    if top < thr - tol:
        return np.inf
    gap = thr - tol - vv
    if gap <= 0:
        return t0
    slope = max(vl - vv, 0.0) + max(c, 0.0)
    if slope <= 0:
        return np.inf
    lo = t0 + 0.999999 * (tm * gap / slope) - 4e-16 * abs(t0)
    return lo if lo <= horizon else np.inf


@numba.njit(cache=True)
def _exact(j, v, i, tj, hold, cuba, p, bound, t_end):
    """``(start, h)``: neuron ``j``'s next upward threshold crossing at ``start + h`` if no
    input arrives before it (``h < 0``: none up to ``t_end``, the neuron's next feed-forward
    arrival or the end of the run, where it is predicted again). ``start`` is its last event
    or the end of its refractory hold."""
    tm, ts, r, vl, thr = p[j, 0], p[j, 1], p[j, 2], p[j, 3], p[j, 4]
    near = p[j, 7] > 0
    t0, vv, ii = tj[j], v[j], i[j]
    if hold[j] > t0:
        if hold[j] >= t_end:
            return t0, -1.0
        if cuba:
            ii *= math.exp(-(hold[j] - t0) / ts)
        t0 = hold[j]
    span = t_end - t0
    if span <= 0:
        return t0, -1.0
    top = vl + max(vv - vl, 0.0) + (abs(r * ii) * bound[j] if cuba else 0.0)
    if top < thr - 1e-9 * (abs(thr) + 1.0):
        return t0, -1.0
    v1, i1 = _flow(cuba, vv, ii, span, tm, ts, r, vl, near)
    lo, g_lo, upper, g_up = _bracket(cuba, vv, ii, span, v1, i1, tm, ts, r, vl, near, thr)
    if upper < 0:
        return t0, -1.0
    return t0, _root(0, cuba, vv, ii, lo, upper, g_lo, g_up, tm, ts, r, vl, near, thr)


@numba.njit(cache=True, inline="always")
def _rec_arrival(ts, ts_key, d, origin, is32, dt, eps, t_end_key):
    """``(time, class)`` of a recurrent arrival ``ts + d`` of a spike at ``ts`` (``ts_key``
    in the run's dtype) sent in class ``origin``; ``time < 0`` when after the run."""
    a = np.float32(np.float32(ts_key) + np.float32(d)) if is32 else ts_key + d
    key, sim = _arrival(a, True, is32, dt, eps)
    if key > t_end_key:
        return -1.0, 0.0
    if key == ts_key or sim <= ts:  # zero delay: the next causal wave of this instant
        return ts, max(origin, _P_ARRIVE) + 1
    return sim, _P_ARRIVE  # depth 0: summed with everything else arriving at that instant


# =========================================================================== sample pieces
@numba.njit(cache=True)
def _ff_lists(e0, e1, ev_t, ev_u, ev_x, weight, delay, n, is32, dt, eps, t_end, t_end_key):
    """Per-synapse feed-forward delays: every neuron's arrivals sorted by time (stably, as
    the feed-forward kernel's :func:`synapse_schedule`), flat ``(time, jump, ptr [N + 1])``."""
    width = e1 - e0
    f_t = np.empty(width * n)
    f_w = np.empty(width * n)
    ptr = np.zeros(n + 1, dtype=np.int64)
    tmp = np.empty(width)
    val = np.empty(width)
    bins = np.empty(BINS_PER_EVENT * width + 1, dtype=np.int32)
    for j in range(n):
        base = ptr[j]
        m = synapse_schedule(j, e0, e1, ev_t, ev_u, ev_x, weight, delay, is32, dt, eps,
                             t_end_key, t_end, tmp, val, bins, f_t[base:], f_w[base:])
        ptr[j + 1] = base + m
    return f_t, f_w, ptr


@numba.njit(cache=True, inline="always")
def _fire(j, t, cur, origin, sp, count, v, last, hold, p, mode, dt, eps):
    """Log a spike of neuron ``j`` at ``t`` (state before it: current ``cur``) and reset it;
    returns the log (grown when full). ``sp`` rows: time, unit, current, class."""
    if count == sp.shape[0]:
        bigger = np.empty((2 * sp.shape[0], sp.shape[1]))
        bigger[:count] = sp
        sp = bigger
    sp[count, 0], sp[count, 1], sp[count, 2], sp[count, 3] = t, j, cur, origin
    v[j] = _reset(mode, v[j], p[j, 4], p[j, 5])
    last[j] = t
    if p[j, 6] > 0:
        hold[j] = _snap(t + p[j, 6], dt, eps)
    return sp


@numba.njit(cache=True, inline="always")
def _send(h, size, seq, s, sp, rec_d, rec_ptr, rec_tgt, is32, dt, eps, t_end_key):
    """Start the recurrent stream of spike ``s``: push its first target's arrival."""
    u = int(sp[s, 1])
    if rec_ptr[u] >= rec_ptr[u + 1]:
        return h, size, seq
    ts = sp[s, 0]
    ts_key = np.float64(np.float32(ts)) if is32 else ts
    t, prio = _rec_arrival(ts, ts_key, rec_d[rec_tgt[rec_ptr[u]], u], sp[s, 3], is32, dt,
                           eps, t_end_key)
    if t < 0:  # after the run (the later targets too: they are in delay order)
        return h, size, seq
    return heap_push(h, size, seq, t, prio, s, 0)


@numba.njit(cache=True, inline="always")
def _deliver(h, size, seq, t, prio, sp, rec_w, rec_d, rec_ptr, rec_tgt, is32, dt, eps,
             t_end_key, acc, mark, touched, n_touched):
    """Deliver the first stream's arrivals of instant ``t``, class ``prio`` (its target in the
    heap and the next ones while they arrive in the same group: zero or equal delays), then
    move the stream to its next arrival or drop it. Returns ``(size, seq, n_touched)``."""
    s, c = int(h[0, _H_S]), int(h[0, _H_C])
    u = int(sp[s, 1])
    ts = sp[s, 0]
    ts_key = np.float64(np.float32(ts)) if is32 else ts
    end = rec_ptr[u + 1]
    k = rec_ptr[u] + c
    first = True
    while k < end:  # the sums written out (an array-taking call per target costs refcounts)
        j = rec_tgt[k]
        if not first:
            t2, p2 = _rec_arrival(ts, ts_key, rec_d[j, u], sp[s, 3], is32, dt, eps, t_end_key)
            if t2 < 0:  # after the run (the later targets too: they are in delay order)
                break
            if t2 != t or p2 != prio:
                seq = heap_replace_top(h, size, seq, t2, p2, k - rec_ptr[u])
                return size, seq, n_touched
        first = False
        acc[j] += rec_w[j, u]
        if not mark[j]:
            mark[j] = True
            touched[n_touched] = j
            n_touched += 1
        k += 1
    return heap_pop(h, size), seq, n_touched


@numba.njit(cache=True)
def _initial_spikes(v, i, hold, last, p, mode, dt, eps):
    """Neurons starting at or above threshold fire at ``t = 0`` (not sent on, as in the
    reference): the spike log ``[K, 4]`` and ``K``."""
    n = v.shape[0]
    sp = np.empty((max(64, 4 * n), 4))
    count = 0
    for j in range(n):
        if mode != 2 and v[j] - p[j, 4] >= 0:
            sp[count, 0], sp[count, 1], sp[count, 2], sp[count, 3] = 0.0, j, i[j], -1.0
            count += 1
            v[j] = _reset(mode, v[j], p[j, 4], p[j, 5])
            last[j] = 0.0
            if p[j, 6] > 0:
                hold[j] = _snap(p[j, 6], dt, eps)
    return sp, count


# =========================================================================== one sample
@numba.njit(cache=True)
def _record(k, b, t, n, v, i, tj, hold, cuba, p, rec_v, rec_i):
    """The state of every neuron at ``t`` into recording ``k`` of sample ``b``."""
    for j in range(n):
        rec_v[k, b, j], rec_i[k, b, j] = state_at(j, t, v, i, tj, hold, cuba, p)


@numba.njit(cache=True)
def _cross(j, horizon, sp, count, h, size, seq, nrn, crs, rec, cfg):
    """Neuron ``j``'s crossing leaf comes first: refine a lower bound into the exact crossing
    (the state is the one the bound came from, so the prediction is the eager one), or fire an
    exact crossing (log, reset, start its stream, new bound). Returns ``(sp, count, h, size,
    seq)``. The tuples as in :func:`sample`."""
    v, i, tj, hold, last = nrn
    ck, cx, cexact, ctree = crs
    rec_d, rec_ptr, rec_tgt = rec
    cuba, p, bound, mode, dt, eps, is32, t_end_key = cfg
    if not cexact[j]:
        t0, hs = _exact(j, v, i, tj, hold, cuba, p, bound, horizon)
        ck[j] = min(t0 + hs, horizon) if hs >= 0 else np.inf
        cx[j] = hs
        cexact[j] = True
        tree_set(ctree, ck, j)
        return sp, count, h, size, seq
    t = ck[j]
    _advance(j, max(tj[j], hold[j]), v, i, tj, hold, cuba, p)
    v[j], i[j] = _flow(cuba, v[j], i[j], cx[j], p[j, 0], p[j, 1], p[j, 2], p[j, 3], p[j, 7] > 0)
    tj[j] = t
    sp = _fire(j, t, i[j], _P_CROSS, sp, count, v, last, hold, p, mode, dt, eps)
    h, size, seq = _send(h, size, seq, count, sp, rec_d, rec_ptr, rec_tgt, is32, dt, eps,
                         t_end_key)
    ck[j] = _lower(tj[j], v[j], i[j], hold[j], cuba, p[j, 0], p[j, 2], p[j, 3], p[j, 4],
                   bound[j], horizon)
    cexact[j] = False
    tree_set(ctree, ck, j)
    return sp, count + 1, h, size, seq


@numba.njit(cache=True)
def sample(b, e0, e1, ev_t, ev_u, ev_x, weight, delay, shared, s_time, s_src, s_n, rec_w,
           rec_d, rec_ptr, rec_tgt, p, bound, cuba, mode, v0, i0, t_end, t_end_key, dt, eps,
           is32, rec_every, rec_v, rec_i):
    """Simulate sample ``b`` (see the module docstring). Returns the spike log ``[K, 4]``
    (time, unit, current before the spike, class) in processing order, and the final state;
    recordings are written into ``rec_v``, ``rec_i`` ``[R, B, N]``."""
    n = v0.shape[1]
    v, i = v0[b].copy(), i0[b].copy()
    tj, hold, last = np.zeros(n), np.full(n, -np.inf), np.full(n, np.nan)
    acc, touched, mark = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
    sp, count = _initial_spikes(v, i, hold, last, p, mode, dt, eps)
    h, size, seq = np.empty((64, 5)), 0, 0.0
    s_end = e0 + s_n[b]
    if shared:
        f_t, f_w, f_ptr = np.empty(0), np.empty(0), np.zeros(n + 1, dtype=np.int64)
    else:
        f_t, f_w, f_ptr = _ff_lists(e0, e1, ev_t, ev_u, ev_x, weight, delay, n, is32, dt, eps,
                                    t_end, t_end_key)
    ffpos = f_ptr[:n].copy()  # each neuron's next feed-forward arrival (per-synapse delays)
    fk = np.full(n + 1, np.inf)  # its time (the tree's keys; the last one pads)
    ck, cx = np.full(n + 1, np.inf), np.zeros(n)  # crossing leaves: time or lower bound
    cexact = np.zeros(n, dtype=np.bool_)
    spos = e0  # the sample's next shared input event (no or per-axon delays)
    for j in range(n):
        if not shared and f_ptr[j + 1] > f_ptr[j]:
            fk[j] = f_t[f_ptr[j]]
        horizon = (fk[j] if fk[j] < np.inf else t_end) if not shared else (
            s_time[spos] if spos < s_end else t_end)
        ck[j] = _lower(0.0, v[j], i[j], hold[j], cuba, p[j, 0], p[j, 2], p[j, 3], p[j, 4],
                       bound[j], horizon)
    ftree, ctree = tree_new(n, fk), tree_new(n, ck)
    half = ctree.shape[0] // 2  # first leaf; per-arrival tree updates are written out below
    n_rec, rec_k = rec_v.shape[0], 0
    nrn, crs, rec = (v, i, tj, hold, last), (ck, cx, cexact, ctree), (rec_d, rec_ptr, rec_tgt)
    cfg = (cuba, p, bound, mode, dt, eps, is32, t_end_key)
    while True:
        bt, bp = np.inf, np.inf  # the first event other than a crossing
        if size > 0:
            bt, bp = h[0, _H_T], h[0, _H_P]
        ta = (s_time[spos] if spos < s_end else np.inf) if shared else fk[ftree[1]]
        if ta < bt or (ta == bt and _P_ARRIVE < bp):
            bt, bp = ta, _P_ARRIVE
        if rec_k < n_rec and (rec_k + 1) * rec_every * dt < bt:
            bt, bp = (rec_k + 1) * rec_every * dt, _P_RECORD
        j = ctree[1]
        if ck[j] <= bt and ck[j] < np.inf:  # a crossing comes first (or may: refine it)
            horizon = (fk[j] if fk[j] < np.inf else t_end) if not shared else (
            s_time[spos] if spos < s_end else t_end)
            sp, count, h, size, seq = _cross(j, horizon, sp, count, h, size, seq,
                                             nrn, crs, rec, cfg)
            continue
        if bt == np.inf:
            break
        t = bt
        if bp == _P_RECORD:
            _record(rec_k, b, t, n, v, i, tj, hold, cuba, p, rec_v, rec_i)
            rec_k += 1
            continue
        # an arrival group: every arrival of this (instant, class), summed per neuron
        n_touched = 0
        if bp == _P_ARRIVE and shared:
            while spos < s_end and s_time[spos] == t:
                e = s_src[spos]
                for j in range(n):
                    acc[j] += ev_x[e] * weight[j, ev_u[e]]
                    if not mark[j]:
                        mark[j] = True
                        touched[n_touched] = j
                        n_touched += 1
                spos += 1
        elif bp == _P_ARRIVE:
            while fk[ftree[1]] == t:
                j = ftree[1]
                acc[j] += f_w[ffpos[j]]
                if not mark[j]:
                    mark[j] = True
                    touched[n_touched] = j
                    n_touched += 1
                ffpos[j] += 1
                fk[j] = f_t[ffpos[j]] if ffpos[j] < f_ptr[j + 1] else np.inf
                k = (half + j) >> 1
                while k >= 1:
                    l2, r2 = ftree[2 * k], ftree[2 * k + 1]
                    ftree[k] = l2 if fk[l2] <= fk[r2] else r2
                    k >>= 1
        while size > 0 and h[0, _H_T] == t and h[0, _H_P] == bp:
            size, seq, n_touched = _deliver(h, size, seq, t, bp, sp, rec_w, rec_d, rec_ptr,
                                            rec_tgt, is32, dt, eps, t_end_key, acc, mark,
                                            touched, n_touched)
        rebuild = 4 * n_touched > ctree.shape[0]
        s_next = s_time[spos] if spos < s_end else t_end
        for q in range(n_touched):  # each touched neuron: its summed jump, a new bound
            j = touched[q]
            jump = acc[j]
            acc[j], mark[j] = 0.0, False
            tm, r, vl, thr = p[j, 0], p[j, 2], p[j, 3], p[j, 4]
            if jump != 0:  # a zero jump moves nothing, fires nothing; the horizon moves on
                v[j], i[j] = _advance_s(t, v[j], i[j], tj[j], hold[j], cuba, tm, p[j, 1], r,
                                        vl, p[j, 7] > 0)
                tj[j] = t
                held = hold[j] > t
                before = v[j] - thr
                if cuba:
                    i[j] += jump
                elif not held:
                    v[j] += jump
                if not held and before < 0 and v[j] - thr >= 0 and last[j] != t:
                    sp = _fire(j, t, i[j] - jump if cuba else 0.0, bp, sp, count, v, last,
                               hold, p, mode, dt, eps)
                    h, size, seq = _send(h, size, seq, count, sp, rec_d, rec_ptr, rec_tgt,
                                         is32, dt, eps, t_end_key)
                    count += 1
            horizon = (fk[j] if fk[j] < np.inf else t_end) if not shared else s_next
            ck[j] = _lower(tj[j], v[j], i[j], hold[j], cuba, tm, r, vl, thr, bound[j],
                           horizon)
            cexact[j] = False
            if not rebuild:
                k = (half + j) >> 1
                while k >= 1:
                    l2, r2 = ctree[2 * k], ctree[2 * k + 1]
                    ctree[k] = l2 if ck[l2] <= ck[r2] else r2
                    k >>= 1
        if rebuild:
            tree_build(ctree, ck)
    v_end, i_end = np.empty(n), np.empty(n)
    for j in range(n):
        v_end[j], i_end[j] = state_at(j, t_end, v, i, tj, hold, cuba, p)
    return sp[:count], v_end, i_end


# =========================================================================== all samples
@numba.njit(cache=True, parallel=True)
def simulate_samples(samples, ptr, ev_t, ev_u, ev_x, weight, delay, shared, s_time, s_src, s_n,
                     rec_w, rec_d, rec_ptr, rec_tgt, p, bound, cuba, mode, v0, i0, t_end,
                     t_end_key, dt, eps, is32, rec_every, rec_v, rec_i, v_end, i_end, cap):
    """The ``samples`` in parallel: spikes ``[S, cap, 3]`` (time, unit, current; in
    processing order), their counts ``[S]`` (counted beyond ``cap``). Here, next to
    :func:`sample`, so that numba's on-disk cache of this entry point is invalidated with the
    loop's source (it does not follow callees into other files)."""
    out = np.empty((samples.shape[0], cap, 3))
    counts = np.zeros(samples.shape[0], dtype=np.int64)
    for q in prange(samples.shape[0]):
        b = samples[q]
        sp, ve, ie = sample(b, ptr[b], ptr[b + 1], ev_t, ev_u, ev_x, weight, delay, shared,
                            s_time, s_src, s_n, rec_w, rec_d, rec_ptr, rec_tgt, p, bound, cuba,
                            mode, v0, i0, t_end, t_end_key, dt, eps, is32, rec_every, rec_v,
                            rec_i)
        k = sp.shape[0]
        counts[q] = k
        for s in range(min(k, cap)):
            out[q, s, 0], out[q, s, 1], out[q, s, 2] = sp[s, 0], sp[s, 1], sp[s, 2]
        v_end[b], i_end[b] = ve, ie
    return out, counts
