"""Delay kernels: how a real-valued delay reaches a discrete time grid.

Pure functions, no state. Every kernel is indexed by **lag**: tap ``n`` (``n = 0 .. K-1``)
multiplies the input ``n`` steps in the past, so a synapse with kernel ``k`` adds

    ``I[t] = sum_n k[n] x[t - n]``

and a delay of ``d`` steps puts the kernel's mass at lag ``d`` (a one-tap kernel at lag ``d`` is
an exact shift by ``d`` steps). Delays here are real numbers **in steps** (the modules convert
from seconds); ``K`` is the number of taps, so delays live in ``[0, K - 1]``.

DCLS position convention. The DCLS library stores a *centred position* ``P`` per synapse and
builds a cross-correlation kernel whose centre index is ``c = P + K // 2``; after left-padding the
input by ``K - 1`` the effective delay is ``(K - 1) - c``, i.e. for odd ``K``

    ``d = (K - 1) / 2 - P``,    ``P = (K - 1) / 2 - d``,

so ``P = +K//2`` is delay 0, ``P = 0`` the middle of the window and ``P = -K//2`` the longest
delay ``K - 1`` (:func:`position_to_delay`, :func:`delay_to_position`). Training ``d`` instead of
``P`` with Adam and no weight decay is equivalent (Adam is invariant to a sign flip of a
parameter).

Kernels:

* :func:`gaussian_kernel` (DCLS training kernel): ``exp(-(n - d)^2 / (2 sigma^2))`` normalised
  over the finite window with ``eps = 1e-7``, so its sum is ``S / (S + eps)`` (``S`` the sum of
  the unnormalised Gaussian) even when the window cuts the Gaussian; dense, ``K`` taps.
* :func:`triangle_taps` / :func:`triangle_kernel`: linear interpolation between the two
  integer lags around ``d`` (``max(0, 1 - |n - d|)``), 2 taps, total mass exactly
  ``(1 - f) + f`` for ``d`` in the window.
* :func:`rounded_taps` / :func:`rounded_kernel`: one tap at ``round_delay(d)`` (the inference
  kernel of all three methods), optionally with a straight-through gradient (the triangle's).

The sparse kernels are returned as :class:`Taps` (lags and coefficients per tap) so that a
convolution never has to materialise a dense ``[..., K]`` kernel; :func:`taps_to_dense` gives
the dense form for references and plots.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_choice, check_positive

#: Constant the DCLS library adds to its ``SIG`` parameter: ``sigma_eff = |SIG| + 0.27``.
DCLS_SIGMA_OFFSET = 0.27
#: Normalisation safety term of the DCLS Gaussian kernel (float32 safety).
DCLS_EPS = 1e-7

ROUNDING_MODES = ("half_even", "half_away")


class Taps(NamedTuple):
    """A sparse kernel: ``lags [n_taps, ...]`` (int64 steps) and ``coefs [n_taps, ...]``.

    Tap ``k`` of synapse ``(...)`` adds ``coefs[k, ...] * x[t - lags[k, ...]]``. Taps of one
    synapse may share a lag (their coefficients then add up).
    """

    lags: Tensor
    coefs: Tensor


# --------------------------------------------------------------------------- sizes, positions
def kernel_size(max_delay: float, dt: float) -> int:
    """Number of taps ``K`` of the DCLS kernel for ``max_delay`` and step ``dt`` (seconds).

    ``K = max_delay / dt``, plus one if even (DCLS forces odd kernels); delays then range over
    ``[0, K - 1]`` steps. ``max_delay`` must be a whole number of steps (up to 1e-9 relative);
    ``max_delay = 0`` gives ``K = 1`` (delay 0 only). E.g. 0.25 s / 0.01 s -> 25,
    0.3 s / 0.01 s -> 31.
    """
    check_positive("dt", dt)
    check_positive("max_delay", max_delay, allow_zero=True)
    ratio = max_delay / dt
    k = round(ratio)
    if abs(ratio - k) > 1e-9 * max(1.0, abs(ratio)):
        raise ValueError(
            f"max_delay must be a whole number of steps: max_delay / dt = {max_delay} / {dt} = "
            f"{ratio!r} is not an integer"
        )
    return k + 1 if k % 2 == 0 else k


def _check_k(k: int, *, odd: bool = False) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"K (number of taps) must be a positive int, got {k!r}")
    if odd and k % 2 == 0:
        raise ValueError(f"the DCLS position convention needs an odd K, got K = {k}")


def position_to_delay(position: Tensor | float, k: int) -> Tensor | float:
    """DCLS centred position ``P`` -> delay in steps, ``d = (K - 1) / 2 - P`` (odd ``K``).

    Works elementwise on tensors (differentiable) and on Python numbers.
    """
    _check_k(k, odd=True)
    return (k - 1) / 2 - position


def delay_to_position(delay: Tensor | float, k: int) -> Tensor | float:
    """Delay in steps -> DCLS centred position ``P = (K - 1) / 2 - d`` (odd ``K``)."""
    _check_k(k, odd=True)
    return (k - 1) / 2 - delay


def clamp_delay(delay: Tensor, k: int) -> Tensor:
    """Clamp delays (steps) to the window ``[0, K - 1]`` (DCLS clamps ``P`` to ``±K//2``)."""
    _check_k(k)
    return delay.clamp(0, k - 1)


# --------------------------------------------------------------------------- rounding
def round_delay(
    delay: Tensor, *, mode: str = "half_even", straight_through: bool = False
) -> Tensor:
    """Round delays (steps) to the nearest whole step; **never** truncates.

    Args:
        delay: real delays in steps, any shape.
        mode: tie rule for exact halves: ``"half_even"`` (default; ``torch.round``, the rule of
            :class:`ctsnn.synapses.Dense`: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2) or ``"half_away"``
            (C ``round`` as in GeNN/EPD: 0.5 -> 1, 2.5 -> 3, -0.5 -> -1). Either way 2.6 -> 3,
            2.4 -> 2.
        straight_through: return ``round(d) + (d - d.detach())``: the exact rounded value in
            the forward pass, gradient 1 w.r.t. ``d`` (otherwise the gradient is 0).

    Returns:
        a float tensor of whole numbers, same shape and dtype as ``delay``.
    """
    check_choice("mode", mode, ROUNDING_MODES)
    if mode == "half_even":
        r = torch.round(delay.detach())
    else:
        a = delay.detach().abs()
        fl = torch.floor(a)
        # ``a - floor(a)`` is exact in floating point, so the tie test is exact (unlike
        # ``floor(a + 0.5)``, which rounds 0.49999999999999994 up).
        r = torch.copysign(fl + (a - fl >= 0.5).to(a.dtype), delay.detach())
    if straight_through:
        return r + (delay - delay.detach())
    return r


# --------------------------------------------------------------------------- dense kernels
def gaussian_kernel(
    delay_steps: Tensor, sigma_eff: Tensor | float, k: int, *, eps: float = DCLS_EPS
) -> Tensor:
    """DCLS window-normalised Gaussian kernel, indexed by lag.

    ``g[n] = exp(-((n - d) / sigma_eff)^2 / 2)`` for ``n = 0 .. K-1``,
    ``k[n] = g[n] / (sum_n' g[n'] + eps)``.

    Args:
        delay_steps: delays ``d`` in steps, shape ``[...]``; any real value (DCLS keeps them in
            ``[0, K - 1]`` by clamping after each optimiser step).
        sigma_eff: effective width in steps, a positive number or a tensor broadcastable to
            ``delay_steps`` (DCLS: ``sigma_eff = SIG + 0.27``).
        k: number of taps ``K``.
        eps: normalisation safety term (DCLS: 1e-7).

    Returns:
        ``[..., K]`` kernel of unit mass (up to ``eps``); differentiable w.r.t. ``delay_steps``
        and ``sigma_eff``. Multiply by the weight to get the synaptic kernel.
    """
    _check_k(k)
    if isinstance(sigma_eff, Tensor):
        sigma = sigma_eff.to(delay_steps.dtype).unsqueeze(-1)
    else:
        check_positive("sigma_eff", sigma_eff)
        sigma = sigma_eff
    n = torch.arange(k, dtype=delay_steps.dtype, device=delay_steps.device)
    z = (n - delay_steps.unsqueeze(-1)) / sigma
    g = torch.exp(-0.5 * z * z)
    return g / (g.sum(-1, keepdim=True) + eps)


def taps_to_dense(taps: Taps, k: int) -> Tensor:
    """Dense lag-indexed kernel ``[..., K]`` of a sparse kernel (taps sharing a lag add up).

    Differentiable w.r.t. ``taps.coefs``. Lags must lie in ``[0, K - 1]``.
    """
    _check_k(k)
    lags, coefs = taps
    if lags.numel() and (int(lags.min()) < 0 or int(lags.max()) >= k):
        raise ValueError(f"tap lags must lie in [0, {k - 1}], got [{int(lags.min())}, "
                         f"{int(lags.max())}]")
    dense = coefs.new_zeros((*coefs.shape[1:], k))
    return dense.scatter_add(-1, lags.movedim(0, -1), coefs.movedim(0, -1))


def _interpolation(delay_steps: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Lower integer lag ``lo`` (clamped so that ``lo + 1 <= K - 1``) and fraction ``d - lo``."""
    top = max(k - 2, 0)
    lo = torch.floor(delay_steps.detach()).clamp(0, top)
    return lo.long(), delay_steps - lo


def triangle_taps(delay_steps: Tensor, k: int) -> Taps:
    """Linear-interpolation (triangle) kernel as 2 taps.

    For ``d`` in ``[0, K - 1]``: ``lo = floor(d)`` (``K - 2`` at ``d = K - 1``), ``f = d - lo``;
    taps ``(lo, 1 - f)`` and ``(lo + 1, f)``; this equals ``max(0, 1 - |n - d|)`` over the window
    and carries mass ``(1 - f) + f = 1``. An integer ``d`` gives exactly one non-zero tap of
    value 1 (no leakage). Gradient w.r.t. ``d``: ``-1`` on the lower tap, ``+1`` on the upper
    (at an integer ``d`` this is the one-sided derivative towards longer delays).
    Delays outside the window are the caller's business (clamp first).

    Args:
        delay_steps: ``[...]`` delays in steps.
        k: number of taps ``K`` (``K = 1`` allows only ``d = 0``).

    Returns:
        :class:`Taps` with ``lags, coefs`` of shape ``[2, ...]``.
    """
    _check_k(k)
    lo, f = _interpolation(delay_steps, k)
    hi = (lo + 1).clamp(max=k - 1)
    return Taps(torch.stack([lo, hi]), torch.stack([1 - f, f]))


def triangle_kernel(delay_steps: Tensor, k: int) -> Tensor:
    """Dense ``[..., K]`` form of :func:`triangle_taps` (``max(0, 1 - |n - d|)``)."""
    return taps_to_dense(triangle_taps(delay_steps, k), k)


def rounded_taps(
    delay_steps: Tensor, k: int, *, straight_through: bool = False, mode: str = "half_even"
) -> Taps:
    """One-tap kernel at the rounded delay (inference kernel), exact value 1.

    Args:
        delay_steps: ``[...]`` delays in steps, in ``[0, K - 1]``.
        k: number of taps ``K``.
        straight_through: if ``True``, return the two triangle taps around ``d`` whose forward
            values are the exact one-hot ``round(d)`` kernel (1 on the rounded lag, exactly 0 on
            the other) but whose gradient w.r.t. ``d`` is the triangle's (straight-through
            estimator: "forward rounded, backward interpolated"). Otherwise a single tap with no
            gradient w.r.t. ``d``.
        mode: tie rule, see :func:`round_delay`.

    Returns:
        :class:`Taps`, ``[1, ...]`` or (straight-through) ``[2, ...]``.
    """
    _check_k(k)
    r = round_delay(delay_steps, mode=mode).clamp(0, k - 1)
    if not straight_through:
        lag = r.long().unsqueeze(0)
        return Taps(lag, torch.ones_like(delay_steps).unsqueeze(0))
    soft = triangle_taps(delay_steps, k)
    # round(d) is one of the two triangle lags (at d = K - 1 they are K-2, K-1); for K = 1 both
    # taps sit at lag 0 and only the first may carry the 1.
    hard = (soft.lags == r.long().unsqueeze(0)).to(delay_steps.dtype)
    if k == 1:
        hard = torch.stack([hard[0], torch.zeros_like(hard[1])])
    return Taps(soft.lags, hard + (soft.coefs - soft.coefs.detach()))


def rounded_kernel(
    delay_steps: Tensor, k: int, *, straight_through: bool = False, mode: str = "half_even"
) -> Tensor:
    """Dense ``[..., K]`` one-hot kernel at ``round_delay(d)`` (see :func:`rounded_taps`)."""
    return taps_to_dense(rounded_taps(delay_steps, k, straight_through=straight_through,
                                      mode=mode), k)


def gaussian_mass(delay_steps: Tensor, sigma_eff: Tensor | float, k: int) -> Tensor:
    """``S = sum_n exp(-((n - d)/sigma)^2 / 2)``, the unnormalised window mass (tests, plots)."""
    _check_k(k)
    n = torch.arange(k, dtype=delay_steps.dtype, device=delay_steps.device)
    s = sigma_eff.unsqueeze(-1) if isinstance(sigma_eff, Tensor) else sigma_eff
    return torch.exp(-0.5 * ((n - delay_steps.unsqueeze(-1)) / s) ** 2).sum(-1)


__all__ = [
    "DCLS_EPS", "DCLS_SIGMA_OFFSET", "ROUNDING_MODES", "Taps", "kernel_size",
    "position_to_delay", "delay_to_position", "clamp_delay", "round_delay", "gaussian_kernel",
    "gaussian_mass", "taps_to_dense", "triangle_taps", "triangle_kernel",
    "rounded_taps", "rounded_kernel",
]
