"""The compiled spike scatter of DelRec's recurrent axonal delays
(ctsnn/synapses/ring_scatter.py) against the ring-buffer reference (``RingRead``, kernels off),
in float64. Per-synapse delays stay on the reference.

The recurrence is driven directly through the module's protocol (start / read / write), with
surrogate spikes (forward: Heaviside, backward: a sigmoid's slope) or, for finite differences,
smooth "spikes" so the loss is a smooth function of the delays.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.surrogate import atan
from ctsnn.synapses import RecurrentDense, Triangle
from ctsnn.synapses.ring import RingRun
from ctsnn.synapses.ring_scatter import ScatterRun, spread_taps

F64 = torch.float64
DT = 1e-3
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("float64_one_thread")


def make(n, *, per="axon", sigma=0.0, delay=None, max_steps=6.0, learn_width=False,
         seed=0, **kw) -> RecurrentDense:
    g = torch.Generator().manual_seed(seed)
    shape = (n,) if per == "axon" else (n, n)
    if delay is None:
        delay = torch.rand(shape, generator=g, dtype=F64) * max_steps
    mod = RecurrentDense(n, kernel=Triangle(sigma), dt=DT, per=per, learn_delay=True,
                         delay=delay * DT, max_delay=max_steps * DT, learn_width=learn_width,
                         generator=g, dtype=F64, **kw)
    if learn_width:
        with torch.no_grad():
            mod.p_spread.copy_(torch.randn(n, generator=g, dtype=F64))
    return mod


def surrogate_spike(v: torch.Tensor) -> torch.Tensor:
    soft = torch.sigmoid(4.0 * (v - 1.0))
    return (v > 1.0).to(v.dtype) + (soft - soft.detach())


def drive(mod, x, *, kernels, smooth=False, seed=0):
    """Run the recurrence on input ``x [T, B, N]``; returns (spikes [T, B, N], loss)."""
    n_steps, batch, n = x.shape
    torch.manual_seed(seed)  # the dropout mask
    with use_kernels(kernels):
        mod.start(batch, dtype=x.dtype, device=CPU, dt=DT)
        assert isinstance(mod._run, ScatterRun if kernels and mod.per == "axon" else RingRun)
        v = torch.zeros(batch, n, dtype=x.dtype)
        rows = []
        for step in range(n_steps):
            v = 0.8 * v + x[step] + mod.read(step)
            s = torch.sigmoid(3.0 * (v - 1.0)) if smooth else surrogate_spike(v)
            if not smooth:
                v = v * (1.0 - s.detach())
            rows.append(s)
            mod.write(step, s)
        out = torch.stack(rows)
        ramp = torch.linspace(0.2, 1.0, n_steps, dtype=x.dtype)[:, None, None]
        loss = (out * ramp).sum() + (v ** 2).sum()
    return out, loss


def grads(mod, x, *, kernels, **kw):
    mod.zero_grad()
    out, loss = drive(mod, x, kernels=kernels, **kw)
    with use_kernels(kernels):
        loss.backward()
    return out.detach(), {k: p.grad.clone() for k, p in mod.named_parameters()}


def assert_same(mod, x, *, rtol=1e-12, **kw):
    out1, g1 = grads(mod, x, kernels=True, **kw)
    out0, g0 = grads(mod, x, kernels=False, **kw)
    assert torch.equal(out1, out0)
    assert set(g1) == set(g0)
    for k in g0:
        scale = float(g0[k].abs().max()) + 1e-300
        err = float((g1[k] - g0[k]).abs().max())
        assert err <= rtol * scale, (k, err, scale)
    return out0, g0


def inputs(n_steps, batch, n, *, scale=1.3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_steps, batch, n, generator=g, dtype=F64) * scale


@pytest.mark.parametrize("sigma,learn_width", [(0.0, False), (2.5, False), (1.5, True)])
@pytest.mark.parametrize("batch", [1, 4])
def test_kernel_equals_reference(sigma, learn_width, batch):
    mod = make(7, sigma=sigma, learn_width=learn_width)
    out, g = assert_same(mod, inputs(25, batch, 7))
    assert 0.05 < float(out.mean()) < 0.8  # spikes, not silence or saturation
    assert all(float(t.abs().max()) > 0 for t in g.values())


def test_dropout_and_fan_in():
    mod = make(8, sigma=1.0, dropout=0.3, fan_in=5)
    assert_same(mod, inputs(20, 3, 8))


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_integer_delays_tap_ties(sigma):
    """Delays on whole steps: with σ = 0 one tap carries everything and its neighbour is 0
    (a tie); the gradient at the kink is the reference's (autograd of the same spread)."""
    g = torch.Generator().manual_seed(3)
    delay = torch.randint(0, 6, (6,), generator=g).to(F64)
    mod = make(6, sigma=sigma, delay=delay)
    assert_same(mod, inputs(20, 2, 6))


def test_delays_at_the_max():
    mod = make(5, sigma=0.7, delay=torch.full((5,), 6.0, dtype=F64), max_steps=6.0)
    out, g = assert_same(mod, inputs(20, 2, 5))
    assert float(out.sum()) > 0


def test_zero_spikes():
    """No spike: no recurrent input; weights and delays get zero gradients on both paths."""
    mod = make(5, sigma=1.0)
    out, g = assert_same(mod, torch.zeros(10, 2, 5, dtype=F64))
    assert float(out.abs().sum()) == 0.0
    assert float(g["weight"].abs().sum()) == 0.0 and float(g["delay_steps"].abs().sum()) == 0.0


@pytest.mark.parametrize("sigma", [0.0, 1.3])
def test_delay_gradient_by_finite_differences(sigma):
    """Smooth spikes: the loss is a smooth function of the delays away from the triangle's
    kinks (delays drawn off the grid); central differences agree with the kernel's gradient."""
    mod = make(5, sigma=sigma, seed=4)
    with torch.no_grad():  # keep every delay (and d ± s) at least 0.05 step from the kinks
        d = mod.delay_steps
        d.copy_(torch.floor(d) + 0.1 + 0.8 * (d - torch.floor(d)))
    x = inputs(18, 2, 5, scale=1.0, seed=5)
    _, g = grads(mod, x, kernels=True, smooth=True)
    eps = 1e-6
    flat = mod.delay_steps.detach().view(-1)
    for idx in torch.argsort(g["delay_steps"].abs().view(-1), descending=True)[:4].tolist():
        base = float(flat[idx])
        with torch.no_grad():
            flat[idx] = base + eps
            up = float(drive(mod, x, kernels=True, smooth=True)[1])
            flat[idx] = base - eps
            down = float(drive(mod, x, kernels=True, smooth=True)[1])
            flat[idx] = base
        fd = (up - down) / (2 * eps)
        assert abs(fd - float(g["delay_steps"].view(-1)[idx])) <= 1e-7 * max(1.0, abs(fd))
    assert float(g["delay_steps"].abs().max()) > 1e-3


def test_spread_taps_rebuild_the_spread():
    """The taps hold every non-zero value of the spread, at their lags (ties included)."""
    d = torch.tensor([[0.0, 1.0, 2.5], [3.25, 0.3, 4.0]], dtype=F64)
    for s in (1.0, 1.7, 3.0):
        h = Triangle(0.0).spread(d, s, 10)
        lags, coefs = spread_taps(h)
        assert int(lags.min()) >= 1 and int(lags.max()) <= 9
        rebuilt = torch.zeros_like(h).scatter_add_(0, lags, coefs)
        assert torch.equal(rebuilt, h)
    assert spread_taps(Triangle(0.0).spread(d, 1.0, 10))[0].shape[0] == 2


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 6), batch=st.integers(1, 3), sigma=st.sampled_from([0.0, 0.5, 3.0]),
       learn_width=st.booleans(), seed=st.integers(0, 10_000))
def test_property_kernel_equals_reference(n, batch, sigma, learn_width, seed):
    mod = make(n, sigma=sigma, seed=seed, max_steps=4.0, learn_width=learn_width)
    assert_same(mod, inputs(12, batch, n, seed=seed + 1))


def test_float32_close_to_reference():
    mod = make(8, sigma=2.0).float()
    x = inputs(20, 3, 8).float()
    out1, g1 = grads(mod, x, kernels=True)
    out0, g0 = grads(mod, x, kernels=False)
    assert torch.equal(out1, out0)
    for k in g0:
        assert torch.allclose(g1[k], g0[k], rtol=1e-4, atol=1e-5 * float(g0[k].abs().max()))


def test_no_grad_forward_and_layer_selects_kernel():
    """Inference (no graph) and a whole Layer: same spikes with and without kernels."""
    rec = make(6, sigma=1.0)
    layer = ctsnn.Layer(ctsnn.LIF(6, tau_mem=0.01), 0.9 * torch.ones(6, 3, dtype=F64),
                        recurrent=rec, surrogate=atan(), method="euler")
    x = (torch.rand(30, 2, 3, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    rasters = []
    for kernels in (True, False):
        with use_kernels(kernels), torch.no_grad():
            rasters.append(layer(x, dt=DT, input_as="jump")[0].raster())
    assert torch.equal(*rasters) and float(rasters[0].sum()) > 0


def test_example_runs(capsys, monkeypatch):
    """examples/delrec_scatter_kernel.py (kept here, beside the kernel it shows)."""
    import runpy
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "examples" / "delrec_scatter_kernel.py"
    monkeypatch.setattr(sys, "argv", [path.name, "--batch", "2", "--steps", "30"])
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "identical: True" in out and "recurrent.delay_steps" in out


@pytest.mark.parametrize("eval_mode", ["paper", "continuous"])
def test_evaluation_modes(eval_mode):
    """In eval(): paper mode (σ = 0, integer delays: one tap) and the training kernel."""
    mod = make(6, sigma=1.5, eval_mode=eval_mode, dropout=0.2).eval()
    x = inputs(20, 2, 6)
    outs = [drive(mod, x, kernels=k)[0].detach() for k in (True, False)]
    assert torch.equal(*outs) and float(outs[0].sum()) > 0


def test_per_synapse_delays_stay_on_the_reference():
    """Per-synapse delays run RingRead even with kernels on (``drive`` checks the path)."""
    mod = make(5, per="synapse", sigma=1.0)
    out, _ = drive(mod, inputs(10, 2, 5), kernels=True)
    assert float(out.detach().sum()) > 0


def test_scatter_run_refuses_synaptic_taps():
    taps = torch.ones(2, 4, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"axonal taps \[K, N\]"):
        ScatterRun(taps.long(), taps, torch.ones(4, 4, dtype=F64), 5, 2)


@pytest.mark.parametrize("learn_weight,learn_delay", [(False, False), (True, False),
                                                       (False, True)])
def test_frozen_parameters_and_input_gradient(learn_weight, learn_delay):
    """Only some parameters learnable; the gradient reaching the input through the recurrence
    is the reference's."""
    g = torch.Generator().manual_seed(0)
    mod = RecurrentDense(6, kernel=Triangle(1.0), dt=DT, per="axon", learn_delay=learn_delay,
                         learn_weight=learn_weight, generator=g, max_delay=6 * DT,
                         delay=torch.rand(6, generator=g, dtype=F64) * 4 * DT, dtype=F64)
    results = []
    for kernels in (True, False):
        mod.zero_grad()
        x = inputs(15, 2, 6).requires_grad_(True)
        _, loss = drive(mod, x, kernels=kernels)
        with use_kernels(kernels):
            loss.backward()
        results.append([x.grad.clone(), *(p.grad.clone() for p in mod.parameters())])
    assert len(results[0]) == 1 + learn_weight + learn_delay
    for a, b in zip(*results, strict=True):
        assert float((a - b).abs().max()) <= 1e-12 * float(b.abs().max())
