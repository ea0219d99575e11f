"""Surrogate spikes and BPTT through the discrete engine."""

from __future__ import annotations

import math

import pytest
import torch

import ctsnn
from ctsnn import surrogate as sg

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("make", [sg.atan, sg.fast_sigmoid, sg.superspike, sg.triangle,
                                  sg.sigmoid])
def test_forward_is_heaviside_backward_is_the_surrogate(make):
    s = make()
    x = torch.linspace(-2, 2, 41, dtype=F64, requires_grad=True)
    y = s(x)
    assert torch.equal(y, (x >= 0).to(F64))
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, s.derivative(x.detach()))


def test_bad_surrogate_parameter():
    with pytest.raises(ValueError, match="alpha must be positive"):
        sg.atan(alpha=0.0)


def naive_two_layer(x, w1, w2, tau, dt, surrogate, detach_reset):
    """SpikingJelly-style loop: u = (1 - dt/tau) u + I; s = H(u - 1); hard reset to 0."""
    t_steps, b = x.shape[:2]
    u1 = torch.zeros(b, w1.shape[0], dtype=F64)
    u2 = torch.zeros(b, w2.shape[0], dtype=F64)
    decay = 1 - dt / tau
    out = []
    for t in range(t_steps):
        u1 = decay * u1 + x[t] @ w1.t()
        s1 = surrogate(u1 - 1.0)
        r1 = s1.detach() if detach_reset else s1
        u1 = u1 * (1 - r1)
        u2 = decay * u2 + s1 @ w2.t()
        s2 = surrogate(u2 - 1.0)
        r2 = s2.detach() if detach_reset else s2
        u2 = u2 * (1 - r2)
        out.append(s2)
    return torch.stack(out)


@pytest.mark.parametrize("detach_reset", [False, True])
def test_bptt_equals_autograd_through_a_naive_loop(detach_reset):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(25, 3, 6, generator=gen, dtype=F64) < 0.4).to(F64)
    w1 = (torch.rand(5, 6, generator=gen, dtype=F64) * 0.9).requires_grad_()
    w2 = (torch.rand(4, 5, generator=gen, dtype=F64) * 1.2).requires_grad_()
    dt, tau = 1e-3, 2e-3
    surrogate = sg.atan(alpha=5.0)
    target = torch.rand(25, 3, 4, generator=gen, dtype=F64)

    ref = naive_two_layer(x, w1, w2, tau, dt, surrogate, detach_reset)
    ref_grads = torch.autograd.grad(((ref - target) ** 2).sum(), (w1, w2))

    l1 = ctsnn.Layer(ctsnn.LIF(5, tau_mem=tau), w1.detach())
    l2 = ctsnn.Layer(ctsnn.LIF(4, tau_mem=tau), w2.detach())
    res = ctsnn.simulate([l1, l2], x, dt=dt, time="discrete", method="euler", input_as="jump",
                         surrogate=surrogate, detach_reset=detach_reset)
    assert torch.equal(res.raster, ref.detach())
    loss = ((res.raster - target) ** 2).sum()
    grads = torch.autograd.grad(loss, (l1.synapse.weight, l2.synapse.weight))
    assert ref.sum() > 5  # the network actually spikes
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)
        assert a.abs().sum() > 0


def test_gradient_reaches_learnable_time_constant():
    x = torch.rand(30, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1)) * 0.6
    lif = ctsnn.LIF(3, tau_mem=0.004, learn_tau=True)
    res = ctsnn.simulate(lif, x, dt=1e-3, method="exact", input_as="jump",
                         surrogate=sg.fast_sigmoid(), record=["v"])
    (g,) = torch.autograd.grad(res.states["v"].sum() + res.raster.sum(), lif.tau_mem,
                               retain_graph=True)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # Finite-difference check of the membrane part (no spike changes for a tiny step). With
    # detach_reset the reset carries no surrogate term, so autograd is the true derivative.
    res = ctsnn.simulate(lif, x, dt=1e-3, method="exact", input_as="jump",
                         surrogate=sg.fast_sigmoid(), detach_reset=True, record=["v"])
    eps = 1e-7

    def v_sum(tau):
        m = ctsnn.LIF(3, tau_mem=tau)
        r = ctsnn.simulate(m, x, dt=1e-3, method="exact", input_as="jump", record=["v"])
        return r.states["v"].sum()

    (gv,) = torch.autograd.grad(res.states["v"].sum(), lif.tau_mem)
    base = lif.tau_mem.detach()
    for i in range(3):
        e = torch.zeros(3, dtype=F64)
        e[i] = eps
        fd = (v_sum(base + e) - v_sum(base - e)) / (2 * eps)
        assert math.isclose(gv[i].item(), fd.item(), rel_tol=1e-5, abs_tol=1e-8)


def test_layers_compose_as_modules_with_batch_first():
    gen = torch.Generator().manual_seed(4)
    x = (torch.rand(3, 20, 6, generator=gen) < 0.4).to(F64)  # [B, T, N]
    w1, w2 = torch.rand(5, 6, generator=gen), torch.rand(4, 5, generator=gen) * 1.5
    kw = dict(surrogate=sg.atan(), batch_first=True, method="euler")
    l1 = ctsnn.Layer(ctsnn.LIF(5, tau_mem=2e-3), w1, **kw)
    l2 = ctsnn.Layer(ctsnn.LIF(4, tau_mem=2e-3), w2, **kw)
    s1, _ = l1(x, dt=1e-3, input_as="jump")
    s2, final = l2(s1)  # Spikes in, Spikes out: layers compose as modules
    assert isinstance(s2, ctsnn.Spikes) and final.v.shape == (3, 4)
    assert s1.raster(batch_first=True).shape == (3, 20, 5)
    assert s2.raster(batch_first=True).shape == (3, 20, 4)
    ref = ctsnn.simulate([l1, l2], x, dt=1e-3, input_as="jump")
    assert torch.equal(s2.raster(), ref.raster)
    s2.raster().sum().backward()  # the dense raster carries the surrogate gradient
    assert l1.synapse.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="input has 7 channels but the first layer expects 6"):
        l1(torch.zeros(3, 20, 7), dt=1e-3)
    with pytest.raises(ValueError, match="batch_first disagrees"):
        ctsnn.simulate([l1, l2], x, dt=1e-3, input_as="jump", batch_first=False)
    with pytest.raises(ValueError, match="method='rk4'. conflicts with layer 0"):
        ctsnn.simulate([l1, l2], x, dt=1e-3, input_as="jump", method="rk4")
