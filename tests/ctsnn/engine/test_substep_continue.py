"""A settled step continues from each new in-step arrival instead of integrating the whole
step again (:func:`ctsnn.engine.substep.settle_step`): the same spikes, final states and
autograd gradients as the full re-integration (forced here by disabling the continuation),
float64, for the jump-only (LIF), general (CubaLIF) and Runge-Kutta (QIF) paths."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn.engine import continuous
from ctsnn.synapses import RecurrentDense

pytestmark = pytest.mark.usefixtures("float64")


def forward(make, params, u_in, dt, t_end=0.01):
    w_in, t_in, w_rec, d_rec = params
    n = w_rec.shape[0]
    rec = RecurrentDense(weight=w_rec.clone(), delay=d_rec.clone(), learn_delay=True)
    layer = ctsnn.Layer(make(n), w_in.clone(), recurrent=rec, gradient="surrogate")
    t = t_in.clone().requires_grad_()
    spikes = ctsnn.Spikes.from_events(t, u_in, dt=dt, n_steps=int(round(t_end / dt)),
                                      n_units=w_in.shape[1])
    res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous")
    times = res.spikes.times
    return (times * (1 + res.spikes.units.to(times.dtype))).sum(), res.spikes, layer, t


def _network(seed, n, w_scale):
    gen = torch.Generator().manual_seed(seed)
    w_in = torch.rand(n, 2, generator=gen) * w_scale
    t_in = 0.0005 + torch.rand(4, generator=gen) * 0.006
    u_in = torch.tensor([0, 1, 0, 1])
    w_rec = (torch.rand(n, n, generator=gen) - 0.4) * 2
    d_rec = torch.where(torch.rand(n, n, generator=gen) < 0.5, 0.0, 0.0003)
    d_rec = torch.where(torch.rand(n, n, generator=gen) < 0.2, 0.0007, d_rec)
    return (w_in, t_in, w_rec, d_rec), u_in


MODELS = {
    "lif": (lambda n: ctsnn.LIF(n, tau_mem=0.01), 2.0),
    "cuba": (lambda n: ctsnn.CubaLIF(n, tau_mem=0.01, tau_syn=0.005), 8.0),
    "qif": (lambda n: ctsnn.QIF(n), 4.0),
}


def _run(make, params, u_in, dt, monkeypatch, rerun, passes):
    with monkeypatch.context() as m:
        resumable = continuous._resumable
        if rerun:
            m.setattr(continuous, "_resumable", lambda *a: False)
        else:
            m.setattr(continuous, "_resumable", lambda *a: passes.append(1) or resumable(*a))
        loss, spikes, layer, t = forward(make, params, u_in, dt)
        loss.backward()
    rec = layer.recurrent
    grads = [layer.synapse.weight.grad, t.grad, rec.weight.grad, rec.delay.grad]
    return float(loss.detach()), spikes, [torch.zeros(1) if g is None else g for g in grads]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("seed", [2, 31])
def test_continuing_equals_integrating_again(name, seed, monkeypatch):
    make, scale = MODELS[name]
    params, u_in = _network(seed, 3, scale)
    used: list[int] = []
    for dt in (1e-3, 4e-4):
        ref = _run(make, params, u_in, dt, monkeypatch, True, [])
        got = _run(make, params, u_in, dt, monkeypatch, False, used)
        assert len(ref[1]) >= 3 and len(got[1]) == len(ref[1])
        assert torch.equal(got[1].units, ref[1].units)
        assert torch.allclose(got[1].times, ref[1].times, rtol=0, atol=1e-15)
        assert got[0] == pytest.approx(ref[0], rel=1e-13)
        for a, b in zip(got[2], ref[2], strict=True):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), (name, dt)
    assert used  # the continuation ran
