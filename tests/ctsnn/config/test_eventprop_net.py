"""EventPropNet: assembly (weights, delays, flags), readouts and losses, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.config import EventPropConfig, EventPropNet
from ctsnn.data import poisson_spikes, sequence_detection
from ctsnn.losses import time_invariant_mse

SEQ = dict(n_in=2, hidden=(), n_out=2, recurrent=False, tau_mem=0.01, tau_syn=0.005,
           max_delay=0.015, in_weight=(1.0, 0.0), out_weight=(1.0, 0.0),
           delay_init=(0.0, 0.015), learn_weight=False, learn_output_delay=True)


def test_single_layer_equals_a_hand_built_layer(float64):
    net = EventPropNet(EventPropConfig(**SEQ, readout="max"),
                       generator=torch.Generator().manual_seed(3))
    x, _ = sequence_detection()
    syn = net.layers[0].synapse
    ref = ctsnn.Layer(ctsnn.CubaLI(2, tau_mem=0.01, tau_syn=0.005), syn.weight.detach().clone(),
                      delay=syn.delay.detach().clone(), max_delay=0.015, time="continuous",
                      gradient="adjoint")
    expected = ctsnn.simulate(ref, x, readout="max").output
    torch.testing.assert_close(net(x), expected, rtol=0, atol=0)
    assert not syn.weight.requires_grad and syn.delay.requires_grad
    d = syn.delay.detach()
    assert 0 <= float(d.min()) and float(d.max()) <= 0.015


def test_delay_gradient_matches_finite_differences(float64):
    cfg = EventPropConfig(**{**SEQ, "learn_weight": True}, readout="avg_exp")
    net = EventPropNet(cfg, generator=torch.Generator().manual_seed(1))
    x, y = sequence_detection()
    loss = net.loss(net(x), y)
    loss.backward()
    syn = net.layers[0].synapse
    for param in (syn.delay, syn.weight):
        grad = param.grad.clone()
        for idx in [(0, 0), (1, 0), (0, 1)]:
            h = 1e-6
            with torch.no_grad():
                param[idx] += h
                up = float(net.loss(net(x), y))
                param[idx] -= 2 * h
                down = float(net.loss(net(x), y))
                param[idx] += h
            assert float(grad[idx]) == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-9)


def test_weights_follow_their_gaussians_and_flags():
    cfg = EventPropConfig(n_in=200, hidden=(300,), n_out=20, recurrent=True,
                          in_weight=(0.03, 0.01), rec_weight=(0.0, 0.02),
                          out_weight=(0.0, 0.03), delay_init=(0.0, 0.15), max_delay=1.0)
    net = EventPropNet(cfg)
    w_in = net.layers[0].synapse.weight.detach()
    assert float(w_in.mean()) == pytest.approx(0.03, abs=3e-4)
    assert float(w_in.std()) == pytest.approx(0.01, rel=0.02)
    d = net.layers[0].synapse.delay.detach()
    assert 0 <= float(d.min()) and float(d.max()) <= 0.15 and float(d.mean()) == \
        pytest.approx(0.075, rel=0.02)
    rec = net.layers[0].recurrent
    assert float(rec.weight.detach().std()) == pytest.approx(0.02, rel=0.02)
    assert rec.delay.requires_grad and float(rec.delay.detach().abs().max()) == 0.0
    out = net.layers[1].synapse
    assert out.weight.requires_grad and not isinstance(out.delay, torch.nn.Parameter)


def test_recurrent_network_runs_and_learns_every_delay(float64):
    torch.manual_seed(0)
    cfg = EventPropConfig(n_in=10, hidden=(6,), n_out=3, recurrent=True, max_delay=0.02,
                          in_weight=(1.5, 0.5), rec_weight=(0.0, 0.3), out_weight=(0.0, 1.0),
                          delay_init=(0.0, 0.02), rec_delay_init=(0.001, 0.01))
    net = EventPropNet(cfg)
    x = poisson_spikes(10, 100.0, 0.05, batch=3, seed=0)
    out = net(x)
    assert out.shape == (3, 3)
    net.loss(out, torch.tensor([0, 1, 2])).backward()
    assert net.layers[0].synapse.delay.grad.abs().sum() > 0
    assert net.layers[0].recurrent.delay.grad is not None


def test_first_spike_readout_uses_the_time_invariant_mse():
    cfg = EventPropConfig(n_in=4, hidden=(5,), n_out=3, recurrent=False, max_delay=0.01,
                          delay_init=(0.0, 0.0), in_weight=(1.0, 1.0), out_weight=(1.0, 1.0),
                          readout="first_spike", delta=0.002)
    net = EventPropNet(cfg)
    t = torch.tensor([[0.010, 0.004, 0.020], [0.001, 0.002, 0.003]])
    y = torch.tensor([1, 2])
    assert float(net.loss(t, y)) == pytest.approx(float(time_invariant_mse(t, y, 0.002)))
    assert net.predict(t).tolist() == [1, 0]
    logits = torch.tensor([[0.1, 2.0], [3.0, -1.0]])
    ce = EventPropNet(EventPropConfig(**SEQ, readout="avg_exp"))
    assert float(ce.loss(logits, torch.tensor([1, 0]))) == pytest.approx(
        float(F.cross_entropy(logits, torch.tensor([1, 0]))))
    assert ce.predict(logits).tolist() == [1, 0]


@pytest.mark.parametrize("changes,field", [
    ({"recurrent": True, "time": "discrete"}, "time='continuous'"),
    ({"delay_init": (0.0, 2.0)}, "delay_init"),
    ({"readout": "mean"}, "readout"),
    ({"hidden": (0,)}, "hidden[0]"),
    ({"in_weight": (1.0,)}, "in_weight"),
    ({"readout": "first_spike", "time": "discrete", "recurrent": False}, "first_spike"),
])
def test_config_errors_name_the_field(changes, field):
    with pytest.raises((ValueError, TypeError), match=field.replace("[", r"\[").replace(
            "(", r"\(")):
        EventPropConfig(**changes)


def test_input_checks():
    net = EventPropNet(EventPropConfig(**SEQ))
    with pytest.raises(TypeError, match="Spikes"):
        net(torch.zeros(5, 1, 2))
    with pytest.raises(ValueError, match="n_in = 2"):
        net(poisson_spikes(3, 10.0, 0.01))


def test_output_delay_sets_the_initial_readout_delays():
    worst = ((0.0, 0.010), (0.010, 0.0))
    net = EventPropNet(EventPropConfig(**SEQ, output_delay=worst))
    torch.testing.assert_close(net.layers[0].synapse.delay.detach(), torch.tensor(worst),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="2 rows of 2 delays"):
        EventPropConfig(**SEQ, output_delay=((0.0,), (0.0,)))
    with pytest.raises(ValueError, match="learn_output_delay=True"):
        EventPropConfig(**{**SEQ, "learn_output_delay": False}, output_delay=worst)
    with pytest.raises(ValueError, match=r"output_delay\[0\]\[1\]"):
        EventPropConfig(**SEQ, output_delay=((0.0, 0.5), (0.0, 0.0)))
