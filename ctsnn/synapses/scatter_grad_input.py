"""``dL/dx`` of the spike scatter (:class:`~ctsnn.synapses.spike_scatter.SpikeScatter`), the
transpose of its forward: for every input ``j``, sample ``b`` and step ``t``::

    dL/dx[t, b, j] = sum over taps k and targets i of coefs[k, i, j] g[t + lags[k, i, j], b, i]

with ``g = dL/dout``. Dense: the surrogate gradient reaches every input entry, so its cost is
``N_in x (non-zero taps per input) x B x T`` multiply-adds whatever the spikes.

Layout and blocking. ``g`` comes as the scatter's rows for a chunk of samples (``[N_out, n *
seg + GX_SLACK]``, time contiguous, each sample a segment of ``seg >= T + max lag`` steps;
the same copy serves ``dL/dcoefs``). Work goes sample by sample: the sample's ``dL/dx``
accumulates in a scratch ``[N_in, T]`` (L2) row by row. The windows are the forward's
(:func:`input_windows`: every synapse's taps as one window of consecutive lags, zero-padded
to the lanes of :func:`~ctsnn.synapses.tap_scatter.window_lanes`: the triangle's two, the
float32 Gaussian's six at sigma 0.5; a window wider than 8 as one single-lane window per
non-zero lag), grouped by block of :data:`GX_TARGETS` targets: for each block every input row
takes all its windows in that block in one call of
:func:`~ctsnn.synapses.simd_lanes.row_windows`, the row (``T`` rounded up to 64-byte vectors,
as blocks of at most 8 vectors) held in vector registers meanwhile (loaded and stored once),
a window's lanes built by vector shuffles of consecutive loads of its ``g`` row (a load per
lane, unaligned, split across cache lines and made the loads the bound). A block's ``g`` over
one sample (``GX_TARGETS x seg`` values) stays in the L1 cache while all the input rows read
it, rather than every row streaming all of ``g`` from L2. Every value sums its windows
(targets ascending) and their lanes in order onto the row: the same FMA chain as the earlier
per-pass loops, bit for bit.
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
from .simd_lanes import ROW_VECTORS, row_vector_width, row_windows

__all__ = ["GX_SLACK", "GX_TARGETS", "check_rows", "grad_input", "grad_input_rows", "input_windows",
           "mask_input_grad"]

#: Targets per block: their ``g`` over one sample segment stays in the L1 cache while every
#: input row reads it.
GX_TARGETS = 32
#: Columns after the last segment of ``g`` with which :func:`grad_input_rows` runs every
#: position in whole vectors (the lanes of a vector past ``T`` and the one vector loaded past
#: a block read up to ``2 x vector width - 1`` values beyond the segment; float32 and
#: float64).
GX_SLACK = 32


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


@numba.njit(inline="always")
def _blocks(buf, rpos, gflat, gofs, rowlen, n_vec, vw, ti, tb, tw, lanes, u, e):
    """``n_vec`` vectors of ``vw`` positions of a row from ``rpos`` on (``gofs``: the first
    position's column in ``g``): blocks of at most :data:`~ctsnn.synapses.simd_lanes.
    ROW_VECTORS` vectors of nearly equal size, each in registers over all the windows."""
    n_blk = -(-n_vec // ROW_VECTORS)
    for k in range(n_blk):
        v0 = k * n_vec // n_blk
        v1 = (k + 1) * n_vec // n_blk
        row_windows(v1 - v0, lanes, buf, rpos + v0 * vw, gflat, gofs + v0 * vw, rowlen, ti, tb,
                    tw, u, e)


@numba.njit(cache=True, fastmath=True)
def grad_input_rows(c0, c1, r0, g, seg, count, ti, tb, tw, keep, gx):
    """Samples ``r0 + c`` for ``c0 <= c < c1`` of ``gx [T, B, N_in]`` from ``g``, the rows of
    the samples from ``r0`` on (sample ``r0 + c`` at ``c seg``; see the module docstring); rows
    with ``keep[b, j]`` false are zero. Positions run as whole vectors
    (:func:`~ctsnn.synapses.simd_lanes.row_vector_width`, up to ``T`` rounded up) where every
    lane they read lies inside ``g`` (always, when ``g`` has :data:`GX_SLACK` columns after its
    segments), the rest one by one in the same order."""
    n_steps, _, n_in = gx.shape
    n_blocks = (count.size - 1) // n_in
    lanes = tw.shape[1]
    reach = tb.max() + lanes - 1 if tb.size else 0  # the farthest lag any window reads
    vw = row_vector_width(gx.itemsize)
    n_vec = -(-n_steps // vw)
    width = n_vec * vw
    buf = np.empty(n_in * width, gx.dtype)
    gflat = g.reshape(-1)
    twf = tw.reshape(-1)
    rowlen = g.shape[1]
    for c in range(c0, c1):
        b = r0 + c
        s0 = c * seg
        # whole vectors while the last target row's reads (to one vector past a block's
        # last lane) stay inside g
        nv = max(0, min(n_vec, (rowlen - s0 - reach + lanes - 1) // vw - 1))
        buf[:] = 0.0
        for m in range(n_blocks):
            for j in range(n_in):
                if not keep[b, j]:
                    continue
                u, e = count[m * n_in + j], count[m * n_in + j + 1]
                if u == e:
                    continue
                _blocks(buf, j * width, gflat, s0, rowlen, nv, vw, ti, tb, twf, lanes, u, e)
                if nv * vw >= n_steps:
                    continue
                for q in range(u, e):  # positions left over: window by window, lane by lane
                    r = g[ti[q], s0 + tb[q]:]
                    for n in range(lanes):
                        cf = tw[q, n]
                        for p in range(nv * vw, n_steps):
                            buf[j * width + p] += cf * r[p + n]
        for t0 in range(0, n_steps, 16):
            t1 = min(n_steps, t0 + 16)
            for j0 in range(0, n_in, 16):
                j1 = min(n_in, j0 + 16)
                for t in range(t0, t1):
                    for j in range(j0, j1):
                        gx[t, b, j] = buf[j * width + t] if keep[b, j] else 0.0


@numba.njit(cache=True)
def _grad_input_span(c0, c1, n, r0, g, seg, count, ti, tb, tw, keep, gx):
    grad_input_rows(c0, c1, r0, g, seg, count, ti, tb, tw, keep, gx)


@numba.njit(cache=True, parallel=True)
def _grad_input_chunks(n_chunks, n, r0, g, seg, count, ti, tb, tw, keep, gx):
    for c in prange(n_chunks):
        c0, c1 = chunk_bounds(c, n_chunks, n)
        grad_input_rows(c0, c1, r0, g, seg, count, ti, tb, tw, keep, gx)


def grad_input(g, seg, r0, n, windows, keep, gx, run) -> None:
    """Fill samples ``r0 .. r0 + n - 1`` of ``gx [T, B, N_in]`` (NumPy, may enter
    uninitialised) with ``dL/dx`` from ``g [N_out, n seg + extra]``, the rows of ``dL/dout``
    of those ``n`` samples (``extra >= 0`` columns after the last segment: with
    :data:`GX_SLACK` of them, finite, every position runs in whole vectors), and ``windows``
    from :func:`input_windows`; ``keep [B, N_in]`` bool (rows with ``False`` are zero). Every
    segment must hold the windows' reach (``seg >= T +`` the farthest lane, as the scatter's
    segments do). ``run`` is the scatter's serial-or-chunked dispatcher (``run(serial,
    chunked, n_rows, work, *args)``)."""
    n_steps = gx.shape[0]
    if n < 0 or g.shape[1] < n * seg or r0 < 0 or r0 + n > gx.shape[1]:
        raise ValueError(f"g must hold {n} whole segments of {seg} steps of samples {r0}.. of "
                         f"the {gx.shape[1]}, got {g.shape[1]} columns")
    tb, tw = windows[2], windows[3]
    reach = int(tb.max(initial=0)) + tw.shape[1] - 1  # the farthest lane any window reads
    if reach > seg - n_steps:
        raise ValueError(f"segments of {seg} steps do not hold T = {n_steps} plus the windows' "
                         f"reach {reach}")
    work = tw.size * n * n_steps
    run(_grad_input_span, _grad_input_chunks, n, work, n, r0, g, seg, *windows, keep, gx)


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
