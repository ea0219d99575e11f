"""The per-synapse arrival schedule of the event-driven kernel: the grid snapping of one
arrival (with its division-free shortcut) equal to the rule written out, and the fused gather
+ counting sort (:func:`event_driven.synapse_schedule`) equal to the gather followed by a
stable sort, ties, zero weights and arrivals after the run included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.compiled import kernels_enabled
from ctsnn.engine.compiled import event_driven, schedule

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                reason="kernels off (CTSNN_KERNELS=0) or no numba")
SNAP_ULPS = 8.0


def snapped_arrival(a, snap, is32, dt, eps):
    """The snapping rule of ``event_driven._arrival`` written out (numpy scalars, with the
    division): ``(key in the run's dtype, float64 time simulated)``."""
    if is32:
        k = np.round(np.float64(a) / dt)
        g = np.float32(k * dt)
        tol = np.float32(SNAP_ULPS * eps) * max(abs(g), np.float32(dt))
        if abs(np.float32(a) - g) <= tol:
            return float(g), float(k * dt)
        return float(a), float(a)
    a = float(a)
    if snap:
        k = np.round(a / dt)
        g = k * dt
        if abs(a - g) <= SNAP_ULPS * eps * max(abs(g), dt):
            return g, g
    return a, a


@settings(max_examples=300, deadline=None)
@given(k=st.integers(-5, 2_000_000), ulps=st.integers(-40, 40),
       frac=st.sampled_from([0.0, 0.0, 0.5, 1e-3, -1e-3, 1e-5, 0.25]),
       dt=st.sampled_from([1e-3, 2.0 ** -10, 1e-4, 0.1, 7e-3]), is32=st.booleans(),
       snap=st.booleans())
def test_arrival_shortcut_equals_the_snapping_rule(k, ulps, frac, dt, is32, snap):
    """Near every grid point (a few ulps either side, both dtypes), at half steps and far from
    the grid: the same key and time as the rule with the division."""
    ftype = np.float32 if is32 else np.float64
    eps = float(np.finfo(ftype).eps)
    a = ftype((k + frac) * dt)
    step = np.inf if ulps > 0 else -np.inf
    for _ in range(abs(ulps)):
        a = np.nextafter(a, ftype(step))
    got = event_driven._arrival(a, snap, is32, dt, eps)
    assert got == snapped_arrival(a, snap, is32, dt, eps)


def _events(rng, n_events, n_in, n_steps, dt, grid, ftype):
    if grid:  # input spikes and delays on the grid: many exact ties
        t = rng.integers(0, n_steps + 1, n_events) * dt
    else:
        t = rng.random(n_events) * n_steps * dt
    u = rng.integers(0, n_in, n_events)
    order = np.lexsort((u, t))
    return t[order].astype(ftype), u[order].astype(np.int64)


def _gather(j, ev_t, ev_u, ev_x, weight, delay, is32, dt, eps, t_end_key, tmp, val):
    """The plain gather (the reference): neuron ``j``'s arrivals in event order, zero weights
    and arrivals after the run dropped; returns their number."""
    m = 0
    for e in range(len(ev_t)):
        w = weight[j, ev_u[e]]
        if w == 0:
            continue
        key, sim = event_driven._arrival(ev_t[e] + delay[j, ev_u[e]], True, is32, dt, eps)
        if key > t_end_key:
            continue
        tmp[m], val[m] = sim, ev_x[e] * w
        m += 1
    return m


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), n_events=st.integers(0, 300), n_in=st.integers(1, 12),
       grid=st.booleans(), is32=st.booleans(), zeros=st.booleans(),
       delay_steps=st.sampled_from([0, 3, 40]))
def test_synapse_schedule_is_gather_then_stable_sort(seed, n_events, n_in, grid, is32, zeros,
                                                     delay_steps):
    """Same arrivals, order (equal times keep event order) and jumps as the plain gather
    followed by a stable sort; arrivals after ``T dt`` dropped, zero weights skipped."""
    rng = np.random.default_rng(seed)
    ftype = np.float32 if is32 else np.float64
    eps = float(np.finfo(ftype).eps)
    dt, n_steps, n_out = 1e-3, 50, 3
    ev_t, ev_u = _events(rng, n_events, n_in, n_steps, dt, grid, ftype)
    ev_x = rng.choice([1.0, 0.5, 2.0], n_events)
    weight = rng.normal(size=(n_out, n_in))
    if zeros:
        weight[rng.random(weight.shape) < 0.3] = 0.0
    if grid:
        delay = (rng.integers(0, delay_steps + 1, (n_out, n_in)) * dt).astype(ftype)
    else:
        delay = (rng.random((n_out, n_in)) * delay_steps * dt).astype(ftype)
    t_end = n_steps * dt
    t_end_key = float(ftype(t_end))
    size = max(n_events, 1)
    tmp, val, at, aw = (np.empty(size) for _ in range(4))
    bins = np.empty(event_driven.BINS_PER_EVENT * size + 1, dtype=np.int32)
    for j in range(n_out):
        m_ref = _gather(j, ev_t, ev_u, ev_x, weight, delay, is32, dt, eps, t_end_key, tmp, val)
        order = np.argsort(tmp[:m_ref], kind="stable")
        want_t, want_w = tmp[:m_ref][order].copy(), val[:m_ref][order].copy()
        m = event_driven.synapse_schedule(j, 0, n_events, ev_t, ev_u, ev_x, weight, delay,
                                          is32, dt, eps, t_end_key, t_end, tmp, val, bins,
                                          at, aw)
        assert m == m_ref
        np.testing.assert_array_equal(at[:m], want_t)
        np.testing.assert_array_equal(aw[:m], want_w)


@pytest.mark.parametrize("is32", [False, True])
def test_synapse_schedule_takes_huge_and_infinite_delays(is32):
    """Arrivals far after the run (a delay of 1e30 s or infinity) are binned (clamped) and
    dropped, never indexed out of range; the rest as the gather + stable sort."""
    ftype = np.float32 if is32 else np.float64
    eps = float(np.finfo(ftype).eps)
    ev_t = np.array([0.001, 0.002, 0.002, 0.003], dtype=ftype)
    ev_u = np.array([0, 1, 2, 0], dtype=np.int64)
    ev_x = np.ones(4)
    weight = np.array([[1.0, -0.5, 2.0]])
    delay = np.array([[0.004, 1e30, np.inf]], dtype=ftype)
    tmp, val, at, aw = (np.empty(4) for _ in range(4))
    bins = np.empty(event_driven.BINS_PER_EVENT * 4 + 1, dtype=np.int32)
    m = event_driven.synapse_schedule(0, 0, 4, ev_t, ev_u, ev_x, weight, delay, is32, 1e-3,
                                      eps, float(ftype(0.01)), 0.01, tmp, val, bins, at, aw)
    assert m == 2
    np.testing.assert_array_equal(aw[:m], [1.0, 1.0])
    np.testing.assert_allclose(at[:m], [0.005, 0.007], rtol=0, atol=1e-9)
    assert schedule.bucket_of(np.inf, 1e3, 8) == 7 and schedule.bucket_of(np.nan, 1e3, 8) == 0


def test_sort_counted_falls_back_on_unordered_clusters():
    """A bin holding many arrivals in reverse order exceeds the insertion budget: the merge
    sort gives the same stable order (and a reversed cluster of ties keeps input order)."""
    m = 400
    t = np.concatenate([np.linspace(0.5, 0.5 - 1e-9, m - 100), np.full(100, 0.25)])
    w = np.arange(m, dtype=np.float64)
    n_bins = 4
    scale = n_bins / 1.0
    bins = np.zeros(n_bins + 1, dtype=np.int64)
    for x in t:
        bins[schedule.bucket_of(x, scale, n_bins) + 1] += 1
    at, aw = np.empty(m), np.empty(m)
    schedule.sort_counted(t, w, m, bins, n_bins, scale, at, aw)
    order = np.argsort(t, kind="stable")
    np.testing.assert_array_equal(at, t[order])
    np.testing.assert_array_equal(aw, w[order])
