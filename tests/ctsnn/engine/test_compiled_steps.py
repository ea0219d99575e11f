"""``use_compiled_steps``: the torch.compile-d Runge-Kutta map gives the eager results (issue
10, item 5). Reference: the same network stepped eagerly, float64, both time modes and both
gradient methods; results agree to rounding (Inductor fuses the arithmetic)."""

from __future__ import annotations

import pytest
import torch

import ctsnn
from ctsnn.compiled import compiled_steps_enabled, use_compiled_steps

pytestmark = pytest.mark.usefixtures("float64_one_thread")


def _network(gradient: str, time: str, refractory: float = 0.0):
    g = torch.Generator().manual_seed(3)
    n_in, n, steps, dt = 6, 5, 40, 1e-3
    times = torch.rand(40, generator=g) * steps * dt
    units = torch.randint(0, n_in, (40,), generator=g)
    samples = torch.randint(0, 2, (40,), generator=g)
    spikes = ctsnn.Spikes.from_events(times, units, samples, dt=dt, n_steps=steps, batch_size=2,
                                      n_units=n_in)
    model = ctsnn.AdEx(n, refractory=refractory) if refractory else ctsnn.AdEx(n)
    layer = ctsnn.Layer(model, (torch.rand(n, n_in, generator=g) * 12.0).requires_grad_(),
                        delay=torch.rand(n, n_in, generator=g) * 5e-3, learn_delay=True,
                        time=time, gradient=gradient)
    return layer, spikes


def _run(gradient: str, time: str, compiled: bool, refractory: float = 0.0):
    layer, spikes = _network(gradient, time, refractory)
    with use_compiled_steps(compiled):
        out = ctsnn.simulate(layer, spikes, record="all")
        loss = out.spikes.times.sum() + out.states["v"].sum() * 1e-3
        grads = torch.autograd.grad(loss, [layer.synapse.weight, layer.synapse.delay],
                                    allow_unused=True)  # discrete: delays act on the grid
    return out, grads


def test_compiled_forward_matches_eager():
    """Default suite: the forward only (one compile, no backward graph)."""
    runs = []
    for compiled in (False, True):
        layer, spikes = _network("surrogate", "continuous", 2e-3)
        with torch.no_grad(), use_compiled_steps(compiled):
            runs.append(ctsnn.simulate(layer, spikes, record="all"))
    eager, comp = runs
    assert eager.spikes.times.numel() > 10
    torch.testing.assert_close(comp.spikes.units, eager.spikes.units, rtol=0, atol=0)
    torch.testing.assert_close(comp.spikes.times, eager.spikes.times, rtol=0, atol=1e-12)
    torch.testing.assert_close(comp.states["v"], eager.states["v"], rtol=1e-10, atol=1e-9)


@pytest.mark.slow  # compiles forward and backward graphs: about a minute
@pytest.mark.parametrize(("gradient", "time", "refractory"), [
    ("surrogate", "continuous", 2e-3),
    ("adjoint", "continuous", 0.0),
    ("surrogate", "discrete", 0.0),
])
def test_compiled_steps_match_eager(gradient, time, refractory):
    eager, g_eager = _run(gradient, time, False, refractory)
    comp, g_comp = _run(gradient, time, True, refractory)
    assert eager.spikes.times.numel() > 10
    torch.testing.assert_close(comp.spikes.units, eager.spikes.units, rtol=0, atol=0)
    torch.testing.assert_close(comp.spikes.times, eager.spikes.times, rtol=0, atol=1e-12)
    torch.testing.assert_close(comp.states["v"], eager.states["v"], rtol=1e-10, atol=1e-9)
    assert g_eager[0] is not None and g_eager[0].abs().sum() > 0
    for a, b in zip(g_comp, g_eager, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_switch_is_scoped_and_checked():
    assert not compiled_steps_enabled()
    with use_compiled_steps(True):
        assert compiled_steps_enabled()
    assert not compiled_steps_enabled()
    with pytest.raises(TypeError, match="use_compiled_steps"), use_compiled_steps("yes"):
        pass
