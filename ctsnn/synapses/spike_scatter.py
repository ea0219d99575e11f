"""Spike-sparse delayed synapses on the grid: each input spike scatters its taps into delayed
output slots (numba), so the forward cost follows spikes x fan-out x taps, not ``T x K``.

Same operation as :func:`ctsnn.synapses.conv.tap_conv` (the pure-PyTorch reference, one dense
matrix product per distinct lag) for a sparse kernel ``taps`` (``lags, coefs [n_taps, N_out,
N_in]``, weights included)::

    out[t + lags[k, i, j], b, i] += coefs[k, i, j] x[t, b, j]

and as :func:`ctsnn.synapses.conv.dense_conv` for a dense kernel ``[N_out, N_in, K]`` (lag
``n`` = index ``n``, every synapse the whole window: :func:`window_scatter`).

Layout: rows per unit with batch and time flattened, **time contiguous** (``out -> [N_out, n
seg]`` for a chunk of ``n`` samples, each a segment of ``seg >= T + reach`` steps), so a lag of
``L`` steps is a shift of ``L`` in a row and the taps of one spike, all within ``K`` steps,
touch one or two cache lines of a target's row (contiguous for the dense window: vectorised).
The tap scatter runs the batch **chunk by chunk** through one scratch of rows of about
:data:`SCRATCH_BYTES` (a core's L2; :data:`~ctsnn.synapses.tap_scatter.SAMPLES`-sample blocks),
so no ``[N_out, B seg]`` buffer exists in the forward or the backward.

* events: the non-zero entries of ``x [T, B, N_in]`` per input unit, read in one compiled
  pass over ``x`` (no transposed copy), with the first entry of every block of
  :data:`SAMPLES` samples; for 6- and 8-lane windows a chunk's entries by step, then sample
  (an input's consecutive vector updates of one row, which wait on each other's stores when
  they overlap, then mostly fall in different samples' segments), else by sample, then step;
* taps as windows: every synapse's taps become a first lag and a window of consecutive lags,
  zero-padded to the lanes of :func:`~ctsnn.synapses.tap_scatter.window_lanes` (1 for rounded
  delays, 2 for the triangle, 6 for DCLS's final Gaussian in float32); computed once in the
  forward and kept for the backward;
* forward, per chunk: per block of :data:`TARGETS` targets and block of samples (the block's
  output rows, ~32 KiB, stay in L1), every spike of every input adds its window to each
  target of the block, 8 targets per pass with their offsets and coefficients in registers
  (the kernels and ``dL/dcoefs`` live in :mod:`ctsnn.synapses.tap_scatter`); the finished
  chunk is transposed straight into the result ``[T + pad, B, N_out]``. Every output value
  sums its inputs ascending and their spikes in order: the same values, bit for bit, whatever
  the chunk size;
* backward, per chunk: the chunk's ``dL/dout`` is copied into the scratch rows and serves
  both gradients. ``dL/dx[j]`` is a sum of shifted rows of ``dL/dout`` (dense: the
  surrogate gradient reaches every input entry; :mod:`ctsnn.synapses.scatter_grad_input`,
  sample by sample over L1-resident target blocks, written straight into ``[T, B, N_in]``,
  its windows derived from the forward's) — computed only when ``x`` needs a gradient
  (never for a network's data input) and only on the (sample, input) rows ``rows=`` asks
  for; ``dL/dcoefs[k, i, j]`` from the correlation of ``dL/dout[i]`` with the spikes of
  ``j`` over the synapse's window, blocked as the forward, the chunks' partial sums added in
  the chunks' order. Gradients w.r.t. weights and delays follow from ``dL/dcoefs`` through
  the kernel's own interpolation weights in PyTorch autograd, exactly as on the reference
  path;
* the copies between ``[T, B, N]`` and the rows: one compiled, tiled pass each.

:func:`scatter_pays` says when :class:`~ctsnn.synapses.Dense` takes the tap path (CPU, kernels
on, input density at most :data:`MAX_DENSITY`), :func:`window_pays` when a dense (wide) kernel
takes :func:`window_scatter` (density at most :data:`MAX_WINDOW_DENSITY`; its ``dL/dx`` stays a
BLAS convolution).

Threads: the forward, ``dL/dcoefs``, ``dL/dx``, both window kernels and the layout copies cut
their output rows (target blocks; samples for ``dL/dx``; target pairs for the window;
samples for the copies; within a chunk of samples for the tap scatter) into :data:`_CHUNKS`
fixed chunks run by numba ``prange`` on :func:`~ctsnn.compiled.kernel_threads` threads when a call
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

from ..compiled import (
    host_array,
    kernel_threads,
    kernels_enabled,
    numba_threads,
    run_serial_or_chunks,
)
from ..engine.compiled.schedule import chunk_bounds
from .kernels import Taps
from .scatter_grad_input import GX_SLACK, check_rows, grad_input, grad_input_rows, input_windows
from .tap_scatter import (
    LANES,
    SAMPLES,
    TARGETS,
    tap_forward,
    tap_forward_chunks,
    tap_grad_coefs,
    tap_grad_coefs_chunks,
    window_lanes,
)

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
#: Size of the per-call scratch rows (``[N_out, n seg]`` for a chunk of ``n`` samples, a
#: multiple of :data:`SAMPLES`) through which the tap scatter runs the batch, one per thread:
#: half a core's L2; twice that for 6- and 8-lane windows, whose forward sets up every (target,
#: input) once per chunk (with 1 MiB it measured 5-25 % slower than over the whole batch).
SCRATCH_BYTES = 1 << 20
#: Fixed number of sample-chunk groups of the tap scatter's backward: each group adds its
#: chunks' ``dL/dcoefs`` into its own partial sums (one more ``[N_out, N_in, W]`` array per
#: group), added in the groups' order: the same result for any thread count.
_GROUPS = 2
#: Multiply-adds from which a kernel call runs on :func:`~ctsnn.compiled.kernel_threads`
#: threads (below: one thread, no pool wake-up).
_PARALLEL_WORK = 200_000


@numba.njit(cache=True)
def _events(x, seg, nb, group):
    """Non-zero entries of ``x [T, B, N]`` per unit ``j``: ``offsets [N + 1]`` (unit ``j``'s
    entries at ``offsets[j]:offsets[j + 1]``), each entry's row position ``b * seg + t`` and
    its value; and ``soff [N, S + 1]``, the first entry of ``j`` in each block of ``nb``
    samples (``S = ceil(B / nb)``; ``soff[j, S] = offsets[j + 1]``).

    Order: samples in groups of ``group`` (1, a multiple of ``nb`` or the whole batch), a
    group's entries by step, then sample (for ``group = 1``: by sample, then step); within one
    sample always by step. Blocks inside a group of several blocks have no entries of their
    own: their ``soff`` is ``-1``, and only ranges between group boundaries are valid (the
    6- and 8-lane kernels take whole chunks of samples: their groups)."""
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
    n_blocks = (batch + nb - 1) // nb
    soff = np.full((n_units, n_blocks + 1), -1, np.int64)
    opos = np.empty(offsets[n_units], np.int64)
    val = np.empty(offsets[n_units], x.dtype)
    cursor = offsets[:-1].copy()
    for b0 in range(0, batch, group):
        if b0 % nb == 0:
            soff[:, b0 // nb] = cursor
        b1 = min(batch, b0 + group)
        for t in range(n_steps):
            for b in range(b0, b1):
                for j in range(n_units):
                    v = x[t, b, j]
                    if v != 0:
                        q = cursor[j]
                        opos[q] = b * seg + t
                        val[q] = v
                        cursor[j] = q + 1
    soff[:, n_blocks] = cursor
    return offsets, opos, val, soff


@numba.njit(cache=True)
def _windows(lags, coefs):
    """Every synapse's taps as a window of consecutive lags.

    Returns ``base_f [N_out, N_in]`` and ``w_f [N_out, N_in, W_f]`` (forward: the non-zero
    taps, ``w_f[i, j, n]`` the sum of the coefficients at lag ``base_f + n``; ``W_f`` the widest
    such window, 1 for one tap; a synapse without non-zero tap gets an all-zero window) and
    ``base_g [N_out, N_in]``, ``W_g`` (``dL/dcoefs``: every tap, zero-valued ones included,
    lies in ``base_g .. base_g + W_g - 1``)."""
    n_taps, n_out, n_in = lags.shape
    base_f = np.zeros((n_out, n_in), np.int64)
    base_g = np.zeros((n_out, n_in), np.int64)
    w_f = 1
    w_g = 1
    for i in range(n_out):
        for j in range(n_in):
            lo = hi = -1
            glo = ghi = lags[0, i, j]
            for k in range(n_taps):
                lag = lags[k, i, j]
                glo = min(glo, lag)
                ghi = max(ghi, lag)
                if coefs[k, i, j] != 0.0:
                    lo = lag if lo < 0 else min(lo, lag)
                    hi = max(hi, lag)
            base_g[i, j] = glo
            w_g = max(w_g, ghi - glo + 1)
            if hi >= 0:
                base_f[i, j] = lo
                w_f = max(w_f, hi - lo + 1)
    window = np.zeros((n_out, n_in, w_f), coefs.dtype)
    for k in range(n_taps):
        for i in range(n_out):
            for j in range(n_in):
                c = coefs[k, i, j]
                if c != 0.0:
                    window[i, j, lags[k, i, j] - base_f[i, j]] += c
    return base_f, window, base_g, w_g


@numba.njit(cache=True)
def _coefs_of_sums(lags, base, sums, gc):
    """``gc[k, i, j] = sums[i, j, lags[k, i, j] - base[i, j]]`` (taps at the same lag share it)."""
    n_taps, n_out, n_in = lags.shape
    for k in range(n_taps):
        for i in range(n_out):
            for j in range(n_in):
                gc[k, i, j] = sums[i, j, lags[k, i, j] - base[i, j]]


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
def _forward_window_chunks(n_chunks, offsets, opos, val, kernel, out):
    for c in prange(n_chunks):
        h0, h1 = chunk_bounds(c, n_chunks, (kernel.shape[0] + 1) // 2)
        _forward_window(h0, h1, offsets, opos, val, kernel, out)


@numba.njit(cache=True, parallel=True)
def _grad_window_chunks(n_chunks, offsets, opos, val, g, gk):
    for c in prange(n_chunks):
        h0, h1 = chunk_bounds(c, n_chunks, (gk.shape[0] + 1) // 2)
        _grad_window(h0, h1, offsets, opos, val, g, gk)


def _threads(work: int, n_rows: int) -> int:
    """Threads for a call of ``work`` multiply-adds over ``n_rows`` independent rows (or
    parts): :func:`~ctsnn.compiled.kernel_threads` from :data:`_PARALLEL_WORK` on, else 1."""
    return kernel_threads() if work >= _PARALLEL_WORK and n_rows > 1 else 1


def _run(serial, chunked, n_rows: int, work: int, *args) -> None:
    """``serial(0, n_rows, *args)``, or ``chunked`` over :data:`_CHUNKS` fixed row chunks on
    the kernel threads from :data:`_PARALLEL_WORK` multiply-adds on (the same result either
    way: each chunk owns its rows); the dispatcher the scatter's kernels are handed."""
    run_serial_or_chunks(serial, chunked, n_rows, work, _PARALLEL_WORK, _CHUNKS, *args)


def _events_of(x: Tensor, seg: int, group: int = 1) -> tuple[np.ndarray, ...]:
    """Events of ``x [T, B, N]`` (see :func:`_events`, groups of ``group`` samples):
    ``offsets, opos, val, soff`` arrays."""
    return _events(x.detach().contiguous().numpy(), seg, SAMPLES, group)


@numba.njit(cache=True)
def _to_rows(c0, c1, r0, src, seg, rows):
    """Samples ``b = r0 + c``, ``c0 <= c < c1``: ``rows[u, c seg + t] = src[t, b, u]`` (``rows``
    holds the samples from ``r0`` on) and the segment's slack ``t >= T'`` zero, in 16 x 16
    tiles (steps x units; see :func:`_from_rows`)."""
    n_steps, _, n = src.shape
    for c in range(c0, c1):
        b = r0 + c
        s0 = c * seg
        for t0 in range(0, n_steps, 16):
            t1 = min(n_steps, t0 + 16)
            for u0 in range(0, n, 16):
                u1 = min(n, u0 + 16)
                for u in range(u0, u1):
                    for t in range(t0, t1):
                        rows[u, s0 + t] = src[t, b, u]
        for u in range(n):
            rows[u, s0 + n_steps:s0 + seg] = 0.0


@numba.njit(cache=True)
def _from_rows(c0, c1, r0, rows, seg, dst):
    """Samples ``b = r0 + c``, ``c0 <= c < c1``: ``dst[t, b, u] = rows[u, c seg + t]`` (the
    inverse of :func:`_to_rows` without the slack), in 16 x 16 tiles (step rows of ``dst`` lie
    a page apart: each is written 1 KiB at a time, across the unit tiles, before the next
    steps)."""
    n_steps, _, n = dst.shape
    for c in range(c0, c1):
        b = r0 + c
        s0 = c * seg
        for t0 in range(0, n_steps, 16):
            t1 = min(n_steps, t0 + 16)
            for u0 in range(0, n, 16):
                u1 = min(n, u0 + 16)
                for t in range(t0, t1):
                    for u in range(u0, u1):
                        dst[t, b, u] = rows[u, s0 + t]


@numba.njit(cache=True, parallel=True)
def _to_rows_chunks(n_chunks, r0, src, seg, rows):
    for c in prange(n_chunks):
        c0, c1 = chunk_bounds(c, n_chunks, src.shape[1] - r0)
        _to_rows(c0, c1, r0, src, seg, rows)


@numba.njit(cache=True, parallel=True)
def _from_rows_chunks(n_chunks, r0, rows, seg, dst):
    for c in prange(n_chunks):
        c0, c1 = chunk_bounds(c, n_chunks, rows.shape[1] // seg)
        _from_rows(c0, c1, r0, rows, seg, dst)


def _to_rows_of(src: np.ndarray, seg: int, rows: np.ndarray) -> None:
    """Fill the first ``B seg`` columns of ``rows [N, B seg + extra]`` with every sample of
    ``src [T', B, N]`` (time contiguous, each segment zero after ``T'``; ``extra`` columns
    untouched), one compiled pass."""
    n = src.shape[1]
    _run(_to_rows, _to_rows_chunks, n, rows.size, 0, src, seg, rows)


def _from_rows_of(rows: np.ndarray, seg: int, dst: np.ndarray) -> None:
    """Every sample of ``dst [T, B, N]`` from ``rows [N, B seg]`` (the first ``T`` steps of
    every segment), one compiled pass."""
    n = rows.shape[1] // seg
    _run(_from_rows, _from_rows_chunks, n, n * dst.shape[0] * dst.shape[2], 0, rows, seg, dst)


def _rows(t: Tensor, seg: int) -> Tensor:
    """``[T', B, N] -> [N, B * seg]`` (time contiguous, each sample's segment of ``seg >= T'``
    steps zero after ``T'``), one compiled pass."""
    n_steps, batch, n = t.shape
    rows = t.new_empty((n, batch * seg))
    _to_rows_of(t.detach().contiguous().numpy(), seg, rows.numpy())
    return rows


def _unrows(rows: Tensor, n_steps: int, batch: int) -> Tensor:
    """``[N, B * seg] -> [T, B, N]`` contiguous (the first ``n_steps`` of every segment)."""
    out = rows.new_empty((n_steps, batch, rows.shape[0]))
    _from_rows_of(rows.numpy(), rows.shape[1] // batch, out.numpy())
    return out


def _sample_chunks(batch: int, n_rows: int, seg: int, itemsize: int, lanes: int = 1) -> int:
    """Samples per chunk of the tap scatter: a multiple of :data:`SAMPLES` whose rows ``[n_rows,
    n seg]`` take about :data:`SCRATCH_BYTES` (twice that for ``lanes`` 6 or 8; at least one
    sample block), and at most half the batch's sample blocks when it has two or more (so
    that two threads share the chunks; a batch in one chunk runs target-parallel instead).
    Of those sizes the one whose chunks split most evenly into the backward's
    :data:`_GROUPS` groups (and the forward's two parts), the largest on a tie: 16 sample
    blocks as 8 chunks of 2 (two groups of 8 blocks), not 5 of 3 and 1 of 1 (9 and 7)."""
    per_block = max(1, n_rows * SAMPLES * seg * itemsize)
    budget = SCRATCH_BYTES * (2 if lanes in (6, LANES) else 1)
    blocks = -(-batch // SAMPLES)
    half = -(-blocks // 2)  # half the sample blocks, rounded up
    largest = max(1, min(half, budget // per_block))
    if largest >= blocks:
        return batch

    def heaviest(k: int) -> int:  # blocks of the largest group with k blocks per chunk
        n = -(-blocks // k)
        return max(min(blocks, k * hi) - k * lo for lo, hi in
                   (chunk_bounds(g, min(_GROUPS, n), n) for g in range(min(_GROUPS, n))))

    best = min(range(largest, 0, -1), key=heaviest)  # the first (largest) k on a tie
    return min(batch, SAMPLES * best)


@numba.njit(cache=True)
def _tap_forward_span(c0, c1, chunk, soff, opos, val, base, w, seg, dst):
    """Sample chunks ``c0 <= c < c1`` (``chunk`` samples each, a multiple of :data:`SAMPLES`)
    of the forward: each chunk's rows in one scratch ``[N_out, chunk seg]`` (every target
    block, :func:`~ctsnn.synapses.tap_scatter.tap_forward`), then transposed into its samples
    of ``dst [T + pad, B, N_out]``."""
    n_out = w.shape[0]
    batch = dst.shape[1]
    n_blocks = (n_out + TARGETS - 1) // TARGETS
    scratch = np.empty(n_out * min(chunk, batch) * seg, w.dtype)
    for c in range(c0, c1):
        b0 = c * chunk
        n = min(chunk, batch - b0)
        out = scratch[:n_out * n * seg].reshape(n_out, n * seg)
        tap_forward(0, n_blocks, b0 // SAMPLES, (b0 + n + SAMPLES - 1) // SAMPLES, soff, opos,
                    val, base, w, seg, out)
        _from_rows(0, n, b0, out, seg, dst)


@numba.njit(cache=True, parallel=True)
def _tap_forward_parts(n_parts, chunk, soff, opos, val, base, w, seg, dst):
    """:func:`_tap_forward_span` over ``n_parts`` parts of the sample chunks (``prange``: one
    parallel region per call, one scratch per part; each chunk owns its samples, so any
    partition gives the same values)."""
    n_chunks = (dst.shape[1] + chunk - 1) // chunk
    for p in prange(n_parts):
        c0, c1 = chunk_bounds(p, n_parts, n_chunks)
        _tap_forward_span(c0, c1, chunk, soff, opos, val, base, w, seg, dst)


@numba.njit(cache=True)
def _tap_backward_group(grp, n_groups, chunk, grad, seg, count, ti, tb, tw, keep, gx, soff,
                        opos, val, base_g, sums):
    """Group ``grp`` of ``n_groups`` fixed groups of the sample chunks of the backward: each
    chunk's ``dL/dout`` (from ``grad [T', B, N_out]``) into one scratch of rows, then its
    samples' ``dL/dx`` into ``gx`` (when ``gx`` has samples; windows ``count, ti, tb, tw`` of
    :func:`~ctsnn.synapses.scatter_grad_input.input_windows`) and its spikes' ``dL/dcoefs``
    **added** to ``sums[grp]`` (when ``sums`` has targets), chunk after chunk."""
    n_out = grad.shape[2]
    batch = grad.shape[1]
    n_chunks = (batch + chunk - 1) // chunk
    n_blocks = (sums.shape[1] + TARGETS - 1) // TARGETS
    c0, c1 = chunk_bounds(grp, n_groups, n_chunks)
    scratch = np.empty(n_out * (min(chunk, batch) * seg + GX_SLACK), grad.dtype)
    for c in range(c0, c1):
        b0 = c * chunk
        n = min(chunk, batch - b0)
        g = scratch[:n_out * (n * seg + GX_SLACK)].reshape(n_out, n * seg + GX_SLACK)
        g[:, n * seg:] = 0.0  # dL/dx's whole vectors read into it (lanes past T)
        _to_rows(0, n, b0, grad, seg, g)
        if gx.shape[1] > 0:
            grad_input_rows(0, n, b0, g, seg, count, ti, tb, tw, keep, gx)
        if n_blocks > 0:
            tap_grad_coefs(0, n_blocks, b0 // SAMPLES, (b0 + n + SAMPLES - 1) // SAMPLES, soff,
                           opos, val, base_g, seg, g, sums[grp])


@numba.njit(cache=True)
def _tap_backward_serial(n_groups, chunk, grad, seg, count, ti, tb, tw, keep, gx, soff, opos,
                         val, base_g, sums):
    for grp in range(n_groups):
        _tap_backward_group(grp, n_groups, chunk, grad, seg, count, ti, tb, tw, keep, gx, soff,
                            opos, val, base_g, sums)


@numba.njit(cache=True, parallel=True)
def _tap_backward_parallel(n_groups, chunk, grad, seg, count, ti, tb, tw, keep, gx, soff, opos,
                           val, base_g, sums):
    for grp in prange(n_groups):
        _tap_backward_group(grp, n_groups, chunk, grad, seg, count, ti, tb, tw, keep, gx, soff,
                            opos, val, base_g, sums)


def _tap_backward_whole(n_groups, chunk, grad, seg, count, ti, tb, tw, keep, gx, soff, opos,
                        val, base_g, sums) -> None:
    """The backward of a batch in one chunk (arguments as :func:`_tap_backward_group`, one
    group): ``dL/dx`` sample-parallel and ``dL/dcoefs`` target-parallel on one scratch, each
    from :data:`_PARALLEL_WORK` on; the same values as the group form."""
    n_out, batch = grad.shape[2], grad.shape[1]
    g = host_array((n_out, batch * seg + GX_SLACK), grad.dtype)
    g[:, batch * seg:] = 0.0  # dL/dx's whole vectors read into it (lanes past T)
    _to_rows_of(grad, seg, g)
    if gx.shape[1] > 0:
        grad_input(g, seg, 0, batch, (count, ti, tb, tw), keep, gx, _run)
    if sums.shape[1] > 0:
        _run(tap_grad_coefs, tap_grad_coefs_chunks, -(-sums.shape[1] // TARGETS),
             opos.size * sums.shape[1] * sums.shape[3], 0, soff.shape[1] - 1, soff, opos, val,
             base_g, seg, g, sums[0])


class SpikeScatter(torch.autograd.Function):
    """``(x [T, B, N_in], lags, coefs [n_taps, N_out, N_in], pad_right) -> [T + pad, B, N_out]``.

    Differentiable w.r.t. ``x`` and ``coefs`` (``lags`` are integers). The batch runs chunk
    by chunk (:func:`_sample_chunks` samples) through one scratch of rows.
    """

    @staticmethod
    def forward(ctx, x: Tensor, lags: Tensor, coefs: Tensor,  # type: ignore[override]
                pad_right: int, rows: Tensor | None = None) -> Tensor:
        n_steps, batch, _ = x.shape
        lags = lags.contiguous()
        coefs_c = coefs.detach().contiguous()
        n_out = coefs.shape[1]
        base_f, w_f, base_g, w_g = _windows(lags.numpy(), coefs_c.numpy())
        lanes_f, lanes_g = window_lanes(w_f.shape[2]), window_lanes(w_g)
        if lanes_f > w_f.shape[2]:  # zero lanes: the 6- or 8-lane updates add nothing there
            w_f = np.concatenate([w_f, np.zeros((*w_f.shape[:2], lanes_f - w_f.shape[2]),
                                                w_f.dtype)], axis=2)
        # every sample's segment holds its latest arrival and every lane the kernels touch:
        # no bound checks in the kernels
        reach = max(int(lags.max()) if lags.numel() else 0,
                    int(base_f.max(initial=0)) + lanes_f - 1,
                    int(base_g.max(initial=0)) + lanes_g - 1)
        seg = n_steps + max(pad_right, reach)
        chunk = _sample_chunks(batch, n_out, seg, x.element_size(), lanes_f)
        # 6 and 8 lanes: a chunk's spikes by step, then sample (the kernels take whole
        # chunks), so that an input's consecutive windows seldom overlap in one row (their
        # vector updates wait on each other's stores); else by sample, then step
        events = _events_of(x, seg, chunk if lanes_f in (6, LANES) else 1)
        soff, opos, val = events[3], events[1].view(np.uint64), events[2]
        result = x.new_empty((n_steps + pad_right, batch, n_out))
        # positions unsigned for the tap kernels (no negative-index wrap-around per access)
        work = opos.size * n_out * lanes_f
        if chunk < batch:  # chunks of samples in parallel, one part (one scratch) per thread
            n_chunks = -(-batch // chunk)
            args = (chunk, soff, opos, val, base_f, w_f, seg, result.numpy())
            threads = _threads(work, n_chunks)
            if threads == 1:
                _tap_forward_span(0, n_chunks, *args)
            else:
                with numba_threads(threads):
                    _tap_forward_parts(min(threads, n_chunks), *args)
        else:  # the batch in one scratch, target blocks in parallel
            out = host_array((n_out, batch * seg), w_f.dtype)  # zeroed block by block
            _run(tap_forward, tap_forward_chunks, -(-n_out // TARGETS), work, 0,
                 soff.shape[1] - 1, soff, opos, val, base_f, w_f, seg, out)
            _from_rows_of(out, seg, result.numpy())
        ctx.save_for_backward(lags)
        ctx.events = events
        ctx.windows = (base_f, w_f, base_g, lanes_g)
        ctx.shape = (n_steps, batch, x.shape[2], seg, chunk)
        ctx.dtype = coefs.dtype
        ctx.keep = rows
        return result

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (lags,) = ctx.saved_tensors
        n_steps, batch, n_in, seg, chunk = ctx.shape
        base_f, w_f, base_g, lanes_g = ctx.windows
        n_out = lags.shape[1]
        dtype = w_f.dtype
        need_x, _, need_c = ctx.needs_input_grad[:3]
        _, opos, val, soff = ctx.events
        gx = torch.empty((n_steps, batch if need_x else 0, n_in), dtype=ctx.dtype)
        if need_x:  # every entry of gx written by the kernel
            keep = np.ones((batch, n_in), np.bool_) if ctx.keep is None else \
                ctx.keep.contiguous().numpy()
            windows = input_windows(base_f, w_f)
        else:
            keep = np.ones((0, 0), np.bool_)
            windows = (np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                       np.zeros((0, 1), dtype))
        n_groups = min(_GROUPS, -(-batch // chunk))
        # the groups' partial dL/dcoefs sums, added in the groups' order below
        sums = host_array((n_groups, n_out if need_c else 0, n_in, lanes_g), dtype, zero=True)
        work = (windows[3].size * n_steps * batch if need_x else 0) + \
            (opos.size * n_out * lanes_g if need_c else 0)
        args = (n_groups, chunk, grad.to(ctx.dtype).contiguous().numpy(), seg, *windows, keep,
                gx.numpy(), soff, opos.view(np.uint64), val, base_g, sums)
        threads = _threads(work, n_groups)
        if chunk >= batch:  # the batch in one scratch (one group), target blocks in parallel
            _tap_backward_whole(*args)
        elif threads > 1:
            with numba_threads(threads):
                _tap_backward_parallel(*args)
        else:
            _tap_backward_serial(*args)
        gc = None
        if need_c:
            total = sums[0]
            for part in sums[1:]:
                total += part
            gc = torch.empty(lags.shape, dtype=ctx.dtype)
            _coefs_of_sums(lags.numpy(), base_g, total, gc.numpy())
        return gx if need_x else None, None, gc, None, None


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
        events = _events_of(x, seg)[:3]
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


def spike_scatter(x: Tensor, taps: Taps, pad_right: int = 0, *,
                  rows: Tensor | None = None) -> Tensor:
    """Causal convolution of ``x [T, B, N_in]`` with a sparse kernel by spike scatter.

    Args:
        x: input raster (spikes or sparse values), CPU.
        taps: ``lags, coefs [n_taps, N_out, N_in]`` (weights included; lags ``>= 0``).
        pad_right: zero steps appended (late spikes still delivered).
        rows: optional bool ``[B, N_in]``, the (sample, input) rows of ``x`` whose gradient
            is needed: ``dL/dx[:, b, j]`` is computed only where ``rows[b, j]`` and is **zero**
            elsewhere (the work skipped). Pass it when the operation that produced ``x``
            zeroes those rows' gradient anyway, e.g. the mask of a time-shared dropout
            (:meth:`ctsnn.dropout.SequenceDropout.with_rows`); the forward is unchanged.

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
    if rows is not None:
        check_rows(rows, x)
    if coefs.dtype != x.dtype:
        x = x.to(coefs.dtype)
    return SpikeScatter.apply(x, lags.to(torch.int64), coefs, int(pad_right), rows)


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
    x = x.detach()
    # NumPy's count is vectorised (torch's took 2.5 ms on 2 M values, once per layer and call)
    count = np.count_nonzero(x.numpy()) if x.is_contiguous() else torch.count_nonzero(x)
    return int(count) <= limit * x.numel()


def scatter_pays(x: Tensor, *tensors: Tensor) -> bool:
    """Whether the tap scatter serves ``x``: kernels on for ``x`` and ``tensors`` (CPU) and at
    most :data:`MAX_DENSITY` of ``x``'s entries non-zero."""
    return _density_at_most(x, MAX_DENSITY, *tensors)


def window_pays(x: Tensor, *tensors: Tensor) -> bool:
    """Whether :func:`window_scatter` serves ``x`` with a dense kernel: kernels on (CPU) and at
    most :data:`MAX_WINDOW_DENSITY` of ``x``'s entries non-zero."""
    return _density_at_most(x, MAX_WINDOW_DENSITY, *tensors)
