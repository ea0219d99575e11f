"""The compiled weighted Gaussian support taps (:mod:`ctsnn.synapses.gaussian_taps`) equal the
reference ``gaussian_support_taps(d, sigma, K)`` times the weights: lags and coefficients bit
for bit, gradients w.r.t. delays and weights against
autograd through the reference; serial and parallel forms identical; the reference elsewhere."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.compiled import kernel_threads, kernels_enabled, numba_threads, use_kernels
from ctsnn.synapses import gaussian_taps as mod
from ctsnn.synapses.kernels import gaussian_support_taps

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off")

K = 41


def _inputs(dtype, n_out=7, n_in=9, seed=0, lo=-2.0, hi=K + 1.0):
    g = torch.Generator().manual_seed(seed)
    d = (lo + (hi - lo) * torch.rand(n_out, n_in, generator=g, dtype=torch.float64)).to(dtype)
    if n_in >= 4 and lo <= 0.0:
        d[0, :4] = torch.tensor([0.0, 3.0, K - 1.0, 12.5], dtype=dtype)  # integers, a half
    w = torch.randn(n_out, n_in, generator=g, dtype=torch.float64).to(dtype)
    return d.requires_grad_(), w.requires_grad_()


def _reference(d, w, sigma):
    taps = gaussian_support_taps(d, sigma, K)
    return taps.lags, taps.coefs * w


def _fused(d, w, sigma):
    assert mod.weighted_gaussian_applies(d, w, sigma)
    taps = mod.weighted_gaussian_taps(d, w, sigma, K)
    return taps.lags, taps.coefs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sigma", [0.5, 0.9, 0.27])
def test_equals_the_reference_times_the_weights(dtype, sigma):
    d, w = _inputs(dtype)
    lf, cf = _fused(d, w, sigma)
    lr, cr = _reference(d, w, sigma)
    assert torch.equal(lf, lr)
    assert torch.equal(cf, cr)  # the reference's arithmetic and exp: the same bits
    g = torch.randn(cf.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    gf = torch.autograd.grad((cf * g).sum(), (d, w))
    gr = torch.autograd.grad((cr * g).sum(), (d, w))
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=2e-5,
                                                                           atol=2e-6)
    for a, b, name in zip(gf, gr, ("delays", "weights"), strict=True):
        torch.testing.assert_close(a, b, **tol, msg=name)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sigma=st.floats(0.05, 1.0))
def test_random_delays_and_widths_float64(seed, sigma):
    d, w = _inputs(torch.float64, 3, 5, seed=seed)
    lf, cf = _fused(d, w, sigma)
    lr, cr = _reference(d, w, sigma)
    assert torch.equal(lf, lr)
    assert torch.equal(cf, cr)
    gf = torch.autograd.grad(cf.pow(2).sum(), (d, w))
    gr = torch.autograd.grad(cr.pow(2).sum(), (d, w))
    for a, b in zip(gf, gr, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def test_gradcheck_float64():
    d, w = _inputs(torch.float64, 2, 3, lo=1.0, hi=K - 2.0)
    assert torch.autograd.gradcheck(lambda a, b: _fused(a, b, 0.5)[1], (d, w))


def test_wide_gaussian_and_zero_size():
    d, w = _inputs(torch.float32)
    assert mod.weighted_gaussian_taps(d, w, 12.27, K) is None  # dense kernel instead
    assert gaussian_support_taps(d, 12.27, K) is None
    empty = torch.zeros(0, 4, requires_grad=True)
    taps = mod.weighted_gaussian_taps(empty, torch.zeros(0, 4), 0.5, K)
    assert taps.lags.shape == (6, 0, 4) and taps.coefs.shape == (6, 0, 4)


def test_bad_width_raises_as_the_reference():
    d, w = _inputs(torch.float32)
    with pytest.raises(ValueError, match="sigma_eff"):
        mod.weighted_gaussian_taps(d, w, -1.0, K)


def test_where_it_applies():
    d, w = _inputs(torch.float32)
    assert mod.weighted_gaussian_applies(d, w, torch.tensor(0.5))
    assert not mod.weighted_gaussian_applies(d, w.double(), 0.5)  # mixed dtypes
    assert not mod.weighted_gaussian_applies(d, w[:1], 0.5)  # shapes differ
    assert not mod.weighted_gaussian_applies(d, w, torch.tensor(0.5, requires_grad=True))
    with use_kernels(False):
        assert not mod.weighted_gaussian_applies(d, w, 0.5)
        lags, coefs = mod.weighted_gaussian_taps(d, w, 0.5, K)  # the reference, bit for bit
        lr, cr = _reference(d, w, 0.5)
        assert torch.equal(lags, lr) and torch.equal(coefs, cr)


def test_parallel_form_equals_serial(monkeypatch):
    d, w = _inputs(torch.float32, 40, 30)
    runs = []
    for work, threads in ((10**12, 1), (0, 1), (0, kernel_threads())):
        monkeypatch.setattr(mod, "_PARALLEL_WORK", work)
        with numba_threads(threads):
            _, coefs = _fused(d, w, 0.5)
            runs.append((coefs.detach(), *torch.autograd.grad(coefs.sum(), (d, w))))
    for run in runs[1:]:
        for a, b in zip(runs[0], run, strict=True):
            assert torch.equal(a, b)
