"""Fused multi-step LIF / CubaLIF for surrogate BPTT: the whole sequence in one numba kernel.

The discrete engine (:mod:`ctsnn.engine.discrete`) runs one step at a time from Python: a few
small tensor operations per step, recorded one by one on the autograd tape. For a feed-forward
``LIF`` or ``CubaLIF`` layer whose whole input is known before the run, this module runs all
``T`` steps in one compiled loop (:func:`fused_lif`) and the backward pass over all ``T`` steps
in another (a :class:`torch.autograd.Function`), with the same update as the engine:

* flow (``method="exact"`` or ``"euler"``), written as the affine step per neuron
  ``u = A v + B i + C0 + D c`` and ``i' = E i + F c`` (``c`` the input current of the step;
  ``B = E = F = 0`` for LIF), coefficients computed by :func:`step_coefficients` in PyTorch so
  that gradients reach ``tau_mem``, ``tau_syn``, ``r`` and ``v_leak`` through autograd;
* jumps added to the model's jump target (``v`` for LIF, ``i`` for CubaLIF) after the flow;
* spike ``s = H(u - v_threshold)`` (with ``reset="none"`` only where ``v`` was below threshold
  before the step), surrogate derivative in the backward pass (any
  :class:`~ctsnn.surrogate.Surrogate`: its derivative is evaluated in PyTorch on the saved
  threshold values, once for the whole sequence);
* reset ``v = u + f (R(u) - u)`` with ``f = s`` (or ``s.detach()`` with ``detach_reset``) and
  ``R`` the model's reset (``"zero"``, ``"subtract"``, ``"none"``).

Saved for the backward pass: ``u [T, B, N]`` (and ``i`` before each step for CubaLIF); the
spikes only with ``reset="none"`` (otherwise they are ``u >= v_threshold``, recomputed).
:func:`fused_lif_applies` says when the engine may use it: CPU tensors with kernels on
(:func:`ctsnn.compiled.kernels_enabled`), exactly ``LIF`` or ``CubaLIF``, method ``"exact"`` or
``"euler"``, no refractory period, no recurrent connection (except a ``RecurrentDense`` on the
spike-scatter path: :mod:`.lif_recurrent`), no recordings but ``v`` (every
step), no ``saveat`` or readout integrand, and no neuron at or above threshold at ``t = 0``.
Without a surrogate the spikes are hard (no gradient), as in the engine. Everything
else runs the step-by-step reference loop, which the tests compare this kernel against.
Large calls run fixed sample chunks on :func:`~ctsnn.compiled.kernel_threads` threads, forward
and backward (results independent of the thread count).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from ...compiled import kernel_threads, kernels_enabled, numba_threads
from ...models.base import NeuronModel
from ...models.lif import LIF, CubaLIF
from ...surrogate import Surrogate
from ...synapses.recurrent import RecurrentDense
from ..result import SimulationResult
from ..spike_log import raster_spikes
from ..stepping import check_state
from .schedule import chunk_bounds

__all__ = ["FusedRun", "RESET_CODES", "StepCoefficients", "fused_lif", "fused_lif_applies",
           "run_fused_lif", "step_coefficients"]

#: ``model.reset_mode`` -> the integer code the kernels take.
RESET_CODES = {"zero": 0, "subtract": 1, "none": 2}
FUSED_METHODS = ("exact", "euler")


class StepCoefficients(NamedTuple):
    """Per-neuron ``[N]`` coefficients of one grid step: ``u = A v + B i + C0 + D c``,
    ``i' = E i + F c`` (differentiable w.r.t. the model's parameters)."""

    A: Tensor
    B: Tensor
    C0: Tensor
    D: Tensor
    E: Tensor
    F: Tensor


def step_coefficients(model: NeuronModel, method: str, dt: float) -> StepCoefficients:
    """The affine step of ``model`` (``LIF`` or ``CubaLIF``) for ``method`` over ``dt`` seconds.

    ``"exact"``: the closed-form flow with the input held constant; ``"euler"``: one forward
    Euler step. Equal (to rounding) to the engine's ``make_flow`` for the same model and method.
    """
    if method not in FUSED_METHODS:
        raise ValueError(f"the fused LIF step supports methods {FUSED_METHODS}, got {method!r}")
    h = float(dt)
    vl, r, tm = model.v_leak, model.r, model.tau_mem
    zero = torch.zeros_like(vl)
    if isinstance(model, CubaLIF):
        ts = model.tau_syn
        if method == "euler":
            km, ks = h / tm, h / ts
            return StepCoefficients(1 - km, r * km, km * vl, zero, 1 - ks, ks)
        em, es = torch.exp(-h / tm), torch.exp(-h / ts)
        diff = ts - tm
        near = diff.abs() <= 1e-9 * tm
        safe = torch.where(near, torch.ones_like(diff), diff)
        k = torch.where(near, (h / tm) * em, ts / safe * (es - em))
        return StepCoefficients(em, r * k, (1 - em) * vl, r * (1 - em) - r * k, es, 1 - es)
    if method == "euler":
        km = h / tm
        return StepCoefficients(1 - km, zero, km * vl, km * r, zero, zero)
    em = torch.exp(-h / tm)
    return StepCoefficients(em, zero, (1 - em) * vl, r * (1 - em), zero, zero)


#: Built-in surrogates (``Surrogate.family``) the backward kernel evaluates itself; any other
#: surrogate's derivative is evaluated in PyTorch, in chunks of time steps.
SURROGATE_CODES = {"atan": 1, "fast_sigmoid": 2, "superspike": 3, "triangle": 4, "sigmoid": 5}
#: Elements per chunk when a user surrogate's derivative is evaluated in PyTorch (small
#: temporaries the allocator reuses; one [T, B, N] temporary per operator page-faults).
_CHUNK = 1 << 16
#: The forward runs its fixed sample chunks on both threads from this many neuron steps
#: (``T B N``) on; below it, waking a second thread costs more than it saves.
_PARALLEL_WORK = 200_000
#: Sample chunks of the parallel forward (fixed: results never depend on the thread count).
_CHUNKS = 16
#: Whether the plain kernels (:func:`_forward_plain`, :func:`_backward_plain`) serve the runs
#: they cover; the general kernels give the same results (tests turn this off to compare).
_PLAIN = True


# --------------------------------------------------------------------------- kernels
@numba.njit(inline="always")
def plain_reverse_step(u, sd, lv, g_s, th, vr, zero, sub, through):
    """``dL/du`` of one plain LIF step (a ``LIF`` on jumps, reset by ``zero`` / ``sub`` flags,
    1.0 or 0.0) in the reverse sweep: ``u`` the pre-reset membrane, ``sd`` the surrogate
    derivative at ``u - th``, ``lv`` ``dL/dv`` after the step, ``g_s`` ``dL/ds``, ``through``
    0.0 when the reset is detached. The spike is recomputed as the forward's test
    ``u - th >= 0``. Shared by :func:`_backward_plain` and the fused BatchNorm-LIF block."""
    jump = zero * (vr - u) - sub * (th - vr)  # R(u) - u
    s = 1.0 if u - th >= 0.0 else 0.0
    return lv * (1.0 - zero * s) + (g_s + through * lv * jump) * sd


@numba.njit(inline="always")
def surrogate_derivative(code, p, x):
    """Derivative of the built-in surrogate ``code`` with parameter ``p`` at ``x`` (inlined:
    called with a constant ``code``, as :func:`derivative_row` does, only one formula is left
    in the caller's loop, which then vectorises)."""
    if code == 1:
        z = 0.5 * np.pi * p * x
        return 0.5 * p / (1.0 + z * z)
    if code == 2:
        z = p * abs(x) + 1.0
        return 1.0 / (z * z)
    if code == 3:
        z = p * abs(x) + 1.0
        return p / (z * z) / 2.0
    if code == 4:
        return max(0.0, p - abs(x)) / (p * p)
    s = 1.0 / (1.0 + np.exp(-p * x))
    return p * s * (1.0 - s)


@numba.njit(cache=True)
def post_reset(u, s, th, vr, mode):
    """``v`` after the reset of a step whose pre-reset value is ``u`` and spike ``s``."""
    if s == 0.0 or mode == 2:
        return u
    if mode == 0:
        return vr
    return u - (th - vr)


@numba.njit(cache=True, error_model="numpy")
def _forward_plain(b0, b1, jumps, v0, i0, A, B, C0, th, vr, mode, keep, spikes, u_all, v_rec,
                   v_end, i_end):
    """:func:`_forward_kernel` for a ``LIF`` on jumps alone (no current, reset ``"zero"`` or
    ``"subtract"``; ``v`` recorded into ``v_rec`` unless it has 0 rows): the same arithmetic
    in the same order (bit-identical), the membrane kept in a scratch row and the reset as a
    select, so the loop over neurons vectorises (about 4x faster in float32)."""
    n_steps = spikes.shape[0]
    n = v0.shape[1]
    rec = v_rec.shape[0] > 0
    v = np.empty(n, dtype=v0.dtype)
    for b in range(b0, b1):
        v[:] = v0[b]
        i_end[b] = i0[b]
        for t in range(n_steps):
            for k in range(n):
                u = A[k] * v[k] + B[k] * i0[b, k] + C0[k]
                u += jumps[t, b, k]
                fire = u - th[k] >= 0.0
                if keep:  # only the backward pass reads u (loop-invariant: unswitched)
                    u_all[t, b, k] = u
                spikes[t, b, k] = 1.0 if fire else 0.0
                after = vr[k] if mode == 0 else u - (th[k] - vr[k])
                v[k] = after if fire else u
            if rec:  # a copy after the loop (element-wise: no view per row)
                for k in range(n):
                    v_rec[t, b, k] = v[k]
        v_end[b] = v


@numba.njit(cache=True)
def _forward_kernel(b0, b1, jumps, cur, v0, i0, A, B, C0, D, E, F, th, vr, mode, cuba,
                    spikes, u_all, i_before, v_rec, v_end, i_end, plain):
    """All ``T`` steps; arrays ``[T, Bt, N]`` / ``[Bt, N]``, coefficients ``[N]``.

    ``jumps`` / ``cur`` may have ``T = 0`` rows (absent). Writes ``spikes``, ``u_all`` and
    ``i_before`` (CubaLIF) for the backward pass (if they have ``T`` rows: without a backward
    pass they are not kept), ``v_rec`` (``v`` after each step, if it has ``T`` rows) and the
    final state (``v_end``, ``i_end`` also hold the running state), for the samples
    ``b0..b1-1``. Loops: batch, time, neurons (contiguous). ``plain``: a ``LIF`` on jumps
    alone goes to :func:`_forward_plain` (the same results; False only in tests).
    """
    n_steps = spikes.shape[0]
    batch, n = v0.shape
    has_j = jumps.shape[0] > 0
    has_c = cur.shape[0] > 0
    rec = v_rec.shape[0] > 0
    keep = u_all.shape[0] > 0
    if plain and has_j and not (has_c or cuba) and mode != 2:
        _forward_plain(b0, b1, jumps, v0, i0, A, B, C0, th, vr, mode, keep, spikes, u_all,
                       v_rec, v_end, i_end)
        return
    for b in range(b0, b1):
        v = v_end[b]
        i = i_end[b]
        v[:] = v0[b]
        i[:] = i0[b]
        for t in range(n_steps):
            for k in range(n):
                u = A[k] * v[k] + B[k] * i[k] + C0[k]
                if has_c:
                    u += D[k] * cur[t, b, k]
                if cuba:
                    if keep:
                        i_before[t, b, k] = i[k]
                    ik = E[k] * i[k]
                    if has_c:
                        ik += F[k] * cur[t, b, k]
                    if has_j:
                        ik += jumps[t, b, k]
                    i[k] = ik
                elif has_j:
                    u += jumps[t, b, k]
                s = 1.0 if u - th[k] >= 0.0 else 0.0
                if mode == 2 and not v[k] - th[k] < 0.0:
                    s = 0.0
                if keep:
                    u_all[t, b, k] = u
                spikes[t, b, k] = s
                v[k] = post_reset(u, s, th[k], vr[k], mode)
                if rec:
                    v_rec[t, b, k] = v[k]


@numba.njit(cache=True, parallel=True)
def _forward_chunks(n_chunks, jumps, cur, v0, i0, A, B, C0, D, E, F, th, vr, mode, cuba,
                    spikes, u_all, i_before, v_rec, v_end, i_end, plain):
    """:func:`_forward_kernel` over fixed sample chunks in parallel (each owns its samples)."""
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, v0.shape[0])
        _forward_kernel(b0, b1, jumps, cur, v0, i0, A, B, C0, D, E, F, th, vr, mode, cuba,
                        spikes, u_all, i_before, v_rec, v_end, i_end, plain)


@numba.njit(inline="always")
def derivative_row(code, param, u, t, b, th, out):
    """``out = surrogate'(u[t, b] - th)`` (rounded to ``out``'s dtype) for a built-in
    surrogate, ``u [T, B, N]``: one loop per ``code``, each with its formula alone (a constant
    ``code`` inside), so each vectorises (the sigmoid's ``exp`` excepted); the reverse sweeps
    call it once per row (indexing ``u`` itself: a row view per call costs reference counts)."""
    n = out.shape[0]
    if code == 1:
        for k in range(n):
            out[k] = surrogate_derivative(1, param, u[t, b, k] - th[k])
    elif code == 2:
        for k in range(n):
            out[k] = surrogate_derivative(2, param, u[t, b, k] - th[k])
    elif code == 3:
        for k in range(n):
            out[k] = surrogate_derivative(3, param, u[t, b, k] - th[k])
    elif code == 4:
        for k in range(n):
            out[k] = surrogate_derivative(4, param, u[t, b, k] - th[k])
    else:
        for k in range(n):
            out[k] = surrogate_derivative(5, param, u[t, b, k] - th[k])


@numba.njit(cache=True)
def _backward_kernel(b0, b1, g_spikes, sd, code, param, g_rec, u_all, spikes, i_before, cur, v0,
                     A, B, D, E, F, th, vr, mode, cuba, detach, g_jumps, g_cur, lv_all, li_all,
                     acc):
    """Reverse sweep over ``T`` for the samples ``b0 <= b < b1``: the transpose of
    :func:`_forward_kernel`'s linearisation.

    ``lv_all`` / ``li_all`` ``[Bt, N]`` enter as the gradients of the final state and leave as
    those of the initial state. ``acc [8, N]`` (zeros on entry) accumulates the gradients
    of ``A, B, C0, D, E, F, v_threshold, v_reset`` (summed over the batch).
    Surrogate derivative: ``code`` of :data:`SURROGATE_CODES` (evaluated here, row by row),
    ``0``: read from ``sd [T, Bt, N]`` (a user surrogate, evaluated in PyTorch), ``-1``: no
    spike gradient (``g_spikes`` and ``sd`` unused). ``g_cur`` may have 0 rows (no current
    gradient wanted), ``g_rec`` (the gradient of the recorded ``v``) 0 rows when nothing was
    recorded. The loops over neurons use selects rather than branches, so that they vectorise.
    """
    n_steps = spikes.shape[0]
    batch, n = v0.shape
    gu_v = np.empty(n, dtype=v0.dtype)
    vp_v = np.empty(n, dtype=v0.dtype)
    sd_v = np.zeros(n, dtype=v0.dtype)
    no_extra = np.zeros((0, 0), dtype=v0.dtype)
    for b in range(b0, b1):
        for t in range(n_steps - 1, -1, -1):
            reverse_row(t, b, g_spikes, no_extra, sd, code, param, g_rec, u_all, spikes,
                        i_before, cur, v0, A, B, D, E, F, th, vr, mode, detach, cuba, g_jumps,
                        g_cur, lv_all, li_all, acc, gu_v, vp_v, sd_v)


@numba.njit(cache=True, parallel=True)
def _backward_chunks(n_chunks, g_spikes, sd, code, param, g_rec, u_all, spikes, i_before, cur,
                     v0, A, B, D, E, F, th, vr, mode, cuba, detach, g_jumps, g_cur, lv_all,
                     li_all, acc):
    """:func:`_backward_kernel` over fixed sample chunks in parallel (each owns its samples and
    accumulates its parameter gradients in its own ``[8, N]`` block), then the blocks summed
    into ``acc`` in chunk order: the same result on any number of threads."""
    parts = np.zeros((n_chunks, acc.shape[0], acc.shape[1]), dtype=acc.dtype)
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, v0.shape[0])
        _backward_kernel(b0, b1, g_spikes, sd, code, param, g_rec, u_all, spikes, i_before,
                         cur, v0, A, B, D, E, F, th, vr, mode, cuba, detach, g_jumps, g_cur,
                         lv_all, li_all, parts[c])
    for c in range(n_chunks):
        acc += parts[c]


@numba.njit(cache=True, error_model="numpy")
def _backward_plain(b0, b1, g_spikes, code, param, g_rec, u_all, A, th, vr, mode, detach,
                    g_jumps, lv_all):
    """:func:`_backward_kernel` for its most common cases, samples ``b0 <= b < b1``: a ``LIF``
    with jumps only (no current), a built-in surrogate (``code > 0``) or no spike gradient
    (``code -1``: hard spikes, or no gradient reaching them), reset ``"zero"`` or
    ``"subtract"`` and no parameter gradient wanted; ``g_rec`` the gradient of the recorded
    ``v`` (0 rows: nothing recorded). The same arithmetic in the same order (bit-identical
    results), in straight loops over the neurons whose only array writes are ``g_jumps`` and
    the running ``dL/dv`` (the general kernel also accumulates eight parameter gradients and
    the pre-step membrane, which keeps its loops from vectorising), the surrogate's formula
    evaluated per row by :func:`derivative_row`. The spike of each step is recomputed from
    ``u`` (``u - th >= 0``, the forward's own test: with a ``"zero"`` / ``"subtract"`` reset
    nothing else gates it), so it is not kept."""
    n_steps = u_all.shape[0]
    n = u_all.shape[2]
    zero = 1.0 if mode == 0 else 0.0
    sub = 1.0 if mode == 1 else 0.0
    keep = 0.0 if detach else 1.0
    rec = g_rec.shape[0] > 0
    lv = np.empty(n, dtype=u_all.dtype)
    sd = np.empty(n, dtype=u_all.dtype)
    for b in range(b0, b1):
        lv[:] = lv_all[b]
        for t in range(n_steps - 1, -1, -1):
            if rec:
                for k in range(n):
                    lv[k] += g_rec[t, b, k]
            if code > 0:
                derivative_row(code, param, u_all, t, b, th, sd)
                for k in range(n):
                    gu = plain_reverse_step(u_all[t, b, k], sd[k], lv[k], g_spikes[t, b, k],
                                            th[k], vr[k], zero, sub, keep)
                    g_jumps[t, b, k] = gu
                    lv[k] = A[k] * gu
            else:  # no spike gradient: the general kernel's ``gs = 0``
                for k in range(n):
                    s = 1.0 if u_all[t, b, k] - th[k] >= 0.0 else 0.0
                    gu = lv[k] * (1.0 - zero * s) + 0.0
                    g_jumps[t, b, k] = gu
                    lv[k] = A[k] * gu
        lv_all[b] = lv


@numba.njit(cache=True, parallel=True)
def _backward_plain_chunks(n_chunks, g_spikes, code, param, g_rec, u_all, A, th, vr, mode,
                           detach, g_jumps, lv_all):
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, lv_all.shape[0])
        _backward_plain(b0, b1, g_spikes, code, param, g_rec, u_all, A, th, vr, mode, detach,
                        g_jumps, lv_all)


@numba.njit(cache=True, error_model="numpy")
def reverse_row(t, b, g_spikes, extra, sd, code, param, g_rec, u_all, spikes, i_before, cur,
                v0, A, B, D, E, F, th, vr, mode, detach, cuba, g_jumps, g_cur, lv_all, li_all,
                acc, gu_v, vp_v, sd_v):
    """Step ``t`` of sample ``b`` of the reverse sweep (:func:`_backward_kernel`; also the
    fused recurrent layer's, whose spikes get the extra gradient ``extra [N, B]`` through
    the recurrence: ``extra`` with 0 rows adds nothing). ``gu_v, vp_v, sd_v [N]`` scratch."""
    n = v0.shape[1]
    want_c = g_cur.shape[0] > 0
    has_c = cur.shape[0] > 0
    rec = g_rec.shape[0] > 0
    has_s = code >= 0
    has_x = extra.shape[0] > 0
    zero = 1.0 if mode == 0 else 0.0
    sub = 1.0 if mode == 1 else 0.0
    gate = 1.0 if mode == 2 else 0.0
    keep = 0.0 if detach else 1.0
    lv = lv_all[b]
    li = li_all[b]
    a_acc, b_acc, c0_acc, d_acc = acc[0], acc[1], acc[2], acc[3]
    e_acc, f_acc, th_acc, vr_acc = acc[4], acc[5], acc[6], acc[7]
    u_t = u_all[t, b]
    s_t = spikes[t, b]
    if rec:
        g_r = g_rec[t, b]
        for k in range(n):
            lv[k] += g_r[k]
    if t == 0:
        for k in range(n):
            vp_v[k] = v0[b, k]
    else:
        u_p = u_all[t - 1, b]
        s_p = spikes[t - 1, b]
        for k in range(n):
            up = u_p[k]
            after = vr[k] if mode == 0 else up - (th[k] - vr[k])
            vp_v[k] = after if s_p[k] * (1.0 - gate) != 0.0 else up
    if code > 0:
        derivative_row(code, param, u_all, t, b, th, sd_v)
    elif code == 0:
        sd_v[:] = sd[t, b]
    for k in range(n):
        u = u_t[k]
        s = s_t[k]
        lvk = lv[k]
        gs = 0.0
        if has_s:
            allowed = 0.0 if gate * (vp_v[k] - th[k]) >= 0.0 and gate != 0.0 else 1.0
            jump = zero * (vr[k] - u) - sub * (th[k] - vr[k])  # R(u) - u
            g_s = g_spikes[t, b, k] + extra[k, b] if has_x else g_spikes[t, b, k]
            gs = (g_s + keep * lvk * jump) * sd_v[k] * allowed
        gu = lvk * (1.0 - zero * s) + gs
        vr_acc[k] += (zero + sub) * lvk * s
        th_acc[k] -= sub * lvk * s + gs
        a_acc[k] += gu * vp_v[k]
        c0_acc[k] += gu
        lv[k] = A[k] * gu
        gu_v[k] = gu
    gj = g_jumps[t, b]
    if cuba:
        ip_t = i_before[t, b]
        for k in range(n):
            gj[k] = li[k]
            e_acc[k] += li[k] * ip_t[k]
            b_acc[k] += gu_v[k] * ip_t[k]
    else:
        for k in range(n):
            gj[k] = gu_v[k]
    if has_c:
        c_t = cur[t, b]
        for k in range(n):
            d_acc[k] += gu_v[k] * c_t[k]
            if cuba:
                f_acc[k] += li[k] * c_t[k]
        if want_c:
            gc = g_cur[t, b]
            for k in range(n):
                gc[k] = D[k] * gu_v[k] + (F[k] * li[k] if cuba else 0.0)
    if cuba:
        for k in range(n):
            li[k] = E[k] * li[k] + B[k] * gu_v[k]


def as_numpy(t: Tensor) -> np.ndarray:
    """A detached, contiguous tensor's NumPy view (a copy only if not contiguous)."""
    return t.detach().contiguous().numpy()


def _empty_like_steps(like: Tensor) -> Tensor:
    return like.new_zeros((0, *like.shape[1:]))


def surrogate_terms(surrogate: Surrogate, u_all: Tensor, th: Tensor,
                    none: Tensor) -> tuple[Tensor, int, float]:
    """``(sd, code, param)`` for the backward kernels: a built-in surrogate as its code of
    :data:`SURROGATE_CODES` and parameter (evaluated in the kernel; ``sd = none``), any other
    as ``code 0`` with ``sd = surrogate.derivative(u - th)`` over ``[T, B, N]``, computed a
    few time steps at a time."""
    code = SURROGATE_CODES.get(surrogate.family, 0)
    if code:
        return none, code, float(surrogate.parameter)
    sd = torch.empty_like(u_all)
    step = max(1, _CHUNK // max(1, u_all[0].numel()))
    for t in range(0, u_all.shape[0], step):
        sd[t:t + step] = surrogate.derivative(u_all[t:t + step] - th)
    return sd, 0, 0.0


class _FusedLIF(torch.autograd.Function):
    """``(jumps, current, v0, i0, A, B, C0, D, E, F, th, vr, ...) -> (spikes, v_rec, v_end,
    i_end)``; ``surrogate=None``: hard spikes (the reset still passes gradient to ``v``)."""

    @staticmethod
    def forward(ctx, jumps, cur, v0, i0, A, B, C0, D, E, F, th, vr,  # type: ignore[override]
                n_steps, mode, cuba, detach, surrogate, record_v, keep):
        spikes = v0.new_empty((n_steps, *v0.shape))
        # what only the backward pass reads: not kept when there is none (``keep`` False)
        u_all = torch.empty_like(spikes) if keep else _empty_like_steps(spikes)
        i_before = torch.empty_like(spikes) if cuba and keep else _empty_like_steps(spikes)
        v_rec = torch.empty_like(spikes) if record_v else _empty_like_steps(spikes)
        v_end, i_end = torch.empty_like(v0), torch.empty_like(v0)
        args = (*(as_numpy(a) for a in (jumps, cur, v0, i0, A, B, C0, D, E, F, th, vr)),
                mode, cuba, spikes.numpy(), u_all.numpy(), i_before.numpy(), v_rec.numpy(),
                v_end.numpy(), i_end.numpy(), _PLAIN)
        batch = v0.shape[0]
        # samples are independent: fixed chunks on both threads for a large call (the same
        # result on any number of threads: each chunk owns its samples)
        threads = kernel_threads() if n_steps * v0.numel() >= _PARALLEL_WORK and batch > 1 \
            else 1
        if threads == 1:
            _forward_kernel(0, batch, *args)
        else:
            with numba_threads(threads):
                _forward_chunks(min(_CHUNKS, batch), *args)
        # with a "zero" / "subtract" reset the spikes are ``u - th >= 0``: the backward pass
        # recomputes them from ``u`` instead of keeping a second [T, B, N] tensor alive
        kept = spikes if mode == 2 else _empty_like_steps(spikes)
        ctx.save_for_backward(u_all, kept, i_before, cur, v0, A, B, D, E, F, th, vr)
        ctx.flags = (mode, cuba, detach or surrogate is None, surrogate, jumps.shape[0] > 0,
                     record_v)
        if surrogate is None:
            ctx.mark_non_differentiable(spikes)
        return spikes, v_rec, v_end, i_end

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_spikes, g_rec, g_v_end, g_i_end):  # type: ignore[override]
        u_all, spikes, i_before, cur, v0, A, B, D, E, F, th, vr = ctx.saved_tensors
        mode, cuba, detach, surrogate, has_j, record_v = ctx.flags
        empty = _empty_like_steps(u_all)
        sd, code, param = empty, -1, 0.0  # no spike gradient
        if surrogate is not None and g_spikes is not None:
            sd, code, param = surrogate_terms(surrogate, u_all, th, empty)
            if g_spikes.dtype != u_all.dtype:
                g_spikes = g_spikes.to(u_all.dtype)
        else:
            g_spikes = empty
        g_rec = g_rec.contiguous() if record_v and g_rec is not None else empty
        lv = torch.zeros_like(v0) if g_v_end is None else g_v_end.clone()
        li = torch.zeros_like(v0) if g_i_end is None else g_i_end.clone()
        g_jumps = torch.empty_like(u_all)
        g_cur = torch.empty_like(u_all) if ctx.needs_input_grad[1] else empty
        batch = v0.shape[0]
        parallel = u_all.numel() >= _PARALLEL_WORK and batch > 1
        # a LIF on jumps alone, a built-in or no surrogate, no parameter or current gradient
        plain = (_PLAIN and code != 0 and not cuba and cur.shape[0] == 0 and mode in (0, 1)
                 and not ctx.needs_input_grad[1] and not any(ctx.needs_input_grad[3:12]))
        if plain:
            args = (g_spikes.detach().numpy(), code, param, as_numpy(g_rec), as_numpy(u_all),
                    as_numpy(A), as_numpy(th), as_numpy(vr), mode, detach, g_jumps.numpy(),
                    lv.numpy())
            if parallel:
                with numba_threads(kernel_threads()):
                    _backward_plain_chunks(min(_CHUNKS, batch), *args)
            else:
                _backward_plain(0, batch, *args)
            return (g_jumps if has_j else None, None, lv, None,
                    *([None] * (len(ctx.needs_input_grad) - 4)))
        if mode != 2:  # not kept (see forward): the forward's own test, bit for bit
            spikes = (u_all - th >= 0).to(u_all.dtype)
        acc = v0.new_zeros((8, v0.shape[1]))  # small: PyTorch runs it on one thread
        # g_spikes may be broadcast (e.g. from a sum): read through its strides, no copy
        args = (g_spikes.detach().numpy(), as_numpy(sd), code, param,
                *(as_numpy(a) for a in (g_rec, u_all, spikes, i_before, cur, v0, A, B, D, E, F,
                                        th, vr)),
                mode, cuba, detach, g_jumps.numpy(), g_cur.numpy(), lv.numpy(), li.numpy(),
                acc.numpy())
        # as the forward: fixed sample chunks on both threads for a large call, the parameter
        # gradients summed over the chunks in a fixed order. The form depends on the size
        # only (one thread runs the chunks too), so any thread count gives the same result.
        if parallel:
            with numba_threads(kernel_threads()):
                _backward_chunks(min(_CHUNKS, batch), *args)
        else:
            _backward_kernel(0, batch, *args)
        gA, gB, gC0, gD, gE, gF, gth, gvr = acc.unbind(0)
        return (g_jumps if has_j else None, g_cur if ctx.needs_input_grad[1] else None,
                lv, li if cuba else None, gA, gB, gC0, gD, gE, gF, gth, gvr,
                None, None, None, None, None, None, None)


class FusedRun(NamedTuple):
    """What :func:`fused_lif` returns: ``raster [T, B, N]``, the recorded ``v [T, B, N]`` (or
    ``None``) and the final state."""

    raster: Tensor
    v: Tensor | None
    final_state: tuple


def fused_lif(model: NeuronModel, *, dt: float, n_steps: int, state: tuple,
              jumps: Tensor | None, current: Tensor | None, method: str,
              surrogate: Surrogate | None, detach_reset: bool,
              record_v: bool = False) -> FusedRun:
    """Run a ``LIF`` / ``CubaLIF`` population over all steps in one kernel.

    Args:
        model: a :class:`~ctsnn.models.LIF` or :class:`~ctsnn.models.CubaLIF`.
        dt: grid step (s).
        n_steps: ``T``.
        state: initial state (``[B, N]`` per variable).
        jumps: ``[T, B, N]`` added to the jump target at the end of each step, or ``None``.
        current: ``[T, B, N]`` input current held over each step, or ``None``.
        method: ``"exact"`` or ``"euler"``.
        surrogate: the spike's surrogate (its derivative is used in the backward pass), or
            ``None``: hard 0/1 spikes without gradient (as the engine without a surrogate).
        detach_reset: stop the gradient through the reset's spike factor.
        record_v: also return ``v`` at the end of every step.

    Returns:
        :class:`FusedRun`; differentiable w.r.t. the inputs, the initial state and the model's
        parameters.
    """
    if type(model) not in (LIF, CubaLIF):
        raise TypeError(f"fused_lif runs LIF and CubaLIF, got {type(model).__name__}")
    coef = step_coefficients(model, method, dt)
    cuba = isinstance(model, CubaLIF)
    v0 = state.v
    i0 = state.i if cuba else torch.zeros_like(v0)
    none = _empty_like_steps(v0.unsqueeze(0))
    th = model.v_threshold.to(v0.dtype)
    vr = model.v_reset.to(v0.dtype)
    inputs = (none if jumps is None else jumps.contiguous(),
              none if current is None else current.contiguous(), v0, i0, *coef, th, vr)
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    spikes, v_rec, v_end, i_end = _FusedLIF.apply(
        *inputs, int(n_steps), RESET_CODES[model.reset_mode], cuba, bool(detach_reset),
        surrogate, bool(record_v), keep)
    final = model.State(v_end, i_end) if cuba else model.State(v_end)
    return FusedRun(spikes, v_rec if record_v else None, final)


def fused_lif_applies(model: NeuronModel, *, time: str, method: str, state: tuple,
                      recurrent: object, record: tuple, record_every: int, saveat: object,
                      integrand: object, tensors: tuple) -> bool:
    """Whether :func:`run_fused_lif` may replace the step-by-step discrete loop (see module)."""
    if time != "discrete" or type(model) not in (LIF, CubaLIF) or method not in FUSED_METHODS:
        return False
    if saveat is not None or integrand is not None:
        return False
    if recurrent is not None and not (isinstance(recurrent, RecurrentDense)
                                      and recurrent.scatter_applies(state.v.dtype)):
        return False  # a recurrent layer fuses only with DelRec's scatter (lif_recurrent)
    if model.delayed_reads or (record and (tuple(record) != ("v",) or record_every != 1)):
        return False
    present = tuple(t for t in (*tensors, *state) if t is not None)
    if not kernels_enabled(*present, model.tau_mem):
        return False
    if any(t.dtype != state.v.dtype for t in present):
        return False  # mixed dtypes: the reference loop promotes as PyTorch does
    if bool((model.refractory > 0).any()):
        return False
    if model.resets and bool((state.v.detach() >= model.v_threshold.detach()).any()):
        return False  # spikes at t = 0: the reference loop logs them
    return True


def run_fused_lif(model: NeuronModel, *, dt: float, n_steps: int, state: tuple,
                  jumps: Tensor | None, current: Tensor | None, method: str,
                  surrogate: Surrogate | None, detach_reset: bool,
                  record: tuple = ()) -> SimulationResult:
    """The engine's discrete run of an eligible population (:func:`fused_lif_applies`)."""
    run = fused_lif(model, dt=dt, n_steps=n_steps, state=state, jumps=jumps, current=current,
                    method=method, surrogate=surrogate, detach_reset=detach_reset,
                    record_v="v" in record)
    check_state(model, run.final_state, max(n_steps - 1, 0), dt, method)
    zero = torch.zeros_like(state.v)
    spikes = raster_spikes(run.raster, dt, None, n_steps, tuple(zero.shape), zero)
    states = {} if run.v is None else {"v": run.v}
    return SimulationResult(spikes=spikes, states=states, final_state=run.final_state,
                            raster=run.raster, output=None, saved={})
