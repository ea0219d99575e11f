"""Continuous time: spike times are differentiable (implicit function theorem), float64.

Every gradient is checked against the closed form or central finite differences, with the
spike count asserted unchanged by the perturbation.
"""

from __future__ import annotations

import math

import pytest
import torch

import ctsnn

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("dt", [1e-4, 1e-3, 1e-2])
def test_lif_spike_time_gradient_matches_closed_form(dt):
    tau = 0.01
    current = torch.tensor(1.6, requires_grad=True)
    model = ctsnn.LIF(1, tau_mem=tau, learn_tau=True)
    n = int(round(0.2 / dt))
    res = ctsnn.simulate(model, current.expand(n, 1, 1), dt=dt, time="continuous")
    times = res.spikes.times
    k = 7
    g_i, g_tau = torch.autograd.grad(times[k - 1], (current, model.tau_mem))
    i = 1.6
    assert math.isclose(g_i.item(), k * tau * (1 / i - 1 / (i - 1)), rel_tol=1e-10)
    assert math.isclose(g_tau.item(), k * math.log(i / (i - 1)), rel_tol=1e-10)


def _cuba_net(weight, delay, tau_syn):
    model = ctsnn.CubaLIF(3, tau_mem=0.02, tau_syn=tau_syn)
    return ctsnn.Layer(model, weight, delay=delay)


def _inputs():
    gen = torch.Generator().manual_seed(5)
    t_in = torch.rand(30, generator=gen) * 0.12
    u_in = torch.randint(0, 4, (30,), generator=gen)
    weight = 1.0 + 2.0 * torch.rand(3, 4, generator=gen)
    delay = 0.01 * torch.rand(3, 4, generator=gen)
    return t_in, u_in, weight, delay


def _spike_times(t_in, u_in, weight, delay, tau_syn=0.005, dt=1e-3, grad_params=False):
    spikes = ctsnn.Spikes.from_events(t_in, u_in, dt=dt, n_steps=int(round(0.15 / dt)),
                                      n_units=4)
    layer = _cuba_net(weight, delay, tau_syn)
    if grad_params:
        return layer, spikes
    with torch.no_grad():
        return ctsnn.simulate(layer, spikes, dt=dt, time="continuous").spikes


def _loss(spikes):
    # A smooth function of all output spike times, different per unit.
    return (spikes.times * (1.0 + spikes.units)).square().sum()


def test_gradients_wrt_weights_delays_and_input_times_match_finite_differences():
    t_in, u_in, weight, delay = _inputs()
    t_in = t_in.clone().requires_grad_()
    delay = delay.clone()
    layer, spikes = _spike_times(t_in, u_in, weight, delay, grad_params=True)
    layer.synapse.delay.requires_grad_()
    res = ctsnn.simulate(layer, spikes, dt=1e-3, time="continuous")
    n_out = len(res.spikes)
    assert n_out >= 6
    loss = _loss(res.spikes)
    g_w, g_d, g_t = torch.autograd.grad(loss, (layer.synapse.weight, layer.synapse.delay, t_in))

    def fd(param: str, index, eps):
        vals = {"w": weight, "d": delay, "t": t_in.detach()}
        out = []
        for sign in (1, -1):
            v = {k: x.detach().clone() for k, x in vals.items()}
            v[param][index] += sign * eps
            sp = _spike_times(v["t"], u_in, v["w"], v["d"])
            assert len(sp) == n_out, "perturbation changed the spike count"
            out.append(_loss(sp))
        return (out[0] - out[1]) / (2 * eps)

    for idx in [(0, 0), (1, 2), (2, 3), (0, 1)]:
        assert math.isclose(g_w[idx].item(), fd("w", idx, 1e-6).item(), rel_tol=1e-6,
                            abs_tol=1e-10)
        assert math.isclose(g_d[idx].item(), fd("d", idx, 1e-8).item(), rel_tol=1e-5,
                            abs_tol=1e-9)
    for idx in [(0,), (7,), (19,)]:
        assert math.isclose(g_t[idx].item(), fd("t", idx, 1e-8).item(), rel_tol=1e-5,
                            abs_tol=1e-9)
    assert g_d.abs().sum() > 0 and g_t.abs().sum() > 0


def test_gradients_do_not_depend_on_the_grid_step():
    t_in, u_in, weight, delay = _inputs()
    grads = []
    for dt in (1e-3, 3e-3):
        layer, spikes = _spike_times(t_in, u_in, weight, delay, dt=dt, grad_params=True)
        res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous")
        grads.append(torch.autograd.grad(_loss(res.spikes), layer.synapse.weight)[0])
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)
