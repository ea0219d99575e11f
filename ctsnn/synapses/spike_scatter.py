"""Spike-sparse delayed synapses on the grid: each input spike scatters its taps into delayed
output slots (numba), so the forward cost follows spikes x fan-out x taps, not ``T x K``.

Same operation as :func:`ctsnn.synapses.conv.tap_conv` (the pure-PyTorch reference, one dense
matrix product per distinct lag) for a sparse kernel ``taps`` (``lags, coefs [n_taps, N_out,
N_in]``, weights included)::

    out[t + lags[k, i, j], b, i] += coefs[k, i, j] x[t, b, j]

Layout: rows per unit with time and batch flattened, batch contiguous (``x -> [N_in, T * B]``,
``out -> [N_out, T_out * B]``), so a lag of ``L`` steps is a shift of ``L * B`` in a row.

* forward: the non-zero entries of ``x`` per input unit (positions ascending), scattered into
  every target's row (one target row at a time: rows stay in cache);
* backward, the transpose: ``dL/dx[j]`` is a sum of shifted rows of ``dL/dout`` (dense: the
  surrogate gradient reaches every input entry; contiguous, vectorised loops),
  ``dL/dcoefs[k, i, j]`` a sum over the spikes of ``j`` only. Gradients w.r.t. weights
  and delays follow from ``dL/dcoefs`` through the kernel's own interpolation weights in
  PyTorch autograd, exactly as on the reference path.

:func:`scatter_pays` says when :class:`~ctsnn.synapses.Dense` takes this path (CPU, kernels on,
input density at most :data:`MAX_DENSITY`).

The kernels run on one thread: on a machine whose cores PyTorch's own thread pool already
keeps busy (and spins on), a second pool made them slower under load (measured).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..compiled import kernels_enabled
from .kernels import Taps

__all__ = ["MAX_DENSITY", "SpikeScatter", "scatter_pays", "spike_scatter"]

#: Largest fraction of non-zero input entries for which the scatter path is chosen (measured
#: break-even against the dense-lag path, see docs/kernels-grid.md).
MAX_DENSITY = 0.25


@numba.njit(cache=True)
def _forward(offsets, pos, val, lags, coefs, n_batch, out):
    """``out[i, pos + L B] += c val`` for every spike of every input and every tap."""
    n_taps, n_out, n_in = lags.shape
    size = out.shape[1]
    for i in range(n_out):
        row = out[i]
        for j in range(n_in):
            a = offsets[j]
            e = offsets[j + 1]
            if a == e:
                continue
            for k in range(n_taps):
                c = coefs[k, i, j]
                if c == 0.0:
                    continue
                shift = lags[k, i, j] * n_batch
                for q in range(a, e):
                    p = pos[q] + shift
                    if p >= size:
                        break
                    row[p] += c * val[q]


@numba.njit(cache=True, fastmath=True)
def _grad_input(g, lags, coefs, n_batch, gx):
    """``gx[j, p] = sum_{i, k} coefs[k, i, j] g[i, p + lags[k, i, j] B]`` (dense rows).

    The inner loop is a contiguous axpy on slices (vectorised; ``fastmath`` only lets it use
    fused multiply-adds and drop alias checks).
    """
    n_taps, n_out, n_in = lags.shape
    size_out = g.shape[1]
    size_in = gx.shape[1]
    for j in range(n_in):
        row = gx[j]
        for i in range(n_out):
            for k in range(n_taps):
                c = coefs[k, i, j]
                if c == 0.0:
                    continue
                shift = lags[k, i, j] * n_batch
                m = min(size_in, size_out - shift)
                src = g[i, shift:shift + m]
                dst = row[:m]
                for p in range(m):
                    dst[p] += c * src[p]


@numba.njit(cache=True)
def _grad_coefs(offsets, pos, val, lags, g, n_batch, gc):
    """``gc[k, i, j] = sum over the spikes q of j of val[q] g[i, pos[q] + lags[k, i, j] B]``."""
    n_taps, n_out, n_in = lags.shape
    size = g.shape[1]
    for i in range(n_out):
        grow = g[i]
        for j in range(n_in):
            a = offsets[j]
            e = offsets[j + 1]
            for k in range(n_taps):
                shift = lags[k, i, j] * n_batch
                s = 0.0
                for q in range(a, e):
                    p = pos[q] + shift
                    if p >= size:
                        break
                    s += val[q] * grow[p]
                gc[k, i, j] = s


def _events(x: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero entries of ``x [T, B, N]`` per unit: ``offsets [N + 1]``, flat positions
    ``t * B + b`` (ascending within a unit) and values."""
    rows = x.detach().permute(2, 0, 1).reshape(x.shape[2], -1)
    unit, pos = rows.nonzero(as_tuple=True)
    val = rows[unit, pos].contiguous()
    counts = torch.bincount(unit, minlength=x.shape[2])
    offsets = torch.zeros(x.shape[2] + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=offsets[1:])
    return offsets.numpy(), pos.contiguous().numpy(), val.numpy()


def _rows(t: Tensor) -> Tensor:
    """``[T, B, N] -> [N, T * B]`` contiguous (batch contiguous within a row)."""
    return t.permute(2, 0, 1).reshape(t.shape[2], -1).contiguous()


def _unrows(rows: Tensor, n_steps: int, batch: int) -> Tensor:
    """``[N, T * B] -> [T, B, N]`` contiguous."""
    return rows.view(rows.shape[0], n_steps, batch).permute(1, 2, 0).contiguous()


class SpikeScatter(torch.autograd.Function):
    """``(x [T, B, N_in], lags, coefs [n_taps, N_out, N_in], pad_right) -> [T + pad, B, N_out]``.

    Differentiable w.r.t. ``x`` and ``coefs`` (``lags`` are integers).
    """

    @staticmethod
    def forward(ctx, x: Tensor, lags: Tensor, coefs: Tensor,  # type: ignore[override]
                pad_right: int) -> Tensor:
        n_steps, batch, _ = x.shape
        n_out = coefs.shape[1]
        lags = lags.contiguous()
        coefs_c = coefs.detach().contiguous()
        offsets, pos, val = _events(x)
        out = x.new_zeros((n_out, (n_steps + pad_right) * batch))
        _forward(offsets, pos, val, lags.numpy(), coefs_c.numpy(), batch, out.numpy())
        ctx.save_for_backward(lags, coefs_c)
        ctx.events = (offsets, pos, val)
        ctx.shape = (n_steps, batch, x.shape[2], pad_right)
        return _unrows(out, n_steps + pad_right, batch)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        lags, coefs = ctx.saved_tensors
        n_steps, batch, n_in, pad_right = ctx.shape
        g = _rows(grad.to(coefs.dtype))
        need_x, _, need_c, _ = ctx.needs_input_grad
        gx = gc = None
        if need_x:
            rows = g.new_zeros((n_in, n_steps * batch))
            _grad_input(g.numpy(), lags.numpy(), coefs.numpy(), batch, rows.numpy())
            gx = _unrows(rows, n_steps, batch)
        if need_c:
            gc = torch.empty_like(coefs)
            _grad_coefs(*ctx.events, lags.numpy(), g.numpy(), batch, gc.numpy())
        return gx, None, gc, None


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


def scatter_pays(x: Tensor, *tensors: Tensor) -> bool:
    """Whether the scatter path serves ``x``: kernels on for ``x`` and ``tensors`` (CPU) and at
    most :data:`MAX_DENSITY` of ``x``'s entries non-zero."""
    if not kernels_enabled(x, *tensors) or x.numel() == 0:
        return False
    return int(torch.count_nonzero(x.detach())) <= MAX_DENSITY * x.numel()

