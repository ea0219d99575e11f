"""Gradient methods as objects (``Layer(gradient=...)``) and the readouts of ``simulate``, float64.

References: the functional closed-form EventProp (``ctsnn.gradients.eventprop.layer_forward``),
the recorded voltage, and autograd through the continuous engine.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.gradients import SHORTHANDS, Adjoint, Autodiff, GradientMethod, as_gradient
from ctsnn.gradients import eventprop as ep
from ctsnn.synapses import RecurrentDense

pytestmark = pytest.mark.usefixtures("float64")

F64 = torch.float64
B, N_IN, N_HID, N_OUT = 2, 4, 5, 3
DT, STEPS = 5e-3, 24
LABELS = torch.tensor([0, 2])


def _problem(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    t_in = torch.rand(30, generator=g, dtype=F64) * 0.08
    u_in = torch.randint(0, N_IN, (30,), generator=g)
    b_in = torch.randint(0, B, (30,), generator=g)
    w1 = 1.0 + 2.0 * torch.rand(N_HID, N_IN, generator=g, dtype=F64)
    d1 = 0.01 * torch.rand(N_HID, N_IN, generator=g, dtype=F64)
    w2 = 0.5 + torch.rand(N_OUT, N_HID, generator=g, dtype=F64)
    d2 = 0.01 * torch.rand(N_OUT, N_HID, generator=g, dtype=F64)
    spikes = ctsnn.Spikes(t_in, u_in, b_in, dt=DT, n_steps=STEPS, batch_size=B, n_units=N_IN)
    return spikes, [w1, d1, w2, d2]


def _hidden():
    return ctsnn.CubaLIF(N_HID, tau_mem=0.02, tau_syn=0.005)


def _readout():
    return ctsnn.CubaLI(N_OUT, tau_mem=0.02, tau_syn=0.005)


# --------------------------------------------------------------------------- as_gradient
def test_as_gradient_shorthands_and_errors():
    assert set(SHORTHANDS) == {"surrogate", "adjoint"}
    assert type(as_gradient("surrogate")) is Autodiff
    assert type(as_gradient("adjoint")) is Adjoint
    method = Adjoint(max_pairs=1000)
    assert as_gradient(method) is method
    assert isinstance(method, GradientMethod) and method.name == "adjoint"
    assert Autodiff.name == "surrogate"
    for bad in ("eventprop", "Adjoint", 3, None):
        with pytest.raises(ValueError, match="unknown gradient"):
            as_gradient(bad)
    with pytest.raises(ValueError, match="unknown gradient"):
        ctsnn.Layer(_hidden(), torch.ones(N_HID, N_IN), gradient="exact")
    with pytest.raises(ValueError, match="spike_reg"):
        Adjoint(spike_reg=(-1.0, 2.0))
    with pytest.raises(ValueError, match="max_pairs"):
        Adjoint(max_pairs=0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        Adjoint(checkpoint_every=1.5)
    layer = ctsnn.Layer(_hidden(), torch.ones(N_HID, N_IN), gradient="adjoint")
    assert isinstance(layer.gradient, Adjoint) and "gradient=Adjoint(" in repr(layer)


# --------------------------------------------------------------------------- spike_reg
def test_adjoint_spike_reg_equals_the_functional_layer():
    """``Layer(gradient=Adjoint(spike_reg=...))`` gives the gradients of
    ``eventprop.layer_forward(..., spike_reg=...)`` (the old per-layer ``spike_reg``), and the
    regulariser changes them."""
    spikes, (w1, d1, _, _) = _problem()
    reg = (0.3, 2.0)

    def loss(out: ctsnn.Spikes) -> torch.Tensor:
        return (out.times ** 2).sum()

    grads = {}
    for spike_reg in (reg, None):
        layer = ctsnn.Layer(_hidden(), w1, delay=d1, learn_delay=True, time="continuous",
                            gradient=Adjoint(spike_reg=spike_reg))
        res = ctsnn.simulate(layer, spikes)
        grads[spike_reg] = torch.autograd.grad(
            loss(res.spikes), [layer.synapse.weight, layer.synapse.delay])
        assert len(res.spikes) >= 2 * N_HID
    w, d = w1.clone().requires_grad_(), d1.clone().requires_grad_()
    ref = torch.autograd.grad(loss(ep.layer_forward(_hidden(), spikes, w, d, spike_reg=reg)),
                              [w, d])
    for a, b in zip(grads[reg], ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)
    assert not torch.allclose(grads[reg][0], grads[None][0])


# --------------------------------------------------------------------------- time modes
def test_simulate_time_conflicting_with_a_layers_time_raises():
    spikes, (w1, _, _, _) = _problem()
    for own, given in (("discrete", "continuous"), ("continuous", "discrete")):
        layer = ctsnn.Layer(_hidden(), w1, time=own)
        with pytest.raises(ValueError, match=f"simulate\\(time='{given}'\\) conflicts with "
                                             f"layer 0's own time='{own}'"):
            ctsnn.simulate(layer, spikes, time=given)
        ctsnn.simulate(layer, spikes, time=own)  # the same value is no conflict
    # in a network, the layer that disagrees is named
    net = [ctsnn.Layer(_hidden(), w1), ctsnn.Layer(_readout(), torch.ones(N_OUT, N_HID),
                                                   time="discrete")]
    with pytest.raises(ValueError, match="layer 1's own time='discrete'"):
        ctsnn.simulate(net, spikes, time="continuous")


def test_discrete_adjoint_refuses_lif_and_recurrent_layers_at_construction():
    w = torch.ones(N_HID, N_IN)
    with pytest.raises(ValueError, match="EventProp on the grid .* for LIF use "
                                         "time='continuous'"):
        ctsnn.Layer(ctsnn.LIF(N_HID), w, time="discrete", gradient="adjoint")
    rec = RecurrentDense(weight=torch.zeros(N_HID, N_HID), delay=torch.full((N_HID, N_HID), 2e-3))
    with pytest.raises(ValueError, match="for CubaLIF with recurrence use time='continuous'"):
        ctsnn.Layer(_hidden(), w, recurrent=rec, time="discrete", gradient="adjoint")
    # the same layers are fine in continuous time (the generic adjoint / closed form)
    ctsnn.Layer(ctsnn.LIF(N_HID), w, time="continuous", gradient="adjoint")
    ctsnn.Layer(_hidden(), w, recurrent=rec, time="continuous", gradient="adjoint")


# --------------------------------------------------------------------------- readout="max"
def test_max_readout_in_continuous_time_with_autodiff_raises():
    spikes, (_, _, _, _) = _problem()
    layer = ctsnn.Layer(_readout(), torch.ones(N_OUT, N_IN), gradient="surrogate")
    with pytest.raises(ValueError, match="readout='max' in continuous time needs "
                                         "gradient='adjoint'"):
        ctsnn.simulate(layer, spikes, time="continuous", readout="max")


def test_max_readout_in_discrete_time_is_the_max_of_the_recorded_voltage():
    spikes, (_, _, w2, d2) = _problem()
    layer = ctsnn.Layer(_readout(), w2[:, :N_IN], delay=d2[:, :N_IN])
    res = ctsnn.simulate(layer, spikes, time="discrete", readout="max", record=["v"])
    assert res.output.shape == (B, N_OUT)
    assert torch.equal(res.output, res.states["v"].amax(0))
    assert bool((res.output > 0).any())
    plain = ctsnn.simulate(layer, spikes, time="discrete", readout="max")
    assert torch.equal(plain.output, res.output)
    assert "v" not in plain.states  # recorded only to take the maximum


# --------------------------------------------------------------------------- autodiff = adjoint
@pytest.mark.parametrize("readout", ["sum", "avg_exp"])
def test_named_readouts_through_autodiff_equal_the_adjoint(readout):
    """CubaLIF -> CubaLI, continuous time: value and every gradient (weights, delays, input
    times) agree between autograd through the engine and the closed-form adjoint."""
    spikes, params = _problem()
    results = []
    for gradient in ("surrogate", "adjoint"):
        times = spikes.times.clone().requires_grad_()
        x = ctsnn.Spikes(times, spikes.units, spikes.batch, dt=DT, n_steps=STEPS, batch_size=B,
                         n_units=N_IN)
        net = [ctsnn.Layer(_hidden(), params[0], delay=params[1], learn_delay=True,
                           time="continuous", gradient=gradient),
               ctsnn.Layer(_readout(), params[2], delay=params[3], learn_delay=True,
                           time="continuous", gradient=gradient)]
        res = ctsnn.simulate(net, x, readout=readout)
        loss = F.cross_entropy(res.output, LABELS)
        wanted = [times, *(p for layer in net for p in (layer.synapse.weight,
                                                        layer.synapse.delay))]
        results.append((res.output.detach(), len(res.layers[0].spikes),
                        torch.autograd.grad(loss, wanted)))
    (z_ref, n_ref, g_ref), (z_adj, n_adj, g_adj) = results
    assert n_ref == n_adj >= 2 * N_HID
    torch.testing.assert_close(z_adj, z_ref, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(("t_in", "W1", "D1", "W2", "D2"), g_adj, g_ref, strict=True):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8 * b.abs().max().item(), msg=name)


# --------------------------------------------------------------------------- parameters
def test_delay_parameters_lists_each_parameter_once():
    rec = RecurrentDense(weight=torch.zeros(N_HID, N_HID), delay=torch.full((N_HID, N_HID), 2e-3),
                         learn_delay=True)
    layer = ctsnn.Layer(_hidden(), torch.ones(N_HID, N_IN), delay=torch.zeros(N_HID, N_IN),
                        learn_delay=True, recurrent=rec, time="continuous")
    delays = ctsnn.delay_parameters(layer)
    assert len(delays) == len({id(p) for p in delays}) == 2
