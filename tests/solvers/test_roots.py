"""Vectorised bracketed root finder."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.roots import find_root

F64 = torch.float64


@settings(max_examples=60, deadline=None)
@given(
    roots=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=8),
    power=st.sampled_from([1, 3]),
    scale=st.floats(0.1, 100.0),
)
def test_brackets_converge_to_the_root_on_the_upper_side(roots, power, scale):
    r = torch.tensor(roots, dtype=F64)

    def g(x):
        return scale * (torch.exp(x - r) - 1.0) ** power

    lo, hi = torch.zeros_like(r), torch.ones_like(r)
    x = find_root(g, lo, hi, g(lo), g(hi), xtol=1e-15, max_iter=300)
    assert torch.all(g(x) >= 0)  # returned on the non-negative side
    tol = 1e-13 if power == 1 else 1e-5  # a triple root is flat: x is found, g ~ 0
    assert torch.allclose(x, r, atol=tol, rtol=0)


def test_elements_converge_independently_and_masked_ones_are_untouched():
    r = torch.tensor([0.2, 0.5, 0.7], dtype=F64)

    def g(x):
        return x - r

    lo, hi = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    mask = torch.tensor([True, False, True])
    x = find_root(g, lo, hi, g(lo), g(hi), mask=mask)
    assert x[1] == 1.0
    assert torch.allclose(x[mask], r[mask], atol=1e-15, rtol=0)


def test_non_finite_values_are_past_the_root():
    # g blows up to nan beyond 0.3: the finder bisects instead of using the secant.
    def g(x):
        return torch.where(x < 0.3, x - 0.25, torch.full_like(x, math.nan))

    lo, hi = torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64)
    x = find_root(g, lo, hi, g(lo), g(hi), xtol=1e-15)
    assert abs(x.item() - 0.25) < 1e-14


def test_step_function_is_located_to_tolerance():
    def g(x):
        return torch.where(x < 0.4, -1.0, 1.0).to(F64)

    lo, hi = torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64)
    x = find_root(g, lo, hi, g(lo), g(hi), xtol=1e-12)
    assert 0.4 <= x.item() < 0.4 + 2e-12
