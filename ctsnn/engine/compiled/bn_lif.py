"""BatchNorm (training statistics) fused with a plain fused LIF: one kernel reads the synapses'
output, normalises it and runs the neurons; the backward pass keeps only that input.

The unfused chain ``y = BatchNorm1d(x)`` (statistics over all ``T x B`` entries) followed by
:func:`~ctsnn.engine.compiled.lif_bptt.fused_lif` keeps three ``[T, B, N]`` tensors per layer
for the backward pass: BatchNorm's input ``x``, the LIF's pre-reset membrane ``u`` and (before
this module's session) the spikes, and materialises ``y`` in between. :func:`bn_lif` keeps only
``x`` (and the ``[N]`` statistics):

* forward: the batch statistics as :class:`torch.nn.BatchNorm1d` computes them
  (``torch.batch_norm_update_stats``, which also updates the running statistics; ``invstd``
  as ATen's ``1 / sqrt(var + eps)``, bit for bit), the affine ``y = x alpha + beta`` with
  ``alpha = invstd weight``, ``beta = bias - mean alpha`` evaluated in the kernel as the LIF
  reads its input (``y`` is never stored), then the LIF update of
  :func:`~ctsnn.engine.compiled.lif_bptt.fused_lif`'s plain kernel;
* backward, per sample: the membrane ``u`` recomputed by the same forward loop (the same
  arithmetic, so the same values and spikes) into the buffer that then receives ``dL/dy``
  (each entry read before it is overwritten), the plain reverse sweep accumulating
  BatchNorm's two per-channel sums (float64, fixed sample chunks summed in order), then
  BatchNorm's input gradient in place in that same buffer (ATen's training formula): one
  ``[T, B, N]`` allocation for the whole backward pass.

Results equal the unfused modules to rounding: ATen's vectorised affine may round ``y``
differently (one ulp; e.g. a fused multiply-add), so spikes can differ only where ``u`` is
within rounding of the threshold, and BatchNorm's sums run in another order (here in float64).
In evaluation mode under ``torch.no_grad`` the same kernel runs with the running statistics
(``alpha = weight / sqrt(running_var + eps)``, ATen's evaluation affine), forward only.
Applies (:func:`bn_lif_applies`) to a ``BatchNorm1d`` (training mode, or evaluation mode
without autograd) with affine parameters,
running statistics and ``eps > 0`` followed by a ``LIF`` (method ``"exact"`` / ``"euler"``,
reset ``"zero"`` / ``"subtract"``, no refractory period, no parameter requiring a gradient,
below threshold at rest) with a built-in surrogate, on CPU tensors of one dtype with kernels on.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor, nn

from ...compiled import kernel_threads, kernels_enabled, numba_threads, run_serial_or_chunks
from ...models.lif import LIF
from ...surrogate import Surrogate
from .lif_bptt import (
    FUSED_METHODS,
    RESET_CODES,
    SURROGATE_CODES,
    as_numpy,
    derivative_row,
    plain_reverse_step,
    step_coefficients,
)
from .schedule import chunk_bounds

__all__ = ["bn_lif", "bn_lif_applies", "batch_statistics"]

#: Neuron steps (``T B N``) from which the kernels run fixed sample chunks on both threads.
_PARALLEL_WORK = 200_000
#: Sample chunks of the parallel forms (fixed: results never depend on the thread count).
_CHUNKS = 16


# --------------------------------------------------------------------------- kernels
@numba.njit(inline="always")
def _advance(xv, alpha, beta, A, C0, th, vr, mode, v):
    """One neuron's step from ``v``: ``(u, fire, v after the step)``, the input ``y = x alpha
    + beta`` normalised as it is read (every loop over the neurons inlines this one update, so
    the forward and the backward's recomputation give the same ``u`` and spikes)."""
    y = xv * alpha + beta
    u = A * v + C0
    u += y
    fire = u - th >= 0.0
    after = vr if mode == 0 else u - (th - vr)
    return u, fire, after if fire else u


@numba.njit(cache=True, error_model="numpy")
def _forward(b0, b1, x, alpha, beta, v0, A, C0, th, vr, mode, keep, den, spikes):
    """Samples ``b0 <= b < b1`` over all steps: the spikes into ``spikes[t, b]``, as ``s
    keep[b] / den[0]`` (dropout) unless ``keep`` has 0 rows. ``s`` is 0 or 1 and the mask
    ``keep >= 0``, so that value is ``q = keep / den`` (computed once per sample) where the
    neuron fires and ``+0`` elsewhere, the same bits; without dropout ``q = 1``. One straight
    loop over the neurons per step (it vectorises)."""
    n_steps = x.shape[0]
    n = x.shape[2]
    v = np.empty(n, dtype=v0.dtype)
    q = np.ones(n, dtype=v0.dtype)
    drop = keep.shape[0] > 0
    for b in range(b0, b1):
        v[:] = v0[b]
        if drop:
            for k in range(n):
                q[k] = keep[b, k] / den[0]
        for t in range(n_steps):
            for k in range(n):
                _, fire, v[k] = _advance(x[t, b, k], alpha[k], beta[k], A[k], C0[k], th[k],
                                         vr[k], mode, v[k])
                spikes[t, b, k] = q[k] if fire else 0.0


@numba.njit(cache=True, parallel=True)
def _forward_chunks(n_chunks, x, alpha, beta, v0, A, C0, th, vr, mode, keep, den, spikes):
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, v0.shape[0])
        _forward(b0, b1, x, alpha, beta, v0, A, C0, th, vr, mode, keep, den, spikes)


@numba.njit(inline="always")
def _sweep_row(t, b, g_y, sd, g_spikes, keep, den, lv, A, th, vr, zero, sub, through, drop):
    """One step of the reverse sweep over the neurons, in place: ``g_y[t, b]`` (``u``)
    becomes ``dL/dy``; the output's gradient passes the dropout as autograd passes ``s keep /
    den``: ``(g / den) keep``. Called with a constant ``drop``: one straight loop either way."""
    for k in range(sd.shape[0]):
        g_s = g_spikes[t, b, k] / den * keep[b, k] if drop else g_spikes[t, b, k]
        gu = plain_reverse_step(g_y[t, b, k], sd[k], lv[k], g_s, th[k], vr[k], zero, sub,
                                through)
        g_y[t, b, k] = gu
        lv[k] = A[k] * gu


@numba.njit(cache=True, error_model="numpy")
def _backward(b0, b1, g_spikes, code, param, x, alpha, beta, mean, v0, A, C0, th, vr, mode,
              keep, den, detach, g_y, sums):
    """Samples ``b0 <= b < b1``: ``u`` recomputed into ``g_y``, then the reverse sweep of
    :func:`~ctsnn.engine.compiled.lif_bptt._backward_plain` (same arithmetic, the surrogate
    per row by :func:`~ctsnn.engine.compiled.lif_bptt.derivative_row`) overwriting it with
    ``dL/dy`` (:func:`_sweep_row`; ``g_spikes``: its first ``T`` rows). Accumulates
    BatchNorm's sums ``sum dL/dy`` and ``sum (x - mean) dL/dy`` into ``sums [2, N]``
    (float64). The final state has no gradient (it is not an output). The loops index the
    ``[T, B, N]`` arrays themselves (a row view per step costs reference counts)."""
    n_steps = x.shape[0]
    n = x.shape[2]
    zero = 1.0 if mode == 0 else 0.0
    sub = 1.0 if mode == 1 else 0.0
    through = 0.0 if detach else 1.0
    v = np.empty(n, dtype=v0.dtype)
    lv = np.empty(n, dtype=v0.dtype)
    sd = np.empty(n, dtype=v0.dtype)
    drop = keep.shape[0] > 0
    d = den[0]
    s_dy = sums[0]
    s_dot = sums[1]
    for b in range(b0, b1):
        v[:] = v0[b]
        for t in range(n_steps):
            for k in range(n):
                g_y[t, b, k], _, v[k] = _advance(x[t, b, k], alpha[k], beta[k], A[k], C0[k],
                                                 th[k], vr[k], mode, v[k])
        lv[:] = 0.0
        for t in range(n_steps - 1, -1, -1):
            derivative_row(code, param, g_y, t, b, th, sd)
            if drop:
                _sweep_row(t, b, g_y, sd, g_spikes, keep, d, lv, A, th, vr, zero, sub, through,
                           True)
            else:
                _sweep_row(t, b, g_y, sd, g_spikes, keep, d, lv, A, th, vr, zero, sub, through,
                           False)
        # the sample's rows are still in cache; in step order, as before (the same sums)
        for t in range(n_steps):
            for k in range(n):
                gu = np.float64(g_y[t, b, k])
                s_dy[k] += gu
                s_dot[k] += (x[t, b, k] - mean[k]) * gu


@numba.njit(cache=True, parallel=True)
def _backward_chunks(n_chunks, g_spikes, code, param, x, alpha, beta, mean, v0, A, C0, th, vr,
                     mode, keep, den, detach, g_y, sums):
    """:func:`_backward` over fixed sample chunks, chunk ``c`` summing into ``sums[c]``."""
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, v0.shape[0])
        _backward(b0, b1, g_spikes, code, param, x, alpha, beta, mean, v0, A, C0, th, vr, mode,
                  keep, den, detach, g_y, sums[c])


@numba.njit(cache=True, error_model="numpy")
def _input_grad(b0, b1, x, mean, kx, shift, scale, g):
    """BatchNorm's input gradient in place, samples ``b0 <= b < b1``:
    ``g = (g - shift - (x - mean) kx) scale`` (per channel ``[N]`` coefficients)."""
    for b in range(b0, b1):
        for t in range(x.shape[0]):
            for k in range(x.shape[2]):
                g[t, b, k] = (g[t, b, k] - shift[k] - (x[t, b, k] - mean[k]) * kx[k]) * scale[k]


@numba.njit(cache=True, parallel=True)
def _input_grad_chunks(n_chunks, x, mean, kx, shift, scale, g):
    for c in prange(n_chunks):
        b0, b1 = chunk_bounds(c, n_chunks, x.shape[1])
        _input_grad(b0, b1, x, mean, kx, shift, scale, g)


# --------------------------------------------------------------------------- autograd
def batch_statistics(x2: Tensor, norm: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """``(mean, invstd)`` ``[N]`` of ``x2 [M, N]`` as ``norm`` computes them in training, and
    the same update of its running statistics and ``num_batches_tracked`` (bit for bit)."""
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            factor = 1.0 / float(norm.num_batches_tracked)
    mean, var = torch.batch_norm_update_stats(x2, norm.running_mean, norm.running_var, factor)
    # ATen's InvStd: 1 / sqrt(var + eps) with eps a double, rounded once to the dtype
    invstd = (1.0 / torch.sqrt(var.double() + norm.eps)).to(var.dtype)
    return mean, invstd


def _run_chunked(serial, chunks, batch: int, work: int, sums: np.ndarray, *args) -> None:
    """As :func:`~ctsnn.compiled.run_serial_or_chunks` for a kernel accumulating per-chunk
    ``sums[c]``: always the same ``len(sums)`` sample chunks (run one after the other on one
    thread), so the sums never depend on the thread count."""
    n_chunks = sums.shape[0]
    if work >= _PARALLEL_WORK and batch > 1 and kernel_threads() > 1:
        with numba_threads(kernel_threads()):
            chunks(n_chunks, *args, sums)
        return
    for c in range(n_chunks):
        serial(*chunk_bounds(c, n_chunks, batch), *args, sums[c])


class _BNLIF(torch.autograd.Function):
    """``(x, weight, bias, mean, invstd, v0, A, C0, th, vr, keep, den, ...) -> spikes
    [T + pad, B, N]`` (dropout applied, ``pad`` zero steps appended)."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, v0, A, C0, th, vr,  # type: ignore[override]
                keep, den, mode, code, param, detach, eps, pad):
        alpha = invstd * weight.detach()
        beta = bias.detach() - mean * alpha
        n_steps = x.shape[0]
        spikes = x.new_empty((n_steps + pad, *x.shape[1:]))
        spikes[n_steps:].zero_()
        consts = tuple(as_numpy(a) for a in (alpha, beta, v0, A, C0, th, vr))
        run_serial_or_chunks(_forward, _forward_chunks, x.shape[1], x.numel(), _PARALLEL_WORK,
                             _CHUNKS, as_numpy(x), *consts, mode, as_numpy(keep),
                             as_numpy(den), spikes.numpy())
        ctx.save_for_backward(x, weight, mean, invstd, alpha, beta, v0, A, C0, th, vr, keep,
                              den)
        ctx.flags = (mode, code, param, detach, eps)
        return spikes

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_spikes):  # type: ignore[override]
        x, weight, mean, invstd, alpha, beta, v0, A, C0, th, vr, keep, den = ctx.saved_tensors
        mode, code, param, detach, eps = ctx.flags
        if g_spikes.dtype != x.dtype:
            g_spikes = g_spikes.to(x.dtype)
        n_steps, batch, n = x.shape
        g = torch.empty_like(x)  # u, then dL/dy, then (in place) dL/dx
        sums = np.zeros((min(_CHUNKS, batch), 2, n))
        arrays = tuple(as_numpy(a) for a in (x, alpha, beta, mean, v0, A, C0, th, vr))
        _run_chunked(_backward, _backward_chunks, batch, x.numel(), sums,
                     g_spikes.detach().numpy(), code, param, *arrays, mode, as_numpy(keep),
                     as_numpy(den), detach, g.numpy())
        # BatchNorm's backward (training statistics), ATen's formula: with M = T B entries,
        # dx = (dy - sum(dy) / M - (x - mean) dot invstd^2 / M) invstd weight,
        # dweight = dot invstd, dbias = sum(dy), dot = sum((x - mean) dy)
        total = torch.from_numpy(sums.sum(axis=0))  # chunk partials in chunk order
        s_dy, dot = total[0], total[1]
        inv = invstd.double()
        m = n_steps * batch
        need = ctx.needs_input_grad
        if need[0]:
            kx = (dot * inv * inv / m).to(x.dtype)
            shift = (s_dy / m).to(x.dtype)
            scale = (inv * weight.detach().double()).to(x.dtype)
            run_serial_or_chunks(_input_grad, _input_grad_chunks, batch, x.numel(),
                                 _PARALLEL_WORK, _CHUNKS, as_numpy(x), as_numpy(mean),
                                 kx.numpy(), shift.numpy(), scale.numpy(), g.numpy())
        g_w = (dot * inv).to(x.dtype) if need[1] else None
        g_b = s_dy.to(x.dtype) if need[2] else None
        return (g if need[0] else None, g_w, g_b, *([None] * 15))


def bn_lif_applies(like: Tensor, norm: nn.Module, model: nn.Module, *, method: str | None,
                   surrogate: Surrogate | None) -> bool:
    """Whether :func:`bn_lif` runs ``norm`` then ``model`` on input of ``like``'s dtype and
    device (see module); a caller may ask before computing the input itself."""
    if not (isinstance(norm, nn.BatchNorm1d) and norm.affine and norm.track_running_stats
            and norm.eps > 0):
        return False
    if not norm.training and torch.is_grad_enabled():
        return False  # evaluation statistics: the fused form is forward-only (no_grad)
    if type(model) is not LIF or method not in FUSED_METHODS or model.delayed_reads:
        return False
    if model.reset_mode not in ("zero", "subtract") or surrogate is None \
            or SURROGATE_CODES.get(surrogate.family, 0) == 0:
        return False
    if norm.num_features != model.n:
        return False
    params = (norm.weight, norm.bias, norm.running_mean, norm.running_var)
    if not kernels_enabled(like, *params, model.tau_mem):
        return False
    if any(p.dtype != like.dtype for p in (*params, model.tau_mem, model.v_threshold)):
        return False
    if any(p.requires_grad for p in model.parameters()):
        return False  # the plain reverse sweep has no neuron-parameter gradients
    if bool((model.refractory > 0).any()):
        return False
    rest = model.initial_state(1, dtype=like.dtype, device=like.device).v
    return not bool((rest >= model.v_threshold).any())  # at threshold at t = 0: engine


def bn_lif(x: Tensor, norm: nn.BatchNorm1d, model: LIF, *, dt: float, method: str,
           surrogate: Surrogate, detach_reset: bool, keep: Tensor | None = None,
           p: float = 0.0, pad: int = 0) -> Tensor:
    """``BatchNorm1d`` over the channels of ``x``, a ``LIF`` from rest, then optionally
    dropout with a given mask shared over time and right zero-padding. In training the batch
    statistics (running statistics updated); in evaluation mode the running statistics, and
    then only without autograd (``torch.no_grad``): the evaluation forward keeps no
    ``[T, B, N]`` normalised copy.

    Args:
        x: ``[T, B, N]`` the synapses' summed input per step (the neurons' jumps before
            normalisation); statistics over all ``T x B`` entries.
        norm: the ``BatchNorm1d(N)``; its running statistics are updated as its forward does.
        model: the ``LIF`` (``N`` neurons); jumps added to ``v`` at the end of each step.
        dt: grid step (s). method: ``"exact"`` or ``"euler"``.
        surrogate: built-in surrogate of the spikes' gradient. detach_reset: as the engine.
        keep: dropout mask ``[B, N]`` (0 / 1, ``x``'s dtype; e.g.
            :meth:`ctsnn.dropout.SequenceDropout.shared_mask`) or ``None`` (no dropout);
            the output is ``s * keep / (1 - p)`` as :class:`~ctsnn.dropout.SequenceDropout`
            computes it (same values and gradients, bit for bit).
        p: the dropout probability, in ``[0, 1)``, with ``keep`` (``0`` without it).
        pad: zero steps appended to the output (the next layer's right padding).

    Returns:
        The output ``[T + pad, B, N]``, differentiable w.r.t. ``x``, ``norm.weight`` and
        ``norm.bias``: the same as ``fused_lif(norm(x))`` (then the dropout and the padding)
        to rounding (see module).

    Raises:
        ValueError: if :func:`bn_lif_applies` is false for these arguments, or the shapes or
            the dropout arguments do not fit.
    """
    if not bn_lif_applies(x, norm, model, method=method, surrogate=surrogate):
        raise ValueError("bn_lif: these modules / inputs are not a training BatchNorm1d and a "
                         "plain LIF on CPU kernels (see bn_lif_applies); run them unfused")
    if x.ndim != 3 or x.shape[2] != model.n or 0 in x.shape:
        raise ValueError(f"bn_lif: x must be a non-empty [T, B, N] tensor with N = {model.n} "
                         f"(the LIF's size), got shape {list(x.shape)}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"bn_lif: pad must be an int >= 0, got {pad!r}")
    if not 0.0 <= p < 1.0 or (keep is None and p != 0.0):
        raise ValueError(f"bn_lif: the dropout probability p must be in [0, 1) and given with "
                         f"a mask keep, got p = {p!r} and keep {'None' if keep is None else 'set'}")
    if keep is not None and (keep.shape != x.shape[1:] or keep.dtype != x.dtype
                             or keep.device != x.device):
        raise ValueError(f"bn_lif: keep must be a [B, N] = {list(x.shape[1:])} mask of x's dtype "
                         f"and device, got {list(keep.shape)} {keep.dtype} on {keep.device}")
    x = x.contiguous()
    n_steps, batch, n = x.shape
    if norm.training:
        mean, invstd = batch_statistics(x.detach().view(-1, n), norm)
    else:  # ATen's evaluation form: the running statistics, 1 / sqrt(var + eps) in the dtype
        mean = norm.running_mean.detach()
        invstd = 1.0 / torch.sqrt(norm.running_var.detach() + norm.eps)
    coef = step_coefficients(model, method, dt)
    v0 = model.initial_state(batch, dtype=x.dtype, device=x.device).v.detach()
    th = model.v_threshold.detach().to(x.dtype)
    vr = model.v_reset.detach().to(x.dtype)
    # 1 - p rounded to the dtype once, as a tensor op with a Python scalar does
    den = torch.full((1,), 1.0 - p, dtype=x.dtype, device=x.device)
    keep = x.new_zeros((0, n)) if keep is None else keep.detach().contiguous()
    return _BNLIF.apply(x, norm.weight, norm.bias, mean, invstd, v0, coef.A.detach(),
                        coef.C0.detach(), th, vr, keep, den, RESET_CODES[model.reset_mode],
                        SURROGATE_CODES[surrogate.family], float(surrogate.parameter),
                        bool(detach_reset), float(norm.eps), pad)
