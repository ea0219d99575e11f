"""The event-driven forward kernel's per-arrival fast path and its tangent bound.

Most (arrival, neuron) pairs take one closed-form flow and a bracket test; the general advance
runs only when the interval holds a crossing or a refractory period, and locating CubaLIF's
interior maximum is skipped when the tangent bound shows ``v`` stays clearly below threshold.
These tests pin the cases where the shortcut must NOT be taken (a crossing hidden between two
sub-threshold ends, maxima within rounding of the threshold) against the closed form and the
reference engine, and the bound's soundness on random parameters.
"""

from __future__ import annotations

import math

import pytest
import torch
from event_compare import assert_same, kernel_only
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.compiled import use_kernels
from ctsnn.engine import run_population
from ctsnn.engine.compiled import event_driven
from ctsnn.models.lif import CubaLIF
from ctsnn.spikes import Spikes
from ctsnn.synapses import Dense

F64 = torch.float64
TM, TS = 0.02, 0.005


def _peak(tm: float, ts: float) -> tuple[float, float]:
    """``(h*, v(h*))`` of ``v = ts / (ts - tm) (e^{-h/ts} - e^{-h/tm})`` (``v(0) = 0``, unit
    current, ``r = 1``): the response to one unit jump, closed form."""
    h = math.log(tm / ts) / (1.0 / ts - 1.0 / tm)
    return h, ts / (ts - tm) * (math.exp(-h / ts) - math.exp(-h / tm))


def _one_neuron(times: list[float], values: list[float], w: float, n_steps: int,
                dt: float = 0.001) -> tuple[CubaLIF, Dense, Spikes]:
    model = CubaLIF(1, tau_mem=TM, tau_syn=TS, v_threshold=1.0).double()
    syn = Dense(weight=torch.tensor([[w]], dtype=F64), learn_weight=False)
    spikes = Spikes.from_events(torch.tensor(times, dtype=F64),
                                torch.zeros(len(times), dtype=torch.long), dt=dt,
                                n_steps=n_steps, batch_size=1, n_units=1,
                                values=torch.tensor(values, dtype=F64))
    return model, syn, spikes


def _run(model, syn, spikes, *, kernels, n_steps, dtype=F64):
    with use_kernels(kernels), torch.no_grad():
        return run_population(model, dt=spikes.dt, n_steps=n_steps, batch_size=1,
                              arrivals=syn.arrivals(spikes), time="continuous", dtype=dtype)


@pytest.mark.parametrize("rel", [1e-3, 1e-7, 1e-10, -1e-10, -1e-7, -1e-3])
def test_maximum_near_threshold_between_two_subthreshold_ends(rel, monkeypatch):
    """One jump at 1 ms peaks (closed form) at ``1 + rel`` times the threshold about 9 ms
    later; the next arrival (a tiny jump) is at 60 ms, where v is far below threshold again.
    Both interval ends are below threshold: the crossing hides behind the maximum. Above
    threshold the kernel must find the spike (at the closed-form crossing), below it none;
    the same as the reference engine."""
    h_peak, unit = _peak(TM, TS)
    w = (1.0 + rel) / unit
    model, syn, spikes = _one_neuron([0.001, 0.06], [1.0, 1e-9], w, 80)
    ref = _run(model, syn, spikes, kernels=False, n_steps=80)
    kernel_only(monkeypatch)
    got = _run(model, syn, spikes, kernels=True, n_steps=80)
    assert_same(got, ref, 1)
    expected = 1 if rel > 0 else 0
    assert got.spikes.times.numel() == expected
    if expected:  # the first crossing of the closed form, by bisection on [0, h_peak]
        lo, hi = 0.0, h_peak
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            v = w * TS / (TS - TM) * (math.exp(-mid / TS) - math.exp(-mid / TM))
            lo, hi = (mid, hi) if v < 1.0 else (lo, mid)
        assert abs(float(got.spikes.times[0]) - (0.001 + hi)) <= 1e-12


def test_dense_input_hovering_at_threshold(monkeypatch):
    """Many small arrivals (every ~0.15 ms, W2-like) drive v to hover near the threshold, so
    many intervals hold a maximum close to it (the bound must defer to the located maximum)
    and spikes come from hidden crossings and arrivals alike: kernel == reference engine."""
    gen = torch.Generator().manual_seed(3)
    n_steps, dt, n_ev = 200, 0.001, 1300
    times = torch.rand(n_ev, generator=gen, dtype=F64) * n_steps * dt
    weights = [0.055, 0.06, 0.065, 0.07]
    model = CubaLIF(4, tau_mem=TM, tau_syn=TS, v_threshold=1.0).double()
    syn = Dense(weight=torch.tensor(weights, dtype=F64).reshape(-1, 1), learn_weight=False)
    spikes = Spikes.from_events(times, torch.zeros(n_ev, dtype=torch.long), dt=dt,
                                n_steps=n_steps, batch_size=1, n_units=1)
    ref = _run(model, syn, spikes, kernels=False, n_steps=n_steps)
    kernel_only(monkeypatch)
    got = _run(model, syn, spikes, kernels=True, n_steps=n_steps)
    assert_same(got, ref, 4)
    counts = torch.bincount(got.spikes.units, minlength=4)
    assert int(counts.min()) >= 1 and int(counts.max()) >= 5  # the case is exercised


def _v_max(v, i, h1, tm, ts, r, vl) -> float:
    """The largest ``v`` on ``[0, h1]``: the ends and the closed-form stationary point."""
    def flow(h):
        c = r * i
        return vl + (v - vl) * math.exp(-h / tm) + c * ts / (ts - tm) * (
            math.exp(-h / ts) - math.exp(-h / tm))
    best = max(flow(0.0), flow(h1))
    b = r * i * ts / (ts - tm)
    a = (v - vl) - b
    ratio = -(b * tm) / (a * ts) if a != 0 else -1.0
    if ratio > 0:
        h = math.log(ratio) / (1.0 / ts - 1.0 / tm)
        if 0 < h < h1:
            best = max(best, flow(h))
    return best


@settings(max_examples=400, deadline=None)
@given(tm=st.floats(0.002, 0.1), ratio=st.floats(0.05, 3.0), r=st.floats(0.1, 5.0),
       vl=st.floats(-1.0, 0.5), v=st.floats(-2.0, 0.999), i=st.floats(0.0, 50.0),
       h1=st.floats(1e-6, 0.2))
def test_tangent_bound_is_sound(tm, ratio, r, vl, v, i, h1):
    """Whenever the bound says "clearly below threshold", the true maximum of ``v`` on the
    interval (closed form) is below the threshold by more than rounding."""
    ts, thr = tm * ratio, 1.0
    near = abs(ts - tm) <= 1e-9 * tm
    s0 = (vl - v + r * i) / tm
    if s0 <= 0:
        return
    if event_driven._below_tangent(v, i, h1, s0, tm, ts, r, vl, near, thr):
        assert not near
        assert _v_max(v, i, h1, tm, ts, r, vl) < thr - 1e-12


def test_tangent_bound_declines_what_it_cannot_prove():
    """A negative current, near-equal time constants, and a tangent reaching the threshold
    are left to the located maximum; a short interval well below threshold is skipped."""
    def below(v, i, h1, near):
        s0 = (0.0 - v + i) / TM
        return event_driven._below_tangent(v, i, h1, s0, TM, TS, 1.0, 0.0, near, 1.0)

    assert below(0.5, 2.0, 1e-4, False)
    assert not below(0.5, -2.0, 1e-4, False)
    assert not below(0.5, 2.0, 1e-4, True)
    assert not below(0.99, 2.0, 0.01, False)
