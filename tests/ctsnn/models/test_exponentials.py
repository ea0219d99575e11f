"""ctsnn.models.exponentials against mpmath, and its derivatives where the rates coincide."""

from __future__ import annotations

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.models.exponentials import coupled_response, expm1_ratio

F64 = torch.float64
mpmath.mp.dps = 40


def _kappa(h, tm, ts):
    h, tm, ts = mpmath.mpf(h), mpmath.mpf(tm), mpmath.mpf(ts)
    if tm == ts:
        return h / tm * mpmath.exp(-h / tm)
    # expm1 keeps mpmath itself free of cancellation for tiny h
    return ts / (tm - ts) * mpmath.exp(-h / ts) * mpmath.expm1(h / ts - h / tm)


@settings(max_examples=200, deadline=None)
@given(h=st.floats(0, 0.5), tm=st.floats(1e-3, 0.1),
       rel=st.sampled_from([0.0, 1e-15, 1e-12, 1e-9, -1e-9, 1e-6, 1e-3, -0.3, 0.5, 3.0]))
def test_coupled_response_matches_mpmath_without_cancellation(h, tm, rel):
    ts = tm * (1 + rel)
    got = float(coupled_response(torch.tensor(h, dtype=F64), torch.tensor(tm, dtype=F64),
                                 torch.tensor(ts, dtype=F64)))
    ref = float(_kappa(h, tm, ts))
    # relative error of exp(-x) from the rounding of x = h/tau is x eps: that is the condition
    cond = 4 + 2 * h / min(tm, ts)
    assert abs(got - ref) <= cond * 2.3e-16 * abs(ref) + 1e-300


@pytest.mark.parametrize("rel", [0.0, 1e-10, -1e-10, 0.2])
def test_coupled_response_derivatives_equal_mpmath_also_at_the_tie(rel):
    """The old form (torch.where(x == 0, 1, ...)) gave d/dtau_syn = 0 at tau_syn = tau_mem."""
    h, tm = 0.013, 0.02
    ts = tm * (1 + rel)
    args = [torch.tensor(v, dtype=F64, requires_grad=True) for v in (h, tm, ts)]
    grads = torch.autograd.grad(coupled_response(*args), args)
    for k, g in enumerate(grads):
        def moved(x, k=k):
            return _kappa(*[x if j == k else v for j, v in enumerate((h, tm, ts))])

        ref = mpmath.diff(moved, (h, tm, ts)[k])
        assert float(g) == pytest.approx(float(ref), rel=1e-9)


def test_expm1_ratio_value_and_slope_at_and_near_zero():
    z = torch.tensor([0.0, 1e-8, -1e-5, 9.9e-5, 1.01e-4, -0.7, 30.0], dtype=F64,
                     requires_grad=True)
    val = expm1_ratio(z)
    (g,) = torch.autograd.grad(val.sum(), z)
    for zi, vi, gi in zip(z.tolist(), val.tolist(), g.tolist(), strict=True):
        ref = mpmath.expm1(zi) / zi if zi else mpmath.mpf(1)
        slope = mpmath.diff(lambda x: mpmath.expm1(x) / x if x else mpmath.mpf(1), zi)
        assert vi == pytest.approx(float(ref), rel=1e-15)
        assert gi == pytest.approx(float(slope), rel=1e-9)
