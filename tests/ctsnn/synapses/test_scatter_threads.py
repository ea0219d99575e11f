"""The scatter kernels' parallel forms (fixed row chunks, numba ``prange``): forward and every
gradient bit-identical on 1 and 2 threads and to the serial form, equal to the reference
convolutions, and taken only from the work threshold on."""

from __future__ import annotations

import numba
import pytest
import torch

from ctsnn.compiled import kernels_enabled
from ctsnn.synapses import scatter_grad_input as grad_input_mod
from ctsnn.synapses import spike_scatter as scatter_mod
from ctsnn.synapses.conv import dense_conv, tap_conv
from ctsnn.synapses.kernels import (
    Taps,
    gaussian_kernel,
    gaussian_support_taps,
    rounded_taps,
    triangle_taps,
)
from ctsnn.synapses.spike_scatter import spike_scatter, window_scatter

F64 = torch.float64
K = 9
pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                reason="kernels off (CTSNN_KERNELS=0) or no numba")
two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                 reason="numba's pool has one thread")

TAPS = {
    "rounded": lambda d: rounded_taps(d, K),  # one tap, no delay gradient
    "rounded_st": lambda d: rounded_taps(d, K, straight_through=True),
    "triangle": lambda d: triangle_taps(d, K),
    "gaussian_0.5": lambda d: gaussian_support_taps(d, 0.5, 41),
    # non-consecutive lags: the general loops of the forward and dL/dcoefs
    "scattered": lambda d: Taps(torch.stack([d.detach().round().long(),
                                             (K - 1 - d.detach().round()).long(),
                                             (d.detach() * 0.5).round().long()]),
                                torch.stack([1 - d / K, d / K, 0.25 + 0 * d])),
}


def _case(seed, n_out, n_in=6, t=17, b=3, p=0.25, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, b, n_in, generator=g, dtype=F64) < p).to(dtype)
    x = (x * torch.randn(t, b, n_in, generator=g, dtype=F64).to(dtype)).requires_grad_()
    d = (torch.rand(n_out, n_in, generator=g, dtype=F64) * (K - 1)).to(dtype).requires_grad_()
    w = torch.randn(n_out, n_in, generator=g, dtype=F64).to(dtype).requires_grad_()
    return x, d, w


def _on(threads, work, monkeypatch, fn):
    """``fn()`` with ``threads`` torch (hence kernel) threads and the work threshold ``work``."""
    before = torch.get_num_threads()
    monkeypatch.setattr(scatter_mod, "_PARALLEL_WORK", work)
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def _taps_run(kind, x, d, w, pad=3, seed=5, conv=spike_scatter):
    taps = TAPS[kind](d)
    out = conv(x, Taps(taps.lags, taps.coefs * w), pad)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    grads = torch.autograd.grad((out * g.to(out.dtype)).sum(), [x, d, w], allow_unused=True)
    return (out.detach(), *(torch.zeros(0) if a is None else a for a in grads))


def _window_run(x, d, w, pad=3, seed=5, conv=window_scatter):
    kernel = gaussian_kernel(d, 2.0, K) * w[..., None]
    out = conv(x, kernel, pad)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return (out.detach(), *torch.autograd.grad((out * g.to(out.dtype)).sum(), [x, d, w]))


def _identical(a, b):
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)


@two_threads
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("n_out", [1, 7, 40])
@pytest.mark.parametrize("kind", sorted(TAPS))
def test_taps_threads_bit_identical(kind, n_out, dtype, monkeypatch):
    x, d, w = _case(3, n_out, dtype=dtype)
    run = lambda: _taps_run(kind, x, d, w)  # noqa: E731
    serial = _on(2, 10**18, monkeypatch, run)
    one = _on(1, 0, monkeypatch, run)
    two = _on(2, 0, monkeypatch, run)
    _identical(one, serial)
    _identical(two, serial)
    if dtype == F64:
        ref = _taps_run(kind, x, d, w, conv=tap_conv)
        for u, v in zip(two, ref, strict=True):
            torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


@two_threads
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("n_out", [1, 2, 7, 80])
def test_window_threads_bit_identical(n_out, dtype, monkeypatch):
    x, d, w = _case(4, n_out, dtype=dtype)
    run = lambda: _window_run(x, d, w)  # noqa: E731
    serial = _on(2, 10**18, monkeypatch, run)
    one = _on(1, 0, monkeypatch, run)
    two = _on(2, 0, monkeypatch, run)
    _identical(one, serial)
    _identical(two, serial)
    if dtype == F64:
        ref = _window_run(x, d, w, conv=dense_conv)
        for u, v in zip(two, ref, strict=True):
            torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


@two_threads
def test_parallel_form_taken_from_threshold(monkeypatch):
    names = ["tap_forward_chunks", "tap_grad_coefs_chunks", "_grad_input_chunks",
             "_forward_window_chunks", "_grad_window_chunks"]
    calls: list[str] = []
    for name in names:
        mod = grad_input_mod if name == "_grad_input_chunks" else scatter_mod
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name,
                            lambda *a, _n=name, _r=real: (calls.append(_n), _r(*a))[1])
    x, d, w = _case(6, 40)  # 40 targets: three target blocks of the tap kernels

    def both():
        _taps_run("triangle", x, d, w)
        _window_run(x, d, w)

    _on(2, 10**18, monkeypatch, both)
    assert calls == []
    _on(1, 0, monkeypatch, both)
    assert calls == []
    _on(2, 0, monkeypatch, both)
    assert sorted(calls) == sorted(names)
