"""``dL/dx`` of the spike scatter (:class:`~ctsnn.synapses.spike_scatter.SpikeScatter`), the
transpose of its forward: for every input ``j``, sample ``b`` and step ``t``::

    dL/dx[t, b, j] = sum over taps k and targets i of coefs[k, i, j] g[t + lags[k, i, j], b, i]

with ``g = dL/dout``. Dense: the surrogate gradient reaches every input entry, so its cost is
``N_in x (non-zero taps per input) x B x T`` multiply-adds whatever the spikes.

Layout and blocking. ``g`` comes as the scatter's rows (``[N_out, B * seg]``, time contiguous,
each sample a segment of ``seg >= T + max lag`` steps; the same copy serves ``dL/dcoefs``).
Work goes sample by sample: the sample's ``dL/dx`` accumulates in a scratch ``[N_in, T]``
(L2) row by row; the (target, tap) pairs are grouped by block of :data:`GX_TARGETS` targets,
and for each block every input row takes the pairs it has in that block, several pairs per
pass over the row (one load of ``g`` per multiply-add, one load and store of the row per
pass). A block's ``g`` over one sample (``GX_TARGETS x seg`` values) stays in the L1 cache
while all the input rows read it, rather than every row streaming all of ``g`` from L2.
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

__all__ = ["GX_TARGETS", "check_rows", "grad_input", "input_pairs", "mask_input_grad"]

#: Targets per block: their ``g`` over one sample segment stays in the L1 cache while every
#: input row reads it.
GX_TARGETS = 32
_PAD = 32


@numba.njit(cache=True)
def input_pairs(lags, coefs):
    """The non-zero (target, tap) pairs of every input, grouped by block of
    :data:`GX_TARGETS` targets: ``count [n_blocks * N_in + 1]`` (block ``m``'s pairs of input
    ``j`` at ``count[m N_in + j]:count[m N_in + j + 1]``), their targets, lags and
    coefficients (``lags, coefs [n_taps, N_out, N_in]``)."""
    n_taps, n_out, n_in = lags.shape
    n_blocks = (n_out + GX_TARGETS - 1) // GX_TARGETS
    count = np.zeros(n_blocks * n_in + 1, np.int64)
    for k in range(n_taps):
        for i in range(n_out):
            for j in range(n_in):
                if coefs[k, i, j] != 0.0:
                    count[(i // GX_TARGETS) * n_in + j + 1] += 1
    for m in range(n_blocks * n_in):
        count[m + 1] += count[m]
    ti = np.empty(count[-1], np.int64)
    tl = np.empty(count[-1], np.int64)
    tc = np.empty(count[-1], coefs.dtype)
    cursor = count[:-1].copy()
    for i in range(n_out):
        m0 = (i // GX_TARGETS) * n_in
        for j in range(n_in):
            for k in range(n_taps):
                c = coefs[k, i, j]
                if c != 0.0:
                    q = cursor[m0 + j]
                    ti[q] = i
                    tl[q] = lags[k, i, j]
                    tc[q] = c
                    cursor[m0 + j] = q + 1
    return count, ti, tl, tc


@numba.njit(cache=True, fastmath=True)
def _accumulate(row, g, s0, u, e, ti, tl, tc):
    """``row[p] += sum over the pairs u <= q < e of tc[q] g[ti[q], s0 + tl[q] + p]``, eight
    (then four, one) pairs per pass over the row (contiguous and vectorised)."""
    w = row.size
    while u + 8 <= e:
        c0, c1, c2, c3 = tc[u], tc[u + 1], tc[u + 2], tc[u + 3]
        c4, c5, c6, c7 = tc[u + 4], tc[u + 5], tc[u + 6], tc[u + 7]
        r0 = g[ti[u], s0 + tl[u]:]
        r1 = g[ti[u + 1], s0 + tl[u + 1]:]
        r2 = g[ti[u + 2], s0 + tl[u + 2]:]
        r3 = g[ti[u + 3], s0 + tl[u + 3]:]
        r4 = g[ti[u + 4], s0 + tl[u + 4]:]
        r5 = g[ti[u + 5], s0 + tl[u + 5]:]
        r6 = g[ti[u + 6], s0 + tl[u + 6]:]
        r7 = g[ti[u + 7], s0 + tl[u + 7]:]
        for p in range(w):
            row[p] += (c0 * r0[p] + c1 * r1[p] + c2 * r2[p] + c3 * r3[p]
                       + c4 * r4[p] + c5 * r5[p] + c6 * r6[p] + c7 * r7[p])
        u += 8
    while u + 4 <= e:
        c0, c1, c2, c3 = tc[u], tc[u + 1], tc[u + 2], tc[u + 3]
        r0 = g[ti[u], s0 + tl[u]:]
        r1 = g[ti[u + 1], s0 + tl[u + 1]:]
        r2 = g[ti[u + 2], s0 + tl[u + 2]:]
        r3 = g[ti[u + 3], s0 + tl[u + 3]:]
        for p in range(w):
            row[p] += c0 * r0[p] + c1 * r1[p] + c2 * r2[p] + c3 * r3[p]
        u += 4
    while u < e:
        c0 = tc[u]
        r0 = g[ti[u], s0 + tl[u]:]
        for p in range(w):
            row[p] += c0 * r0[p]
        u += 1


@numba.njit(cache=True, fastmath=True)
def _grad_input(b0, b1, g, seg, count, ti, tl, tc, keep, gx):
    """Samples ``b0 <= b < b1`` of ``gx [T, B, N_in]`` (see the module docstring); rows with
    ``keep[b, j]`` false are zero."""
    n_steps, _, n_in = gx.shape
    n_blocks = (count.size - 1) // n_in
    width = -(-n_steps // _PAD) * _PAD
    buf = np.empty((n_in, width), gx.dtype)
    for b in range(b0, b1):
        s0 = b * seg
        w = width if s0 + seg - n_steps + width <= g.shape[1] else n_steps
        for j in range(n_in):
            buf[j] = 0.0
        for m in range(n_blocks):
            for j in range(n_in):
                if keep[b, j]:
                    _accumulate(buf[j, :w], g, s0, count[m * n_in + j],
                                count[m * n_in + j + 1], ti, tl, tc)
        for t0 in range(0, n_steps, 16):
            t1 = min(n_steps, t0 + 16)
            for j0 in range(0, n_in, 16):
                j1 = min(n_in, j0 + 16)
                for t in range(t0, t1):
                    for j in range(j0, j1):
                        gx[t, b, j] = buf[j, t] if keep[b, j] else 0.0


@numba.njit(cache=True, parallel=True)
def _grad_input_chunks(n_chunks, g, seg, count, ti, tl, tc, keep, gx):
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, gx.shape[1])
        _grad_input(b0, b1, g, seg, count, ti, tl, tc, keep, gx)


def grad_input(g, seg, lags, coefs, keep, gx, run) -> None:
    """Fill ``gx [T, B, N_in]`` (NumPy, may enter uninitialised) with ``dL/dx`` from the rows
    ``g [N_out, B * seg]`` of ``dL/dout`` and the taps ``lags, coefs [n_taps, N_out, N_in]``
    (NumPy); ``keep [B, N_in]`` bool (rows with ``False`` are zero). ``run`` is the scatter's
    serial-or-chunked dispatcher (``run(serial, chunked, n_rows, work, *args)``)."""
    pairs = input_pairs(lags, coefs)
    n_steps, batch, _ = gx.shape
    work = pairs[1].size * batch * n_steps
    run(_grad_input, _grad_input_chunks, batch, work, g, seg, *pairs, keep, gx)


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
