"""Vectorised, bracketed root finding.

Every element of a batch has its own bracket ``[lo, hi]`` with ``g(lo) < 0 <= g(hi)``
and converges independently; elements that are already converged (or not asked for)
are frozen. The method is Illinois (a modified regula falsi: superlinear on smooth
functions) with a bisection safeguard, so it always stays inside the bracket and
never diverges, even on functions that are not finite everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def find_root(
    g: Callable[[Tensor], Tensor],
    lo: Tensor,
    hi: Tensor,
    g_lo: Tensor,
    g_hi: Tensor,
    *,
    mask: Tensor | None = None,
    xtol: float | Tensor = 0.0,
    max_iter: int = 100,
) -> Tensor:
    """Find ``x`` in ``(lo, hi]`` with ``g(x) = 0`` (the upward crossing) for every element.

    Args:
        g: evaluated on a whole tensor of candidate points (same shape as ``lo``);
            non-finite values are treated as "past the root" (``+inf``).
        lo, hi: bracket per element, ``g_lo < 0 <= g_hi``.
        mask: elements to solve (others are returned as ``hi``).
        xtol: absolute tolerance on ``x``; 0 means "to the last representable bit".
        max_iter: hard cap on iterations.

    Returns:
        ``x`` on the non-negative side of the root (``g(x) >= 0``), within ``xtol`` of the
        true crossing, so a caller that resets at ``x`` never sees the same crossing again.
    """
    lo, hi = lo.clone(), hi.clone()
    g_lo, g_hi = g_lo.clone(), torch.nan_to_num(g_hi, nan=torch.inf, posinf=torch.inf)
    active = torch.ones_like(lo, dtype=torch.bool) if mask is None else mask.clone()
    side = torch.zeros_like(lo)  # Illinois: which end was replaced last time (+1 hi, -1 lo)
    # Safeguard: an element whose bracket has not halved over a window of two iterations
    # takes a bisection step, so convergence is never slower than a third of bisection's.
    window_start = hi - lo
    for it in range(max_iter):
        width = hi - lo
        mid = lo + 0.5 * width
        # Converged when the bracket is within tolerance or cannot shrink any further.
        active = active & (width > xtol) & (mid > lo) & (mid < hi)
        if not bool(active.any()):
            break
        finite = torch.isfinite(g_hi)
        secant = lo - g_lo * width / torch.where(finite, g_hi - g_lo, 1.0)
        # (few, whole-tensor operators per iteration: on small batches their count, not their
        # size, is the cost) the secant point where it is finite and strictly inside
        use_secant = finite & (secant > lo) & (secant < hi)
        if it % 2 == 0 and it > 0:
            use_secant = use_secant & ~(width > 0.5 * window_start)  # stalled: bisect
            window_start = width
        x = torch.where(use_secant, secant, mid)
        gx = torch.nan_to_num(g(x), nan=torch.inf, posinf=torch.inf)
        upper = active & (gx >= 0)
        lower = active & (gx < 0)
        # Illinois: halve the value kept at the stale end to avoid one-sided convergence.
        g_lo = torch.where(upper & (side > 0), 0.5 * g_lo, g_lo)
        g_hi = torch.where(lower & (side < 0), 0.5 * g_hi, g_hi)
        hi = torch.where(upper, x, hi)
        g_hi = torch.where(upper, gx, g_hi)
        lo = torch.where(lower, x, lo)
        g_lo = torch.where(lower, gx, g_lo)
        side = torch.where(upper, 1.0, torch.where(lower, -1.0, side))
        active = active & (gx != 0)
    return hi
