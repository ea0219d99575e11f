"""The tap kernels of :mod:`ctsnn.synapses.spike_scatter`: forward scatter and ``dL/dcoefs``.

Both work on the rows layout of that module (``out``, ``dL/dout``: ``[N_out, n seg]``, time
contiguous, for a chunk of ``n`` samples: the caller runs the batch chunk by chunk through one
small scratch, so no full-batch rows buffer exists) and on the events of the input (per
input unit ``j``: positions ``opos`` and values ``val`` of its non-zero entries,
``soff[j, s]`` the first entry of sample block ``s``), with every synapse's taps as a window
of consecutive lags (``base [N_out, N_in]``, width ``W``):

* forward: ``out[i, opos[q] + base[i, j] + n] += w[i, j, n] val[q]`` for every spike ``q`` of
  every input ``j``;
* ``dL/dcoefs``: ``sums[i, j, n] = sum over the spikes q of j of val[q] g[i, opos[q] +
  base[i, j] + n]``.

Blocking: per block of :data:`TARGETS` targets (and, for the forward's 1- and 2-lag windows,
per block of :data:`SAMPLES` samples, whose rows stay in L1; ``dL/dcoefs`` and the wider
windows walk the whole chunk), every input's spikes are walked once per **pass of 8
targets**, whose row offsets and coefficients (forward) or accumulators (``dL/dcoefs``) are
held in registers (scalar locals): one load and one store (forward) or one load and one
multiply-add (``dL/dcoefs``) per (spike, target, lag). Positions are unsigned (``opos`` as
``uint64``), so numba emits no negative-index wrap-around per access (it did for the signed
form: a shift, an ``and`` and a ``cmov`` per load). Windows of 1 and 2 lags take the 8-target
passes (targets left over: one target at a time); 3..6 lags (DCLS's final Gaussian in float32:
6) and 7..8 lags run as SIMD vectors (:mod:`ctsnn.synapses.simd_lanes`: a 4- and a 2-wide
vector for 6 lanes, one 8-wide for 8; numba runs no straight-line vectoriser, so written as
scalars they stayed scalar), eight targets interleaved per spike (then four, one) with their
coefficients (forward) or vector accumulators (``dL/dcoefs``) in registers: a target's
consecutive spikes often have overlapping windows, so one target alone would wait every
spike on its previous store (forward) or its accumulators' multiply-add latency
(``dL/dcoefs``); wider windows a plain loop.

Every call covers a range of sample blocks (a chunk of samples); the forward's sums per
output value are the same as over the whole batch (inputs ascending, spikes in order), and
``dL/dcoefs`` adds the chunks' partial sums to its accumulator in the chunks' order.

Threads: :mod:`ctsnn.synapses.spike_scatter` runs fixed groups of sample chunks in parallel
(one scratch each) or, for a batch in one chunk, the ``*_chunks`` forms here (fixed chunks of
target blocks under numba ``prange``); every output value is computed exactly as the serial
form does, so results are bit-identical for any thread count.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..engine.compiled.schedule import chunk_bounds
from .simd_lanes import axpy, dot6, dot8

__all__ = ["LANES", "SAMPLES", "TARGETS", "tap_forward", "tap_forward_chunks",
           "tap_grad_coefs", "tap_grad_coefs_chunks", "window_lanes"]

#: Targets per block of the tap kernels (walked as passes of 8 targets in registers).
TARGETS = 16
#: Samples per sample block of the tap kernels (``TARGETS x SAMPLES x seg`` values ~ 32 KiB).
SAMPLES = 4
#: Widest window (consecutive lags per synapse) taken by the 8-lane loops.
LANES = 8


def window_lanes(width: int) -> int:
    """The lane rule of the spike scatter: the number of lanes (consecutive lags, the window
    zero-padded to it) the kernels run for windows up to ``width`` lags wide: 1, 2, 6 (3..6;
    DCLS's final Gaussian in float32), 8 (7, 8) or, wider, ``width`` itself.

    Used by the forward (the non-zero taps' window), by ``dL/dcoefs`` (every tap's window,
    zero-valued taps included) and by ``dL/dx`` (the forward's windows as they are, 1, 2, 6 or
    8 lanes; wider ones one lane per non-zero lag, see
    :func:`ctsnn.synapses.scatter_grad_input.input_windows`).
    """
    if width <= 2 or width > LANES:
        return width
    return 6 if width <= 6 else LANES


# ----------------------------------------------------------------- 8-target passes (inlined)
@numba.njit(inline="always")
def _offsets8(r, rowlen, base, i, j):
    """The window starts of targets ``i .. i + 7`` for input ``j`` (a tuple: registers):
    ``r`` is target ``i``'s row offset, ``rowlen`` the row length (both unsigned)."""
    return (r + np.uint64(base[i, j]), r + rowlen + np.uint64(base[i + 1, j]),
            r + np.uint64(2) * rowlen + np.uint64(base[i + 2, j]),
            r + np.uint64(3) * rowlen + np.uint64(base[i + 3, j]),
            r + np.uint64(4) * rowlen + np.uint64(base[i + 4, j]),
            r + np.uint64(5) * rowlen + np.uint64(base[i + 5, j]),
            r + np.uint64(6) * rowlen + np.uint64(base[i + 6, j]),
            r + np.uint64(7) * rowlen + np.uint64(base[i + 7, j]))


@numba.njit(inline="always")
def _offsets4(r, rowlen, base, i, j):
    """As :func:`_offsets8` for targets ``i .. i + 3``."""
    return (r + np.uint64(base[i, j]), r + rowlen + np.uint64(base[i + 1, j]),
            r + np.uint64(2) * rowlen + np.uint64(base[i + 2, j]),
            r + np.uint64(3) * rowlen + np.uint64(base[i + 3, j]))


@numba.njit(inline="always")
def _add8_1(flat, a, e, opos, val, r, rowlen, base, w, i0, j):
    """Forward, one lag, targets ``i0 .. i0 + 7``, spikes ``a .. e - 1`` of input ``j``;
    ``r``/``rowlen`` unsigned (the row offset of ``i0`` and the row length)."""
    d0, d1, d2, d3, d4, d5, d6, d7 = _offsets8(r, rowlen, base, i0, j)
    c0, c1, c2, c3 = w[i0, j, 0], w[i0 + 1, j, 0], w[i0 + 2, j, 0], w[i0 + 3, j, 0]
    c4, c5, c6, c7 = w[i0 + 4, j, 0], w[i0 + 5, j, 0], w[i0 + 6, j, 0], w[i0 + 7, j, 0]
    for q in range(a, e):
        p = opos[q]
        v = val[q]
        flat[d0 + p] += c0 * v
        flat[d1 + p] += c1 * v
        flat[d2 + p] += c2 * v
        flat[d3 + p] += c3 * v
        flat[d4 + p] += c4 * v
        flat[d5 + p] += c5 * v
        flat[d6 + p] += c6 * v
        flat[d7 + p] += c7 * v


@numba.njit(inline="always")
def _add8_2(flat, a, e, opos, val, r, rowlen, base, w, i0, j):
    """As :func:`_add8_1` for two lags (``base`` and ``base + 1``)."""
    d0, d1, d2, d3, d4, d5, d6, d7 = _offsets8(r, rowlen, base, i0, j)
    e0, e1, e2, e3 = d0 + np.uint64(1), d1 + np.uint64(1), d2 + np.uint64(1), d3 + np.uint64(1)
    e4, e5, e6, e7 = d4 + np.uint64(1), d5 + np.uint64(1), d6 + np.uint64(1), d7 + np.uint64(1)
    c0, c1, c2, c3 = w[i0, j, 0], w[i0 + 1, j, 0], w[i0 + 2, j, 0], w[i0 + 3, j, 0]
    c4, c5, c6, c7 = w[i0 + 4, j, 0], w[i0 + 5, j, 0], w[i0 + 6, j, 0], w[i0 + 7, j, 0]
    h0, h1, h2, h3 = w[i0, j, 1], w[i0 + 1, j, 1], w[i0 + 2, j, 1], w[i0 + 3, j, 1]
    h4, h5, h6, h7 = w[i0 + 4, j, 1], w[i0 + 5, j, 1], w[i0 + 6, j, 1], w[i0 + 7, j, 1]
    for q in range(a, e):
        p = opos[q]
        v = val[q]
        flat[d0 + p] += c0 * v
        flat[e0 + p] += h0 * v
        flat[d1 + p] += c1 * v
        flat[e1 + p] += h1 * v
        flat[d2 + p] += c2 * v
        flat[e2 + p] += h2 * v
        flat[d3 + p] += c3 * v
        flat[e3 + p] += h3 * v
        flat[d4 + p] += c4 * v
        flat[e4 + p] += h4 * v
        flat[d5 + p] += c5 * v
        flat[e5 + p] += h5 * v
        flat[d6 + p] += c6 * v
        flat[e6 + p] += h6 * v
        flat[d7 + p] += c7 * v
        flat[e7 + p] += h7 * v


@numba.njit(inline="always")
def _dot8_1(flat, a, e, opos, val, r, rowlen, base, i0, j, z, sums):
    """``dL/dcoefs``, one lag, targets ``i0 .. i0 + 7``: adds the sums over spikes
    ``a .. e - 1`` of input ``j`` (``z``: a zero of the sums' dtype)."""
    d0, d1, d2, d3, d4, d5, d6, d7 = _offsets8(r, rowlen, base, i0, j)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = z
    for q in range(a, e):
        p = opos[q]
        v = val[q]
        s0 += v * flat[d0 + p]
        s1 += v * flat[d1 + p]
        s2 += v * flat[d2 + p]
        s3 += v * flat[d3 + p]
        s4 += v * flat[d4 + p]
        s5 += v * flat[d5 + p]
        s6 += v * flat[d6 + p]
        s7 += v * flat[d7 + p]
    sums[i0, j, 0] += s0
    sums[i0 + 1, j, 0] += s1
    sums[i0 + 2, j, 0] += s2
    sums[i0 + 3, j, 0] += s3
    sums[i0 + 4, j, 0] += s4
    sums[i0 + 5, j, 0] += s5
    sums[i0 + 6, j, 0] += s6
    sums[i0 + 7, j, 0] += s7


@numba.njit(inline="always")
def _dot8_2(flat, a, e, opos, val, r, rowlen, base, i0, j, z, sums):
    """As :func:`_dot8_1` for two lags."""
    d0, d1, d2, d3, d4, d5, d6, d7 = _offsets8(r, rowlen, base, i0, j)
    e0, e1, e2, e3 = d0 + np.uint64(1), d1 + np.uint64(1), d2 + np.uint64(1), d3 + np.uint64(1)
    e4, e5, e6, e7 = d4 + np.uint64(1), d5 + np.uint64(1), d6 + np.uint64(1), d7 + np.uint64(1)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = z
    u0 = u1 = u2 = u3 = u4 = u5 = u6 = u7 = z
    for q in range(a, e):
        p = opos[q]
        v = val[q]
        s0 += v * flat[d0 + p]
        u0 += v * flat[e0 + p]
        s1 += v * flat[d1 + p]
        u1 += v * flat[e1 + p]
        s2 += v * flat[d2 + p]
        u2 += v * flat[e2 + p]
        s3 += v * flat[d3 + p]
        u3 += v * flat[e3 + p]
        s4 += v * flat[d4 + p]
        u4 += v * flat[e4 + p]
        s5 += v * flat[d5 + p]
        u5 += v * flat[e5 + p]
        s6 += v * flat[d6 + p]
        u6 += v * flat[e6 + p]
        s7 += v * flat[d7 + p]
        u7 += v * flat[e7 + p]
    sums[i0, j, 0] += s0
    sums[i0 + 1, j, 0] += s1
    sums[i0 + 2, j, 0] += s2
    sums[i0 + 3, j, 0] += s3
    sums[i0 + 4, j, 0] += s4
    sums[i0 + 5, j, 0] += s5
    sums[i0 + 6, j, 0] += s6
    sums[i0 + 7, j, 0] += s7
    sums[i0, j, 1] += u0
    sums[i0 + 1, j, 1] += u1
    sums[i0 + 2, j, 1] += u2
    sums[i0 + 3, j, 1] += u3
    sums[i0 + 4, j, 1] += u4
    sums[i0 + 5, j, 1] += u5
    sums[i0 + 6, j, 1] += u6
    sums[i0 + 7, j, 1] += u7


# ----------------------------------------------------------------- kernels
@numba.njit(inline="always")
def _taps6(w, i, j):
    """Synapse ``(i, j)``'s 6 window coefficients as a tuple (registers)."""
    return (w[i, j, 0], w[i, j, 1], w[i, j, 2], w[i, j, 3], w[i, j, 4], w[i, j, 5])


@numba.njit(inline="always")
def _taps8(w, i, j):
    """As :func:`_taps6` for 8 lanes."""
    return (w[i, j, 0], w[i, j, 1], w[i, j, 2], w[i, j, 3], w[i, j, 4], w[i, j, 5],
            w[i, j, 6], w[i, j, 7])


@numba.njit(inline="always")
def _forward_lanes8(flat, a, e, opos, val, r, rowlen, base, w, i, j, taps):
    """Forward, a window of 6 or 8 lags (``taps``: :func:`_taps6` or :func:`_taps8`),
    targets ``i .. i + 7`` (``r``: the row offset of ``i``) interleaved per spike ``a .. e - 1``
    of input ``j``: per (spike, target) one vector load, multiply-add and store per 4 or 8
    lanes (:func:`~ctsnn.synapses.simd_lanes.axpy`), the coefficients in registers. A
    target's consecutive spikes often have overlapping windows (60 % of W1's layer-2 spikes
    follow their input's previous one by fewer than 6 steps), whose vector load cannot take
    its value from the previous, partly overlapping store and waits until that store
    reaches the cache: eight targets per spike overlap those waits (4: 1.5x the time)."""
    d0, d1, d2, d3, d4, d5, d6, d7 = _offsets8(r, rowlen, base, i, j)
    c0, c1, c2, c3 = taps(w, i, j), taps(w, i + 1, j), taps(w, i + 2, j), taps(w, i + 3, j)
    c4, c5, c6, c7 = taps(w, i + 4, j), taps(w, i + 5, j), taps(w, i + 6, j), taps(w, i + 7, j)
    for q in range(a, e):
        p = opos[q]
        v = val[q]
        axpy(flat, d0 + p, v, c0)
        axpy(flat, d1 + p, v, c1)
        axpy(flat, d2 + p, v, c2)
        axpy(flat, d3 + p, v, c3)
        axpy(flat, d4 + p, v, c4)
        axpy(flat, d5 + p, v, c5)
        axpy(flat, d6 + p, v, c6)
        axpy(flat, d7 + p, v, c7)


@numba.njit(inline="always")
def _forward_lanes4(flat, a, e, opos, val, r, rowlen, base, w, i, j, taps):
    """As :func:`_forward_lanes8` for 4 targets (blocks of 4 left over, e.g. the readout's
    20 = 16 + 4)."""
    d0, d1, d2, d3 = _offsets4(r, rowlen, base, i, j)
    c0, c1, c2, c3 = taps(w, i, j), taps(w, i + 1, j), taps(w, i + 2, j), taps(w, i + 3, j)
    for q in range(a, e):
        p = opos[q]
        v = val[q]
        axpy(flat, d0 + p, v, c0)
        axpy(flat, d1 + p, v, c1)
        axpy(flat, d2 + p, v, c2)
        axpy(flat, d3 + p, v, c3)


@numba.njit(inline="always")
def _forward_lanes(flat, a, e, opos, val, d0, w, i, j, taps):
    """As :func:`_forward_lanes4` for one target (row offset ``d0``)."""
    c = taps(w, i, j)
    for q in range(a, e):
        axpy(flat, d0 + opos[q], val[q], c)


@numba.njit(inline="always")
def _forward_lanes_block(flat, a, e, opos, val, rowlen, shift, base, w, i0, nt, j, taps):
    """Forward, 6- or 8-lag windows, targets ``i0 .. i0 + nt - 1`` (rows of length
    ``rowlen``; ``shift`` the batch position of the rows' first column, subtracted in
    unsigned wrap-around arithmetic), spikes ``a .. e - 1`` of input ``j``: eight targets at
    a time, then four, then one."""
    n8 = nt - nt % 8
    n4 = nt - nt % 4
    for t0 in range(0, n8, 8):
        r = np.uint64(i0 + t0) * rowlen - shift
        _forward_lanes8(flat, a, e, opos, val, r, rowlen, base, w, i0 + t0, j, taps)
    for t0 in range(n8, n4, 4):
        r = np.uint64(i0 + t0) * rowlen - shift
        _forward_lanes4(flat, a, e, opos, val, r, rowlen, base, w, i0 + t0, j, taps)
    for t in range(n4, nt):
        d0 = np.uint64(i0 + t) * rowlen + np.uint64(base[i0 + t, j]) - shift
        _forward_lanes(flat, a, e, opos, val, d0, w, i0 + t, j, taps)


@numba.njit(fastmath=True)
def _forward_wide(k0, k1, sb0, sb1, soff, opos, val, base, w, seg, out):
    """:func:`tap_forward` (same arguments) for windows of 6 or 8 lanes: per target block,
    targets eight (then four, one) at a time over the chunk's samples (only their rows need
    the cache, and each (target, input) is set up once per chunk, not per sample block).
    Compiled apart from the 1- and 2-lag loops of :func:`tap_forward`: inlined there, it
    made LLVM spill two of their pointers to the stack (two extra loads per spike and pass;
    triangle forward +15 %)."""
    n_out, n_in, width = w.shape
    flat = out.reshape(-1)
    urow = np.uint64(out.shape[1])
    shift = np.uint64(sb0 * SAMPLES * seg)  # the batch position of the rows' first column
    for kb in range(k0, k1):
        i0 = kb * TARGETS
        nt = min(TARGETS, n_out - i0)
        for t in range(nt):
            out[i0 + t] = 0.0
        for j in range(n_in):
            a = np.uint64(soff[j, sb0])
            e = np.uint64(soff[j, sb1])
            if width == 6:
                _forward_lanes_block(flat, a, e, opos, val, urow, shift, base, w, i0, nt, j,
                                     _taps6)
            else:
                _forward_lanes_block(flat, a, e, opos, val, urow, shift, base, w, i0, nt, j,
                                     _taps8)


@numba.njit(cache=True, fastmath=True)
def tap_forward(k0, k1, sb0, sb1, soff, opos, val, base, w, seg, out):
    """Target blocks ``k0 <= k < k1`` (targets ``k TARGETS ..``), sample blocks ``sb0 <= s <
    sb1``: the forward scatter of those samples' spikes.

    ``soff [N_in, S + 1]`` (int64), ``opos`` (uint64, positions in the whole batch's rows),
    ``val`` (events), ``base [N_out, N_in]`` (int64), ``w [N_out, N_in, W]`` (``W`` from
    :func:`window_lanes`, zero-padded), ``seg`` steps per sample; ``out [N_out, n seg]`` the rows
    of the ``n`` samples from sample ``sb0 SAMPLES`` on (a chunk's scratch: position ``p`` of
    the batch is ``p - sb0 SAMPLES seg`` there; the row offsets carry that shift, in unsigned
    wrap-around arithmetic, so the spike loops are those of the whole-batch form). ``out`` may
    enter uninitialised: each block zeroes its own rows over its sample block first (in cache,
    on the thread that then fills them). Every output value sums its inputs ascending and
    their spikes in order, whatever the chunk of samples.
    """
    n_out, n_in, width = w.shape
    if width == 6 or width == LANES:
        _forward_wide(k0, k1, sb0, sb1, soff, opos, val, base, w, seg, out)
        return
    flat = out.reshape(-1)
    rowlen = out.shape[1]
    urow = np.uint64(rowlen)
    start = sb0 * SAMPLES * seg  # the batch position of the rows' first column
    idx = np.empty(TARGETS, np.uint64)
    cw = np.zeros(TARGETS * width, w.dtype)
    for kb in range(k0, k1):
        i0 = kb * TARGETS
        nt = min(TARGETS, n_out - i0)
        n8 = nt - nt % 8
        for sb in range(sb0, sb1):
            c0 = (sb - sb0) * SAMPLES * seg
            for t in range(nt):
                out[i0 + t, c0:min(rowlen, c0 + SAMPLES * seg)] = 0.0
            for j in range(n_in):
                a = np.uint64(soff[j, sb])
                e = np.uint64(soff[j, sb + 1])
                if a == e:
                    continue
                if width <= 2:
                    for t0 in range(0, n8, 8):
                        r = np.uint64((i0 + t0) * rowlen - start)
                        if width == 1:
                            _add8_1(flat, a, e, opos, val, r, urow, base, w, i0 + t0, j)
                        else:
                            _add8_2(flat, a, e, opos, val, r, urow, base, w, i0 + t0, j)
                    for t in range(n8, nt):  # targets left over, one at a time
                        for n in range(width):
                            d = np.uint64((i0 + t) * rowlen + base[i0 + t, j] + n - start)
                            c = w[i0 + t, j, n]
                            for q in range(a, e):
                                flat[d + opos[q]] += c * val[q]
                    continue
                for t in range(nt):
                    idx[t] = np.uint64((i0 + t) * rowlen + base[i0 + t, j] - start)
                    cw[t * width:(t + 1) * width] = w[i0 + t, j]
                for q in range(a, e):
                    p = opos[q]
                    v = val[q]
                    for t in range(nt):
                        dst = flat[idx[t] + p:idx[t] + p + np.uint64(width)]
                        for n in range(width):
                            dst[n] += cw[t * width + n] * v


@numba.njit(inline="always")
def _dot_target(flat, a, e, opos, val, d, width, z, res):
    """``res[n] += sum over spikes a .. e - 1 of val g[d + opos + n]`` for one target, lag by
    lag."""
    for n in range(width):
        s = z
        dn = d + np.uint64(n)
        for q in range(a, e):
            s += val[q] * flat[dn + opos[q]]
        res[n] += s


@numba.njit(inline="always")
def _add_sums(sums, i, j, s, n_rows, lanes):
    """``sums[i + t, j, n] += s[lanes t + n]`` for ``t < n_rows``, ``n < lanes``."""
    for t in range(n_rows):
        for n in range(lanes):
            sums[i + t, j, n] += s[lanes * t + n]


@numba.njit(fastmath=True)
def _dot_lanes_block(flat, a, e, opos, val, rowlen, shift, base, i0, nt, j, lanes, sums):
    """``sums[i, j, n] += sum over spikes a .. e - 1 of val g[d_i + opos + n]`` for the
    targets ``i0 .. i0 + nt - 1`` (row offsets ``d_i``, less ``shift`` as in
    :func:`_forward_lanes_block`), ``n < lanes`` (6 or 8): eight
    targets at a time (then four, one), per spike one vector load and multiply-add per 4 or
    8 lanes and target into independent vector accumulators
    (:func:`~ctsnn.synapses.simd_lanes.dot6` / ``dot8``; one target alone would wait on its
    accumulators' multiply-add latency every spike)."""
    n8 = nt - nt % 8
    n4 = nt - nt % 4
    for t0 in range(0, n8, 8):
        i = i0 + t0
        r = np.uint64(i) * rowlen - shift
        ds = _offsets8(r, rowlen, base, i, j)
        if lanes == 8:
            _add_sums(sums, i, j, dot8(flat, opos, val, a, e, ds), 8, 8)
        else:
            _add_sums(sums, i, j, dot6(flat, opos, val, a, e, ds), 8, 6)
    for t0 in range(n8, n4, 4):
        i = i0 + t0
        r = np.uint64(i) * rowlen - shift
        ds4 = _offsets4(r, rowlen, base, i, j)
        if lanes == 8:
            _add_sums(sums, i, j, dot8(flat, opos, val, a, e, ds4), 4, 8)
        else:
            _add_sums(sums, i, j, dot6(flat, opos, val, a, e, ds4), 4, 6)
    for i in range(i0 + n4, i0 + nt):
        d1 = (np.uint64(i) * rowlen + np.uint64(base[i, j]) - shift,)
        if lanes == 8:
            _add_sums(sums, i, j, dot8(flat, opos, val, a, e, d1), 1, 8)
        else:
            _add_sums(sums, i, j, dot6(flat, opos, val, a, e, d1), 1, 6)


@numba.njit(cache=True, fastmath=True)
def tap_grad_coefs(k0, k1, sb0, sb1, soff, opos, val, base, seg, g, sums):
    """Target blocks ``k0 <= k < k1``, sample blocks ``sb0 <= s < sb1``: **adds** to
    ``sums[i, j, n]`` the sum over those samples' spikes q of j of ``val[q] g[i, opos[q] +
    base[i, j] + n]`` (the correlation of ``dL/dout`` with the spikes at every lag of the
    synapse's window) over the chunk per (target pass, input): loads only, so the rows need
    not stay in L1 (measured ~10 % faster than per sample block; one setup and one partial sum
    per (target, input) and chunk). Arguments as :func:`tap_forward` (``seg`` steps per
    sample), ``g`` the rows of
    ``dL/dout`` for the chunk's samples and ``sums [N_out, N_in, W]`` the accumulator (the
    caller zeroes it once and adds the chunks in a fixed order)."""
    n_out, n_in, width = sums.shape
    flat = g.reshape(-1)
    rowlen = g.shape[1]
    urow = np.uint64(rowlen)
    start = sb0 * SAMPLES * seg  # the batch position of the rows' first column
    z = np.zeros(1, sums.dtype)[0]
    lanes = width == 6 or width == LANES
    for kb in range(k0, k1):
        i0 = kb * TARGETS
        nt = min(TARGETS, n_out - i0)
        n8 = nt - nt % 8 if width <= 2 else 0
        for j in range(n_in):
            a = np.uint64(soff[j, sb0])
            e = np.uint64(soff[j, sb1])
            if a == e:
                continue
            for t0 in range(0, n8, 8):
                r = np.uint64((i0 + t0) * rowlen - start)
                if width == 1:
                    _dot8_1(flat, a, e, opos, val, r, urow, base, i0 + t0, j, z, sums)
                else:
                    _dot8_2(flat, a, e, opos, val, r, urow, base, i0 + t0, j, z, sums)
            if lanes:
                _dot_lanes_block(flat, a, e, opos, val, urow, np.uint64(start), base, i0, nt, j,
                                 width, sums)
                continue
            for t in range(n8, nt):
                d = np.uint64((i0 + t) * rowlen + base[i0 + t, j] - start)
                _dot_target(flat, a, e, opos, val, d, width, z, sums[i0 + t, j])


@numba.njit(cache=True, parallel=True)
def tap_forward_chunks(n_chunks, sb0, sb1, soff, opos, val, base, w, seg, out):
    """:func:`tap_forward` over ``n_chunks`` fixed chunks of target blocks (``prange``)."""
    n_blocks = (w.shape[0] + TARGETS - 1) // TARGETS
    for c in prange(n_chunks):
        k0, k1 = chunk_bounds(c, n_chunks, n_blocks)
        tap_forward(k0, k1, sb0, sb1, soff, opos, val, base, w, seg, out)


@numba.njit(cache=True, parallel=True)
def tap_grad_coefs_chunks(n_chunks, sb0, sb1, soff, opos, val, base, seg, g, sums):
    """:func:`tap_grad_coefs` over ``n_chunks`` fixed chunks of target blocks (``prange``)."""
    n_blocks = (sums.shape[0] + TARGETS - 1) // TARGETS
    for c in prange(n_chunks):
        k0, k1 = chunk_bounds(c, n_chunks, n_blocks)
        tap_grad_coefs(k0, k1, sb0, sb1, soff, opos, val, base, seg, g, sums)
