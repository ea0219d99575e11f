"""Causal convolutions of spike rasters with lag-indexed delay kernels (discrete time).

* :func:`dense_conv`: a dense kernel ``[N_out, N_in, K]`` as one ``conv1d`` (DCLS; any kernel).
* :func:`tap_conv`: one- and two-tap kernels without a dense kernel: for every distinct lag
  ``L`` the coefficients with that lag form ``W_L [N_out, N_in]`` and ``I[L:] += x[:T-L] W_Lᵀ``
  (custom autograd recomputing ``W_L`` in backward; memory ``O(N_out N_in)`` whatever ``K``).
* :func:`event_jumps`: exact synapses with whole-step delays, event-driven (every
  (spike, target) pair adds its weight ``lag`` steps later; cheap for sparse spikes).

Rasters are time-first ``[T, B, N]``; entry ``n`` is the spike at the end of step ``n``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .kernels import Taps


def dense_conv(x: Tensor, kernel: Tensor, pad_right: int = 0) -> Tensor:
    """Reference causal convolution with a dense lag-indexed kernel.

    Args:
        x: ``[T, B, N_in]``.
        kernel: ``[N_out, N_in, K]``, tap ``n`` = lag ``n`` steps (weights included).
        pad_right: zero steps appended to the input.

    Returns:
        ``[T + pad_right, B, N_out]``, ``out[t] = sum_n kernel[:, :, n] @ x[t - n]``.
    """
    k = kernel.shape[-1]
    xb = F.pad(x.permute(1, 2, 0), (k - 1, pad_right))  # [B, N_in, K - 1 + T + pad]
    # conv1d is a cross-correlation: weight index m meets input t + m, i.e. lag K - 1 - m.
    return F.conv1d(xb, kernel.flip(-1)).permute(2, 0, 1)


def lag_matrix(lags: Tensor, coefs: Tensor, lag: int) -> Tensor:
    """``W_L [N_out, N_in]``: sum over taps of the coefficients whose lag is ``lag``."""
    return torch.where(lags == lag, coefs, torch.zeros((), dtype=coefs.dtype,
                                                        device=coefs.device)).sum(0)


class TapConv(torch.autograd.Function):
    """``out[t] = sum_taps sum_j coefs[k, :, j] x[t - lags[k, :, j], :, j]`` per distinct lag."""

    @staticmethod
    def forward(ctx, x: Tensor, lags: Tensor, coefs: Tensor) -> Tensor:  # type: ignore[override]
        n_steps, batch, n_in = x.shape
        n_out = coefs.shape[1]
        distinct = [v for v in torch.unique(lags).tolist() if v < n_steps]
        out = x.new_zeros(n_steps, batch, n_out)
        for lag in distinct:
            w = lag_matrix(lags, coefs, lag)
            out[lag:].view(-1, n_out).addmm_(x[: n_steps - lag].reshape(-1, n_in), w.t())
        ctx.save_for_backward(x, lags, coefs)
        ctx.distinct = distinct
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, lags, coefs = ctx.saved_tensors
        n_steps, _, n_in = x.shape
        n_out = coefs.shape[1]
        grad = grad.contiguous()
        need_x, _, need_c = ctx.needs_input_grad
        gx = torch.zeros_like(x) if need_x else None
        gc = torch.zeros_like(coefs) if need_c else None
        zero = torch.zeros((), dtype=coefs.dtype, device=coefs.device)
        for lag in ctx.distinct:
            g = grad[lag:].reshape(-1, n_out)
            xs = x[: n_steps - lag].reshape(-1, n_in)
            if gx is not None:
                gx[: n_steps - lag].view(-1, n_in).addmm_(g, lag_matrix(lags, coefs, lag))
            if gc is not None:
                gc += torch.where(lags == lag, (g.t() @ xs).unsqueeze(0), zero)
        return gx, None, gc


def tap_conv(x: Tensor, taps: Taps, pad_right: int = 0) -> Tensor:
    """Causal convolution with a sparse kernel, ``[T, B, N_in] -> [T + pad_right, B, N_out]``.

    ``taps.lags`` / ``taps.coefs``: ``[n_taps, N_out, N_in]`` (weights included).
    """
    if pad_right:
        x = F.pad(x, (0, 0, 0, 0, 0, pad_right))
    return TapConv.apply(x.contiguous(), taps.lags, taps.coefs)


def event_jumps(raster: Tensor, weight: Tensor, lags: Tensor) -> Tensor:
    """Event-driven delayed sum: ``out[n + lags[i, j], b, i] += raster[n, b, j] weight[i, j]``.

    Args:
        raster: ``[T, B, N_in]`` (possibly differentiable).
        weight: ``[N_out, N_in]``.
        lags: ``[N_out, N_in]`` whole steps (int64, ``>= 0``).

    Returns:
        ``[T, B, N_out]``; arrivals after the last step are dropped.
    """
    n_out = weight.shape[0]
    n, b, j = raster.nonzero(as_tuple=True)
    amp = raster[n, b, j]
    n_ev = n.numel()
    i = torch.arange(n_out, device=n.device).repeat(n_ev)
    src = torch.repeat_interleave(torch.arange(n_ev, device=n.device), n_out)
    arrive = n[src] + lags[i, j[src]]
    n_steps, batch_size = raster.shape[0], raster.shape[1]
    keep = arrive < n_steps
    out = raster.new_zeros(n_steps, batch_size, n_out)
    src, i, arrive = src[keep], i[keep], arrive[keep]
    out.index_put_((arrive, b[src], i), amp[src] * weight[i, j[src]], accumulate=True)
    return out


__all__ = ["dense_conv", "tap_conv", "TapConv", "lag_matrix", "event_jumps"]
