"""A narrow Gaussian's support taps, weights included, in one compiled pass (CPU kernels).

:func:`~ctsnn.synapses.kernels.gaussian_support_taps` builds the lags and the normalised
coefficients of a narrow DCLS Gaussian with about twenty tensor operations over
``[n_taps, n_out, n_in]`` (DCLS's final width: 6 taps), the synapse then multiplies them by the
weights, and autograd runs the backward of each of those operations: at W1's final width
(140 -> 256 -> 256 -> 20) that was about 25 ms of CPU time per training step, close to the
neurons' own cost. :func:`weighted_gaussian_taps` gives the same :class:`~ctsnn.synapses.Taps`
(coefficients ``c_m w``, ``c`` the normalised Gaussian) from one loop per synapse:

* forward: per synapse, the lags ``floor(d) - floor(R) + m`` (``floor(R)`` and the number of
  taps from :func:`~ctsnn.synapses.kernels.gaussian_support`, as the reference),
  ``z_m = (lag_m - d) / sigma`` and ``-z_m^2 / 2`` (``-inf`` outside the window; one loop),
  PyTorch's ``exp`` over them and its sum over the taps (the reference's own operations:
  numba's libm ``exp`` is not vectorised), then ``c_m = g_m / (sum g + eps)``, the lags
  clamped to the window and ``c_m w`` (a second loop): the reference's arithmetic in its
  order, so the same bits (tested); the normalised ``c`` are kept for the backward pass;
* backward, with ``G_m`` the gradient of the weighted coefficients (the chain
  ``z -> exp -> normalise -> * w`` written out; no ``exp`` needed):
  ``dL/dw = sum_m G_m c_m`` and ``dL/dd = (w / sigma) sum_m (G_m - dL/dw) c_m z_m``
  (float64 sums); ``sigma`` gets no gradient (DCLS sets it from a schedule).

The forward equals ``gaussian_support_taps(d, sigma, K)`` weighted bit for bit, the gradients
the reference's autograd to rounding (another order of the same terms). Applies
(:func:`weighted_gaussian_applies`) on CPU tensors with kernels on, delays and weights of one
shape and dtype (float32 or float64) and a width that needs no gradient; elsewhere the
reference runs.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from ..compiled import kernels_enabled, run_serial_or_chunks
from ..engine.compiled.schedule import chunk_bounds
from .kernels import DCLS_EPS, Taps, gaussian_support, gaussian_support_taps

__all__ = ["weighted_gaussian_applies", "weighted_gaussian_taps"]

#: Synapse-taps (``n_taps x synapses``) from which the kernels run on the kernel threads.
_PARALLEL_WORK = 100_000
#: Fixed chunks of the parallel form (each synapse is computed alone: any split gives the
#: same results).
_CHUNKS = 16


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, error_model="numpy")
def _exponents(i0, i1, d, sigma, k, shift, arg):
    """Synapses ``i0 <= i < i1`` of the flat ``d [M]``: ``arg[m, i] = -z_m^2 / 2`` as the
    reference computes it (``(-0.5 z) z``, ``z = (lag_m - d) / sigma``) in the dtype, ``-inf``
    for a lag outside the window (its ``exp`` is exactly the reference's 0)."""
    n_taps = arg.shape[0]
    one = d.dtype.type
    s = one(sigma)
    half = one(-0.5)
    for i in range(i0, i1):
        di = d[i]
        base = np.int64(np.floor(di)) - shift
        for m in range(n_taps):
            lag = base + m
            z = (one(lag) - di) / s
            arg[m, i] = half * z * z if 0 <= lag <= k - 1 else -np.inf


@numba.njit(cache=True, error_model="numpy")
def _normalise(i0, i1, d, w, k, shift, eps, total, lags, c, coefs):
    """Synapses ``i0 <= i < i1``: ``c [n_taps, M]`` holds ``g = exp(-z^2 / 2)`` and ``total
    [M]`` its sum over the taps; ``c`` normalised in place (``g / (total + eps)``), the lags
    clamped to the window and ``coefs = c w``."""
    n_taps = lags.shape[0]
    e = d.dtype.type(eps)
    for i in range(i0, i1):
        base = np.int64(np.floor(d[i])) - shift
        den = total[i] + e
        for m in range(n_taps):
            lags[m, i] = min(max(base + m, 0), k - 1)
            cm = c[m, i] / den
            c[m, i] = cm
            coefs[m, i] = cm * w[i]


@numba.njit(cache=True, parallel=True)
def _exponents_chunks(n_chunks, d, sigma, k, shift, arg):
    for j in prange(n_chunks):
        i0, i1 = chunk_bounds(j, n_chunks, d.shape[0])
        _exponents(i0, i1, d, sigma, k, shift, arg)


@numba.njit(cache=True, parallel=True)
def _normalise_chunks(n_chunks, d, w, k, shift, eps, total, lags, c, coefs):
    for j in prange(n_chunks):
        i0, i1 = chunk_bounds(j, n_chunks, d.shape[0])
        _normalise(i0, i1, d, w, k, shift, eps, total, lags, c, coefs)


@numba.njit(cache=True, error_model="numpy")
def _backward(i0, i1, g, d, w, sigma, shift, c, g_d, g_w):
    """Synapses ``i0 <= i < i1``: ``g [n_taps, M]`` the gradient of the weighted coefficients
    -> ``g_d``, ``g_w [M]`` (see module)."""
    n_taps = c.shape[0]
    one = d.dtype.type
    s = one(sigma)
    for i in range(i0, i1):
        di = d[i]
        base = np.int64(np.floor(di)) - shift
        gw = 0.0
        for m in range(n_taps):
            gw += np.float64(g[m, i]) * c[m, i]
        gd = 0.0
        for m in range(n_taps):
            z = (one(base + m) - di) / s
            gd += (g[m, i] - gw) * c[m, i] * np.float64(z)
        g_w[i] = gw
        g_d[i] = w[i] / np.float64(s) * gd


@numba.njit(cache=True, parallel=True)
def _backward_chunks(n_chunks, g, d, w, sigma, shift, c, g_d, g_w):
    for j in prange(n_chunks):
        i0, i1 = chunk_bounds(j, n_chunks, d.shape[0])
        _backward(i0, i1, g, d, w, sigma, shift, c, g_d, g_w)


# --------------------------------------------------------------------------- autograd
class _WeightedGaussianTaps(torch.autograd.Function):
    """``(d, w) -> (lags, coefs)``, both ``[n_taps, *d.shape]``; ``lags`` not differentiable."""

    @staticmethod
    def forward(ctx, d, w, sigma, k, shift, n_taps, eps):  # type: ignore[override]
        flat_d = d.detach().contiguous().view(-1)
        flat_w = w.detach().contiguous().view(-1)
        m = flat_d.numel()
        lags = torch.empty((n_taps, m), dtype=torch.int64, device=d.device)
        c = torch.empty((n_taps, m), dtype=d.dtype, device=d.device)
        coefs = torch.empty_like(c)
        arrays = (flat_d.numpy(), flat_w.numpy())
        run_serial_or_chunks(_exponents, _exponents_chunks, m, n_taps * m, _PARALLEL_WORK,
                             _CHUNKS, arrays[0], sigma, k, shift, c.numpy())
        # PyTorch's exp and sum over the taps, the reference's own (its exp is vectorised,
        # numba's libm one is not; its sum's order is its own): the same bits
        c.exp_()
        total = c.sum(0)
        run_serial_or_chunks(_normalise, _normalise_chunks, m, n_taps * m, _PARALLEL_WORK,
                             _CHUNKS, *arrays, k, shift, eps, total.numpy(), lags.numpy(),
                             c.numpy(), coefs.numpy())
        ctx.save_for_backward(flat_d, flat_w, c)
        ctx.consts = (sigma, shift)
        ctx.mark_non_differentiable(lags)
        shape = (n_taps, *d.shape)
        return lags.view(shape), coefs.view(shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lags, g_coefs):  # type: ignore[override]
        flat_d, flat_w, c = ctx.saved_tensors
        sigma, shift = ctx.consts
        shape = g_coefs.shape[1:]
        g = g_coefs.detach().to(c.dtype).contiguous().view(c.shape)
        g_d = torch.empty_like(flat_d)
        g_w = torch.empty_like(flat_w)
        run_serial_or_chunks(_backward, _backward_chunks, flat_d.numel(), c.numel(),
                             _PARALLEL_WORK, _CHUNKS, g.numpy(), flat_d.numpy(),
                             flat_w.numpy(), sigma, shift, c.numpy(), g_d.numpy(), g_w.numpy())
        need = ctx.needs_input_grad
        return (g_d.view(shape) if need[0] else None, g_w.view(shape) if need[1] else None,
                None, None, None, None, None)


def weighted_gaussian_applies(delay_steps: Tensor, weight: Tensor,
                              sigma_eff: Tensor | float) -> bool:
    """Whether :func:`weighted_gaussian_taps` runs the compiled pass (see module)."""
    if not kernels_enabled(delay_steps, weight):
        return False
    if delay_steps.dtype not in (torch.float32, torch.float64) \
            or weight.dtype != delay_steps.dtype or weight.shape != delay_steps.shape:
        return False
    return not (isinstance(sigma_eff, Tensor) and sigma_eff.requires_grad)


def weighted_gaussian_taps(delay_steps: Tensor, weight: Tensor, sigma_eff: Tensor | float,
                           k: int, *, eps: float = DCLS_EPS) -> Taps | None:
    """``gaussian_support_taps(delay_steps, sigma_eff, k)`` with its coefficients times
    ``weight``, compiled where :func:`weighted_gaussian_applies` (the same values), the
    reference otherwise.

    Args:
        delay_steps: ``[...]`` delays in steps (as the reference: any real value; lags outside
            ``[0, K - 1]`` carry 0).
        weight: the synapses' weights, ``delay_steps``'s shape (else: the reference,
            broadcasting).
        sigma_eff: width in steps (a number or a 0-d tensor).
        k: number of taps ``K`` of the window.
        eps: normalisation safety term (DCLS: 1e-7).

    Returns:
        :class:`~ctsnn.synapses.Taps` ``[n_taps, ...]`` with weighted coefficients
        (differentiable w.r.t. ``delay_steps`` and ``weight``), or ``None`` where the reference
        returns ``None`` (a wide Gaussian).
    """
    if not weighted_gaussian_applies(delay_steps, weight, sigma_eff):
        taps = gaussian_support_taps(delay_steps, sigma_eff, k, eps=eps)
        return None if taps is None else Taps(taps.lags, taps.coefs * weight)
    support = gaussian_support(sigma_eff, delay_steps.dtype, k)  # the reference's checks
    if support is None:
        return None
    shift, n_taps = support
    lags, coefs = _WeightedGaussianTaps.apply(delay_steps, weight, float(sigma_eff), k, shift,
                                              n_taps, float(eps))
    return Taps(lags, coefs)
