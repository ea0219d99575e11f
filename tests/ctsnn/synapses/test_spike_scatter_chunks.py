"""The spike scatter's chunks of samples (one scratch of rows ``[N_out, n seg]`` for the whole
batch, no full-batch rows buffer): equal to the reference tap convolution in float64 for every
kind of window, with a batch that is not a multiple of the sample block, one sample, a chunk
without spikes and a padding longer than the lags; the forward and ``dL/dx`` bit-identical
whatever the chunk size, and everything bit-identical on 1 and 2 threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.compiled import kernels_enabled
from ctsnn.synapses import spike_scatter as scatter_mod
from ctsnn.synapses.conv import tap_conv
from ctsnn.synapses.kernels import Taps, gaussian_support_taps, rounded_taps, triangle_taps
from ctsnn.synapses.spike_scatter import spike_scatter
from ctsnn.synapses.tap_scatter import SAMPLES

F64 = torch.float64
K = 9
pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                reason="kernels off (CTSNN_KERNELS=0) or no numba")



def _bump(d, width):
    """``width`` consecutive lags from ``floor(d)``, smooth coefficients in ``d``."""
    lags = d.detach().floor().long() + torch.arange(width).reshape(-1, 1, 1)
    return Taps(lags, torch.exp(-(lags.to(d.dtype) - d) ** 2 / 8))


TAPS = {
    "rounded": lambda d: rounded_taps(d, K),            # 1 lane
    "triangle": lambda d: triangle_taps(d, K),          # 2 lanes
    # float32: 6 lanes; float64: 10 taps, one lane per lag in dL/dx
    "gaussian_0.5": lambda d: gaussian_support_taps(d, 0.5, 41),
    "eight": lambda d: _bump(d, 8),                     # 8 lanes
    "wide": lambda d: _bump(d, 11),                     # wide: one lane per lag in dL/dx
    "scattered": lambda d: Taps(torch.stack([d.detach().round().long(),
                                             (K - 1 - d.detach().round()).long()]),
                                torch.stack([1 - d / K, d / K])),
}


def _case(seed, batch, n_out=21, n_in=6, t=15, dtype=F64, empty=()):
    """Spikes with values (samples in ``empty`` silent), delays and weights."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, batch, n_in, generator=g, dtype=F64) < 0.3).to(dtype)
    x = x * torch.randn(t, batch, n_in, generator=g, dtype=F64).to(dtype)
    x[:, list(empty)] = 0.0
    d = (torch.rand(n_out, n_in, generator=g, dtype=F64) * (K - 1)).to(dtype)
    w = torch.randn(n_out, n_in, generator=g, dtype=F64).to(dtype)
    return x.requires_grad_(), d.requires_grad_(), w.requires_grad_()


def _run(kind, x, d, w, pad, conv=spike_scatter):
    taps = TAPS[kind](d)
    out = conv(x, Taps(taps.lags, taps.coefs * w), pad)
    up = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    grads = torch.autograd.grad((out * up.to(out.dtype)).sum(), [x, d, w], allow_unused=True)
    return (out.detach(), *(torch.zeros(0) if a is None else a for a in grads))


def _with(monkeypatch, fn, scratch, threads=None, work=None):
    """``fn()`` with the scratch budget ``scratch`` bytes (1: one sample block per chunk) and
    optionally ``threads`` torch threads and the parallel work threshold ``work``."""
    before = torch.get_num_threads()
    monkeypatch.setattr(scatter_mod, "SCRATCH_BYTES", scratch)
    if work is not None:
        monkeypatch.setattr(scatter_mod, "_PARALLEL_WORK", work)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("kind", sorted(TAPS))
@pytest.mark.parametrize(("batch", "empty"), [(1, ()), (10, (4, 5, 6, 7)), (9, (8,))])
def test_chunks_equal_reference(kind, batch, empty, monkeypatch):
    """One sample block per chunk; 10 and 9 samples (the last chunk short), a whole chunk
    without spikes; padding (K + 4) longer than every lag."""
    x, d, w = _case(1, batch, empty=empty)
    pad = K + 4
    got = _with(monkeypatch, lambda: _run(kind, x, d, w, pad), scratch=1)
    ref = _run(kind, x, d, w, pad, conv=tap_conv)
    assert got[0].shape == (x.shape[0] + pad, batch, d.shape[0])
    for u, v in zip(got, ref, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("kind", sorted(TAPS))
def test_chunk_size_keeps_forward_and_input_grad_bit_identical(kind, dtype, monkeypatch):
    """The forward sums every output value in the same order (inputs ascending, spikes in
    order) and dL/dx is per sample: both bit-identical for chunks of 4, 8 or all 11 samples;
    dL/dcoefs adds per-chunk partial sums (equal to rounding)."""
    x, d, w = _case(2, 11, dtype=dtype)
    runs = [_with(monkeypatch, lambda: _run(kind, x, d, w, 2), scratch=s)
            for s in (1, 21 * 2 * SAMPLES * (15 + K + 8) * 8, 1 << 40)]
    for other in runs[1:]:
        assert torch.equal(runs[0][0], other[0])
        assert torch.equal(runs[0][1], other[1])
        for u, v in zip(runs[0][2:], other[2:], strict=True):
            torch.testing.assert_close(u, v, rtol=1e-5 if dtype == torch.float32 else 1e-12,
                                       atol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba's pool has one thread")
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("kind", sorted(TAPS))
def test_chunks_threads_bit_identical(kind, dtype, monkeypatch):
    """Chunks of one sample block, every kernel on 1 and 2 threads (work threshold 0) and
    serial: the forward and all gradients (dL/dcoefs' chunk sums included) bit-identical."""
    x, d, w = _case(3, 10, n_out=40, dtype=dtype)
    run = lambda: _run(kind, x, d, w, 3)  # noqa: E731
    serial = _with(monkeypatch, run, scratch=1, threads=2, work=10**18)
    for threads in (1, 2):
        got = _with(monkeypatch, run, scratch=1, threads=threads, work=0)
        for u, v in zip(got, serial, strict=True):
            assert torch.equal(u, v)


@pytest.mark.parametrize("lanes", [1, 2, 6, 8, 11])
@pytest.mark.parametrize(("batch", "n_rows", "seg", "itemsize"),
                         [(1, 256, 125, 4), (64, 256, 125, 4), (256, 20, 125, 4),
                          (13, 3, 10, 8), (64, 256, 125, 8), (256, 256, 125, 4)])
def test_sample_chunks_sizing(batch, n_rows, seg, itemsize, lanes):
    """Chunks are whole sample blocks (or the batch), within the scratch budget (twice it
    for 6 and 8 lanes) unless one block exceeds it, at most half the sample blocks."""
    n = scatter_mod._sample_chunks(batch, n_rows, seg, itemsize, lanes)
    budget = scatter_mod.SCRATCH_BYTES * (2 if lanes in (6, 8) else 1)
    assert 1 <= n <= batch
    assert n == batch or n % SAMPLES == 0
    assert n <= SAMPLES or n_rows * n * seg * itemsize <= budget
    if batch > SAMPLES:
        assert n <= -(-batch // (2 * SAMPLES)) * SAMPLES


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba's pool has one thread")
def test_chunk_groups_parallel_from_threshold(monkeypatch):
    """Several chunks: the forward's parts and the backward's groups run in parallel from the
    work threshold on (and only then), never the whole-batch target-parallel forms."""
    names = ["_tap_forward_parts", "_tap_backward_parallel", "tap_forward_chunks",
             "tap_grad_coefs_chunks"]
    calls: list[str] = []
    for name in names:
        real = getattr(scatter_mod, name)
        monkeypatch.setattr(scatter_mod, name,
                            lambda *a, _n=name, _r=real: (calls.append(_n), _r(*a))[1])
    x, d, w = _case(4, 10)
    run = lambda: _run("triangle", x, d, w, 2)  # noqa: E731
    _with(monkeypatch, run, scratch=1, threads=2, work=10**18)
    assert calls == []
    _with(monkeypatch, run, scratch=1, threads=1, work=0)
    assert calls == []
    _with(monkeypatch, run, scratch=1, threads=2, work=0)
    assert sorted(calls) == ["_tap_backward_parallel", "_tap_forward_parts"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 11), group=st.sampled_from([1, 4, 8]),
       t=st.integers(1, 9))
def test_events_grouped_by_step_then_sample(seed, batch, group, t):
    """``_events`` with samples in groups of ``group``: per input the same entries as the
    sample-major order, by step then sample inside a group (by step inside a sample), the
    groups in order; ``soff`` right at group starts and the end, -1 inside a group."""
    rng = np.random.default_rng(seed)
    n_units, seg = 3, t + 2
    x = (rng.random((t, batch, n_units)) < 0.4) * rng.standard_normal((t, batch, n_units))
    offsets, opos, val, soff = scatter_mod._events(x, seg, SAMPLES, group)
    for j in range(n_units):
        got = [(int(p), float(v)) for p, v in zip(opos[offsets[j]:offsets[j + 1]],
                                                   val[offsets[j]:offsets[j + 1]], strict=True)]
        want = [(b * seg + s, float(x[s, b, j]))
                for b0 in range(0, batch, group) for s in range(t)
                for b in range(b0, min(batch, b0 + group)) if x[s, b, j] != 0]
        assert got == want
        for blk in range(soff.shape[1]):
            b = blk * SAMPLES
            if blk == soff.shape[1] - 1:
                assert soff[j, blk] == offsets[j + 1]
            elif b % group == 0:
                assert soff[j, blk] == offsets[j] + sum(1 for p, _ in got if p < b * seg)
            else:
                assert soff[j, blk] == -1


@pytest.mark.parametrize(("batch", "expect"), [(64, 8), (256, 8), (100, 12), (20, 12), (4, 4)])
def test_sample_chunks_split_evenly_into_groups(batch, expect):
    """Of the chunk sizes within the budget, the one whose chunks give the two groups the most
    even share of sample blocks (the largest on a tie): W1's layer 2 at batch 64 as 8 chunks
    of 8 samples (32 per group), not 5 of 12 and one of 4 (36 and 28)."""
    n = scatter_mod._sample_chunks(batch, 256, 151, 4, 6)
    assert n == expect

    def heaviest(chunk):
        n_chunks = -(-batch // chunk)
        return max(sum(min(chunk, batch - c * chunk) for c in range(
            g * n_chunks // 2, (g + 1) * n_chunks // 2)) for g in range(min(2, n_chunks)))

    allowed = [k * SAMPLES for k in range(1, 4)] if batch > SAMPLES else [batch]
    assert heaviest(n) == min(heaviest(k) for k in allowed)
