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


#: Both arguments of :func:`decays` at most this (``h / tau_slow`` and ``h |1/tau_m -
#: 1/tau_s|``): the exponentials come from two degree-9 Taylor polynomials (truncation below
#: ``(1/16)^10 / 10! ~ 2.5e-19`` relative), not from ``exp`` / ``expm1``.
SMALL = 1.0 / 16.0
_F = tuple(1.0 / math.factorial(k) for k in range(12))
#: Taylor coefficients of ``phi1(x) = (1 - e^{-x})/x = sum_k (-x)^k/(k + 1)!`` for
#: :func:`phi_series` (16 terms: truncation below ``0.5^16/17! ~ 4e-20`` for ``x <= 0.5``).
_PHI = tuple((-1.0) ** k / math.factorial(k + 1) for k in range(16))


@numba.njit(cache=True, error_model="numpy")
def _exp_series(z: float) -> float:
    """``e^z`` for ``|z| <= 1/16``: ``sum_{k <= 9} z^k / k!`` by Estrin's scheme (a few ulp;
    four dependent multiply-adds instead of Horner's nine)."""
    z2 = z * z
    z4 = z2 * z2
    q0 = (1.0 + z) + (_F[2] + _F[3] * z) * z2
    q1 = (_F[4] + _F[5] * z) + (_F[6] + _F[7] * z) * z2
    return q0 + (q1 + (_F[8] + _F[9] * z) * z4) * z4


@numba.njit(cache=True, error_model="numpy")
def _phi_short(z: float) -> float:
    """``phi1(-z) = (e^z - 1) / z`` for ``|z| <= 1/16`` (``sum_{k <= 9} z^k / (k + 1)!``, as
    :func:`_exp_series`)."""
    z2 = z * z
    z4 = z2 * z2
    q0 = (1.0 + _F[2] * z) + (_F[3] + _F[4] * z) * z2
    q1 = (_F[5] + _F[6] * z) + (_F[7] + _F[8] * z) * z2
    return q0 + (q1 + (_F[9] + _F[10] * z) * z4) * z4


@numba.njit(cache=True, error_model="numpy")
def phi_series(x: float) -> float:
    """``phi1(x) = (1 - e^{-x})/x`` for ``0 <= x <= 0.5`` by its Taylor series (16 terms,
    Estrin's scheme: four dependent multiply-adds after the powers, instead of Horner's 15;
    within a few ulp of ``-expm1(-x)/x``, cheaper than ``expm1``)."""
    x2 = x * x
    x4 = x2 * x2
    x8 = x4 * x4
    q0 = (_PHI[0] + _PHI[1] * x) + (_PHI[2] + _PHI[3] * x) * x2
    q1 = (_PHI[4] + _PHI[5] * x) + (_PHI[6] + _PHI[7] * x) * x2
    q2 = (_PHI[8] + _PHI[9] * x) + (_PHI[10] + _PHI[11] * x) * x2
    q3 = (_PHI[12] + _PHI[13] * x) + (_PHI[14] + _PHI[15] * x) * x2
    return (q0 + q1 * x4) + (q2 + q3 * x4) * x8


@numba.njit(cache=True, error_model="numpy")
def decays(h: float, tau_m: float, tau_s: float) -> tuple[float, float, float]:
    """``(e^{-h/tau_m}, e^{-h/tau_s}, kappa(h))`` for ``h >= 0``, without cancellation.

    The faster decay is the slower one times ``e^{-x}``, ``x = h |1/tau_m - 1/tau_s|``, whose
    ``phi1(x) = (1 - e^{-x}) / x`` also gives :func:`kappa`. Short intervals (both ``h /
    tau_slow`` and ``x`` at most :data:`SMALL`: most intervals between arrivals of a busy
    neuron) take both from Taylor polynomials and no division per call (the reciprocals of the
    time constants are loop-invariant where this is inlined); longer ones one ``exp`` and
    ``phi1`` by :func:`phi_series` (``x < 0.5``) or a second ``exp`` (instead of four
    transcendentals). All agree with the separate closed forms to a few ulps."""
    a = 1.0 / tau_m
    b = 1.0 / tau_s
    x = h * abs(a - b)
    c = min(a, b)
    y = h * c
    if x <= SMALL and y <= SMALL:
        slow = _exp_series(-y)
        phi = _phi_short(-x)
        k = slow * (h * a) * phi
        if a <= b:
            return slow, slow - slow * (x * phi), k
        return slow - slow * (x * phi), slow, k
    if x < 0.5:  # phi1 by its series (no expm1); e^{-x} = 1 - x phi1 >= 0.6
        phi = phi_series(x)
        ex = 1.0 - x * phi
    else:  # 1 - e^{-x} >= 0.39: no cancellation
        ex = math.exp(-x)
        phi = (1.0 - ex) / x
    if a <= b:
        em = math.exp(-h / tau_m)
        return em, em * ex, em * h * phi / tau_m
    es = math.exp(-h / tau_s)
    return es * ex, es, es * h * phi / tau_m


__all__ = ["phi1", "phi_series", "kappa", "decays"]
