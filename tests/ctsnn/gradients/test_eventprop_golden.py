"""SEEDS F3.22: the single-synapse LI golden values, exactly, from the continuous engine.

One input spike at 10 ms reaches a current-based leaky integrator (tau_m 20 ms, tau_s 5 ms)
through w = 0.7 with delay d = 3.3 ms; L = ∫_0^100ms V² e^{-t/100ms} dt. In milliseconds:
L = 0.182886148, dL/dw = 0.5225318507, dL/dd = -0.0018322996 per ms; in seconds L and dL/dw
scale by 1/1000 and dL/dd is the same number per second.
"""

from __future__ import annotations

import pytest
import torch

import ctsnn

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("dt", [1e-3, 1e-4, 2.5e-3])
def test_golden_single_synapse_values(dt):
    f64 = torch.float64
    spikes = ctsnn.Spikes.from_events(torch.tensor([0.010], dtype=f64), [0], dt=dt,
                                      n_steps=int(round(0.1 / dt)), n_units=1)
    model = ctsnn.CubaLI(1, tau_mem=0.02, tau_syn=0.005)
    layer = ctsnn.Layer(model, torch.tensor([[0.7]], dtype=f64),
                        delay=torch.tensor([[0.0033]], dtype=f64))
    layer.synapse.delay.requires_grad_()
    res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous",
                         readout=lambda t, s: s.v**2 * torch.exp(-t / 0.1))
    loss = res.output.sum()
    g_w, g_d = torch.autograd.grad(loss, (layer.synapse.weight, layer.synapse.delay))
    assert loss.item() * 1e3 == pytest.approx(0.182886148, abs=1e-9)
    assert g_w.item() * 1e3 == pytest.approx(0.5225318507, abs=1e-10)
    assert g_d.item() == pytest.approx(-0.0018322996, abs=1e-10)
    # The closed forms the spec gives: dL/dw = 2L/w, and the delay sign is negative.
    assert g_w.item() == pytest.approx(2 * loss.item() / 0.7, rel=1e-12)
