"""Dense-window spike scatter (numba) == ``dense_conv`` (float64, forward and every gradient),
the tap scatter's general and consecutive-lag loops == ``tap_conv``, and ``Dense`` sends a wide
Gaussian over sparse CPU input to the window scatter."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.compiled import use_kernels
from ctsnn.synapses import Dense, Gaussian
from ctsnn.synapses import spike_scatter as scatter_mod
from ctsnn.synapses.conv import dense_conv, tap_conv
from ctsnn.synapses.kernels import Taps, gaussian_kernel
from ctsnn.synapses.spike_scatter import spike_scatter, window_pays, window_scatter

F64 = torch.float64
K = 9


def _raster(seed, t=11, b=3, n=5, p=0.2, values=False, grad=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, b, n, generator=g, dtype=F64) < p).to(F64)
    if values:
        x = x * torch.randn(t, b, n, generator=g, dtype=F64)
    return x.requires_grad_(grad)


def _gaussian(seed, n_out=4, n_in=5, sigma=3.0, ends=False):
    """Delays, weights, sigma (leaves) and the dense kernel built from them."""
    g = torch.Generator().manual_seed(seed + 1)
    d = torch.rand(n_out, n_in, generator=g, dtype=F64) * (K - 1)
    if ends:  # delays at both ends of the window
        d[:, :2] = 0.0
        d[:, 2:] = K - 1
    w = torch.randn(n_out, n_in, generator=g, dtype=F64)
    s = torch.tensor(sigma, dtype=F64)
    return [d.requires_grad_(), w.requires_grad_(), s.requires_grad_()]


def _compare(x, params, pad=2, seed=0):
    d, w, s = params
    res = []
    for f in (dense_conv, window_scatter):
        out = f(x, gaussian_kernel(d, s, K) * w.unsqueeze(-1), pad)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
        wrt = ([x] if x.requires_grad else []) + params
        res.append((out.detach(), torch.autograd.grad((out * g).sum(), wrt)))
    (o0, g0), (o1, g1) = res
    torch.testing.assert_close(o1, o0, rtol=1e-13, atol=1e-13)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    return o1


@pytest.mark.parametrize("values", [False, True])
@pytest.mark.parametrize("x_grad", [False, True])
@pytest.mark.parametrize("pad", [0, 4, 12])
def test_window_equals_dense_conv(values, x_grad, pad):
    x = _raster(1, values=values, grad=x_grad)
    out = _compare(x, _gaussian(1), pad=pad)
    assert out.abs().sum() > 0


def test_window_edges_batch_one_empty_and_dense_input():
    _compare(_raster(2, b=1, p=0.5), _gaussian(2, ends=True), pad=0)
    _compare(_raster(3, p=0.5), _gaussian(3, ends=True, sigma=0.7), pad=K)
    empty = torch.zeros(6, 2, 5, dtype=F64, requires_grad=True)
    assert _compare(empty, _gaussian(4)).abs().sum() == 0
    _compare(_raster(5, p=1.0, values=True), _gaussian(5))  # every entry non-zero
    for n_out in (1, 3):  # odd numbers of targets (the kernels take two per pass)
        _compare(_raster(6, p=0.3), _gaussian(6, n_out=n_out))


def test_window_no_input_gradient_when_input_is_data():
    x = _raster(6, grad=False)
    d, w, s = _gaussian(6)
    out = window_scatter(x, gaussian_kernel(d, s, K) * w.unsqueeze(-1), 3)
    out.sum().backward()
    assert x.grad is None and d.grad is not None


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.0, 1.0), t=st.integers(1, 12),
       b=st.integers(1, 4), pad=st.integers(0, 12), sigma=st.floats(0.3, 8.0))
def test_window_random(seed, p, t, b, pad, sigma):
    _compare(_raster(seed, t=t, b=b, p=p), _gaussian(seed, sigma=sigma), pad=pad, seed=seed)


def test_window_errors():
    x = torch.zeros(4, 2, 3)
    with pytest.raises(ValueError, match="N_in = 3"):
        window_scatter(x, torch.ones(2, 4, 5))
    with pytest.raises(ValueError, match=r"\[T, B, N_in\]"):
        window_scatter(torch.zeros(4, 3), torch.ones(2, 3, 5))
    x[0, 0, 0] = 1
    assert window_pays(x)
    assert not window_pays(torch.ones(4, 2, 3))
    with use_kernels(False):
        assert not window_pays(x)


def _taps_compare(x, lags, coefs, pad, seed=0):
    res = []
    for f in (tap_conv, spike_scatter):
        out = f(x, Taps(lags, coefs), pad)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
        res.append((out.detach(), torch.autograd.grad((out * g).sum(), [x, coefs])))
    (o0, g0), (o1, g1) = res
    torch.testing.assert_close(o1, o0, rtol=1e-13, atol=1e-13)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_taps=st.integers(1, 7), max_lag=st.integers(0, 14),
       consecutive=st.booleans(), zeros=st.floats(0.0, 0.6), pad=st.integers(0, 6),
       b=st.integers(1, 3))
def test_general_and_consecutive_taps(seed, n_taps, max_lag, consecutive, zeros, pad, b):
    """Arbitrary lags (longer than the padding: the per-sample slack), repeated lags, zero
    coefficients (skipped in the forward, still differentiated), consecutive runs."""
    g = torch.Generator().manual_seed(seed)
    if consecutive:
        base = torch.randint(0, max_lag + 1, (1, 4, 5), generator=g)
        lags = base + torch.arange(n_taps).reshape(-1, 1, 1)
    else:
        lags = torch.randint(0, max_lag + 1, (n_taps, 4, 5), generator=g)
    coefs = torch.randn(n_taps, 4, 5, generator=g, dtype=F64)
    coefs = torch.where(torch.rand(coefs.shape, generator=g, dtype=F64) < zeros, 0.0, coefs)
    x = _raster(seed, b=b, p=0.4, values=True)
    _taps_compare(x, lags, coefs.requires_grad_(), pad, seed)


def test_dense_wide_gaussian_takes_window_scatter(monkeypatch):
    calls = []
    real = scatter_mod.WindowScatter.apply

    def spy(*a):
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(scatter_mod.WindowScatter, "apply", spy)
    syn = Dense(5, 4, kernel=Gaussian(), max_delay=0.024, dt=1e-3, learn_delay=True,
                pad_right="half", generator=torch.Generator().manual_seed(2), dtype=F64)
    for x_grad in (False, True):
        x = _raster(7, t=13, p=0.05, grad=x_grad)
        params = [p for p in syn.parameters() if p.requires_grad]
        wrt = ([x] if x_grad else []) + params
        res = []
        for on in (False, True):
            with use_kernels(on):
                out = syn.jumps(x)
            g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
            res.append((out.detach(), torch.autograd.grad((out * g).sum(), wrt)))
        torch.testing.assert_close(res[1][0], res[0][0], rtol=1e-13, atol=1e-13)
        for a, b in zip(res[1][1], res[0][1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    assert calls == [1, 1]
    dense = torch.ones(13, 3, 5, dtype=F64)  # dense input: the conv1d path
    syn.jumps(dense)
    assert calls == [1, 1]
