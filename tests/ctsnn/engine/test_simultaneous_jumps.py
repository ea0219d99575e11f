"""One semantics for jumps that share an instant (docs/recurrent_substep_adjoint.md).

At an instant, the jumps of a neuron whose causes lie elsewhere (inputs, recurrent arrivals
with a positive delay) are summed and the threshold is tested once; zero-delay arrivals of the
spikes at that instant follow in causal waves, each summed. LIF networks (jumps into the
voltage) of mixed signs used to fire depending on the order the jumps were applied in, so
spike counts changed with dt (31 / 32 / 48 spikes at three dt for one of these networks).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.synapses import RecurrentDense, coalesce

pytestmark = pytest.mark.usefixtures("float64")

DTS = (1e-3, 4e-4, 2.5e-4)


def _network(seed, n=3, p_zero=0.5):
    gen = torch.Generator().manual_seed(seed)
    w_in = torch.rand(n, 2, generator=gen) * 2
    t_in = 0.0005 + torch.rand(3, generator=gen) * 0.006
    u_in = torch.tensor([0, 1, 0])
    w_rec = (torch.rand(n, n, generator=gen) - 0.4) * 2
    d_rec = torch.where(torch.rand(n, n, generator=gen) < p_zero, 0.0, 0.0003)
    return w_in, t_in, u_in, w_rec, d_rec


def _events(w_in, t_in, u_in, w_rec, d_rec, dt, t_end=0.01, neuron=None):
    n = w_rec.shape[0]
    neuron = neuron or (lambda k: ctsnn.LIF(k, tau_mem=0.01))
    layer = ctsnn.Layer(neuron(n), w_in, recurrent=RecurrentDense(weight=w_rec, delay=d_rec))
    spikes = ctsnn.Spikes.from_events(t_in, u_in, dt=dt, n_steps=int(round(t_end / dt)),
                                      n_units=w_in.shape[1])
    with torch.no_grad():
        res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous")
    return sorted(zip(res.spikes.units.tolist(), res.spikes.times.tolist(), strict=True))


def _same(a, b, tol=1e-12):
    assert len(a) == len(b)
    for (ua, ta), (ub, tb) in zip(a, b, strict=True):
        assert ua == ub and abs(ta - tb) <= tol


@pytest.mark.parametrize("seed", [17, 30, 35, 37])
def test_lif_mixed_sign_simultaneous_jumps_do_not_depend_on_dt(seed):
    """Seeds that gave different spike counts at different dt before."""
    w_in, t_in, u_in, w_rec, d_rec = _network(seed)
    runs = [_events(w_in, t_in, u_in, w_rec, d_rec, dt) for dt in DTS]
    assert len(runs[0]) >= 3
    for other in runs[1:]:
        _same(runs[0], other)


def test_lif_results_do_not_depend_on_neuron_or_input_order():
    w_in, t_in, u_in, w_rec, d_rec = _network(35)
    base = _events(w_in, t_in, u_in, w_rec, d_rec, 1e-3)
    for perm in ([2, 0, 1], [1, 2, 0], [0, 2, 1]):
        p = torch.tensor(perm)
        q = torch.tensor([1, 0])  # the input units swapped too
        got = _events(w_in[p][:, q], t_in, q[u_in], w_rec[p][:, p], d_rec[p][:, p], 4e-4)
        _same(base, sorted((int(p[u]), t) for u, t in got))


def test_summed_jump_fires_once_and_cancelling_jumps_do_not_fire():
    """Two inputs at one instant on one LIF neuron (v = 0.5): +0.6 and -0.5 sum to +0.1, no
    spike in either input order (applied one by one, +0.6 first used to fire); +0.3 and +0.3
    sum to a crossing: one spike."""
    for order in ([0, 1], [1, 0]):
        w = torch.tensor([[0.5, 0.6, -0.5]])[:, [0] + [1 + k for k in order]]
        t = torch.tensor([0.001, 0.002, 0.002])
        u = torch.tensor([0, 1, 2])
        w_rec, d_rec = torch.zeros(1, 1), torch.full((1, 1), 0.005)
        for dt in (1e-3, 3e-4):
            assert _events(w, t, u, w_rec, d_rec, dt, t_end=0.004,
                           neuron=lambda k: ctsnn.LIF(k, tau_mem=1e3)) == []
    w = torch.tensor([[0.5, 0.3, 0.3]])
    got = _events(w, torch.tensor([0.001, 0.002, 0.002]), torch.tensor([0, 1, 2]),
                  torch.zeros(1, 1), torch.full((1, 1), 0.005), 1e-3, t_end=0.004,
                  neuron=lambda k: ctsnn.LIF(k, tau_mem=1e3))
    assert [u for u, _ in got] == [0] and got[0][1] == pytest.approx(0.002, abs=1e-15)


def test_coalesce_sums_by_instant_and_depth():
    offset = torch.tensor([[0.3], [0.1], [0.3], [0.3]]).reshape(4, 1, 1)
    value = torch.tensor([1.0, 2.0, 4.0, 8.0]).reshape(4, 1, 1)
    depth = torch.tensor([0, 0, 1, 0]).reshape(4, 1, 1)
    o, v, d = coalesce(offset, value, depth)
    assert o.flatten().tolist()[:3] == [0.1, 0.3, 0.3]
    assert v.flatten().tolist() == [2.0, 9.0, 4.0] and d.flatten().tolist() == [0, 0, 1]
    # the merged time's derivative: value-weighted (exact for a common shift)
    off = offset.clone().requires_grad_()
    o, v, _ = coalesce(off, value, depth)
    o[1].sum().backward()
    assert off.grad.flatten().tolist() == pytest.approx([1 / 9, 0.0, 0.0, 8 / 9])


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), p_zero=st.floats(0.2, 0.9))
def test_property_lif_spikes_same_at_every_dt(seed, p_zero):
    w_in, t_in, u_in, w_rec, d_rec = _network(seed, p_zero=p_zero)
    runs = [_events(w_in, t_in, u_in, w_rec, d_rec, dt, t_end=0.008) for dt in DTS[:2]]
    _same(*runs)


@pytest.mark.parametrize("delayed", [False, True])
def test_compiled_event_kernel_sums_simultaneous_jumps_like_the_reference(delayed, monkeypatch):
    """Feed-forward LIF: mixed-sign inputs at one instant (also via delays that make
    arrivals coincide) give the same spikes with the compiled event-driven kernel and the
    reference engine, whatever the order of the input units."""
    from ctsnn.compiled import use_kernels
    from ctsnn.engine import population

    served = []
    kernel = population.run_event_driven
    monkeypatch.setattr(population, "run_event_driven",
                        lambda *a, **k: served.append(1) or kernel(*a, **k))
    gen = torch.Generator().manual_seed(5)
    n_in, n = 6, 4
    w = (torch.rand(n, n_in, generator=gen) - 0.35) * 1.6
    steps = torch.randint(1, 12, (30,), generator=gen)
    t = steps.to(torch.float64) * 5e-4  # on grid points of both dt: many exact ties
    u = torch.randint(0, n_in, (30,), generator=gen)
    d = (torch.randint(0, 3, (n, n_in), generator=gen).to(torch.float64) * 5e-4
         if delayed else None)
    runs = []
    for kernels, perm in ((False, torch.arange(n_in)), (True, torch.arange(n_in)),
                          (True, torch.randperm(n_in, generator=gen))):
        inv = torch.argsort(perm)
        for dt in (1e-3, 5e-4):
            layer = ctsnn.Layer(ctsnn.LIF(n, tau_mem=0.01), w[:, perm],
                                delay=None if d is None else d[:, perm], time="continuous")
            spikes = ctsnn.Spikes.from_events(t, inv[u], dt=dt, n_steps=int(round(0.01 / dt)),
                                              n_units=n_in)
            with use_kernels(kernels), torch.no_grad():
                res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous")
            runs.append(sorted(zip(res.spikes.units.tolist(), res.spikes.times.tolist(),
                                   strict=True)))
    assert len(runs[0]) >= 5 and len(served) == 4  # the kernel ran the kernels=True runs
    for other in runs[1:]:
        _same(runs[0], other, tol=1e-15)
