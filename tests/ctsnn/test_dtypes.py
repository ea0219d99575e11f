"""Dtypes (issue 9, item 3): a model keeps its tensor parameters' dtype, ``.double()`` is exact,
a simulation runs in one dtype (mismatches and half precision are clear errors)."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn import Layer, Spikes, simulate
from ctsnn.dtypes import default_dtype
from ctsnn.synapses import Dense, RecurrentDense

F32, F64 = torch.float32, torch.float64


MODELS = {
    "LI": lambda: ctsnn.LI(3, tau_mem=0.0213, r=1.7, v_leak=0.1),
    "LIF": lambda: ctsnn.LIF(3, tau_mem=0.02, v_threshold=0.9, refractory=0.0013),
    "CubaLIF": lambda: ctsnn.CubaLIF(3, tau_mem=0.0262591234567, tau_syn=0.0051),
    "AdLIF": lambda: ctsnn.AdLIF(3),
    "AdEx": lambda: ctsnn.AdEx(3),
    "QIF": lambda: ctsnn.QIF(3),
    "Izhikevich": lambda: ctsnn.Izhikevich(3),
    "HodgkinHuxley": lambda: ctsnn.HodgkinHuxley(3),
    "equations": lambda: ctsnn.from_equations(
        "dv/dt = (-v + I) / tau", threshold="v > 1", reset="v = 0",
        parameters={"tau": 0.0173}, n=3),
}


# --------------------------------------------------------------------------- models
def test_tensor_parameter_keeps_its_dtype():
    m = ctsnn.CubaLIF(1, tau_mem=torch.tensor([0.0262591234567], dtype=F64))
    assert m.tau_mem.dtype == F64
    assert m.tau_mem.item() == 0.0262591234567
    # every parameter of the model is in that dtype, numbers given before it included
    assert {t.dtype for t in m.buffers()} == {F64}
    assert m.refractory.dtype == m.tau_syn.dtype == F64


def test_first_floating_tensor_fixes_the_dtype_and_numbers_are_rederived():
    m = ctsnn.CubaLIF(1, tau_mem=0.0213, tau_syn=torch.tensor(0.005, dtype=F64))
    assert m.tau_mem.dtype == F64 and m.tau_mem.item() == 0.0213  # given before, re-derived


def test_mixing_tensor_dtypes_in_a_model_is_an_error_naming_both():
    with pytest.raises(TypeError) as e:
        ctsnn.CubaLIF(1, tau_mem=torch.tensor([0.02], dtype=F64),
                      tau_syn=torch.tensor([0.005], dtype=F32))
    msg = str(e.value)
    assert "tau_mem" in msg and "tau_syn" in msg and "float64" in msg and "float32" in msg


@pytest.mark.parametrize("name", list(MODELS))
def test_double_equals_a_float64_build(name):
    converted = MODELS[name]().double()
    with default_dtype(F64):
        built = MODELS[name]()
    for (k, a), (_, b) in zip(converted.named_buffers(), built.named_buffers(), strict=True):
        assert a.dtype == b.dtype == F64, k
        assert torch.equal(a, b), (k, a, b)


def test_double_is_exact_for_python_floats():
    assert ctsnn.LIF(1, tau_mem=0.02).double().tau_mem.item() == 0.02
    assert ctsnn.LIF(1, tau_mem=0.02).to(F64).tau_mem.item() == 0.02
    # round trips through lower precision come back exact; .float() rounds once
    m = ctsnn.LIF(1, tau_mem=0.02).double().half().double()
    assert m.tau_mem.item() == 0.02
    assert m.float().tau_mem.item() == torch.tensor(0.02, dtype=F32).item()


def test_trained_or_loaded_parameters_are_cast_not_reset():
    m = ctsnn.LIF(1, tau_mem=0.02, learn_tau=True)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    with torch.no_grad():
        m.tau_mem.add_(0.001)
    trained = m.tau_mem.item()
    m.double()
    assert m.tau_mem.item() == trained and m.tau_mem.dtype == F64
    assert opt.param_groups[0]["params"][0] is m.tau_mem  # the same Parameter object
    m2 = ctsnn.LIF(1, tau_mem=0.02)
    m2.load_state_dict({**m2.state_dict(), "tau_mem": torch.tensor([0.03])})
    assert m2.double().tau_mem.item() == torch.tensor(0.03, dtype=F32).item()


def test_untrained_learnable_parameter_is_exact_under_double():
    m = ctsnn.CubaLIF(2, tau_mem=0.0213, learn_tau=True).double()
    assert m.tau_mem.dtype == F64 and m.tau_mem.tolist() == [0.0213, 0.0213]


# --------------------------------------------------------------------------- synapses
def test_dense_delays_are_exact_under_double():
    syn = Dense(2, 1, weight=torch.ones(1, 2), delay=0.003).double()
    assert syn.delay.dtype == F64 and syn.delay.tolist() == [[0.003, 0.003]]
    gen = torch.Generator().manual_seed(0)
    drawn = Dense(4, 3, max_delay=0.01, generator=gen).double()
    with default_dtype(F64):
        ref = Dense(4, 3, max_delay=0.01, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn.delay, ref.delay)


def test_grid_and_recurrent_delays_are_exact_under_double():
    kw = dict(kernel="gaussian", max_delay=0.025, dt=0.001, delay_init="uniform")
    grid = Dense(4, 3, generator=torch.Generator().manual_seed(1), **kw).double()
    with default_dtype(F64):
        ref = Dense(4, 3, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(grid.delay_steps, ref.delay_steps) and torch.equal(grid.sigma, ref.sigma)
    rec = RecurrentDense(2, weight=torch.ones(2, 2), delay=0.0013).double()
    assert rec.delay.dtype == F64 and rec.delay.unique().tolist() == [0.0013]


# --------------------------------------------------------------------------- simulations
def _network():
    # weights exact in float32 (a float32 weight tensor stays what it is under .double());
    # time constants and delays from Python floats (re-derived exactly by .double())
    weight = torch.tensor([[3.125, 2.5], [2.75, 4.5], [4.25, 3.0]])
    layer1 = Layer(ctsnn.CubaLIF(3, tau_mem=0.0262591234567, tau_syn=0.0051), weight,
                   delay=0.0031)
    layer2 = Layer(ctsnn.LIF(1, tau_mem=0.0173), torch.full((1, 3), 1.75), delay=0.0007)
    return [layer1, layer2]


def _input(dtype):
    times = torch.tensor([0.0011, 0.0023, 0.0047, 0.0052], dtype=dtype)
    return Spikes(times, torch.tensor([0, 1, 0, 1]), torch.zeros(4, dtype=torch.long),
                  dt=0.001, n_steps=30, batch_size=1, n_units=2)


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_double_model_spikes_like_a_float64_build(time):
    net = [layer.double() for layer in _network()]
    out = simulate(net, _input(F64), time=time, record="all")
    with default_dtype(F64):
        ref = simulate(_network(), _input(F64), time=time, record="all")
    for a, b in zip(out.layers, ref.layers, strict=True):
        assert len(a.spikes) > 0 and a.spikes.dtype == F64
        assert torch.equal(a.spikes.times, b.spikes.times)
        for name in a.states:
            assert torch.equal(a.states[name], b.states[name])


def test_float64_parameter_spike_times_are_float64_grade():
    """The issue's reproduction: a float64 tau_mem must not be simulated in float32."""
    tau = torch.tensor([0.0262591234567], dtype=F64)
    x = torch.full((40, 1, 1), 60.0, dtype=F64)
    out = simulate(ctsnn.LIF(1, tau_mem=tau), x, dt=1e-3, time="continuous")
    with default_dtype(F64):
        ref = simulate(ctsnn.LIF(1, tau_mem=0.0262591234567), x, dt=1e-3, time="continuous")
    assert len(out.spikes) > 0
    assert torch.equal(out.spikes.times, ref.spikes.times)


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_mixed_dtypes_in_a_simulation_are_errors_naming_both(time):
    model = ctsnn.LIF(2).double()
    cases = [
        (lambda: simulate(model, torch.ones(5, 1, 2), dt=1e-3, time=time), "input tensor"),
        (lambda: simulate(model, _input(F32), time=time), "input Spikes"),
        (lambda: simulate(Layer(model, torch.ones(2, 2)), torch.ones(5, 1, 2, dtype=F64),
                          dt=1e-3, time=time), "synapse.weight"),
        (lambda: simulate([Layer(model, torch.ones(2, 2, dtype=F64)), ctsnn.LIF(2)],
                          torch.ones(5, 1, 2, dtype=F64), dt=1e-3, time=time),
         "layer 1's Layer.model.refractory"),
        (lambda: simulate(model, torch.ones(5, 1, 2, dtype=F64), dt=1e-3, time=time,
                          state=ctsnn.LIF(2).initial_state(1)), "initial state v"),
    ]
    for run, where in cases:
        with pytest.raises(TypeError) as e:
            run()
        msg = str(e.value)
        assert "float32" in msg and "float64" in msg and where in msg, msg


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_half_precision_is_refused(dtype, time):
    model = ctsnn.LIF(1).to(dtype)
    with pytest.raises(TypeError, match=f"float32 or float64.*{dtype}"):
        simulate(model, torch.full((5, 1, 1), 60.0, dtype=dtype), dt=1e-3, time=time)


@pytest.mark.parametrize("gradient", ["surrogate", "adjoint"])
def test_double_model_gradients_like_a_float64_build(gradient):
    def run():
        layer = Layer(ctsnn.CubaLIF(3, tau_mem=0.0262591234567, tau_syn=0.0051),
                      torch.tensor([[3.125, 2.5], [2.75, 4.5], [4.25, 3.0]]), delay=0.0031,
                      learn_delay=True, time="continuous", gradient=gradient)
        return layer

    converted = run().double()
    with default_dtype(F64):
        built = run()
    grads = []
    for layer in (converted, built):
        spikes, _ = layer(_input(F64))
        spikes.times.sum().backward()
        grads.append((spikes.times.detach(), layer.synapse.weight.grad, layer.synapse.delay.grad))
    assert len(grads[0][0]) > 0
    for a, b in zip(*grads, strict=True):
        assert a.dtype == F64 and torch.equal(a, b)
