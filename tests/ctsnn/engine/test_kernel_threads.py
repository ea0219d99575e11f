"""The feed-forward kernels' parallel forms: the same results on 1 and 2 threads (bit for bit),
equal to the reference path, and the linear-time arrival sort equal to a stable sort."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import kernel_threads, kernels_enabled, numba_threads, use_kernels
from ctsnn.engine import run_population
from ctsnn.engine.compiled import event_driven, schedule
from ctsnn.gradients import eventprop as ep
from ctsnn.gradients.eventprop import kernels
from ctsnn.models.lif import CubaLIF
from ctsnn.spikes import Spikes
from ctsnn.synapses import Dense

F64 = torch.float64
DT = 1e-3
pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                reason="kernels off (CTSNN_KERNELS=0) or no numba")
two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                 reason="numba's pool has one thread")


@pytest.fixture
def parallel_paths(monkeypatch):
    """Every call takes the chunked, parallel form (normally only large calls do)."""
    monkeypatch.setattr(event_driven, "_PARALLEL_PAIRS", 0)
    monkeypatch.setattr(kernels, "_PARALLEL_PAIRS", 0)


def _on_threads(n, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def _input(seed, n_in=12, batch=5, n_ev=300, n_steps=80, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    times = (torch.rand(n_ev, generator=g, dtype=F64) * n_steps * DT).to(dtype)
    return Spikes.from_events(times, torch.randint(0, n_in, (n_ev,), generator=g),
                              torch.randint(0, batch, (n_ev,), generator=g), dt=DT,
                              n_steps=n_steps, batch_size=batch, n_units=n_in)


def _layer(seed, n_in=12, n=9, delays="synapse", dtype=F64):
    g = torch.Generator().manual_seed(seed + 1)
    w = (torch.randn(n, n_in, generator=g, dtype=F64) * 1.5 + 1.5).to(dtype)
    d = None
    if delays == "synapse":
        d = (torch.rand(n, n_in, generator=g, dtype=F64) * 0.03).to(dtype)
    elif delays == "axon":
        d = (torch.rand(n_in, generator=g, dtype=F64) * 0.03).to(dtype)
    return w, d


def _forward(spikes, w, d, delays, dtype=F64):
    syn = Dense(weight=w, delay=d, per="synapse" if delays != "axon" else "axon",
                learn_weight=False)
    model = CubaLIF(w.shape[0], tau_mem=0.02, tau_syn=0.005, v_threshold=1.0).to(dtype)
    with torch.no_grad():
        out = event_driven.run_event_driven(model, syn.arrivals(spikes), n_steps=spikes.n_steps,
                                            batch_size=spikes.batch_size, state=None,
                                            dtype=dtype)
    return out


# --------------------------------------------------------------------------- the thread switch
def test_kernel_threads_follows_torch_and_numba_threads_restores():
    assert 1 <= kernel_threads() <= max(1, torch.get_num_threads())
    assert _on_threads(1, kernel_threads) == 1
    before = numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    for bad in (0, -1, 1.5, True, kernel_threads() + 1):
        with pytest.raises(ValueError, match="numba_threads"):
            with numba_threads(bad):
                pass


# --------------------------------------------------------------------------- the arrival sort
@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(-0.1, 1.2), st.sampled_from([0.0, 0.25, 0.5, 1.0])),
                max_size=120),
       st.booleans())
def test_sort_arrivals_is_a_stable_sort(values, clustered):
    t = np.array(values, dtype=np.float64)
    if clustered and t.size:  # many unordered arrivals in one bin: the merge-sort fallback
        t = np.concatenate([t, 0.3 - np.arange(60) * 1e-12, np.full(7, 0.3 - 3e-12)])
    m = t.size
    w = np.arange(m, dtype=np.float64)
    at, aw = np.empty(m), np.empty(m)
    schedule.sort_arrivals(t, w, m, 1.0, np.empty(m + 1, dtype=np.int64), at, aw)
    order = np.argsort(t, kind="stable")
    np.testing.assert_array_equal(at, t[order])
    np.testing.assert_array_equal(aw, w[order])


def test_chunk_bounds_cover_every_row_once():
    for n in (0, 1, 7, 64):
        for chunks in (1, 3, 8):
            bounds = [schedule.chunk_bounds(c, chunks, n) for c in range(chunks)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


# --------------------------------------------------------------------------- forward kernel
@two_threads
@pytest.mark.parametrize("delays", ["synapse", "axon", "none"])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_event_kernel_same_on_one_and_two_threads(delays, dtype, parallel_paths):
    spikes = _input(0, dtype=dtype)
    w, d = _layer(0, delays=delays, dtype=dtype)
    one = _on_threads(1, lambda: _forward(spikes, w, d, delays, dtype))
    two = _on_threads(2, lambda: _forward(spikes, w, d, delays, dtype))
    assert one.times.numel() > 50
    for a, b in zip((*one[:4], *one.final_state), (*two[:4], *two.final_state), strict=True):
        assert torch.equal(a, b)


@two_threads
def test_parallel_event_kernel_equals_the_reference_engine(parallel_paths):
    spikes = _input(3)
    w, d = _layer(3)
    out = _on_threads(2, lambda: _forward(spikes, w, d, "synapse"))
    syn = Dense(weight=w, delay=d, learn_weight=False)
    model = CubaLIF(w.shape[0], tau_mem=0.02, tau_syn=0.005, v_threshold=1.0).to(F64)
    with use_kernels(False), torch.no_grad():
        ref = run_population(model, dt=DT, n_steps=spikes.n_steps, batch_size=spikes.batch_size,
                             arrivals=syn.arrivals(spikes), time="continuous", dtype=F64).spikes
    assert torch.equal(out.batch, ref.batch) and torch.equal(out.units, ref.units)
    assert float((out.times - ref.times).abs().max()) <= 1e-12


# --------------------------------------------------------------------------- EventProp kernels
def _grads(model, spikes, w, d, readout, kernels_on=True):
    leaves = [spikes.times.clone().requires_grad_(), w.clone().requires_grad_(),
              d.clone().requires_grad_()]
    x = Spikes(leaves[0], spikes.units, spikes.batch, dt=DT, n_steps=spikes.n_steps,
               batch_size=spikes.batch_size, n_units=spikes.n_units)
    with use_kernels(kernels_on):
        out = ep.layer_forward(model, x, leaves[1], leaves[2], readout=readout)
        value = out.times if isinstance(out, Spikes) else out
        coef = torch.linspace(-1.0, 1.0, value.numel(), dtype=F64).reshape(value.shape)
        grads = torch.autograd.grad((coef * value).sum() + (value ** 2).sum(), leaves)
    return value.detach(), grads


@two_threads
@pytest.mark.parametrize(("model", "readout"), [("CubaLIF", None), ("LIF", None),
                                                ("CubaLI", "avg_exp"), ("LI", "sum")])
def test_eventprop_kernels_same_on_one_and_two_threads_and_equal_the_reference(
        model, readout, parallel_paths):
    make = {"CubaLIF": lambda n: ctsnn.CubaLIF(n, tau_mem=0.02, tau_syn=0.005),
            "LIF": lambda n: ctsnn.LIF(n, tau_mem=0.02),
            "CubaLI": lambda n: ctsnn.CubaLI(n, tau_mem=0.02, tau_syn=0.006),
            "LI": lambda n: ctsnn.LI(n, tau_mem=0.015)}[model]
    spikes = _input(5, batch=9, n_ev=200)
    w, d = _layer(5)
    if readout is not None:
        w = 0.3 * w
    nrn = make(w.shape[0]).to(F64)
    one = _on_threads(1, lambda: _grads(nrn, spikes, w, d, readout))
    two = _on_threads(2, lambda: _grads(nrn, spikes, w, d, readout))
    assert torch.equal(one[0], two[0])
    for a, b in zip(one[1], two[1], strict=True):
        assert torch.equal(a, b)
    ref_val, ref = _grads(nrn, spikes, w, d, readout, kernels_on=False)
    torch.testing.assert_close(two[0], ref_val, rtol=1e-10, atol=1e-12)
    for name, a, b in zip(("times", "weight", "delay"), two[1], ref, strict=True):
        # not a comparison between zeros (a LIF spike is at the arrival that fired it: its time
        # does not depend on the weights)
        assert bool(b.abs().sum() > 0) or (model == "LIF" and name == "weight")
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * max(1.0, float(b.abs().max())))


def test_neurons_firing_more_often_than_their_inputs_are_run_again():
    """The first pass gives each neuron as many spike slots as its sample has input spikes
    (at least 16): tonic neurons (``v_leak`` above threshold) fire far more often than the
    3 input spikes of their sample and must still equal the reference engine."""
    from ctsnn.models.lif import LIF

    spikes = _input(7, n_in=3, batch=2, n_ev=6, n_steps=300)
    w, d = _layer(7, n_in=3, n=3)
    model = LIF(3, tau_mem=0.01, v_leak=torch.tensor([1.4, 1.2, 0.0], dtype=F64),
                v_threshold=1.0)
    syn = Dense(weight=w, delay=d, learn_weight=False)
    with torch.no_grad():
        got = event_driven.run_event_driven(model, syn.arrivals(spikes), n_steps=300,
                                            batch_size=2, state=None, dtype=F64)
        with use_kernels(False):
            ref = run_population(model, dt=DT, n_steps=300, batch_size=2,
                                 arrivals=syn.arrivals(spikes), time="continuous",
                                 dtype=F64).spikes
    assert int(torch.bincount(got.batch * 3 + got.units).max()) > 16
    assert torch.equal(got.batch, ref.batch) and torch.equal(got.units, ref.units)
    assert float((got.times - ref.times).abs().max()) <= 1e-12
