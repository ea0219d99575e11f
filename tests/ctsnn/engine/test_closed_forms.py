"""The compiled kernels' scalar closed forms (ctsnn/engine/compiled/closed_forms.py) against
mpmath: ``decays`` on both of its paths (short intervals by Taylor polynomials, longer ones by
``exp`` / ``expm1``) and across the switch between them."""

from __future__ import annotations

import math

import mpmath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.engine.compiled import closed_forms as cf

ULP = 2.0 ** -52
TAUS = [(0.02, 0.005), (0.005, 0.02), (0.01, 0.01), (0.02, 0.02 * (1 + 1e-9)), (0.02, 0.0199),
        (1e-4, 3e-3)]


def _exact(h: float, tau_m: float, tau_s: float) -> tuple[mpmath.mpf, ...]:
    with mpmath.workprec(200):
        hh, tm, ts = mpmath.mpf(h), mpmath.mpf(tau_m), mpmath.mpf(tau_s)
        em, es = mpmath.exp(-hh / tm), mpmath.exp(-hh / ts)
        # em - es = -em expm1(-h (1/ts - 1/tm)): no cancellation at tiny h
        if tm == ts:
            return em, es, hh / tm * em
        return em, es, -ts / (tm - ts) * em * mpmath.expm1(-hh * (1 / ts - 1 / tm))


def _check(h: float, tau_m: float, tau_s: float, ulps: float) -> None:
    got = cf.decays(h, tau_m, tau_s)
    for name, g, ref in zip(("e_m", "e_s", "kappa"), got, _exact(h, tau_m, tau_s), strict=True):
        if ref == 0:
            assert g == 0
            continue
        err = float(abs((mpmath.mpf(g) - ref) / ref)) / ULP
        assert err <= ulps, (name, h, tau_m, tau_s, err)


@pytest.mark.parametrize(("tau_m", "tau_s"), TAUS)
def test_decays_at_and_around_the_switch_to_the_polynomials(tau_m, tau_s):
    """Both paths and the intervals on either side of ``SMALL`` (by either argument) agree
    with mpmath to a few ulps (3 on the polynomials, ``3 (1 + h / tau_fast)`` beyond, as the
    exponential's argument is rounded), so the switch leaves no step."""
    rate_slow = min(1 / tau_m, 1 / tau_s)
    gap = abs(1 / tau_m - 1 / tau_s)
    edges = [cf.SMALL / rate_slow] + ([cf.SMALL / gap] if gap > 0.1 * rate_slow else [])
    for edge in edges:
        hs = [edge * (1 + d) for d in (-1e-15, -4e-16, 0.0, 4e-16, 1e-15, 1e-3)]
        hs += [edge * 0.5, edge * 0.999]
        for h in hs:
            _check(h, tau_m, tau_s, 3.0 * (1 + h / min(tau_m, tau_s)))


@settings(max_examples=300, deadline=None)
@given(pair=st.sampled_from(TAUS), frac=st.floats(0.0, 1.0), scale=st.sampled_from(
    [1e-9, 1e-6, 1e-4, 1e-3, 4e-3, 2e-2]))
def test_decays_equal_mpmath(pair, frac, scale):
    """``(e^{-h/tau_m}, e^{-h/tau_s}, kappa(h))`` within 3 ulps of mpmath for short intervals
    (the Taylor path: most intervals between a busy neuron's arrivals) and longer ones."""
    tau_m, tau_s = pair
    h = frac * scale
    _check(h, tau_m, tau_s, 3.0 * (1 + h / min(tau_m, tau_s)))


def test_decays_keep_the_exact_values_at_zero():
    """``h = 0``: no decay, ``kappa = 0`` (exactly), on the polynomial path."""
    for tau_m, tau_s in TAUS:
        assert cf.decays(0.0, tau_m, tau_s) == (1.0, 1.0, 0.0)
    assert math.isfinite(cf.decays(1.0, 0.02, 0.005)[2])
