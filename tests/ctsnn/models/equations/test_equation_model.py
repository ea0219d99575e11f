"""Models from equation strings: the generated class, equivalence with the built-ins (also of
the exact flows), gradients, features. Errors: test_equation_parsing.py."""

from __future__ import annotations

import math

import pytest
import torch

import ctsnn
from ctsnn.models.equations import EquationModel

pytestmark = pytest.mark.usefixtures("float64")


LIF_EQ = "dv/dt = (v_leak - v + r*I)/tau_mem"
CUBA_EQ = """
    dv/dt = (v_leak - v + r*i)/tau_mem   # membrane
    di/dt = (I - i)/tau_syn              # synaptic current
"""
IZH_EQ = """
    dv/dt = (0.04*v**2 + 5*v + 140 - u + I)/ms
    du/dt = a*(b*v - u)/ms
"""


def lif_pair(n: int, gen: torch.Generator):
    tau = 0.01 + 0.02 * torch.rand(n, generator=gen)
    r = 0.5 + torch.rand(n, generator=gen)
    v_leak = 0.1 * torch.rand(n, generator=gen)
    builtin = ctsnn.LIF(n, tau_mem=tau, r=r, v_leak=v_leak, v_threshold=1.0, v_reset=-0.2)
    eq = ctsnn.from_equations(
        LIF_EQ, threshold="v >= v_th", reset="v = v_reset",
        parameters=dict(tau_mem=tau, r=r, v_leak=v_leak, v_th=1.0, v_reset=-0.2),
        n=n, jump_target="v", name="MyLIF", initial={"v": "v_leak"}, learnable=("tau_mem",),
    )
    return builtin, eq


def cuba_pair(n: int, gen: torch.Generator, **kw):
    tau_m = kw.get("tau_mem", 0.01 + 0.02 * torch.rand(n, generator=gen))
    tau_s = kw.get("tau_syn", 0.002 + 0.01 * torch.rand(n, generator=gen))
    r = 0.5 + torch.rand(n, generator=gen)
    v_leak = 0.1 * torch.randn(n, generator=gen)
    builtin = ctsnn.CubaLIF(n, tau_mem=tau_m, tau_syn=tau_s, r=r, v_leak=v_leak)
    eq = ctsnn.from_equations(
        CUBA_EQ, threshold="v - v_th", reset="v = v_reset",
        parameters=dict(tau_mem=tau_m, tau_syn=tau_s, r=r, v_leak=v_leak, v_th=1.0, v_reset=0.0),
        n=n, jump_target="i", initial={"v": "v_leak"}, positive=("tau_mem", "tau_syn"),
    )
    return builtin, eq


def izh_pair(n: int):
    a = torch.linspace(0.02, 0.1, n)
    d = torch.linspace(8.0, 2.0, n)
    builtin = ctsnn.Izhikevich(n, a=a, b=0.2, c=-65.0, d=d)
    eq = ctsnn.from_equations(
        IZH_EQ, threshold="v >= v_peak", reset="v = c; u = u + d",
        parameters=dict(a=a, b=0.2, c=-65.0, d=d, v_peak=30.0, ms=1e-3),
        n=n, initial={"v": "c", "u": "b*c"}, name="Izh",
    )
    return builtin, eq


def sorted_events(spikes: ctsnn.Spikes) -> tuple[torch.Tensor, torch.Tensor]:
    key = spikes.batch * spikes.n_units + spikes.units
    order = torch.sort(spikes.times, stable=True).indices
    order = order[torch.sort(key[order], stable=True).indices]
    return key[order], spikes.times[order]


# ----------------------------------------------------------------------------- the class
def test_generated_class_is_a_neuron_model():
    gen = torch.Generator().manual_seed(0)
    _, m = lif_pair(3, gen)
    assert isinstance(m, ctsnn.NeuronModel) and isinstance(m, EquationModel)
    assert type(m).__name__ == "MyLIF" and m.state_names == ("v",)
    assert m.has_flow and m.spiking and m.resets and m.monotone
    assert m.State._fields == ("v",) and m.jump_target == "v"
    assert [name for name, _ in m.named_parameters()] == ["tau_mem"]
    assert set(m.state_dict()) == {"refractory", "tau_mem", "r", "v_leak", "v_th", "v_reset"}
    m32 = m.to(torch.float32)
    assert m32.v_th.dtype == torch.float32
    s = m32.initial_state(2)
    assert s.v.dtype == torch.float32 and torch.equal(s.v, m32.v_leak.expand(2, 3))
    assert m32.dynamics(0.0, s, torch.ones(2, 3, dtype=torch.float32))[0].dtype == torch.float32
    # the class can be instantiated again with other sizes / values
    other = type(m)(5, tau_mem=0.05, r=1.0, v_leak=0.0)
    assert other.n == 5 and torch.allclose(other.tau_mem, torch.full((5,), 0.05))
    assert "dv/dt" in repr(m) and "dv/dt" in type(m).__doc__
    # one way to build a model from strings
    assert not hasattr(ctsnn, "equations_model")
    assert not hasattr(ctsnn.NeuronModel, "from_equations")


def test_no_threshold_no_reset_two_variables():
    m = ctsnn.from_equations("dx/dt = y\ndy/dt = -x/tau**2", parameters={"tau": 0.1}, n=2)
    assert not m.spiking and not m.resets and m.threshold(m.initial_state(1)) is None
    assert m.has_flow and not m.monotone and m.jump_target == "x"
    s = m.State(torch.ones(1, 2), torch.zeros(1, 2))
    assert m.reset(s) is s
    # harmonic oscillator: exact flow is a rotation
    h = torch.tensor([[0.05, 0.3]])
    out = m.flow(s, torch.zeros(1, 2), h)
    torch.testing.assert_close(out.x, torch.cos(h / 0.1), atol=1e-13, rtol=0)
    torch.testing.assert_close(out.y, -torch.sin(h / 0.1) / 0.1, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- LIF
def test_lif_from_equations_equals_builtin():
    gen = torch.Generator().manual_seed(1)
    builtin, eq = lif_pair(6, gen)
    current = 2.5 * torch.rand(300, 3, 6, generator=gen)
    s = builtin.initial_state(3)
    torch.testing.assert_close(eq.initial_state(3).v, s.v, rtol=0, atol=0)
    x = torch.randn(3, 6, generator=gen)
    torch.testing.assert_close(eq.dynamics(0.0, s, x)[0], builtin.dynamics(0.0, s, x)[0],
                               rtol=1e-14, atol=1e-12)

    ref = ctsnn.simulate(builtin, current, dt=1e-3, time="continuous")
    got = ctsnn.simulate(eq, current, dt=1e-3, time="continuous")  # default: exact flow
    k_ref, t_ref = sorted_events(ref.spikes)
    k_got, t_got = sorted_events(got.spikes)
    assert len(t_ref) > 50
    assert torch.equal(k_ref, k_got)
    assert (t_ref - t_got).abs().max() < 1e-12

    ref = ctsnn.simulate(builtin, current, dt=1e-3, time="discrete", method="euler")
    got = ctsnn.simulate(eq, current, dt=1e-3, time="discrete", method="euler")
    assert torch.equal(ref.spikes.raster(), got.spikes.raster())


# ----------------------------------------------------------------------------- CubaLIF
def test_cuba_flow_matches_builtin():
    gen = torch.Generator().manual_seed(2)
    builtin, eq = cuba_pair(7, gen)
    assert eq.has_flow and not eq.monotone and eq.clamped_names == ("v",)
    assert eq.state_names == ("v", "i") and eq.jump_target == "i"
    for _ in range(5):
        s = builtin.State(torch.randn(4, 7, generator=gen), 3 * torch.randn(4, 7, generator=gen))
        x = 2 * torch.randn(4, 7, generator=gen)
        h = 0.05 * torch.rand(4, 7, generator=gen)  # per-element step
        ref = builtin.flow(s, x, h)
        got = eq.flow(eq.State(*s), x, h)
        torch.testing.assert_close(got.v, ref.v, rtol=0, atol=1e-12)
        torch.testing.assert_close(got.i, ref.i, rtol=0, atol=1e-12)
        for k in range(2):
            torch.testing.assert_close(eq.dynamics(0.0, s, x)[k], builtin.dynamics(0.0, s, x)[k],
                                       rtol=1e-13, atol=1e-10)
    # scalar h and a [N] h broadcast as well
    s = builtin.initial_state(2, v=0.3, i=1.5)
    for h in (torch.tensor(1e-3), torch.full((7,), 2e-3)):
        x = torch.ones(2, 7)
        torch.testing.assert_close(eq.flow(s, x, h).v, builtin.flow(s, x, h).v, rtol=0, atol=1e-12)


def test_cuba_flow_equal_time_constants():
    """tau_syn == tau_mem makes A defective; the matrix exponential is still exact."""
    gen = torch.Generator().manual_seed(3)
    tau = torch.full((4,), 0.01)
    builtin, eq = cuba_pair(4, gen, tau_mem=tau, tau_syn=tau.clone())
    s = builtin.State(torch.randn(2, 4, generator=gen), torch.randn(2, 4, generator=gen))
    x = torch.randn(2, 4, generator=gen)
    h = 0.03 * torch.rand(2, 4, generator=gen)
    torch.testing.assert_close(eq.flow(s, x, h).v, builtin.flow(s, x, h).v, rtol=0, atol=1e-12)


def test_cuba_simulation_matches_builtin():
    gen = torch.Generator().manual_seed(4)
    builtin, eq = cuba_pair(5, gen)
    current = 3.0 * torch.rand(120, 2, 5, generator=gen)
    ref = ctsnn.simulate(builtin, current, dt=1e-3, time="continuous")
    got = ctsnn.simulate(eq, current, dt=1e-3, time="continuous")
    k_ref, t_ref = sorted_events(ref.spikes)
    k_got, t_got = sorted_events(got.spikes)
    assert len(t_ref) > 5 and torch.equal(k_ref, k_got)
    assert (t_ref - t_got).abs().max() < 1e-11


# ----------------------------------------------------------------------------- Izhikevich
def test_izhikevich_matches_builtin():
    builtin, eq = izh_pair(4)
    assert not eq.has_flow and eq.flow(eq.initial_state(1), torch.zeros(1, 4), 1e-3) is None
    assert eq.spiking and eq.resets and not eq.monotone
    gen = torch.Generator().manual_seed(5)
    s0 = builtin.initial_state(3)
    torch.testing.assert_close(eq.initial_state(3).v, s0.v)
    torch.testing.assert_close(eq.initial_state(3).u, s0.u)
    s = builtin.State(-70 + 40 * torch.rand(3, 4, generator=gen),
                      -15 + 10 * torch.rand(3, 4, generator=gen))
    x = 20 * torch.rand(3, 4, generator=gen)
    for got, ref in zip(eq.dynamics(0.0, s, x), builtin.dynamics(0.0, s, x), strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-9)
    for got, ref in zip(eq.reset(s), builtin.reset(s), strict=True):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    torch.testing.assert_close(eq.threshold(s), builtin.threshold(s), rtol=0, atol=0)

    current = 5 + 10 * torch.rand(200, 2, 4, generator=gen)
    for time in ("continuous", "discrete"):
        ref = ctsnn.simulate(builtin, current, dt=1e-4, time=time, method="rk4", record="all")
        got = ctsnn.simulate(eq, current, dt=1e-4, time=time, method="rk4", record="all")
        k_ref, t_ref = sorted_events(ref.spikes)
        k_got, t_got = sorted_events(got.spikes)
        assert len(t_ref) > 5 and torch.equal(k_ref, k_got)
        assert (t_ref - t_got).abs().max() < 1e-9
        torch.testing.assert_close(got.states["v"], ref.states["v"], rtol=1e-8, atol=1e-7)
    with pytest.raises(ValueError, match="closed-form flow"):
        ctsnn.simulate(eq, current, dt=1e-4, method="exact")


# ----------------------------------------------------------------------------- gradients
class _Call(torch.nn.Module):
    """Expose one method of a model as ``forward``, for ``torch.func.functional_call``."""

    def __init__(self, model: ctsnn.NeuronModel, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args):
        return getattr(self.model, self.method)(*args)


def _call(model, method, params, *args):
    """``model.<method>(*args)`` with some parameters replaced (autograd-friendly)."""
    params = {f"model.{k}": v for k, v in params.items()}
    return torch.func.functional_call(_Call(model, method), params, args)


def test_gradcheck_dynamics_and_flow():
    gen = torch.Generator().manual_seed(6)
    _, m = lif_pair(3, gen)
    s = m.State(torch.randn(2, 3, generator=gen))
    x = torch.randn(2, 3, generator=gen)
    tau = m.tau_mem.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda tau: _call(m, "dynamics", {"tau_mem": tau}, 0.0, s, x)[0], (tau,)
    )
    h = torch.tensor([[0.004, 0.0, 0.01], [1e-9, 0.02, 0.003]])
    assert torch.autograd.gradcheck(lambda tau: _call(m, "flow", {"tau_mem": tau}, s, x, h).v,
                                    (tau,))
    # the learnable parameter gets a gradient through a whole simulation
    current = 2.0 * torch.rand(50, 2, 3, generator=gen)
    out = ctsnn.simulate(m, current, dt=1e-3, time="discrete", method="exact", record="v")
    out.states["v"].sum().backward()
    assert m.tau_mem.grad is not None and torch.isfinite(m.tau_mem.grad).all()
    assert m.tau_mem.grad.abs().min() > 0

    _, c = cuba_pair(2, gen)
    sc = c.State(torch.randn(2, 2, generator=gen), torch.randn(2, 2, generator=gen))
    xc = torch.randn(2, 2, generator=gen)
    ts = c.tau_syn.detach().clone().requires_grad_(True)
    hc = torch.full((2, 2), 0.003)
    assert torch.autograd.gradcheck(lambda ts: _call(c, "flow", {"tau_syn": ts}, sc, xc, hc).v,
                                    (ts,))
    _, izh = izh_pair(2)
    si = izh.initial_state(2, v=-50.0)
    a = izh.a.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a: _call(izh, "dynamics", {"a": a}, 0.0, si, xc)[1], (a,)
    )


# ----------------------------------------------------------------------------- features
def test_helpers_time_functions_and_sequential_reset():
    m = ctsnn.from_equations(
        """
        dv/dt = (-v + drive)/tau + k*sigm - Max(v, 0)*0 + abs(w)**0.5*0
        dw/dt = -w/tau + sin(2*pi*f*t)
        drive = g^2 * I          # helper, '^' is a power
        sigm = 1/(1 + exp(-v))
        """,
        threshold="v > v_th", reset="v = 0.5*v; w += v", n=2,
        parameters=dict(tau=0.02, k=1.5, g=torch.tensor([1.0, 2.0]), f=10.0, v_th=1.0),
    )
    assert m.state_names == ("v", "w") and not m.has_flow and m.spec.uses_time
    s = m.State(torch.tensor([[0.4, -0.3]]), torch.tensor([[0.2, -0.1]]))
    x = torch.tensor([[1.0, 2.0]])
    t = torch.tensor(0.013)
    dv, dw = m.dynamics(t, s, x)
    g = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(dv, (-s.v + g**2 * x) / 0.02 + 1.5 * torch.sigmoid(s.v))
    torch.testing.assert_close(dw, -s.w / 0.02 + torch.sin(2 * math.pi * 10.0 * t))
    torch.testing.assert_close(m.dynamics(0.013, s, x)[1], dw)
    r = m.reset(s)  # sequential: w sees the new v
    torch.testing.assert_close(r.v, 0.5 * s.v)
    torch.testing.assert_close(r.w, s.w + 0.5 * s.v)
    torch.testing.assert_close(m.threshold(s), s.v - 1.0)


def test_min_max_constants_and_constant_rhs():
    m = ctsnn.from_equations("dv/dt = Min(v, 1) + max(I, 0, v) \n du/dt = 2", n=3)
    assert not m.has_flow
    s = m.State(torch.tensor([[0.5, 2.0, -1.0]]), torch.zeros(1, 3))
    x = torch.tensor([[0.1, -1.0, -3.0]])
    dv, du = m.dynamics(0.0, s, x)
    torch.testing.assert_close(dv, torch.tensor([[1.0, 3.0, -1.0]]))
    assert du.shape == (1, 3) and torch.equal(du, torch.full((1, 3), 2.0))
    lin = ctsnn.from_equations("dv/dt = 2", n=3)  # constant rhs: linear with A = 0
    assert lin.has_flow
    torch.testing.assert_close(lin.flow(lin.State(torch.ones(1, 3)), x, 0.5).v,
                               torch.full((1, 3), 2.0))


def test_input_name_and_input_dependent_coefficients():
    m = ctsnn.from_equations("dv/dt = -g_in*x*v", input_name="x", parameters={"g_in": 3.0}, n=2)
    assert m.has_flow  # A depends on the input only
    s = m.State(torch.ones(1, 2))
    x = torch.tensor([[1.0, 2.0]])
    torch.testing.assert_close(m.flow(s, x, 0.1).v, torch.exp(-3.0 * x * 0.1))


def test_refractory_and_jump_inputs_work():
    gen = torch.Generator().manual_seed(7)
    builtin = ctsnn.LIF(4, tau_mem=0.01, refractory=2e-3)
    eq = ctsnn.from_equations(LIF_EQ, threshold="v >= v_th", reset="v = 0",
                        parameters=dict(tau_mem=0.01, r=1.0, v_leak=0.0, v_th=1.0),
                        n=4, refractory=2e-3)
    current = 3.0 * torch.rand(100, 2, 4, generator=gen)
    for time in ("continuous", "discrete"):
        ref = ctsnn.simulate(builtin, current, dt=1e-3, time=time)
        got = ctsnn.simulate(eq, current, dt=1e-3, time=time)
        assert torch.allclose(ref.spikes.times, got.spikes.times, atol=1e-12)
    raster = (torch.rand(60, 2, 4, generator=gen) < 0.3).double()
    raster[-1] = 0.0  # (no input at the very end of the grid)
    spikes = ctsnn.Spikes.from_raster(raster, 1e-3)
    ref = ctsnn.simulate(builtin, spikes, dt=1e-3, time="continuous")
    got = ctsnn.simulate(eq, spikes, dt=1e-3, time="continuous")
    assert torch.allclose(ref.spikes.times, got.spikes.times, atol=1e-12)
