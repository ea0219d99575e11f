"""Dense with exact delays: zero-delay and delayed arrivals in both time modes (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ctsnn
from ctsnn.synapses import Dense

pytestmark = pytest.mark.usefixtures("float64")


def delta_lif_reference(t_in, u_in, weight, delay, *, tau, t_end):
    """Independent event-driven LIF with ``v += w`` jumps and no input current.

    Between arrivals v only decays, so spikes happen exactly at arrival times. numpy only.
    """
    n_out = weight.shape[0]
    out = []
    for i in range(n_out):
        arr = sorted((t + delay[i, u], weight[i, u]) for t, u in zip(t_in, u_in, strict=True))
        v, t_prev = 0.0, 0.0
        k = 0
        while k < len(arr):
            t = arr[k][0]
            if t > t_end:
                break
            v *= math.exp(-(t - t_prev) / tau)
            while k < len(arr) and arr[k][0] == t:  # simultaneous arrivals sum first
                v += arr[k][1]
                k += 1
            t_prev = t
            if v >= 1.0:
                out.append((t, i))
                v = 0.0
    out.sort()
    return np.array([t for t, _ in out]), np.array([i for _, i in out])


def _w5_like(seed, n_in=12, n_out=9, rate=60.0, duration=0.2):
    gen = np.random.default_rng(seed)
    n = gen.poisson(rate * duration * n_in)
    t_in = np.sort(gen.uniform(0, duration, n))
    u_in = gen.integers(0, n_in, n)
    weight = gen.uniform(0.2, 0.6, (n_out, n_in))
    delay = gen.uniform(0, 0.025, (n_out, n_in))
    return t_in, u_in, weight, delay


@pytest.mark.parametrize("dt", [1e-4, 1e-3, 4e-3])
def test_delayed_arrivals_match_event_driven_reference(dt):
    t_in, u_in, weight, delay = _w5_like(0)
    t_end = 0.2
    n_steps = int(round(t_end / dt))
    spikes = ctsnn.Spikes.from_events(torch.tensor(t_in), torch.tensor(u_in), dt=dt,
                                      n_steps=n_steps, n_units=12)
    layer = ctsnn.Layer(ctsnn.LIF(9, tau_mem=0.01), torch.tensor(weight),
                        delay=torch.tensor(delay))
    with torch.no_grad():
        res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous")
    ref_t, ref_u = delta_lif_reference(t_in, u_in, weight, delay, tau=0.01, t_end=t_end)
    assert len(ref_t) > 20
    order = torch.argsort(res.spikes.times)
    got_t, got_u = res.spikes.times[order].numpy(), res.spikes.units[order].numpy()
    assert got_t.shape == ref_t.shape
    assert np.abs(got_t - ref_t).max() < 1e-12
    assert (got_u == ref_u).all()


def test_delay_shifts_a_spike_train_exactly_in_both_modes():
    # An integer delay of d steps moves every grid spike by exactly d steps, no leakage.
    dt, d = 1e-3, 4
    raster = (torch.rand(30, 2, 3, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    spikes = ctsnn.Spikes.from_raster(raster, dt)
    syn = Dense(weight=torch.eye(3), delay=torch.full((3, 3), d * dt))
    shifted = syn.jumps(spikes)
    assert torch.equal(shifted[d:], raster[:-d])
    assert torch.equal(shifted[:d], torch.zeros_like(shifted[:d]))
    arrivals = syn.arrivals(spikes)
    for n in range(30):
        step = arrivals(n)
        if n < d:
            assert step is None or torch.all(step.value == 0)
            continue
        got = torch.zeros(2, 3) if step is None else step.value.sum(0)
        assert torch.equal(got, raster[n - d])
        if step is not None:
            assert torch.allclose(step.offset[step.value != 0], torch.tensor(dt))


def test_discrete_delay_rounds_to_nearest_not_truncates():
    dt = 1e-3
    spikes = ctsnn.Spikes.from_raster(torch.tensor([[[1.0]], [[0.0]], [[0.0]], [[0.0]],
                                                     [[0.0]]]), dt)
    for delay, expected in [(2.6e-3, 3), (2.4e-3, 2), (0.0, 0), (4e-3, 4)]:
        out = Dense(weight=torch.ones(1, 1), delay=torch.tensor([[delay]])).jumps(spikes)
        assert out[:, 0, 0].nonzero().flatten().tolist() == [expected]


def test_axonal_delay_broadcasts_over_targets():
    syn = Dense(weight=torch.ones(4, 3), delay=torch.tensor([0.0, 1e-3, 2e-3]))
    assert syn.delay.shape == (4, 3)
    assert torch.equal(syn.delay[2], torch.tensor([0.0, 1e-3, 2e-3]))


def test_long_input_is_built_in_bounded_windows():
    t_in, u_in, weight, delay = _w5_like(1, duration=0.5)
    dt = 1e-3
    spikes = ctsnn.Spikes.from_events(torch.tensor(t_in), torch.tensor(u_in), dt=dt,
                                      n_steps=500, n_units=12)
    whole = ctsnn.synapses.DelayedArrivals(spikes, torch.tensor(weight), torch.tensor(delay))
    small = ctsnn.synapses.DelayedArrivals(spikes, torch.tensor(weight), torch.tensor(delay),
                                           max_pairs=200)
    assert small._window < 50 < whole._window
    for n in range(500):
        a, b = whole(n), small(n)
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a.offset, b.offset) and torch.equal(a.value, b.value)


def test_bad_delays():
    w = torch.ones(2, 3)
    with pytest.raises(ValueError, match="delay must be non-negative"):
        Dense(weight=w, delay=-torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"delay must have shape \[N_out, N_in\] = \[2, 3\]"):
        Dense(weight=w, delay=torch.ones(3, 2))
    with pytest.raises(ValueError, match="delay contains a non-finite value"):
        Dense(weight=w, delay=torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="delay must not exceed max_delay = 0.01"):
        Dense(weight=w, delay=torch.full((2, 3), 0.02), max_delay=0.01)
    with pytest.raises(ValueError, match="one-to-one input .no weight, no n_in. has no synapses"):
        ctsnn.Layer(ctsnn.LIF(3), delay=torch.ones(3))


def test_learnable_delays_are_parameters_and_clamp_explicitly():
    layer = ctsnn.Layer(ctsnn.CubaLIF(2), torch.ones(2, 3), delay=torch.full((2, 3), 0.002),
                        learn_delay=True, max_delay=0.003)
    names = dict(layer.named_parameters())
    assert set(names) == {"synapse.weight", "synapse.delay"}
    with torch.no_grad():
        layer.synapse.delay[0, 0] = 0.01
        layer.synapse.delay[1, 1] = -0.001
    layer.synapse.clamp_delays_()
    assert layer.synapse.delay[0, 0] == 0.003 and layer.synapse.delay[1, 1] == 0.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("per", ["synapse", "axon"])
def test_discrete_exact_delays_kernel_path_equals_event_jumps(dtype, per, monkeypatch):
    """CPU with kernels on and an input without gradient: the one-tap spike scatter gives the
    event_jumps result and weight gradient (lags at 0, mid-window and past the end, pad_right);
    an input that needs its gradient keeps event_jumps (gradient on the spikes only)."""
    import ctsnn.synapses.spike_scatter as scatter_mod
    from ctsnn.compiled import use_kernels

    calls = []
    real = scatter_mod.SpikeScatter.apply
    monkeypatch.setattr(scatter_mod.SpikeScatter, "apply",
                        lambda *a: calls.append(1) or real(*a))
    dt, n_steps = 1e-3, 30
    t_in, u_in, _, _ = _w5_like(4, n_in=6, n_out=5, rate=40.0, duration=n_steps * dt)
    t_in = np.concatenate([[0.0, (n_steps - 1) * dt], t_in])  # a spike at t = 0 and one at the end
    u_in = np.concatenate([[0, 1], u_in])
    spikes = ctsnn.Spikes.from_events(torch.as_tensor(t_in, dtype=dtype), torch.as_tensor(u_in),
                                      torch.zeros(len(t_in), dtype=torch.long), dt=dt,
                                      n_steps=n_steps, batch_size=1, n_units=6)
    gen = torch.Generator().manual_seed(0)
    shape = (5, 6) if per == "synapse" else (6,)
    delay = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.04  # some past T
    delay.view(-1)[0] = 0.0
    syn = Dense(6, 5, delay=delay.to(dtype), per=per, pad_right=4, dtype=dtype)
    res = []
    for on in (False, True):
        syn.zero_grad()
        with use_kernels(on):
            out = syn.jumps(spikes)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        (out * g).sum().backward()
        res.append((out.detach(), syn.weight.grad.clone()))
    assert calls == [1]
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {}
    torch.testing.assert_close(res[1][0], res[0][0], **tol)
    torch.testing.assert_close(res[1][1], res[0][1], **tol)
    assert res[0][0].abs().sum() > 0

    values = torch.ones(len(t_in), dtype=dtype, requires_grad=True)
    diff = ctsnn.Spikes.from_events(spikes.times, spikes.units, spikes.batch, values=values,
                                    dt=dt, n_steps=n_steps, batch_size=1, n_units=6)
    outs = []
    for on in (False, True):
        with use_kernels(on):
            out = syn.jumps(diff)
        outs.append((out.detach(),
                     torch.autograd.grad((out * g).sum(), values, retain_graph=True)[0]))
    assert calls == [1]  # the differentiable input kept event_jumps
    torch.testing.assert_close(outs[1][0], res[0][0], **tol)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=0, atol=0)
