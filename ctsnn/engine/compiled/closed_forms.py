"""Scalar closed forms shared by the compiled kernels (numba), forward and adjoint.

The current-based neuron's flow and adjoint need ``e^{-h/tau_m}``, ``e^{-h/tau_s}`` and the
coupling ``kappa(h)``; written here once, without cancellation for ``tau_m ~ tau_s`` (the
scalar twins of :mod:`ctsnn.models.exponentials`, which the PyTorch paths use).
"""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, error_model="numpy")
def phi1(x: float) -> float:
    """``(1 - e^{-x}) / x`` for ``x >= 0`` (1 at 0), without cancellation."""
    if x == 0.0:
        return 1.0
    return -math.expm1(-x) / x


@numba.njit(cache=True, error_model="numpy")
def kappa(h: float, tau_m: float, tau_s: float) -> float:
    """``tau_s/(tau_m - tau_s) (e^{-h/tau_m} - e^{-h/tau_s})`` for ``h >= 0`` (the scalar form of
    :func:`ctsnn.models.exponentials.coupled_response`)."""
    a = 1.0 / tau_m
    b = 1.0 / tau_s
    return math.exp(-h * min(a, b)) * h * phi1(h * abs(a - b)) / tau_m


@numba.njit(cache=True, error_model="numpy")
def decays(h: float, tau_m: float, tau_s: float) -> tuple[float, float, float]:
    """``(e^{-h/tau_m}, e^{-h/tau_s}, kappa(h))`` from one ``exp`` and one ``expm1`` (instead
    of four transcendentals): the faster decay is the slower one times
    ``1 + expm1(-h |1/tau_m - 1/tau_s|)``, which also gives :func:`kappa`'s ``phi1``."""
    a = 1.0 / tau_m
    b = 1.0 / tau_s
    x = h * abs(a - b)
    if x < 0.5:  # 1 + expm1(-x) >= 0.39: no cancellation
        xm = math.expm1(-x)
        ex = 1.0 + xm
    else:  # 1 - e^{-x} >= 0.39: no cancellation either
        ex = math.exp(-x)
        xm = ex - 1.0
    phi = 1.0 if x == 0.0 else -xm / x
    if a <= b:
        em = math.exp(-h / tau_m)
        return em, em * ex, em * h * phi / tau_m
    es = math.exp(-h / tau_s)
    return es * ex, es, es * h * phi / tau_m


__all__ = ["phi1", "kappa", "decays"]
