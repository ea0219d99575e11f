"""The SIMD window intrinsics (``axpy``, ``dot6``, ``dot8``, ``row_windows``) == plain NumPy
loops (float64 tight, float32 to rounding), overlapping windows included, they emit vector IR,
and the 6- and 8-lane tap kernels built on them match ``tap_conv`` in float32."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.synapses.conv import tap_conv
from ctsnn.synapses.kernels import Taps, gaussian_support_taps
from ctsnn.synapses.simd_lanes import (
    ROW_LANES,
    ROW_VECTORS,
    axpy,
    dot6,
    dot8,
    row_vector_width,
    row_windows,
)
from ctsnn.synapses.spike_scatter import spike_scatter


@numba.njit
def _scatter(flat, opos, val, d, c):
    for q in range(opos.size):
        axpy(flat, d + opos[q], val[q], c)


@numba.njit
def _dot6_rows(flat, opos, val, a, e, d0, d1, d2):
    return dot6(flat, opos, val, a, e, (d0, d1, d2))


@numba.njit
def _dot8_row(flat, opos, val, a, e, d0):
    return dot8(flat, opos, val, a, e, (d0,))


@numba.njit
def _row_windows(n_vec, lanes, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e):
    row_windows(n_vec, lanes, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)


def _case(seed, n_spikes, lanes, dtype):
    rng = np.random.default_rng(seed)
    # sorted positions with gaps of 0..8: consecutive windows overlap (and repeat) often
    opos = np.cumsum(rng.integers(0, 9, n_spikes)).astype(np.uint64)
    val = rng.standard_normal(n_spikes).astype(dtype)
    flat = rng.standard_normal(int(opos.max(initial=0)) + 3 * lanes + 40).astype(dtype)
    return rng, opos, val, flat


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_spikes=st.integers(0, 30), lanes=st.sampled_from([6, 8]),
       dtype=st.sampled_from([np.float32, np.float64]), d=st.integers(0, 9))
def test_axpy_equals_loop(seed, n_spikes, lanes, dtype, d):
    rng, opos, val, flat = _case(seed, n_spikes, lanes, dtype)
    c = tuple(dtype(v) for v in rng.standard_normal(lanes))
    ref = flat.astype(np.float64)
    for q in range(n_spikes):
        for n in range(lanes):
            ref[d + int(opos[q]) + n] += float(c[n]) * float(val[q])
    out = flat.copy()
    _scatter(out, opos, val, np.uint64(d), c)
    tol = 1e-13 if dtype == np.float64 else 3e-6
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * (1 + np.abs(ref).max()))
    untouched = np.ones(flat.size, bool)  # nothing outside the windows is written
    for q in range(n_spikes):
        untouched[d + int(opos[q]):d + int(opos[q]) + lanes] = False
    assert np.array_equal(out[untouched], flat[untouched])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_spikes=st.integers(0, 30),
       dtype=st.sampled_from([np.float32, np.float64]), a=st.integers(0, 5))
def test_dot_equals_loop(seed, n_spikes, dtype, a):
    for lanes in (6, 8):
        rng, opos, val, flat = _case(seed, n_spikes, lanes, dtype)
        e = max(a, n_spikes)
        ds = [int(v) for v in rng.integers(0, 2 * lanes, 3)]
        ref = np.zeros((3, lanes))
        for k, d in enumerate(ds):
            for q in range(a, e):
                ref[k] += float(val[q]) * flat[d + int(opos[q]):d + int(opos[q]) + lanes]
        if lanes == 6:
            got = np.array(_dot6_rows(flat, opos, val, np.uint64(a), np.uint64(e),
                                      *[np.uint64(d) for d in ds])).reshape(3, 6)
        else:
            got = np.array(_dot8_row(flat, opos, val, np.uint64(a), np.uint64(e),
                                     np.uint64(ds[0]))).reshape(1, 8)
            ref = ref[:1]
        tol = 1e-12 if dtype == np.float64 else 3e-6
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * (1 + np.abs(ref).sum()))


def test_intrinsics_emit_vector_code():
    """The window updates are vector loads / multiply-adds / stores in the IR (numba runs no
    straight-line vectoriser: written as scalars they would stay scalar)."""
    flat = np.zeros(64, np.float32)
    opos = np.array([0, 1, 9], np.uint64)
    val = np.ones(3, np.float32)
    irs = []
    for lanes in (6, 8):  # fresh dispatchers: one signature each
        scatter = numba.njit(_scatter.py_func)
        scatter(flat, opos, val, np.uint64(2), (np.float32(1.0),) * lanes)
        irs.append(scatter.inspect_llvm(scatter.signatures[0]))
    dot = numba.njit(_dot6_rows.py_func)
    dot(flat, opos, val, np.uint64(0), np.uint64(3), *(np.uint64(1),) * 3)
    ir6, ir8, ird = *irs, dot.inspect_llvm(dot.signatures[0])
    for ir, widths in ((ir6, (4, 2)), (ir8, (8,)), (ird, (4, 2))):
        for w in widths:
            assert f"load <{w} x float>" in ir
            assert f"<{w} x float>" in ir
    for ir in (ir6, ir8):
        assert "store <" in ir


def test_bad_arguments():
    flat = np.zeros(16, np.float32)
    with pytest.raises((TypeError, numba.core.errors.TypingError), match="6 or 8 lanes"):
        _scatter(flat, np.zeros(1, np.uint64), np.ones(1, np.float32), np.uint64(0),
                 (np.float32(1.0),) * 5)
    with pytest.raises((TypeError, numba.core.errors.TypingError), match="1-d C-contiguous float"):
        _scatter(np.zeros(16, np.int64), np.zeros(1, np.uint64), np.ones(1, np.float32),
                 np.uint64(0), (np.float32(1.0),) * 6)


@pytest.mark.parametrize("n_out", [29, 20])
def test_float32_gaussian_scatter_matches_float64_reference(n_out):
    """DCLS's float32 Gaussian at sigma 0.5 (6 lanes) through the scatter, on target counts
    that take the 8-, 4- and 1-target groups (29 = 16 + 8 + 4 + 1, 20 = 16 + 4), against
    ``tap_conv`` in float64 on the same float32 values: float32 rounding."""
    gen = torch.Generator().manual_seed(n_out)
    n_in = 7
    x = ((torch.rand(30, 5, n_in, generator=gen) < 0.4) * torch.randn(30, 5, n_in,
                                                                     generator=gen))
    d = torch.rand(n_out, n_in, generator=gen) * 20
    taps = gaussian_support_taps(d, 0.5, 25)
    assert taps.lags.shape[0] == 6
    c32 = (taps.coefs * torch.randn(n_out, n_in, generator=gen)).float()
    x32 = x.float().requires_grad_()
    c32.requires_grad_()
    out = spike_scatter(x32, Taps(taps.lags, c32), 4)
    g = torch.randn(out.shape, generator=gen)
    gx, gc = torch.autograd.grad((out * g).sum(), [x32, c32])
    x64 = x32.detach().double().requires_grad_()
    c64 = c32.detach().double().requires_grad_()
    ref = tap_conv(x64, Taps(taps.lags, c64), 4)
    rx, rc = torch.autograd.grad((ref * g.double()).sum(), [x64, c64])
    for a, b in ((out, ref), (gx, rx), (gc, rc)):
        scale = b.abs().max().item()
        torch.testing.assert_close(a.detach().double(), b, rtol=1e-5, atol=2e-6 * scale)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_vec=st.integers(1, ROW_VECTORS),
       lanes=st.sampled_from(ROW_LANES),
       n_win=st.integers(0, 12), dtype=st.sampled_from([np.float32, np.float64]),
       rpos=st.integers(0, 5), u=st.integers(0, 3))
def test_row_windows_equals_loop(seed, n_vec, lanes, n_win, dtype, rpos, u):
    """``row_windows``: a block of ``n_vec`` vectors of the row plus every window's lanes
    (windows on one target repeat and overlap, at every offset within a vector), nothing else
    of the row written; ``g`` read only up to one vector past the block's last lane (NaN
    after it would show)."""
    rng = np.random.default_rng(seed)
    vw = row_vector_width(np.dtype(dtype).itemsize)
    n_out, gofs = 3, int(rng.integers(0, 5))
    rowlen = gofs + 30 - 8 - 4 + (n_vec + 1) * vw
    g = rng.standard_normal(n_out * rowlen).astype(dtype)
    g[n_out * rowlen - 1] = np.nan  # the last target row's last value: never read
    ti = rng.integers(0, n_out, n_win)
    tb = rng.integers(0, 30 - 8 - 4, n_win)
    tw = rng.standard_normal((n_win, lanes)).astype(dtype)
    row = rng.standard_normal(rpos + n_vec * vw + 7).astype(dtype)
    e = max(u, n_win)
    ref = row.astype(np.float64)
    for q in range(u, e):
        for n in range(lanes):
            start = int(ti[q]) * rowlen + gofs + int(tb[q]) + n
            ref[rpos:rpos + n_vec * vw] += float(tw[q, n]) * g[start:start + n_vec * vw]
    out = row.copy()
    _row_windows(n_vec, lanes, out, rpos, g, gofs, rowlen, ti, tb, tw.reshape(-1), u, e)
    tol = 1e-13 if dtype == np.float64 else 3e-6
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * (1 + np.abs(ref).max()))
    outside = np.r_[0:rpos, rpos + n_vec * vw:row.size]
    assert np.array_equal(out[outside], row[outside])


def test_row_windows_emit_64_byte_vectors_and_check_types():
    """One 64-byte vector per load / multiply-add (16 float32, 8 float64) in the IR; wrong
    dtypes and array kinds are typing errors."""
    for dtype, width, name in ((np.float32, 16, "float"), (np.float64, 8, "double")):
        f = numba.njit(_row_windows.py_func)
        g = np.zeros(64, dtype)
        f(2, 2, np.zeros(2 * width, dtype), 0, g, 0, 64, np.zeros(1, np.int64),
          np.zeros(1, np.int64), np.ones(2, dtype), 0, 1)
        ir = f.inspect_llvm(f.signatures[0])
        assert f"load <{width} x {name}>" in ir and f"store <{width} x {name}>" in ir
        assert f"shufflevector <{width} x {name}>" in ir  # lanes from two loads
    with pytest.raises((TypeError, numba.core.errors.TypingError), match="share one dtype"):
        _row_windows(1, 2, np.zeros(16, np.float32), 0, np.zeros(64), 0, 64,
                     np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(2), 0, 1)
    with pytest.raises((TypeError, numba.core.errors.TypingError), match="ti must be"):
        _row_windows(1, 2, np.zeros(8), 0, np.zeros(64), 0, 64, np.zeros(1),
                     np.zeros(1, np.int64), np.ones(2), 0, 1)
    with pytest.raises(ValueError, match="lanes must be 1, 2, 6 or 8"):
        _row_windows(1, 3, np.zeros(8), 0, np.zeros(64), 0, 64, np.zeros(1, np.int64),
                     np.zeros(1, np.int64), np.ones(3), 0, 1)
