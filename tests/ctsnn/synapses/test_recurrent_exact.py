"""RecurrentDense with exact delays (continuous) and rounded delays (discrete)."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
import torch

import ctsnn
from ctsnn.synapses import RecurrentDense

pytestmark = pytest.mark.usefixtures("float64")


def event_driven_reference(t_in, u_in, w_in, w_rec, d_rec, *, tau, t_end):
    """Independent LIF network with v += w jumps, exact delays, priority queue (numpy)."""
    n = w_rec.shape[0]
    queue = [(t, int(u), w_in) for t, u in zip(t_in, u_in, strict=True)]
    heapq.heapify(queue)
    v, last = np.zeros(n), np.zeros(n)
    out = []
    while queue:
        t, i, w = heapq.heappop(queue)
        if t > t_end:
            break
        total = w  # simultaneous arrivals at the same neuron are summed first
        while queue and queue[0][0] == t and queue[0][1] == i:
            total += heapq.heappop(queue)[2]
        v[i] = v[i] * math.exp(-(t - last[i]) / tau) + total
        last[i] = t
        if v[i] >= 1.0:
            v[i] = 0.0
            out.append((t, i))
            for k in range(n):
                heapq.heappush(queue, (t + d_rec[k, i], k, w_rec[k, i]))
    return out


def _setup(seed=0, n=6):
    gen = torch.Generator().manual_seed(seed)
    t_in = torch.rand(15, generator=gen) * 0.04
    u_in = torch.randint(0, n, (15,), generator=gen)
    w_rec = torch.rand(n, n, generator=gen) * 0.3
    d_rec = 0.0015 + 0.01 * torch.rand(n, n, generator=gen)
    return t_in, u_in, w_rec, d_rec


@pytest.mark.parametrize("dt", [1e-3, 1.5e-3])
def test_continuous_recurrence_matches_event_driven_reference(dt):
    t_in, u_in, w_rec, d_rec = _setup()
    n, t_end = 6, 0.12
    spikes = ctsnn.Spikes.from_events(t_in, u_in, dt=dt, n_steps=int(round(t_end / dt)),
                                      n_units=n)
    layer = ctsnn.Layer(ctsnn.LIF(n, tau_mem=0.01), torch.eye(n) * 1.1,
                        recurrent=RecurrentDense(weight=w_rec, delay=d_rec))
    with torch.no_grad():
        res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous")
    ref = event_driven_reference(t_in.numpy(), u_in.numpy(), 1.1, w_rec.numpy(), d_rec.numpy(),
                                 tau=0.01, t_end=res.spikes.n_steps * dt)
    assert len(ref) > 15  # 15 input spikes, plus spikes caused by recurrence
    order = torch.argsort(res.spikes.times, stable=True)
    got = list(zip(res.spikes.times[order].tolist(), res.spikes.units[order].tolist(),
                   strict=True))
    assert len(got) == len(ref)
    ref_sorted = sorted(ref)
    for (ta, ua), (tb, ub) in zip(sorted(got), ref_sorted, strict=True):
        assert ua == ub and abs(ta - tb) < 1e-12


def test_discrete_recurrence_rounds_delays_to_whole_steps():
    n, dt = 3, 1e-3
    w = torch.zeros(n, n)
    w[1, 0] = 2.0  # neuron 0 -> neuron 1 after 3.4 ms -> 3 steps
    d = torch.full((n, n), 0.002)
    d[1, 0] = 0.0034
    x = torch.zeros(10, 1, n)
    x[2, 0, 0] = 2.0  # neuron 0 fires at step 2
    layer = ctsnn.Layer(ctsnn.LIF(n, tau_mem=0.01), recurrent=RecurrentDense(weight=w, delay=d))
    res = ctsnn.simulate(layer, x, dt=dt, input_as="jump")
    assert res.spikes.step.tolist() == [2, 5]
    assert res.spikes.units.tolist() == [0, 1]


def test_continuous_recurrent_gradients_match_finite_differences():
    n = 4
    gen = torch.Generator().manual_seed(2)
    t_in = torch.rand(12, generator=gen) * 0.03
    u_in = torch.randint(0, n, (12,), generator=gen)
    w_rec = 0.3 + 0.3 * torch.rand(n, n, generator=gen)
    d_rec = 0.002 + 0.006 * torch.rand(n, n, generator=gen)

    def run(w, d, grad=False):
        rec = RecurrentDense(weight=w, delay=d, learn_delay=True)
        layer = ctsnn.Layer(ctsnn.CubaLIF(n, tau_mem=0.01, tau_syn=0.004), torch.eye(n) * 4.0,
                            recurrent=rec)
        spikes = ctsnn.Spikes.from_events(t_in, u_in, dt=1e-3, n_steps=60, n_units=n)
        with torch.set_grad_enabled(grad):
            res = ctsnn.simulate(layer, spikes, dt=1e-3, time="continuous")
        loss = (res.spikes.times * (1 + res.spikes.units)).square().sum()
        return loss, len(res.spikes), rec

    loss, count, rec = run(w_rec, d_rec, grad=True)
    assert count >= 8
    g_w, g_d = torch.autograd.grad(loss, (rec.weight, rec.delay))
    for idx, eps_w, eps_d in [((0, 1), 1e-6, 1e-8), ((2, 3), 1e-6, 1e-8), ((3, 0), 1e-6, 1e-8)]:
        for which, g, eps in (("w", g_w, eps_w), ("d", g_d, eps_d)):
            vals = []
            for sign in (1, -1):
                w, d = w_rec.clone(), d_rec.clone()
                (w if which == "w" else d)[idx] += sign * eps
                val, c, _ = run(w, d)
                assert c == count, "perturbation changed the spike count"
                vals.append(val)
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert math.isclose(g[idx].item(), fd.item(), rel_tol=1e-5, abs_tol=1e-9), which
    assert g_d.abs().sum() > 0


def test_float32_delay_of_one_step_is_one_step_in_discrete_time():
    """float32 stores 1e-4 as 9.99999997e-5: discrete time uses round(d / dt) = 1 step, and the
    one-step check compares the same rounded lag (it refused it before)."""
    rec = RecurrentDense(weight=torch.full((2, 2), 0.6, dtype=torch.float32), delay=1e-4)
    assert float(rec.delay[0, 0]) < 1e-4  # the float32 rounding this is about
    layer = ctsnn.Layer(ctsnn.LIF(2, tau_mem=0.01), torch.eye(2), recurrent=rec).float()
    x = torch.zeros(6, 1, 2, dtype=torch.float32)
    x[0, 0, 0] = 200.0  # drives neuron 0 over threshold in step 0
    out = ctsnn.simulate(layer, x, dt=1e-4, time="discrete", record=("v",))
    v = out.states["v"].detach()
    assert out.spikes.times.tolist() == [pytest.approx(1e-4)]
    # its recurrent jump (0.6) reaches neuron 1 one step later
    assert float(v[0, 0, 1]) == 0.0 and float(v[1, 0, 1]) > 0.5
    # just below half a step rounds to 0 steps: still refused, the message gives the steps
    short = RecurrentDense(weight=torch.ones(2, 2, dtype=torch.float32), delay=0.49e-4)
    layer = ctsnn.Layer(ctsnn.LIF(2), torch.eye(2), recurrent=short).float()
    with pytest.raises(ValueError, match=r"at least one grid step .* = 0\.49 steps"):
        ctsnn.simulate(layer, x, dt=1e-4, time="discrete")


def test_delays_shorter_than_a_step_are_rejected_in_discrete_time():
    # (continuous time accepts them since issue 9: tests/ctsnn/synapses/test_recurrent_substep.py)
    layer = ctsnn.Layer(ctsnn.LIF(2), recurrent=RecurrentDense(weight=torch.ones(2, 2),
                                                              delay=torch.full((2, 2), 5e-4)))
    with pytest.raises(ValueError, match="at least one grid step"):
        ctsnn.simulate(layer, torch.zeros(5, 1, 2), dt=1e-3, time="discrete")
    with pytest.raises(ValueError, match="must be square"):
        RecurrentDense(weight=torch.ones(2, 3), delay=torch.ones(2, 3))
