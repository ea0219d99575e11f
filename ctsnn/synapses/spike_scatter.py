"""Spike-sparse delayed synapses on the grid: each input spike scatters its taps into delayed
output slots (numba), so the forward cost follows spikes x fan-out x taps, not ``T x K``.

Same operation as :func:`ctsnn.synapses.conv.tap_conv` (the pure-PyTorch reference, one dense
matrix product per distinct lag) for a sparse kernel ``taps`` (``lags, coefs [n_taps, N_out,
N_in]``, weights included)::

    out[t + lags[k, i, j], b, i] += coefs[k, i, j] x[t, b, j]

and as :func:`ctsnn.synapses.conv.dense_conv` for a dense kernel ``[N_out, N_in, K]`` (lag
``n`` = index ``n``, every synapse the whole window: :func:`window_scatter`).

Layout: rows per unit with batch and time flattened, **time contiguous** (``x -> [N_in, B *
T]``, ``out -> [N_out, B * T_out]``), so a lag of ``L`` steps is a shift of ``L`` in a row and
the taps of one spike, all within ``K`` steps, touch one or two cache lines of a target's row
(contiguous for the dense window: vectorised).

* events: the non-zero entries of ``x [T, B, N_in]`` per input unit, read in one compiled pass
  over ``x`` (no transposed copy);
* forward: per target row (it stays in cache), every spike of every input adds its taps;
* backward, the transpose: ``dL/dx[j]`` is a sum of shifted rows of ``dL/dout`` (dense: the
  surrogate gradient reaches every input entry; contiguous, vectorised loops per sample) —
  computed only when ``x`` needs a gradient (never for a network's data input);
  ``dL/dcoefs[k, i, j]`` a sum over the spikes of ``j`` only, every tap of a spike in one pass
  (independent accumulators). Gradients w.r.t. weights and delays follow from ``dL/dcoefs``
  through the kernel's own interpolation weights in PyTorch autograd, exactly as on the
  reference path.

:func:`scatter_pays` says when :class:`~ctsnn.synapses.Dense` takes the tap path (CPU, kernels
on, input density at most :data:`MAX_DENSITY`), :func:`window_pays` when a dense (wide) kernel
takes :func:`window_scatter` (density at most :data:`MAX_WINDOW_DENSITY`; its ``dL/dx`` stays a
BLAS convolution).

Threads: the forward, ``dL/dcoefs``, ``dL/dx`` and both window kernels cut their output rows
(targets; input rows for ``dL/dx``; target pairs for the window) into :data:`_CHUNKS` fixed
chunks run by numba ``prange`` on :func:`~ctsnn.compiled.kernel_threads` threads when a call
does at least :data:`_PARALLEL_WORK` multiply-adds (one thread below). Every chunk owns the rows
it writes and computes them exactly as the serial form does, so results are bit-identical for
any thread count.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import prange
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..compiled import kernel_threads, kernels_enabled, numba_threads
from ..engine.compiled.schedule import chunk_bounds
from .kernels import Taps

__all__ = ["MAX_DENSITY", "MAX_WINDOW_DENSITY", "SpikeScatter", "WindowScatter",
           "scatter_pays", "spike_scatter", "window_pays", "window_scatter"]

#: Largest fraction of non-zero input entries for which the scatter path is chosen (measured
#: break-even against the dense-lag path, see docs/kernels-grid.md).
MAX_DENSITY = 0.25
#: Same for a dense window kernel (every lag of ``K``) against ``conv1d`` (docs/kernels-grid.md,
#: "W1 profile and fused paths").
MAX_WINDOW_DENSITY = 0.10
#: Fixed number of row chunks of a parallel call (independent of the thread count, so each
#: output row is computed by the same code whatever runs it).
_CHUNKS = 32
#: Multiply-adds from which a kernel call runs on :func:`~ctsnn.compiled.kernel_threads`
#: threads (below: one thread, no pool wake-up).
_PARALLEL_WORK = 200_000


@numba.njit(cache=True)
def _events(x, seg):
    """Non-zero entries of ``x [T, B, N]`` per unit ``j``: ``offsets [N + 1]`` (unit ``j``'s
    entries at ``offsets[j]:offsets[j + 1]``), each entry's row position ``b * seg + t`` and
    its value; ascending per unit."""
    n_steps, batch, n_units = x.shape
    counts = np.zeros(n_units, np.int64)
    for t in range(n_steps):
        for b in range(batch):
            for j in range(n_units):
                if x[t, b, j] != 0:
                    counts[j] += 1
    offsets = np.empty(n_units + 1, np.int64)
    offsets[0] = 0
    for j in range(n_units):
        offsets[j + 1] = offsets[j] + counts[j]
    opos = np.empty(offsets[n_units], np.int64)
    val = np.empty(offsets[n_units], x.dtype)
    cursor = offsets[:-1].copy()
    for b in range(batch):
        for t in range(n_steps):
            for j in range(n_units):
                v = x[t, b, j]
                if v != 0:
                    q = cursor[j]
                    opos[q] = b * seg + t
                    val[q] = v
                    cursor[j] = q + 1
    return offsets, opos, val


@numba.njit(cache=True)
def _consecutive(tl, m):
    """Whether the first ``m`` lags of ``tl`` are ``tl[0], tl[0] + 1, ...``."""
    for k in range(1, m):
        if tl[k] != tl[0] + k:
            return False
    return True


@numba.njit(cache=True, fastmath=True)
def _forward(i0, i1, offsets, opos, val, lags, coefs, out):
    """Targets ``i0 <= i < i1``: ``out[i, opos + L] += c val`` for every spike of every input
    and every non-zero tap (consecutive lags, e.g. a truncated Gaussian: one contiguous,
    vectorised update)."""
    n_taps, n_out, n_in = lags.shape
    tl = np.empty(n_taps, np.int64)
    tc = np.empty(n_taps, coefs.dtype)
    for i in range(i0, i1):
        row = out[i]
        for j in range(n_in):
            a = offsets[j]
            e = offsets[j + 1]
            if a == e:
                continue
            m = 0
            for k in range(n_taps):
                c = coefs[k, i, j]
                if c != 0.0:
                    tl[m] = lags[k, i, j]
                    tc[m] = c
                    m += 1
            if m == 1:  # one tap (rounded delays): a tight loop
                c, lag = tc[0], tl[0]
                for q in range(a, e):
                    row[opos[q] + lag] += c * val[q]
                continue
            if m > 1 and _consecutive(tl, m):
                cs = tc[:m]
                for q in range(a, e):
                    v = val[q]
                    dst = row[opos[q] + tl[0]:opos[q] + tl[0] + m]
                    for k in range(m):
                        dst[k] += cs[k] * v
                continue
            for q in range(a, e):
                p = opos[q]
                v = val[q]
                for k in range(m):
                    row[p + tl[k]] += tc[k] * v


@numba.njit(cache=True, fastmath=True)
def _grad_coefs(i0, i1, offsets, opos, val, lags, g, gc):
    """Targets ``i0 <= i < i1``: ``gc[k, i, j] = sum over the spikes q of j of val[q] g[i,
    opos[q] + lags[k, i, j]]`` (every tap of a spike in one pass: scalar accumulators for one
    or two taps, a contiguous slice for consecutive lags)."""
    n_taps, n_out, n_in = lags.shape
    tl = np.empty(n_taps, np.int64)
    acc = np.empty(n_taps, g.dtype)
    for i in range(i0, i1):
        grow = g[i]
        for j in range(n_in):
            a = offsets[j]
            e = offsets[j + 1]
            if n_taps == 1:
                s0 = g.dtype.type(0.0)
                lag = lags[0, i, j]
                for q in range(a, e):
                    s0 += val[q] * grow[opos[q] + lag]
                gc[0, i, j] = s0
                continue
            if n_taps == 2:
                s0 = g.dtype.type(0.0)
                s1 = g.dtype.type(0.0)
                l0 = lags[0, i, j]
                l1 = lags[1, i, j]
                for q in range(a, e):
                    p = opos[q]
                    v = val[q]
                    s0 += v * grow[p + l0]
                    s1 += v * grow[p + l1]
                gc[0, i, j] = s0
                gc[1, i, j] = s1
                continue
            for k in range(n_taps):
                tl[k] = lags[k, i, j]
                acc[k] = 0.0
            if _consecutive(tl, n_taps):
                for q in range(a, e):
                    v = val[q]
                    src = grow[opos[q] + tl[0]:opos[q] + tl[0] + n_taps]
                    for k in range(n_taps):
                        acc[k] += v * src[k]
            else:
                for q in range(a, e):
                    p = opos[q]
                    v = val[q]
                    for k in range(n_taps):
                        acc[k] += v * grow[p + tl[k]]
            for k in range(n_taps):
                gc[k, i, j] = acc[k]


#: Positions per block of :func:`_grad_input`: ``dL/dout`` of every target over one block
#: (``N_out x _BLOCK`` values) stays in the L2 cache while every input row uses it.
_BLOCK = 1024


@numba.njit(cache=True)
def _input_pairs(size, lags, coefs):
    """The non-zero (target, tap) pairs of every input row for :func:`_grad_input`: ``count
    [N_in + 1]`` (row ``j``'s pairs at ``count[j]:count[j + 1]``), their targets, lags and
    coefficients, and ``n``, the positions a row needs (``size`` minus the largest lag)."""
    n_taps, n_out, n_in = lags.shape
    n = size
    count = np.zeros(n_in + 1, np.int64)
    for k in range(n_taps):
        for i in range(n_out):
            for j in range(n_in):
                n = min(n, size - lags[k, i, j])
                if coefs[k, i, j] != 0.0:
                    count[j + 1] += 1
    for j in range(n_in):
        count[j + 1] += count[j]
    ti = np.empty(count[n_in], np.int64)
    tl = np.empty(count[n_in], np.int64)
    tc = np.empty(count[n_in], coefs.dtype)
    for j in range(n_in):
        m = count[j]
        for i in range(n_out):
            for k in range(n_taps):
                c = coefs[k, i, j]
                if c != 0.0:
                    ti[m] = i
                    tl[m] = lags[k, i, j]
                    tc[m] = c
                    m += 1
    return count, ti, tl, tc, n


@numba.njit(cache=True, fastmath=True)
def _grad_input(j0, j1, g, count, ti, tl, tc, n, gx):
    """Input rows ``j0 <= j < j1``: ``gx[j, p] = sum_{i, k} coefs[k, i, j] g[i, p + lags[k, i,
    j]]`` (dense rows; the pairs from :func:`_input_pairs`).

    Per input row, the non-zero (target, tap) pairs are taken four at a time in one
    contiguous, vectorised pass (``fastmath`` lets it use fused multiply-adds), block by block
    of positions so that the block of ``g`` stays in cache across the input rows. The rows
    hold every sample in a segment of ``seg >= T + max lag`` steps, so positions past
    ``size - max lag`` (the last sample's slack) are never needed.
    """
    for p0 in range(0, n, _BLOCK):
        w = min(_BLOCK, n - p0)
        for j in range(j0, j1):
            row = gx[j, p0:p0 + w]
            u = count[j]
            e = count[j + 1]
            while u + 4 <= e:
                c0, c1, c2, c3 = tc[u], tc[u + 1], tc[u + 2], tc[u + 3]
                a0, a1, a2, a3 = p0 + tl[u], p0 + tl[u + 1], p0 + tl[u + 2], p0 + tl[u + 3]
                s0 = g[ti[u], a0:a0 + w]
                s1 = g[ti[u + 1], a1:a1 + w]
                s2 = g[ti[u + 2], a2:a2 + w]
                s3 = g[ti[u + 3], a3:a3 + w]
                for p in range(w):
                    row[p] += c0 * s0[p] + c1 * s1[p] + c2 * s2[p] + c3 * s3[p]
                u += 4
            while u < e:
                c0 = tc[u]
                a0 = p0 + tl[u]
                s0 = g[ti[u], a0:a0 + w]
                for p in range(w):
                    row[p] += c0 * s0[p]
                u += 1


@numba.njit(cache=True, fastmath=True)
def _forward_window(h0, h1, offsets, opos, val, kernel, out):
    """Target pairs ``h0 <= h < h1`` (targets ``2h, 2h + 1``; the last, odd one alone):
    ``out[i, opos + n] += kernel[i, j, n] val`` for every spike and lag ``n`` (contiguous in
    ``n``: vectorised; two targets per pass over the spikes)."""
    n_out, n_in, k = kernel.shape
    for i in range(2 * h0, min(2 * h1, n_out - 1), 2):
        row0 = out[i]
        row1 = out[i + 1]
        for j in range(n_in):
            w0 = kernel[i, j]
            w1 = kernel[i + 1, j]
            for q in range(offsets[j], offsets[j + 1]):
                v = val[q]
                d0 = row0[opos[q]:opos[q] + k]
                d1 = row1[opos[q]:opos[q] + k]
                for n in range(k):
                    d0[n] += v * w0[n]
                    d1[n] += v * w1[n]
    if n_out % 2 and h1 == (n_out + 1) // 2:
        row = out[n_out - 1]
        for j in range(n_in):
            w = kernel[n_out - 1, j]
            for q in range(offsets[j], offsets[j + 1]):
                v = val[q]
                dst = row[opos[q]:opos[q] + k]
                for n in range(k):
                    dst[n] += v * w[n]


@numba.njit(cache=True, fastmath=True)
def _grad_window(h0, h1, offsets, opos, val, g, gk):
    """Target pairs ``h0 <= h < h1`` (targets ``2h, 2h + 1``): ``gk[i, j, n] = sum over the
    spikes q of j of val[q] g[i, opos[q] + n]`` (two targets per pass over the spikes)."""
    n_out, n_in, k = gk.shape
    acc0 = np.empty(k, g.dtype)
    acc1 = np.empty(k, g.dtype)
    for i in range(2 * h0, min(2 * h1, n_out), 2):
        i1 = min(i + 1, n_out - 1)
        g0 = g[i]
        g1 = g[i1]
        for j in range(n_in):
            acc0[:] = 0.0
            acc1[:] = 0.0
            for q in range(offsets[j], offsets[j + 1]):
                v = val[q]
                s0 = g0[opos[q]:opos[q] + k]
                s1 = g1[opos[q]:opos[q] + k]
                for n in range(k):
                    acc0[n] += v * s0[n]
                    acc1[n] += v * s1[n]
            gk[i, j] = acc0
            gk[i1, j] = acc1


@numba.njit(cache=True, parallel=True)
def _forward_chunks(n_chunks, offsets, opos, val, lags, coefs, out):
    for c in prange(n_chunks):
        i0, i1 = chunk_bounds(c, n_chunks, lags.shape[1])
        _forward(i0, i1, offsets, opos, val, lags, coefs, out)


@numba.njit(cache=True, parallel=True)
def _grad_coefs_chunks(n_chunks, offsets, opos, val, lags, g, gc):
    for c in prange(n_chunks):
        i0, i1 = chunk_bounds(c, n_chunks, lags.shape[1])
        _grad_coefs(i0, i1, offsets, opos, val, lags, g, gc)


@numba.njit(cache=True, parallel=True)
def _grad_input_chunks(n_chunks, g, count, ti, tl, tc, n, gx):
    for c in prange(n_chunks):
        j0, j1 = chunk_bounds(c, n_chunks, gx.shape[0])
        _grad_input(j0, j1, g, count, ti, tl, tc, n, gx)


@numba.njit(cache=True, parallel=True)
def _forward_window_chunks(n_chunks, offsets, opos, val, kernel, out):
    for c in prange(n_chunks):
        h0, h1 = chunk_bounds(c, n_chunks, (kernel.shape[0] + 1) // 2)
        _forward_window(h0, h1, offsets, opos, val, kernel, out)


@numba.njit(cache=True, parallel=True)
def _grad_window_chunks(n_chunks, offsets, opos, val, g, gk):
    for c in prange(n_chunks):
        h0, h1 = chunk_bounds(c, n_chunks, (gk.shape[0] + 1) // 2)
        _grad_window(h0, h1, offsets, opos, val, g, gk)


def _run(serial, chunked, n_rows: int, work: int, *args) -> None:
    """``serial(0, n_rows, *args)``, or ``chunked`` over :data:`_CHUNKS` fixed row chunks on
    :func:`~ctsnn.compiled.kernel_threads` threads when ``work`` (multiply-adds) reaches
    :data:`_PARALLEL_WORK` (the same result either way: each chunk owns its rows)."""
    threads = kernel_threads() if work >= _PARALLEL_WORK and n_rows > 1 else 1
    if threads == 1:
        serial(0, n_rows, *args)
        return
    with numba_threads(threads):
        chunked(min(_CHUNKS, n_rows), *args)


def _events_of(x: Tensor, seg: int) -> tuple[np.ndarray, ...]:
    """Events of ``x [T, B, N]`` (see :func:`_events`): ``offsets, opos, val`` arrays."""
    return _events(x.detach().contiguous().numpy(), seg)


def _rows(t: Tensor, seg: int) -> Tensor:
    """``[T', B, N] -> [N, B * seg]`` (time contiguous, each sample's segment of ``seg >= T'``
    steps zero after ``T'``)."""
    n_steps, batch, n = t.shape
    rows = t.new_empty((n, batch, seg))
    rows[:, :, :n_steps] = t.permute(2, 1, 0)
    rows[:, :, n_steps:] = 0
    return rows.view(n, batch * seg)


def _unrows(rows: Tensor, n_steps: int, batch: int) -> Tensor:
    """``[N, B * seg] -> [T, B, N]`` contiguous (the first ``n_steps`` of every segment)."""
    return rows.view(rows.shape[0], batch, -1)[:, :, :n_steps].permute(2, 1, 0).contiguous()


class SpikeScatter(torch.autograd.Function):
    """``(x [T, B, N_in], lags, coefs [n_taps, N_out, N_in], pad_right) -> [T + pad, B, N_out]``.

    Differentiable w.r.t. ``x`` and ``coefs`` (``lags`` are integers).
    """

    @staticmethod
    def forward(ctx, x: Tensor, lags: Tensor, coefs: Tensor,  # type: ignore[override]
                pad_right: int) -> Tensor:
        n_steps, batch, _ = x.shape
        lags = lags.contiguous()
        coefs_c = coefs.detach().contiguous()
        # every sample's segment holds its latest arrival: no bound checks in the kernels
        seg = n_steps + max(pad_right, int(lags.max()) if lags.numel() else 0)
        events = _events_of(x, seg)
        out = x.new_zeros((coefs.shape[1], batch * seg))
        n_taps, n_out = lags.shape[0], coefs.shape[1]
        _run(_forward, _forward_chunks, n_out, events[1].size * n_out * n_taps, *events,
             lags.numpy(), coefs_c.numpy(), out.numpy())
        ctx.save_for_backward(lags, coefs_c)
        ctx.events = events
        ctx.shape = (n_steps, batch, x.shape[2], seg)
        return _unrows(out, n_steps + pad_right, batch)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        lags, coefs = ctx.saved_tensors
        n_steps, batch, n_in, seg = ctx.shape
        g = _rows(grad.to(coefs.dtype), seg)
        need_x, _, need_c, _ = ctx.needs_input_grad
        gx = gc = None
        if need_x:
            rows = g.new_zeros((n_in, batch * seg))
            pairs = _input_pairs(batch * seg, lags.numpy(), coefs.numpy())
            _run(_grad_input, _grad_input_chunks, n_in, pairs[1].size * batch * seg,
                 g.numpy(), *pairs, rows.numpy())
            gx = _unrows(rows, n_steps, batch)
        if need_c:
            gc = torch.empty_like(coefs)
            _run(_grad_coefs, _grad_coefs_chunks, lags.shape[1], ctx.events[1].size * lags.shape[0]
                 * lags.shape[1], *ctx.events, lags.numpy(), g.numpy(), gc.numpy())
        return gx, None, gc, None


class WindowScatter(torch.autograd.Function):
    """``(x [T, B, N_in], kernel [N_out, N_in, K], pad_right) -> [T + pad, B, N_out]``: the
    dense-window convolution of :func:`~ctsnn.synapses.conv.dense_conv` with the forward and
    ``dL/dkernel`` scattered from the spikes of ``x``; ``dL/dx`` (dense) by ``conv1d``."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor,  # type: ignore[override]
                pad_right: int) -> Tensor:
        n_steps, batch, _ = x.shape
        kernel_c = kernel.detach().contiguous()
        seg = n_steps + max(pad_right, kernel.shape[2] - 1)
        events = _events_of(x, seg)
        out = x.new_zeros((kernel.shape[0], batch * seg))
        n_out, k = kernel.shape[0], kernel.shape[2]
        _run(_forward_window, _forward_window_chunks, (n_out + 1) // 2,
             events[1].size * n_out * k, *events, kernel_c.numpy(), out.numpy())
        ctx.save_for_backward(kernel_c)
        ctx.events = events
        ctx.shape = (n_steps, batch, seg)
        return _unrows(out, n_steps + pad_right, batch)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (kernel,) = ctx.saved_tensors
        n_steps, batch, seg = ctx.shape
        n_out_steps, k = grad.shape[0], kernel.shape[2]
        grad = grad.to(kernel.dtype)
        need_x, need_k, _ = ctx.needs_input_grad
        gx = gk = None
        if need_x:
            # gx[t, b, j] = sum_{i, n} kernel[i, j, n] grad[t + n, b, i] (a cross-correlation)
            gb = F.pad(grad.permute(1, 2, 0), (0, max(0, n_steps + k - 1 - n_out_steps)))
            gx = F.conv1d(gb, kernel.transpose(0, 1))[:, :, :n_steps].permute(2, 0, 1)
        if need_k:
            gk = torch.empty_like(kernel)
            _run(_grad_window, _grad_window_chunks, (kernel.shape[0] + 1) // 2,
                 ctx.events[1].size * kernel.shape[0] * k, *ctx.events,
                 _rows(grad, seg).numpy(), gk.numpy())
        return gx, gk, None


def spike_scatter(x: Tensor, taps: Taps, pad_right: int = 0) -> Tensor:
    """Causal convolution of ``x [T, B, N_in]`` with a sparse kernel by spike scatter.

    Args:
        x: input raster (spikes or sparse values), CPU.
        taps: ``lags, coefs [n_taps, N_out, N_in]`` (weights included; lags ``>= 0``).
        pad_right: zero steps appended (late spikes still delivered).

    Returns:
        ``[T + pad_right, B, N_out]``, equal to :func:`ctsnn.synapses.conv.tap_conv` (to
        rounding), differentiable w.r.t. ``x`` and ``taps.coefs``.
    """
    if x.ndim != 3:
        raise ValueError(f"x must be a raster [T, B, N_in], got shape {list(x.shape)}")
    lags, coefs = taps
    if lags.shape != coefs.shape or lags.ndim != 3 or lags.shape[2] != x.shape[2]:
        raise ValueError(f"taps must be lags/coefs [n_taps, N_out, N_in = {x.shape[2]}], got "
                         f"{list(lags.shape)} and {list(coefs.shape)}")
    if lags.numel() and int(lags.min()) < 0:
        raise ValueError(f"tap lags must be >= 0, got {int(lags.min())}")
    if coefs.dtype != x.dtype:
        x = x.to(coefs.dtype)
    return SpikeScatter.apply(x, lags.to(torch.int64), coefs, int(pad_right))


def window_scatter(x: Tensor, kernel: Tensor, pad_right: int = 0) -> Tensor:
    """Causal convolution of a sparse ``x [T, B, N_in]`` with a dense lag-indexed kernel.

    Args:
        x: input raster (spikes or sparse values), CPU.
        kernel: ``[N_out, N_in, K]``, tap ``n`` = lag ``n`` steps (weights included).
        pad_right: zero steps appended (late spikes still delivered).

    Returns:
        ``[T + pad_right, B, N_out]``, equal to :func:`ctsnn.synapses.conv.dense_conv` (to
        rounding), differentiable w.r.t. ``x`` and ``kernel``. Forward and ``dL/dkernel`` cost
        spikes x N_out x K; ``dL/dx`` (only when ``x`` needs it) is one ``conv1d``.
    """
    if x.ndim != 3:
        raise ValueError(f"x must be a raster [T, B, N_in], got shape {list(x.shape)}")
    if kernel.ndim != 3 or kernel.shape[1] != x.shape[2] or kernel.shape[2] < 1:
        raise ValueError(f"kernel must be [N_out, N_in = {x.shape[2]}, K >= 1], got "
                         f"{list(kernel.shape)}")
    if kernel.dtype != x.dtype:
        x = x.to(kernel.dtype)
    return WindowScatter.apply(x, kernel, int(pad_right))


def _density_at_most(x: Tensor, limit: float, *tensors: Tensor) -> bool:
    if not kernels_enabled(x, *tensors) or x.numel() == 0:
        return False
    return int(torch.count_nonzero(x.detach())) <= limit * x.numel()


def scatter_pays(x: Tensor, *tensors: Tensor) -> bool:
    """Whether the tap scatter serves ``x``: kernels on for ``x`` and ``tensors`` (CPU) and at
    most :data:`MAX_DENSITY` of ``x``'s entries non-zero."""
    return _density_at_most(x, MAX_DENSITY, *tensors)


def window_pays(x: Tensor, *tensors: Tensor) -> bool:
    """Whether :func:`window_scatter` serves ``x`` with a dense kernel: kernels on (CPU) and at
    most :data:`MAX_WINDOW_DENSITY` of ``x``'s entries non-zero."""
    return _density_at_most(x, MAX_WINDOW_DENSITY, *tensors)
