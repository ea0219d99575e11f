"""``dL/dx`` of the spike scatter (:class:`~ctsnn.synapses.spike_scatter.SpikeScatter`), the
transpose of its forward: for every input ``j``, sample ``b`` and step ``t``::

    dL/dx[t, b, j] = sum over taps k and targets i of coefs[k, i, j] g[t + lags[k, i, j], b, i]

with ``g = dL/dout``. Dense: the surrogate gradient reaches every input entry, so its cost is
``N_in x (non-zero taps per input) x B x T`` multiply-adds whatever the spikes.

Layout and blocking. ``g`` comes as the scatter's rows for a chunk of samples (``[N_out, n *
seg]``, time contiguous, each sample a segment of ``seg >= T + max lag`` steps; the same copy
serves ``dL/dcoefs``). Work goes sample by sample: the sample's ``dL/dx`` accumulates in a
scratch ``[N_in, T]`` (L2) row by row. The windows are the forward's
(:func:`input_windows`: every synapse's taps as one window of consecutive lags, zero-padded
to the lanes of :func:`~ctsnn.synapses.tap_scatter.window_lanes`: the triangle's two, the
float32 Gaussian's six at sigma 0.5; a window wider than 8 as one single-lane window per
non-zero lag), grouped by block of :data:`GX_TARGETS` targets: for each block every input row
takes its windows in that block, several per pass over the row (one load of ``g`` per
multiply-add, one load and store of the row per pass; a window's lanes are shifted loads of
one ``g`` row, so a pass sets up one row pointer per window rather than per tap). A block's
``g`` over one sample (``GX_TARGETS x seg`` values) stays in the L1 cache while all the input
rows read it, rather than every row streaming all of ``g`` from L2.
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

__all__ = ["GX_TARGETS", "check_rows", "grad_input", "grad_input_rows", "input_windows",
           "mask_input_grad"]

#: Targets per block: their ``g`` over one sample segment stays in the L1 cache while every
#: input row reads it.
GX_TARGETS = 32
_PAD = 32


@numba.njit(cache=True)
def input_windows(base, w):
    """The forward's windows (``base [N_out, N_in]``, ``w [N_out, N_in, W]``: the coefficient
    of lag ``base + n`` at ``w[..., n]``, ``W`` from
    :func:`~ctsnn.synapses.tap_scatter.window_lanes`) as the windows of ``dL/dx``, grouped by
    block of :data:`GX_TARGETS` targets: ``count [n_blocks * N_in + 1]`` (block ``m``'s windows
    of input ``j`` at ``count[m N_in + j]:count[m N_in + j + 1]``), each window's target, first
    lag and coefficients ``[n_windows, lanes]``. ``W <= 8``: one window per synapse with a
    non-zero coefficient, ``lanes = W``; wider: one single-lane window per non-zero lag (the
    taps at one lag summed, as the forward does)."""
    n_out, n_in, width = w.shape
    lanes = width if width <= 8 else 1
    n_blocks = (n_out + GX_TARGETS - 1) // GX_TARGETS
    count = np.zeros(n_blocks * n_in + 1, np.int64)
    for i in range(n_out):
        m0 = (i // GX_TARGETS) * n_in
        for j in range(n_in):
            nz = 0
            for n in range(width):
                nz += w[i, j, n] != 0.0
            count[m0 + j + 1] += nz if lanes == 1 else min(nz, 1)
    for m in range(n_blocks * n_in):
        count[m + 1] += count[m]
    ti = np.empty(count[-1], np.int64)
    tb = np.empty(count[-1], np.int64)
    tw = np.zeros((count[-1], lanes), w.dtype)
    cursor = count[:-1].copy()
    for i in range(n_out):
        m0 = (i // GX_TARGETS) * n_in
        for j in range(n_in):
            for n in range(width):
                if w[i, j, n] == 0.0:
                    continue
                q = cursor[m0 + j]
                ti[q] = i
                if lanes == 1:
                    cursor[m0 + j] = q + 1
                    tb[q] = base[i, j] + n
                    tw[q, 0] = w[i, j, n]
                else:  # the synapse's whole window, once
                    cursor[m0 + j] = q + 1
                    tb[q] = base[i, j]
                    tw[q] = w[i, j]
                    break
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
def grad_input_rows(c0, c1, r0, g, seg, count, ti, tb, tw, keep, gx):
    """Samples ``r0 + c`` for ``c0 <= c < c1`` of ``gx [T, B, N_in]`` from ``g``, the rows of
    the samples from ``r0`` on (sample ``r0 + c`` at ``c seg``; see the module docstring); rows
    with ``keep[b, j]`` false are zero."""
    n_steps, _, n_in = gx.shape
    n_blocks = (count.size - 1) // n_in
    lanes = tw.shape[1]
    reach = tb.max() + lanes - 1 if tb.size else 0  # the farthest lag any window reads
    width = -(-n_steps // _PAD) * _PAD
    buf = np.empty((n_in, width), gx.dtype)
    for c in range(c0, c1):
        b = r0 + c
        s0 = c * seg
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
def _grad_input_chunks(n_chunks, r0, g, seg, count, ti, tb, tw, keep, gx):
    for c in prange(n_chunks):
        c0, c1 = chunk_bounds(c, n_chunks, g.shape[1] // seg)
        grad_input_rows(c0, c1, r0, g, seg, count, ti, tb, tw, keep, gx)


def grad_input(g, seg, r0, windows, keep, gx, run) -> None:
    """Fill samples ``r0 .. r0 + n - 1`` of ``gx [T, B, N_in]`` (NumPy, may enter
    uninitialised) with ``dL/dx`` from ``g [N_out, n seg]``, the rows of ``dL/dout`` of those
    ``n`` samples, and ``windows`` from :func:`input_windows`; ``keep [B, N_in]`` bool (rows
    with ``False`` are zero). Every segment must hold the windows' reach (``seg >= T +`` the
    farthest lane, as the scatter's segments do). ``run`` is the scatter's serial-or-chunked
    dispatcher (``run(serial, chunked, n_rows, work, *args)``)."""
    n_steps = gx.shape[0]
    n = g.shape[1] // seg
    if g.shape[1] != n * seg or r0 < 0 or r0 + n > gx.shape[1]:
        raise ValueError(f"g must hold whole segments of {seg} steps of samples {r0}.. of the "
                         f"{gx.shape[1]}, got {g.shape[1]} columns")
    tb, tw = windows[2], windows[3]
    reach = int(tb.max(initial=0)) + tw.shape[1] - 1  # the farthest lane any window reads
    if reach > seg - n_steps:
        raise ValueError(f"segments of {seg} steps do not hold T = {n_steps} plus the windows' "
                         f"reach {reach}")
    work = tw.size * n * n_steps
    run(grad_input_rows, _grad_input_chunks, n, work, r0, g, seg, *windows, keep, gx)


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
