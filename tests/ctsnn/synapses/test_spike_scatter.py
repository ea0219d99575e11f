"""Spike scatter (numba) == the reference tap convolution / dense kernel, forward and every
gradient (float64), and Dense selects it only for sparse CPU input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.compiled import use_kernels
from ctsnn.synapses import Dense
from ctsnn.synapses import spike_scatter as scatter_mod
from ctsnn.synapses.conv import dense_conv, tap_conv
from ctsnn.synapses.kernels import (
    Gaussian,
    Rounded,
    Taps,
    Triangle,
    gaussian_kernel,
    gaussian_support_taps,
    rounded_taps,
    taps_to_dense,
    triangle_taps,
)
from ctsnn.synapses.spike_scatter import scatter_pays, spike_scatter
from ctsnn.synapses.tap_scatter import window_lanes

F64 = torch.float64
K = 9


def _raster(seed, t=11, b=3, n=5, p=0.2, values=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, b, n, generator=g, dtype=F64) < p).to(F64)
    if values:
        x = x * torch.randn(t, b, n, generator=g, dtype=F64)
    return x.requires_grad_()


def _params(seed, n_out=4, n_in=5, integer=False):
    g = torch.Generator().manual_seed(seed + 1)
    d = torch.rand(n_out, n_in, generator=g, dtype=F64) * (K - 1)
    if integer:
        d = d.round()
    w = torch.randn(n_out, n_in, generator=g, dtype=F64)
    return d.requires_grad_(), w.requires_grad_()


def _compare(make_taps, x, d, w, pad=2, seed=0):
    res = []
    for f in (tap_conv, spike_scatter):
        taps = make_taps(d)
        out = f(x, Taps(taps.lags, taps.coefs * w), pad)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
        res.append((out.detach(), torch.autograd.grad((out * g).sum(), [x, d, w],
                                                       allow_unused=True)))
    (o0, g0), (o1, g1) = res
    torch.testing.assert_close(o1, o0, rtol=1e-13, atol=1e-13)
    for name, a, b in zip(("x", "delay", "weight"), g1, g0, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    return o1


KERNELS = {
    "triangle": lambda d: triangle_taps(d, K),
    "rounded_st": lambda d: rounded_taps(d, K, straight_through=True),
    "gaussian_0.5": lambda d: gaussian_support_taps(d, 0.5, 41),
}


@pytest.mark.parametrize("kind", list(KERNELS))
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("values", [False, True])
def test_equals_tap_conv(kind, integer, values):
    x = _raster(1, values=values)
    d, w = _params(1, integer=integer)
    out = _compare(KERNELS[kind], x, d, w)
    assert out.abs().sum() > 0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.0, 1.0), t=st.integers(1, 12),
       b=st.integers(1, 4), pad=st.integers(0, 12), kind=st.sampled_from(list(KERNELS)))
def test_random_rasters(seed, p, t, b, pad, kind):
    x = _raster(seed, t=t, b=b, p=p)
    d, w = _params(seed)
    _compare(KERNELS[kind], x, d, w, pad=pad, seed=seed)


@pytest.mark.parametrize("n_out", [37, 29])
@pytest.mark.parametrize("width", [1, 2, 3, 5, 6, 7, 8, 11])
def test_every_window_width_and_block(width, n_out):
    """Consecutive-lag windows of every width the kernels special-case (1, 2, padded to 6, 6,
    padded to 8, 8, wider), zero taps inside and at the window's end, over several target
    blocks (37 targets: 16 + 16 + 5, five left over by the 8-target passes; 29: 16 + 13, a
    pass of 8 and five left over) and sample blocks (9 samples: 4 + 4 + 1)."""
    gen = torch.Generator().manual_seed(width)
    n_in, k = 6, 16
    x = _raster(width, t=13, b=9, n=n_in, p=0.3, values=True)
    base = torch.randint(0, k - width + 1, (n_out, n_in), generator=gen)
    lags = base.unsqueeze(0) + torch.arange(width).reshape(-1, 1, 1)
    c = torch.randn(width, n_out, n_in, generator=gen, dtype=F64)
    if width > 1:
        c[-1, 0] = 0.0        # a window that ends in a zero tap (narrower non-zero support)
        c[0, 1, :2] = 0.0     # ... and one that starts with one
    c[:, 2, 3] = 0.0          # a synapse without non-zero tap
    c.requires_grad_()
    res = []
    for f in (tap_conv, spike_scatter):
        out = f(x, Taps(lags, c), 3)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
        res.append((out.detach(), *torch.autograd.grad((out * g).sum(), [x, c])))
    for a, b in zip(res[1], res[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_empty_input_and_window_edges():
    x = torch.zeros(6, 2, 5, dtype=F64, requires_grad=True)
    d, w = _params(0)
    out = _compare(KERNELS["triangle"], x, d, w)
    assert out.abs().sum() == 0
    x = _raster(3, p=0.5)
    with torch.no_grad():  # delays at both ends of the window: 0 and K - 1
        d[:, :2] = 0.0
        d[:, 2:] = K - 1
    _compare(KERNELS["triangle"], x, d, w, pad=0)
    _compare(KERNELS["rounded_st"], x, d, w, pad=K)


def test_delay_gradient_finite_differences():
    x = _raster(5, p=0.3)
    d, w = _params(5)
    g = torch.randn(x.shape[0] + 3, x.shape[1], 4, generator=torch.Generator().manual_seed(9),
                    dtype=F64)

    def loss(dd, kind):
        taps = KERNELS[kind](dd)
        return (spike_scatter(x.detach(), Taps(taps.lags, taps.coefs * w.detach()), 3) * g).sum()

    for kind in ("triangle", "gaussian_0.5"):
        grad = torch.autograd.grad(loss(d, kind), d)[0]
        h = 1e-6
        for idx in [(0, 0), (1, 3), (3, 4)]:
            e = torch.zeros_like(d)
            e[idx] = h
            fd = (loss(d.detach() + e, kind) - loss(d.detach() - e, kind)) / (2 * h)
            torch.testing.assert_close(grad[idx], fd, rtol=1e-6, atol=1e-8)


def test_gaussian_support_taps_equal_dense_kernel():
    d = torch.tensor([0.0, 0.3, 3.5, 12.0, 23.7, 24.0], dtype=F64, requires_grad=True)
    for sigma, k in ((0.3, 25), (0.5, 25), (1.0, 61)):
        taps = gaussian_support_taps(d, sigma, k)
        assert taps is not None
        dense = gaussian_kernel(d, sigma, k)
        torch.testing.assert_close(taps_to_dense(taps, k), dense, rtol=0, atol=1e-15)
        ga = torch.autograd.grad(taps_to_dense(taps, k)[:, 3:9].sum(), d)[0]
        gb = torch.autograd.grad(dense[:, 3:9].sum(), d)[0]
        torch.testing.assert_close(ga, gb, rtol=0, atol=1e-13)
    assert gaussian_support_taps(d, 12.27, 25) is None
    assert gaussian_support_taps(d.float(), 0.5, 25).lags.shape[0] == 6


def test_gaussian_support_float32_drops_only_what_rounding_hides():
    """DCLS's final width in float32: 6 taps. What is dropped (|n - d| > 2.94 steps) is below
    0.42 eps of a synapse's largest tap and 0.5 eps of its mass (measured on the float64
    kernel), the kept kernel equals the full float32 kernel within 2 eps, and the scattered
    convolution with it equals the full dense one (``dense_conv``, float32) to float32
    rounding, forward and every gradient."""
    eps = torch.finfo(torch.float32).eps
    d32 = torch.linspace(0.0, 24.0, 1201, dtype=torch.float32)
    taps = gaussian_support_taps(d32, 0.5, 25)
    assert taps.lags.shape[0] == 6
    full64 = gaussian_kernel(d32.double(), 0.5, 25)
    kept = torch.zeros_like(full64).scatter(-1, taps.lags.movedim(0, -1), 1.0)
    dropped = full64 * (1.0 - kept)
    assert float((dropped.max(-1).values / full64.max(-1).values).max()) < 0.42 * eps
    assert float((dropped.sum(-1) / full64.sum(-1)).max()) < 0.5 * eps
    full32 = gaussian_kernel(d32, 0.5, 25)
    assert float((taps_to_dense(taps, 25) - full32).abs().max()) <= 2 * eps

    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(30, 4, 12, generator=gen) < 0.2).float().requires_grad_()
    d = (torch.rand(9, 12, generator=gen) * 24).requires_grad_()
    w = torch.randn(9, 12, generator=gen).requires_grad_()
    g = torch.randn(42, 4, 9, generator=gen)
    res = []
    for path in ("support", "dense"):
        if path == "support":
            t = gaussian_support_taps(d, 0.5, 25)
            out = spike_scatter(x, Taps(t.lags, t.coefs * w), 12)
        else:
            out = dense_conv(x, gaussian_kernel(d, 0.5, 25) * w[..., None], 12)
        res.append((out.detach(), *torch.autograd.grad((out * g).sum(), [x, d, w])))
    for a, b in zip(*res, strict=True):
        torch.testing.assert_close(a, b)  # float32 defaults: rtol 1.3e-6, atol 1e-5


def test_scatter_pays_and_errors():
    x = torch.zeros(4, 2, 3)
    x[0, 0, 0] = 1
    assert scatter_pays(x)
    assert not scatter_pays(torch.ones(4, 2, 3))
    with use_kernels(False):
        assert not scatter_pays(x)
    with pytest.raises(ValueError, match="N_in = 3"):
        spike_scatter(x, Taps(torch.zeros(1, 2, 4, dtype=torch.long), torch.ones(1, 2, 4)))
    with pytest.raises(ValueError, match=">= 0"):
        spike_scatter(x, Taps(-torch.ones(1, 2, 3, dtype=torch.long), torch.ones(1, 2, 3)))


@pytest.mark.parametrize("kernel", [Rounded(), Triangle(), Gaussian(0.5)], ids=repr)
@pytest.mark.parametrize("training", [True, False])
def test_dense_module_kernel_path(kernel, training, monkeypatch):
    calls = []
    real = scatter_mod.SpikeScatter.apply

    def spy(*a):
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(scatter_mod.SpikeScatter, "apply", spy)
    syn = Dense(5, 4, kernel=kernel, max_delay=0.024, dt=1e-3, learn_delay=True, pad_right=3,
                generator=torch.Generator().manual_seed(2), dtype=F64)
    syn.train(training)
    x = inp = _raster(7, t=13)
    params = [p for p in syn.parameters() if p.requires_grad]
    res = []
    for on in (False, True):
        with use_kernels(on):
            out = syn.jumps(inp)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
        res.append((out.detach(), torch.autograd.grad((out * g).sum(), [x, *params],
                                                       allow_unused=True)))
    assert calls == [1]
    torch.testing.assert_close(res[1][0], res[0][0], rtol=1e-13, atol=1e-13)
    for a, b in zip(res[1][1], res[0][1], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def test_dense_input_keeps_reference_path(monkeypatch):
    calls = []
    monkeypatch.setattr(scatter_mod.SpikeScatter, "apply", lambda *a: calls.append(1))
    syn = Dense(5, 4, kernel=Triangle(), max_delay=0.008, dt=1e-3, dtype=F64)
    x = torch.rand(6, 2, 5, dtype=F64) + 0.1  # every entry non-zero
    out = syn.jumps(x)
    ref = dense_conv(x, syn.kernel_tensor(), 0)
    torch.testing.assert_close(out, ref)
    assert calls == []


@pytest.mark.parametrize("kind", list(KERNELS))
def test_uninitialised_buffers_are_never_read(kind):
    """The forward output rows and the dL/dx rows start uninitialised (the kernels zero what
    they fill): with PyTorch filling every uninitialised tensor with NaN, the results still
    equal the reference."""
    x = _raster(11, t=9, b=6, p=0.3, values=True)
    d, w = _params(11)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # empty tensors come filled with NaN
    try:
        assert torch.empty(4).isnan().all()
        out = _compare(KERNELS[kind], x, d, w, pad=3)
    finally:
        torch.use_deterministic_algorithms(before)
    assert torch.isfinite(out).all()


def test_window_lanes_classes():
    """Windows run as 1 or 2 lags, 6 lanes (3..6, DCLS's float32 Gaussian), 8 lanes (7, 8) or
    as wide as they are."""
    lanes = [window_lanes(w) for w in range(1, 12)]
    assert lanes == [1, 2, 6, 6, 6, 6, 8, 8, 9, 10, 11]
