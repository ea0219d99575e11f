"""The recurrent kernel's event loop (ctsnn/engine/compiled/recurrent_loop.py): its pieces
(crossing lower bounds, tournament tree, stream heap) against plain references, and whole
networks that exercise its paths against the reference engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from event_compare import assert_same, kernel_only, sorted_spikes
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.compiled import use_kernels
from ctsnn.engine import run_population
from ctsnn.engine.compiled import recurrent_loop as loop
from ctsnn.models.lif import LIF, CubaLIF
from ctsnn.spikes import Spikes
from ctsnn.synapses import Dense, RecurrentDense

F64 = torch.float64
DT = 2.0 ** -10


# ------------------------------------------------------------------ crossing lower bound
def _q_max(tm: float, ts: float) -> float:
    if abs(ts - tm) < 1e-12:
        return math.exp(-1.0)
    hm = ts * tm * math.log(tm / ts) / (tm - ts)
    return ts / (ts - tm) * (math.exp(-hm / ts) - math.exp(-hm / tm)) * (1 + 1e-6) + 1e-12


@settings(max_examples=300, deadline=None)
@given(v0=st.floats(-2.0, 1.5), i0=st.floats(-3.0, 3.0), tm=st.floats(0.002, 0.05),
       ts_ratio=st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0]), r=st.floats(0.5, 3.0),
       vl=st.sampled_from([0.0, 0.3, 1.2]), thr=st.floats(0.5, 1.5),
       t0=st.floats(0.0, 0.5), hold=st.sampled_from([0.0, 0.001, 0.01]),
       span=st.floats(1e-6, 0.2), cuba=st.booleans())
def test_lower_bound_is_never_after_the_exact_crossing(v0, i0, tm, ts_ratio, r, vl, thr, t0,
                                                        hold, span, cuba):
    """The cheap bound that orders the crossing tree is a lower bound of the exact prediction
    (bracketed and refined root) it stands for, and says "none" only when there is none."""
    ts = tm * ts_ratio
    near = ts_ratio == 1.0
    p = np.array([[tm, ts, r, vl, thr, 0.0, 0.0, 1.0 if near else 0.0]])
    bound = np.array([_q_max(tm, ts)])
    v, i = np.array([v0]), np.array([i0 if cuba else 0.0])
    tj, hh = np.array([t0]), np.array([t0 + hold if hold else -np.inf])
    horizon = t0 + span
    lower = loop._lower(t0, v0, i[0], hh[0], cuba, tm, r, vl, thr, bound[0], horizon)
    start, h = loop._exact(0, v, i, tj, hh, cuba, p, bound, horizon)
    if h < 0:
        return  # no crossing: any bound is right (it only triggers an exact prediction)
    exact = min(start + h, horizon)
    assert lower <= exact, (lower, exact)


# ------------------------------------------------------------------ tournament tree
@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, math.inf]), min_size=1, max_size=40),
       changes=st.lists(st.tuples(st.integers(0, 39), st.sampled_from([0.25, 0.5, math.inf])),
                        max_size=30))
def test_tree_is_the_first_minimum(keys, changes):
    n = len(keys)
    key = np.array([*keys, math.inf])
    tree = loop.tree_new(n, key)
    for j, value in changes:
        j %= n
        key[j] = value
        loop.tree_set(tree, key, j)
        assert key[tree[1]] == key[:n].min()
        if key[:n].min() < math.inf:
            assert tree[1] == int(np.argmin(key[:n]))  # ties: the lowest index
    loop.tree_build(tree, key)
    assert key[tree[1]] == key[:n].min()


# ------------------------------------------------------------------ stream heap
@settings(max_examples=60, deadline=None)
@given(entries=st.lists(st.tuples(st.sampled_from([0.1, 0.2, 0.3]), st.sampled_from([1.0, 2.0])),
                        min_size=1, max_size=50),
       moves=st.lists(st.tuples(st.sampled_from([0.2, 0.25, 0.4]), st.sampled_from([1.0, 3.0])),
                      max_size=20))
def test_stream_heap_pops_in_time_class_order(entries, moves):
    """Pushes, in-place replacement of the first entry and pops give (time, class, order)."""
    h, size, seq = np.empty((2, 5)), 0, 0.0
    ref = []
    for s, (t, prio) in enumerate(entries):
        h, size, seq = loop.heap_push(h, size, seq, t, prio, s, 0)
        ref.append((t, prio, seq - 1, s))
    for t, prio in moves:  # the first stream moves on to a later arrival
        first = min(ref)
        assert (h[0, 0], h[0, 1], h[0, 2]) == first[:3]
        t = max(t, first[0])
        seq = loop.heap_replace_top(h, size, seq, t, prio, 1)
        ref.remove(first)
        ref.append((t, prio, seq - 1, first[3]))
    out = []
    while size:
        out.append((h[0, 0], h[0, 1], h[0, 2], int(h[0, 3])))
        size = loop.heap_pop(h, size)
    assert out == sorted(ref)


# ------------------------------------------------------------------ networks vs reference
def _layer(gen, cls, n, n_in, rec_delay, *, ff_delay=True, rec_scale=1.0, reset="zero"):
    model_kw = {"tau_mem": 0.005 + 0.02 * torch.rand(n, generator=gen, dtype=F64),
                "v_threshold": 0.8 + 0.4 * torch.rand(n, generator=gen, dtype=F64)}
    if cls is CubaLIF:
        model_kw.update(tau_syn=0.002 + 0.01 * torch.rand(n, generator=gen, dtype=F64), r=2.5)
    model = cls(n, reset=reset, **model_kw)
    weight = (torch.rand(n, n_in, generator=gen, dtype=F64) - 0.3) * 3.0
    delay = torch.rand(n, n_in, generator=gen, dtype=F64) * 0.01 if ff_delay else None
    syn = Dense(weight=weight, delay=delay, per="synapse", learn_weight=False)
    rec_w = (torch.rand(n, n, generator=gen, dtype=F64) - 0.4) * rec_scale
    rec_w.fill_diagonal_(0.0)
    rec = RecurrentDense(weight=rec_w, delay=rec_delay, per="synapse", learn_weight=False)
    return model, syn, rec


def _both(monkeypatch, model, syn, rec, spikes, n_steps, dtype=F64, tol=1e-12):
    def run(kernels):
        with use_kernels(kernels), torch.no_grad():
            return run_population(model, dt=spikes.dt, n_steps=n_steps,
                                  batch_size=spikes.batch_size, arrivals=syn.arrivals(spikes),
                                  recurrent=rec, time="continuous", dtype=dtype,
                                  record=model.state_names, record_every=5)
    ref = run(False)
    with monkeypatch.context() as m:
        kernel_only(m)
        got = run(True)
    assert_same(got, ref, model.n, tol, close=1e-10 if dtype == F64 else 1e-5, states=True)
    return ref


def _input(gen, n_in, batch, n_steps, n_events, dtype=F64):
    times = (torch.rand(n_events, generator=gen, dtype=F64) * n_steps * DT).to(dtype)
    return Spikes.from_events(times, torch.randint(0, n_in, (n_events,), generator=gen),
                              torch.randint(0, batch, (n_events,), generator=gen), dt=DT,
                              n_steps=n_steps, batch_size=batch, n_units=n_in)


@pytest.mark.parametrize("cls", [LIF, CubaLIF])
def test_many_equal_delays(cls, monkeypatch):
    """Every recurrent synapse has the same off-grid delay: a spike's arrivals are one instant
    (delivered in one pass), and spikes of one instant meet there."""
    gen = torch.Generator().manual_seed(31)
    n = 8
    model, syn, rec = _layer(gen, cls, n, 6, torch.full((n, n), 0.7 * DT, dtype=F64))
    ref = _both(monkeypatch, model, syn, rec, _input(gen, 6, 2, 30, 60), 30)
    assert ref.spikes.times.numel() > 10


@pytest.mark.parametrize("cls", [LIF, CubaLIF])
def test_tiny_and_zero_delays_mixed_with_positive(cls, monkeypatch):
    """Delays of 0, 1e-9 s (``d_min`` tiny: arrivals a nanosecond after their cause, on top
    of other events) and a few ms, in one layer."""
    gen = torch.Generator().manual_seed(32)
    n = 8
    choice = torch.randint(0, 3, (n, n), generator=gen)
    delay = torch.tensor([0.0, 1e-9, 0.003], dtype=F64)[choice]
    model, syn, rec = _layer(gen, cls, n, 6, delay)
    ref = _both(monkeypatch, model, syn, rec, _input(gen, 6, 2, 30, 60), 30)
    assert ref.spikes.times.numel() > 10


def test_wide_zero_delay_layer(monkeypatch):
    """The recipe's case: zero-delay recurrence in a layer wide enough that a spike touches
    more than a quarter of the crossing tree (rebuilt in one pass), firing often enough that
    lower bounds are refined often."""
    gen = torch.Generator().manual_seed(33)
    n = 12  # tree of 16 leaves: a spike touches 11 > 16 / 4
    model, syn, rec = _layer(gen, CubaLIF, n, 10, torch.zeros(n, n, dtype=F64), rec_scale=0.3)
    ref = _both(monkeypatch, model, syn, rec, _input(gen, 10, 1, 6, 40), 6)
    assert ref.spikes.times.numel() > n


def test_float32_mixed_delays(monkeypatch):
    """float32 with zero, sub-step and longer delays: the spikes of the float32 reference
    (times within 1e-6 s), and the final state of the float64 reference run of the same
    (float32-valued) network within float32 rounding. (The float32 reference's own state
    drifts by up to ~2e-5 from rounding every step; the kernel computes in float64.)"""
    gen = torch.Generator().manual_seed(34)
    n = 6
    choice = torch.randint(0, 3, (n, n), generator=gen)
    delay = torch.tensor([0.0, 0.5 * DT, 0.004], dtype=F64)[choice]
    model, syn, rec = _layer(gen, CubaLIF, n, 6, delay)
    model, syn, rec = model.float(), syn.float(), rec.float()
    spikes = _input(gen, 6, 2, 30, 60, torch.float32)

    def run(kernels, dtype, m, s, r, x):
        with use_kernels(kernels), torch.no_grad():
            return run_population(m, dt=DT, n_steps=30, batch_size=2, arrivals=s.arrivals(x),
                                  recurrent=r, time="continuous", dtype=dtype)
    ref32 = run(False, torch.float32, model, syn, rec, spikes)
    ref64 = run(False, F64, model.double(), syn.double(), rec.double(), spikes.to(dtype=F64))
    kernel_only(monkeypatch)
    got = run(True, torch.float32, model, syn, rec, spikes)
    assert got.spikes.times.dtype == torch.float32
    for ref, tol in ((ref32, 1e-6), (ref64, 1e-6)):
        ta, ba, ua = sorted_spikes(got.spikes, n)
        tb, bb, ub = sorted_spikes(ref.spikes, n)
        assert ta.numel() == tb.numel() > 5
        assert torch.equal(ba, bb) and torch.equal(ua, ub)
        assert float((ta - tb).abs().max()) <= tol
    for x, y in zip(got.final_state, ref64.final_state, strict=True):
        torch.testing.assert_close(x.double(), y, rtol=1e-6, atol=1e-6)
