"""Exponential building blocks of closed-form flows, without cancellation and with exact
derivatives everywhere (also where two rates coincide).

* :func:`expm1_ratio` — ``phi1(z) = (e^z - 1) / z`` (1 at ``z = 0``);
* :func:`coupled_response` — ``kappa(h) = tau_s / (tau_m - tau_s) (e^{-h/tau_m} - e^{-h/tau_s})``,
  the membrane response of a current-based neuron to a unit synaptic current at time 0
  (limit ``(h/tau) e^{-h/tau}`` for equal time constants).

Both are analytic in their arguments, so autograd must see an analytic formula on each side
of every branch: ``phi1`` switches to its Taylor series near 0 (whose derivative is the true
``1/2`` at 0, where ``torch.where(z == 0, 1, expm1(z)/z)`` would give 0), and ``kappa`` picks
between two exact forms by the sign of the rate difference (never through ``abs``/``min``,
whose derivatives at a tie are conventions, not derivatives).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: below this |z| the Taylor series to z^3 is exact to rounding (error z^4/120 < 1e-18)
_TAYLOR = 1e-4


def expm1_ratio(z: Tensor) -> Tensor:
    """``phi1(z) = (e^z - 1)/z`` elementwise, ``1`` at ``z = 0`` (``phi1'(0) = 1/2``)."""
    small = z.abs() < _TAYLOR
    safe = torch.where(small, torch.ones_like(z), z)
    taylor = 1.0 + z * (0.5 + z * (1.0 / 6.0 + z / 24.0))
    return torch.where(small, taylor, torch.expm1(safe) / safe)


def coupled_response(h: Tensor, tau_m: Tensor, tau_s: Tensor) -> Tensor:
    """``tau_s/(tau_m - tau_s) (e^{-h/tau_m} - e^{-h/tau_s})`` for ``h >= 0`` (seconds).

    Written as ``(h/tau_m) e^{-h max(1/tau_m, 1/tau_s)} phi1(h |1/tau_m - 1/tau_s|)`` with the
    branch chosen by the sign, so that the exponential argument of ``phi1`` is never positive
    (no overflow) and nothing cancels for ``tau_m ~ tau_s``.
    """
    # h / tau first: h may carry a wider dtype than the time constants (promotion)
    x_m, x_s = h / tau_m, h / tau_s
    # exact for every pair: x_m e^{-x_m} phi1(x_m - x_s) = x_m e^{-x_s} phi1(x_s - x_m);
    # take the one whose phi1 argument is <= 0
    slow = x_m <= x_s
    d = x_m - x_s
    return x_m * torch.exp(-torch.where(slow, x_m, x_s)) * expm1_ratio(torch.where(slow, d, -d))


__all__ = ["expm1_ratio", "coupled_response"]
