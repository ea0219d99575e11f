"""``dL/dx`` of the spike scatter (:class:`~ctsnn.synapses.spike_scatter.SpikeScatter`), the
transpose of its forward: for every input ``j``, sample ``b`` and step ``t``::

    dL/dx[t, b, j] = sum over taps k and targets i of coefs[k, i, j] g[t + lags[k, i, j], b, i]

with ``g = dL/dout``. Dense: the surrogate gradient reaches every input entry, so its cost is
``N_in x (non-zero taps per input) x B x T`` multiply-adds whatever the spikes.

Layout and blocking. ``g`` comes as the scatter's rows (``[N_out, B * seg]``, time contiguous,
each sample a segment of ``seg >= T + max lag`` steps; the same copy serves ``dL/dcoefs``).
Work goes sample by sample: the sample's ``dL/dx`` accumulates in a scratch ``[N_in, T]``
(L2) row by row. Every synapse's taps form one window of consecutive lags
(:func:`input_windows`: the triangle's two, the float32 Gaussian's six at sigma 0.5; a
single tap, or a window wider than 8, one lane per tap), and the windows are grouped by
block of :data:`GX_TARGETS` targets: for each block every input row takes its windows in
that block, several per pass over the row (one load of ``g`` per multiply-add, one load and
store of the row per pass; a window's lanes are shifted loads of one ``g`` row, so a pass
sets up one row pointer per window rather than per tap). A block's ``g`` over one sample
(``GX_TARGETS x seg`` values) stays in the L1 cache while all the input rows read it,
rather than every row streaming all of ``g`` from L2.
The finished scratch is transposed into ``dL/dx [T, B, N_in]`` in tiles (no separate layout
pass).

Rows the next operation zeroes: ``keep [B, N_in]`` (bool) marks the (sample, input) rows
whose gradient is wanted; the others are skipped and returned as exact zeros (e.g. the units
a :class:`~ctsnn.dropout.SequenceDropout` with a shared mask dropped before this synapse,
whose backward multiplies them by zero anyway).

Threads: fixed chunks of samples (each owns its samples' output) by numba ``prange``; every
output value is summed in the same order whatever the chunking, so results are bit-identical
for any thread count.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from .._checks import check_tensor
from ..engine.compiled.schedule import chunk_bounds

__all__ = ["GX_TARGETS", "check_rows", "grad_input", "input_windows", "mask_input_grad"]

#: Targets per block: their ``g`` over one sample segment stays in the L1 cache while every
#: input row reads it.
GX_TARGETS = 32
_PAD = 32


@numba.njit(cache=True)
def _lanes(lags, coefs):
    """Lanes of the windows :func:`input_windows` builds: every synapse's non-zero taps span
    ``W`` consecutive lags at most; 2, 4, 6 or 8 lanes for ``2 <= W <= 8``, else 1 (one
    window per non-zero tap)."""
    n_taps, n_out, n_in = lags.shape
    width = 1
    for i in range(n_out):
        for j in range(n_in):
            lo = hi = -1
            for k in range(n_taps):
                if coefs[k, i, j] != 0.0:
                    lag = lags[k, i, j]
                    lo = lag if lo < 0 else min(lo, lag)
                    hi = max(hi, lag)
            width = max(width, hi - lo + 1)
    if width == 1 or width > 8:
        return 1
    return width + width % 2 if width != 3 else 4


@numba.njit(cache=True)
def input_windows(lags, coefs):
    """The taps of every input as windows of consecutive lags, grouped by block of
    :data:`GX_TARGETS` targets: ``count [n_blocks * N_in + 1]`` (block ``m``'s windows of
    input ``j`` at ``count[m N_in + j]:count[m N_in + j + 1]``), each window's target, first
    lag and coefficients ``[n_windows, lanes]`` (lanes from :func:`_lanes`: a synapse's
    non-zero taps in one zero-padded window, or with one lane each non-zero tap its own
    window; ``lags, coefs [n_taps, N_out, N_in]``). Synapses without a non-zero tap have
    none."""
    n_taps, n_out, n_in = lags.shape
    lanes = _lanes(lags, coefs)
    n_blocks = (n_out + GX_TARGETS - 1) // GX_TARGETS
    count = np.zeros(n_blocks * n_in + 1, np.int64)
    for i in range(n_out):
        m0 = (i // GX_TARGETS) * n_in
        for j in range(n_in):
            nz = 0
            for k in range(n_taps):
                nz += coefs[k, i, j] != 0.0
            count[m0 + j + 1] += nz if lanes == 1 else min(nz, 1)
    for m in range(n_blocks * n_in):
        count[m + 1] += count[m]
    ti = np.empty(count[-1], np.int64)
    tb = np.empty(count[-1], np.int64)
    tw = np.zeros((count[-1], lanes), coefs.dtype)
    cursor = count[:-1].copy()
    for i in range(n_out):
        m0 = (i // GX_TARGETS) * n_in
        for j in range(n_in):
            if lanes == 1:
                for k in range(n_taps):
                    if coefs[k, i, j] != 0.0:
                        q = cursor[m0 + j]
                        cursor[m0 + j] = q + 1
                        ti[q] = i
                        tb[q] = lags[k, i, j]
                        tw[q, 0] = coefs[k, i, j]
                continue
            lo = -1
            for k in range(n_taps):
                if coefs[k, i, j] != 0.0:
                    lo = lags[k, i, j] if lo < 0 else min(lo, lags[k, i, j])
            if lo < 0:
                continue
            q = cursor[m0 + j]
            cursor[m0 + j] = q + 1
            ti[q] = i
            tb[q] = lo
            for k in range(n_taps):
                if coefs[k, i, j] != 0.0:
                    tw[q, lags[k, i, j] - lo] += coefs[k, i, j]
    return count, ti, tb, tw


@numba.njit(cache=True, fastmath=True)
def _acc1(row, g, s0, u, e, ti, tb, tw):
    """One-lane windows (single taps): ``row[p] += tw[q, 0] g[ti[q], s0 + tb[q] + p]``, eight
    (then four, one) per pass over the row."""
    w = row.size
    while u + 8 <= e:
        c0, c1, c2, c3 = tw[u, 0], tw[u + 1, 0], tw[u + 2, 0], tw[u + 3, 0]
        c4, c5, c6, c7 = tw[u + 4, 0], tw[u + 5, 0], tw[u + 6, 0], tw[u + 7, 0]
        r0 = g[ti[u], s0 + tb[u]:]
        r1 = g[ti[u + 1], s0 + tb[u + 1]:]
        r2 = g[ti[u + 2], s0 + tb[u + 2]:]
        r3 = g[ti[u + 3], s0 + tb[u + 3]:]
        r4 = g[ti[u + 4], s0 + tb[u + 4]:]
        r5 = g[ti[u + 5], s0 + tb[u + 5]:]
        r6 = g[ti[u + 6], s0 + tb[u + 6]:]
        r7 = g[ti[u + 7], s0 + tb[u + 7]:]
        for p in range(w):
            row[p] += (c0 * r0[p] + c1 * r1[p] + c2 * r2[p] + c3 * r3[p]
                       + c4 * r4[p] + c5 * r5[p] + c6 * r6[p] + c7 * r7[p])
        u += 8
    while u + 4 <= e:
        c0, c1, c2, c3 = tw[u, 0], tw[u + 1, 0], tw[u + 2, 0], tw[u + 3, 0]
        r0 = g[ti[u], s0 + tb[u]:]
        r1 = g[ti[u + 1], s0 + tb[u + 1]:]
        r2 = g[ti[u + 2], s0 + tb[u + 2]:]
        r3 = g[ti[u + 3], s0 + tb[u + 3]:]
        for p in range(w):
            row[p] += c0 * r0[p] + c1 * r1[p] + c2 * r2[p] + c3 * r3[p]
        u += 4
    while u < e:
        c0 = tw[u, 0]
        r0 = g[ti[u], s0 + tb[u]:]
        for p in range(w):
            row[p] += c0 * r0[p]
        u += 1


@numba.njit(cache=True, fastmath=True)
def _acc2(row, g, s0, u, e, ti, tb, tw):
    """Two-lane windows, four per pass: ``row[p] += sum_n tw[q, n] g[ti[q], s0 + tb[q] + n
    + p]``."""
    w = row.size
    while u + 4 <= e:
        a0, a1, b0, b1 = tw[u, 0], tw[u, 1], tw[u + 1, 0], tw[u + 1, 1]
        c0, c1, d0, d1 = tw[u + 2, 0], tw[u + 2, 1], tw[u + 3, 0], tw[u + 3, 1]
        ra = g[ti[u], s0 + tb[u]:]
        rb = g[ti[u + 1], s0 + tb[u + 1]:]
        rc = g[ti[u + 2], s0 + tb[u + 2]:]
        rd = g[ti[u + 3], s0 + tb[u + 3]:]
        for p in range(w):
            row[p] += (a0 * ra[p] + a1 * ra[p + 1] + b0 * rb[p] + b1 * rb[p + 1]
                       + c0 * rc[p] + c1 * rc[p + 1] + d0 * rd[p] + d1 * rd[p + 1])
        u += 4
    while u < e:
        a0, a1 = tw[u, 0], tw[u, 1]
        ra = g[ti[u], s0 + tb[u]:]
        for p in range(w):
            row[p] += a0 * ra[p] + a1 * ra[p + 1]
        u += 1


@numba.njit(cache=True, fastmath=True)
def _acc4(row, g, s0, u, e, ti, tb, tw):
    """Four-lane windows, two per pass (see :func:`_acc2`)."""
    w = row.size
    while u + 2 <= e:
        a0, a1, a2, a3 = tw[u, 0], tw[u, 1], tw[u, 2], tw[u, 3]
        b0, b1, b2, b3 = tw[u + 1, 0], tw[u + 1, 1], tw[u + 1, 2], tw[u + 1, 3]
        ra = g[ti[u], s0 + tb[u]:]
        rb = g[ti[u + 1], s0 + tb[u + 1]:]
        for p in range(w):
            row[p] += (a0 * ra[p] + a1 * ra[p + 1] + a2 * ra[p + 2] + a3 * ra[p + 3]
                       + b0 * rb[p] + b1 * rb[p + 1] + b2 * rb[p + 2] + b3 * rb[p + 3])
        u += 2
    while u < e:
        a0, a1, a2, a3 = tw[u, 0], tw[u, 1], tw[u, 2], tw[u, 3]
        ra = g[ti[u], s0 + tb[u]:]
        for p in range(w):
            row[p] += a0 * ra[p] + a1 * ra[p + 1] + a2 * ra[p + 2] + a3 * ra[p + 3]
        u += 1


@numba.njit(cache=True, fastmath=True)
def _acc6(row, g, s0, u, e, ti, tb, tw):
    """Six-lane windows (DCLS's float32 Gaussian at sigma 0.5), two per pass (see
    :func:`_acc2`)."""
    w = row.size
    while u + 2 <= e:
        a0, a1, a2, a3, a4, a5 = tw[u, 0], tw[u, 1], tw[u, 2], tw[u, 3], tw[u, 4], tw[u, 5]
        b0, b1, b2 = tw[u + 1, 0], tw[u + 1, 1], tw[u + 1, 2]
        b3, b4, b5 = tw[u + 1, 3], tw[u + 1, 4], tw[u + 1, 5]
        ra = g[ti[u], s0 + tb[u]:]
        rb = g[ti[u + 1], s0 + tb[u + 1]:]
        for p in range(w):
            row[p] += (a0 * ra[p] + a1 * ra[p + 1] + a2 * ra[p + 2] + a3 * ra[p + 3]
                       + a4 * ra[p + 4] + a5 * ra[p + 5]
                       + b0 * rb[p] + b1 * rb[p + 1] + b2 * rb[p + 2] + b3 * rb[p + 3]
                       + b4 * rb[p + 4] + b5 * rb[p + 5])
        u += 2
    while u < e:
        a0, a1, a2, a3, a4, a5 = tw[u, 0], tw[u, 1], tw[u, 2], tw[u, 3], tw[u, 4], tw[u, 5]
        ra = g[ti[u], s0 + tb[u]:]
        for p in range(w):
            row[p] += (a0 * ra[p] + a1 * ra[p + 1] + a2 * ra[p + 2] + a3 * ra[p + 3]
                       + a4 * ra[p + 4] + a5 * ra[p + 5])
        u += 1


@numba.njit(cache=True, fastmath=True)
def _acc8(row, g, s0, u, e, ti, tb, tw):
    """Eight-lane windows, one per pass (see :func:`_acc2`)."""
    w = row.size
    while u < e:
        a0, a1, a2, a3 = tw[u, 0], tw[u, 1], tw[u, 2], tw[u, 3]
        a4, a5, a6, a7 = tw[u, 4], tw[u, 5], tw[u, 6], tw[u, 7]
        ra = g[ti[u], s0 + tb[u]:]
        for p in range(w):
            row[p] += (a0 * ra[p] + a1 * ra[p + 1] + a2 * ra[p + 2] + a3 * ra[p + 3]
                       + a4 * ra[p + 4] + a5 * ra[p + 5] + a6 * ra[p + 6] + a7 * ra[p + 7])
        u += 1


@numba.njit(cache=True, fastmath=True)
def _grad_input(b0, b1, g, seg, count, ti, tb, tw, keep, gx):
    """Samples ``b0 <= b < b1`` of ``gx [T, B, N_in]`` (see the module docstring); rows with
    ``keep[b, j]`` false are zero."""
    n_steps, _, n_in = gx.shape
    n_blocks = (count.size - 1) // n_in
    lanes = tw.shape[1]
    reach = tb.max() + lanes - 1 if tb.size else 0  # the farthest lag any window reads
    width = -(-n_steps // _PAD) * _PAD
    buf = np.empty((n_in, width), gx.dtype)
    for b in range(b0, b1):
        s0 = b * seg
        # rows run over ``width`` positions (no scalar remainder loop) where every window
        # lane stays inside g; the positions past n_steps are never copied out
        w = width if s0 + reach + width <= g.shape[1] else n_steps
        for j in range(n_in):
            buf[j] = 0.0
        for m in range(n_blocks):
            for j in range(n_in):
                if not keep[b, j]:
                    continue
                u, e = count[m * n_in + j], count[m * n_in + j + 1]
                if lanes == 1:
                    _acc1(buf[j, :w], g, s0, u, e, ti, tb, tw)
                elif lanes == 2:
                    _acc2(buf[j, :w], g, s0, u, e, ti, tb, tw)
                elif lanes == 4:
                    _acc4(buf[j, :w], g, s0, u, e, ti, tb, tw)
                elif lanes == 6:
                    _acc6(buf[j, :w], g, s0, u, e, ti, tb, tw)
                else:
                    _acc8(buf[j, :w], g, s0, u, e, ti, tb, tw)
        for t0 in range(0, n_steps, 16):
            t1 = min(n_steps, t0 + 16)
            for j0 in range(0, n_in, 16):
                j1 = min(n_in, j0 + 16)
                for t in range(t0, t1):
                    for j in range(j0, j1):
                        gx[t, b, j] = buf[j, t] if keep[b, j] else 0.0


@numba.njit(cache=True, parallel=True)
def _grad_input_chunks(n_chunks, g, seg, count, ti, tb, tw, keep, gx):
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, gx.shape[1])
        _grad_input(b0, b1, g, seg, count, ti, tb, tw, keep, gx)


def grad_input(g, seg, lags, coefs, keep, gx, run) -> None:
    """Fill ``gx [T, B, N_in]`` (NumPy, may enter uninitialised) with ``dL/dx`` from the rows
    ``g [N_out, B * seg]`` of ``dL/dout`` and the taps ``lags, coefs [n_taps, N_out, N_in]``
    (NumPy); ``keep [B, N_in]`` bool (rows with ``False`` are zero). ``run`` is the scatter's
    serial-or-chunked dispatcher (``run(serial, chunked, n_rows, work, *args)``)."""
    windows = input_windows(lags, coefs)
    n_steps, batch, _ = gx.shape
    tb, tw = windows[2], windows[3]
    reach = int(tb.max(initial=0)) + tw.shape[1] - 1  # the farthest lane any window reads
    if reach > seg - n_steps:  # the last sample's rows would read past g: zeros there
        g = np.pad(g, ((0, 0), (0, reach - (seg - n_steps))))
    work = windows[3].size * batch * n_steps
    run(_grad_input, _grad_input_chunks, batch, work, g, seg, *windows, keep, gx)


def check_rows(rows: object, x: Tensor) -> Tensor:
    """Check a ``rows`` argument against ``x [T, B, N_in]``: a bool tensor ``[B, N_in]`` on
    ``x``'s device (the (sample, input) rows whose gradient is needed)."""
    rows = check_tensor("rows", rows, shape=(x.shape[1], x.shape[2]))
    if rows.dtype != torch.bool:
        raise TypeError(f"rows must be a bool tensor [B, N_in] (True: the gradient of that "
                        f"(sample, input) row is needed), got dtype {rows.dtype}")
    if rows.device != x.device:
        raise ValueError(f"rows is on {rows.device} but x is on {x.device}")
    return rows


class _MaskInputGrad(torch.autograd.Function):
    """Identity forward; backward keeps ``dL/dx[:, b, j]`` where ``rows[b, j]``, else 0."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(rows)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (rows,) = ctx.saved_tensors
        return grad * rows.to(grad.dtype), None


def mask_input_grad(x: Tensor, rows: Tensor) -> Tensor:
    """``x [T, B, N]`` unchanged, with the gradient of the rows ``(b, j)`` where ``rows [B,
    N]`` (bool) is ``False`` set to zero: the same contract as the ``rows`` argument of
    :func:`~ctsnn.synapses.spike_scatter.spike_scatter`, for the paths that compute the
    whole ``dL/dx`` (so that every path returns the same gradient)."""
    return _MaskInputGrad.apply(x, check_rows(rows, x))
