"""Built-in neuron models: closed forms against RK4, parameters, rates, resting states."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from solvers.steppers import rk4

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("float64")


def _rk4_solution(model, state, x, h, n=2000):
    dt = h / n
    t = torch.zeros_like(x)
    for _ in range(n):
        state = rk4(lambda t, s: model.dynamics(t, s, x), t, state, dt)
    return state


@pytest.mark.parametrize(
    "model",
    [
        ctsnn.LI(4, tau_mem=torch.tensor([0.01, 0.02, 0.03, 0.05]), r=2.0, v_leak=-0.1),
        ctsnn.LIF(4, tau_mem=0.02, r=0.5, v_leak=0.2),
        ctsnn.CubaLIF(4, tau_mem=torch.tensor([0.02, 0.01, 0.005, 0.03]),
                      tau_syn=torch.tensor([0.005, 0.01, 0.02, 0.03]), r=1.5, v_leak=0.1),
    ],
    ids=["LI", "LIF", "CubaLIF"],
)
def test_closed_form_flow_matches_rk4(model):
    gen = torch.Generator().manual_seed(0)
    state = model.State(*(torch.randn(3, 4, generator=gen) for _ in model.state_names))
    x = torch.randn(3, 4, generator=gen)
    h = torch.rand(3, 4, generator=gen) * 0.02 + 1e-3
    exact = model.flow(state, x, h)
    ref = _rk4_solution(model, state, x, h)
    for a, b in zip(exact, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_cubalif_equal_time_constants_limit():
    m = ctsnn.CubaLIF(1, tau_mem=0.01, tau_syn=0.01)
    s = m.State(torch.tensor([[0.3]]), torch.tensor([[2.0]]))
    h = torch.tensor([[0.004]])
    assert torch.allclose(m.flow(s, torch.zeros(1, 1), h).v,
                          _rk4_solution(m, s, torch.zeros(1, 1), h).v, atol=1e-13)


@pytest.mark.parametrize("cls", [ctsnn.LIF, ctsnn.CubaLIF, ctsnn.AdLIF, ctsnn.AdEx, ctsnn.QIF,
                                 ctsnn.Izhikevich, ctsnn.HodgkinHuxley])
def test_threshold_rate_fast_path_equals_autodiff(cls):
    m = cls(5)
    gen = torch.Generator().manual_seed(1)
    state = m.State(*(v + 0.1 * torch.randn(2, 5, generator=gen)
                      for v in m.initial_state(2)))
    d = m.State(*m.dynamics(torch.zeros(()), state, torch.ones(2, 5)))
    fast = m.threshold_rate(state, d)
    slow = torch.func.jvp(lambda *s: m.threshold(m.State(*s)), tuple(state), tuple(d))[1]
    assert torch.allclose(fast, slow)


def test_hh_rest_is_a_fixed_point_and_it_spikes_with_current():
    hh = ctsnn.HH(2)
    s = hh.initial_state(1)
    d = hh.dynamics(torch.zeros(()), s, torch.zeros(1, 2))
    assert all(x.abs().max() < 1e-9 for x in d[1:])  # m, h, n at their steady states
    assert d[0].abs().max() < 10.0  # mV/s: -65 mV is within 0.01 mV of the resting point
    res = ctsnn.simulate(hh, torch.tensor([0.0, 10.0]).expand(2000, 1, 2).contiguous(), dt=5e-5,
                         time="continuous", method="rk4")
    assert set(res.spikes.units.tolist()) == {1}
    assert 5 <= len(res.spikes) <= 12  # ~ 60-70 Hz for 10 uA/cm^2 over 0.1 s


def test_learnable_flags_make_parameters():
    m = ctsnn.LIF(3, learn_tau=True, learn_threshold=True)
    names = {n for n, _ in m.named_parameters()}
    assert names == {"tau_mem", "v_threshold"}
    assert "v_reset" in dict(m.named_buffers())


def test_parameters_move_with_the_module_and_dtype():
    m = ctsnn.CubaLIF(3).to(torch.float32)
    s = m.initial_state(2)
    assert s.v.dtype == torch.float32 and s.v.shape == (2, 3)
    res = ctsnn.simulate(m, torch.rand(10, 2, 3, dtype=torch.float32) * 3, dt=1e-3,
                         time="continuous")
    assert res.final_state.v.dtype == torch.float32


def test_initial_state_overrides_and_errors():
    m = ctsnn.AdLIF(2, v_leak=-0.2)
    s = m.initial_state(3)
    assert torch.all(s.v == -0.2) and torch.all(s.w == 0)
    s = m.initial_state(3, w=torch.tensor([1.0, 2.0]))
    assert torch.equal(s.w[1], torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="unknown state variable"):
        m.initial_state(1, q=1.0)


def test_custom_model_without_state_names_is_rejected():
    class Bad(ctsnn.NeuronModel):
        pass

    with pytest.raises(TypeError, match="must define state_names"):
        Bad(3)
