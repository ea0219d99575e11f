"""Time-constant gradients of the closed-form EventProp (``dL/dtau_mem``, ``dL/dtau_syn``).

With the adjoint ``lam = dL/dx`` (this package's convention) the gradient w.r.t. a parameter
``p`` of the flow ``x' = f(x, p)`` is ``dL/dp = ∫_0^T lam . df/dp dt``: the threshold, the reset
and the input jumps do not depend on the time constants, so no event adds a term of its own
(the spike-time dependence is already inside ``lam``, through its jumps at the spikes). With
``y = V - v_leak``, ``df/dtau_m = (y - r I, 0)/tau_m^2`` and ``df/dtau_s = (0, I/tau_s^2)``.
Between two events both the state and the adjoint are sums of exponentials, so each piece's
integral is closed form: convolutions of exponentials, written as divided differences of
``exp`` (:func:`dd_exp`), which stay accurate for equal or nearly equal time constants and
for short pieces. The derivation is in ``docs/eventprop-time-constants.md``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .common import Neurons, dd_exp

__all__ = ["dd_exp", "linear_response_terms", "piece_terms", "response_terms"]

def piece_terms(nrn: Neurons, n: Tensor, h: Tensor, y: Tensor, i: Tensor | None,
                lam_v: Tensor, lam_i: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``(∫ lam . df/dtau_m, ∫ lam . df/dtau_s)`` over pieces of length ``h`` (s) without events
    or drive, from the state ``(y = V - v_leak, I)`` at the piece start and the adjoint
    ``(lam_V, lam_I)`` at its end; neuron ``n`` (all ``[P]``)."""
    tm = nrn.tau_m[n]
    xm = -h / tm
    em = torch.exp(xm)
    if not nrn.cuba:
        return lam_v * y * h * em / tm ** 2, None
    ts, r = nrn.tau_s[n], nrn.r[n]
    xs = -h / ts
    hh = h * h
    jm = lam_v / tm ** 2 * (y * h * em
                            + r * i * (hh * dd_exp(xm, xm, xs) / tm - h * dd_exp(xm, xs)))
    js = i / ts ** 2 * (lam_i * h * torch.exp(xs) + r * lam_v / tm * hh * dd_exp(xs, xs, xm))
    return jm, js


def response_terms(nrn: Neurons, n: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(dpsi/dtau_m, dpsi/dtau_s)`` of the voltage response ``psi(h)`` to a unit jump ``h``
    seconds earlier (LI: ``e^{-h/tau_m}``; CubaLI: ``r kappa(h)``)."""
    tm = nrn.tau_m[n]
    xm = -h / tm
    if not nrn.cuba:
        return h * torch.exp(xm) / tm ** 2, None
    ts, r = nrn.tau_s[n], nrn.r[n]
    xs = -h / ts
    hh = h * h
    dm = r * (hh * dd_exp(xm, xm, xs) / tm ** 3 - h * dd_exp(xm, xs) / tm ** 2)
    ds = r * hh * dd_exp(xs, xs, xm) / (tm * ts ** 2)
    return dm, ds


def linear_response_terms(nrn: Neurons, n: Tensor, s: Tensor, t_end: float, alpha: float,
                          inv_w: float) -> tuple[Tensor, Tensor | None]:
    """``(dR/dtau_m, dR/dtau_s)`` of the linear readout's response ``R(s) = ∫_s^T k(u)
    psi(u - s) du`` to a unit jump at ``s`` (``k(u) = alpha e^{-u inv_w}``)."""
    tm = nrn.tau_m[n]
    big_h = t_end - s
    ks = alpha * torch.exp(-s * inv_w)
    zero = torch.zeros_like(big_h)
    xm = -big_h * (1.0 / tm + inv_w)
    if not nrn.cuba:
        return ks * big_h ** 2 * dd_exp(zero, xm, xm) / tm ** 2, None
    ts, r = nrn.tau_s[n], nrn.r[n]
    xs = -big_h * (1.0 / ts + inv_w)
    h2, h3 = big_h ** 2, big_h ** 3
    q = h2 * dd_exp(zero, xm, xs)
    dm = ks * r * (h3 * dd_exp(zero, xm, xm, xs) / tm ** 3 - q / tm ** 2)
    ds = ks * r * h3 * dd_exp(zero, xm, xs, xs) / (tm * ts ** 2)
    return dm, ds
