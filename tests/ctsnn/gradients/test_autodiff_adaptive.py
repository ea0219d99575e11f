"""``gradient="surrogate"`` (autograd through the engine) with adaptive pairs in continuous time:
gradients w.r.t. weights, delays, input times and neuron parameters against central finite
differences (float64), on AdEx whose state runs away past the threshold after every crossing."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from solvers.embedded import Adaptive

pytestmark = pytest.mark.usefixtures("float64")

DT, STEPS, N_IN, N = 1e-3, 10, 2, 2
METHOD = Adaptive("dopri5", rtol=1e-11, atol=1e-13)


def _setup():
    g = torch.Generator().manual_seed(1)
    times = torch.rand(8, generator=g, dtype=torch.float64) * 0.008
    units = torch.randint(0, N_IN, (8,), generator=g)
    weight = 12.0 + 4.0 * torch.rand(N, N_IN, generator=g, dtype=torch.float64)
    delay = 0.002 * torch.rand(N, N_IN, generator=g, dtype=torch.float64)
    return times, units, weight, delay


def _loss(times, units, weight, delay, b, grad):
    model = ctsnn.AdEx(N)
    model.add_parameter("b", b.detach().clone(), learnable=True)
    spikes = ctsnn.Spikes(times, units, torch.zeros_like(units), dt=DT, n_steps=STEPS,
                          batch_size=1, n_units=N_IN)
    layer = ctsnn.Layer(model, weight, delay=delay, learn_delay=True, time="continuous")
    with torch.set_grad_enabled(grad):
        out = ctsnn.simulate(layer, spikes, dt=DT, time="continuous", method=METHOD).spikes
        loss = (out.times * (1.0 + out.units) * 300.0).sin().sum()
    return loss, len(out), layer


def test_surrogate_gradients_through_dopri5_match_finite_differences() -> None:
    times, units, weight, delay = _setup()
    b0 = torch.full((N,), 0.08, dtype=torch.float64)
    t_in = times.clone().requires_grad_()
    loss, n_spikes, layer = _loss(t_in, units, weight, delay, b0, True)
    assert n_spikes >= 4, "the case must spike"
    grads = torch.autograd.grad(loss, [layer.synapse.weight, layer.synapse.delay, t_in,
                                       layer.model.b])
    eps = 1e-7
    checked = 0
    for which, index in [(0, (0, 1)), (0, (1, 0)), (1, (1, 1)), (2, (3,)), (3, (0,))]:
        values = []
        for sign in (1.0, -1.0):
            args = [weight.clone(), delay.clone(), times.clone(), b0.clone()]
            args[which][index] += sign * eps
            value, count, _ = _loss(args[2], units, args[0], args[1], args[3], False)
            assert count == n_spikes, "a perturbation created or deleted a spike"
            values.append(float(value))
        fd = (values[0] - values[1]) / (2 * eps)
        got = float(grads[which][index])
        assert abs(got - fd) <= 1e-5 * abs(fd) + 1e-7, (which, index, got, fd)
        checked += abs(fd) > 1e-3
    assert checked >= 3, "the checked entries must matter"
