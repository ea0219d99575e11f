"""Fixed-step integrators: observed order on a problem with a known solution."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch

from solvers.steppers import ORDER, STEPPERS


class Osc(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor


def rhs(t, s):
    # x' = y, y' = -x + cos(t)... forced oscillator with known solution below.
    return (s.y, -s.x + torch.cos(2 * t))


def exact(t):
    # Solution with x(0)=0, y(0)=1: x = sin t + (cos t - cos 2t)/3.
    x = torch.sin(t) + (torch.cos(t) - torch.cos(2 * t)) / 3
    y = torch.cos(t) + (-torch.sin(t) + 2 * torch.sin(2 * t)) / 3
    return Osc(x, y)


def integrate(name, h, t_end=2.0):
    step = STEPPERS[name]
    s = Osc(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    n = int(round(t_end / h))
    t = torch.zeros(1, dtype=torch.float64)
    hh = torch.full((1,), h, dtype=torch.float64)
    for _ in range(n):
        s = step(rhs, t, s, hh)
        t = t + h
    assert isinstance(s, Osc)  # the named tuple type survives
    return (s.x - exact(t).x).abs().item()


@pytest.mark.parametrize("name", list(STEPPERS))
def test_observed_order(name):
    e1, e2 = integrate(name, 0.02), integrate(name, 0.01)
    order = math.log2(e1 / e2)
    assert abs(order - ORDER[name]) < 0.3, order


def test_per_element_step_sizes():
    # Each element takes its own h: one RK4 step of two different sizes at once.
    s = Osc(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    h = torch.tensor([1e-3, 2e-3], dtype=torch.float64)
    out = STEPPERS["rk4"](rhs, torch.zeros(2, dtype=torch.float64), s, h)
    ref = exact(h)
    assert torch.allclose(out.x, ref.x, atol=1e-13)
    h0 = torch.zeros(2, dtype=torch.float64)
    same = STEPPERS["rk4"](rhs, torch.zeros(2, dtype=torch.float64), s, h0)
    assert torch.equal(same.x, s.x) and torch.equal(same.y, s.y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rk4_is_bit_for_bit_the_textbook_formula(dtype):
    """The fused stage sum (``alpha=2`` additions) changes no bit of the classic RK4 step."""
    gen = torch.Generator().manual_seed(0)
    y = Osc(*(torch.randn(64, 33, generator=gen, dtype=dtype) for _ in range(2)))
    t = torch.rand(64, 33, generator=gen, dtype=dtype)
    h = torch.rand(64, 33, generator=gen, dtype=dtype) * 1e-2

    def f(tt, s):
        return (s.y * torch.exp(-s.x * s.x), -s.x + torch.cos(2 * tt))

    def textbook(tt, s):
        half = 0.5 * h
        k1 = f(tt, s)
        k2 = f(tt + half, Osc(*(a + half * b for a, b in zip(s, k1, strict=True))))
        k3 = f(tt + half, Osc(*(a + half * b for a, b in zip(s, k2, strict=True))))
        k4 = f(tt + h, Osc(*(a + h * b for a, b in zip(s, k3, strict=True))))
        return Osc(*(a + h / 6.0 * (b + 2.0 * c + 2.0 * d + e)
                     for a, b, c, d, e in zip(s, k1, k2, k3, k4, strict=True)))

    got = STEPPERS["rk4"](f, t, y, h)
    for a, b in zip(got, textbook(t, y), strict=True):
        assert torch.equal(a, b)
