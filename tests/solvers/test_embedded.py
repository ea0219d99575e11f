"""Embedded Runge-Kutta pairs: accuracy against closed forms, per-element intervals, gradients
against the exact derivatives, blow-up handling and argument checks."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.embedded import TABLEAUS, Adaptive, integrate

F64 = torch.float64
#: Tolerances per pair: bosh3's third order needs ~(1/rtol)^(1/3) steps per unit time.
TIGHT = {"dopri5": (1e-11, 1e-13, 1e-9), "bosh3": (1e-8, 1e-10, 1e-6)}   # rtol, atol, error


class Osc(NamedTuple):
    x: torch.Tensor
    v: torch.Tensor


def forced(t, y):
    """y' = -y + sin(10 t): y(t) = (y0 + 10/101) e^{-t} + (sin 10t - 10 cos 10t) / 101."""
    return (-y[0] + torch.sin(10 * t),)


def forced_exact(y0, t):
    return (y0 + 10 / 101) * torch.exp(-t) + (torch.sin(10 * t) - 10 * torch.cos(10 * t)) / 101


def test_tableaus_are_consistent() -> None:
    for name, tab in TABLEAUS.items():
        assert abs(sum(tab.b) - 1) < 1e-15, name
        assert abs(sum(tab.e)) < 1e-15, name
        for c, row in zip(tab.c[1:], tab.a, strict=True):
            assert abs(sum(row) - c) < 1e-14, name      # row sums are the nodes
        assert tab.a[-1] == tab.b[: len(tab.a[-1])]      # first same as last


@pytest.mark.parametrize("name", list(TABLEAUS))
@given(y0=st.floats(-2, 2), h=st.floats(0, 3))
@settings(max_examples=15, deadline=None)
def test_matches_the_closed_form(name: str, y0: float, h: float) -> None:
    rtol, atol, err = TIGHT[name]
    y = integrate(forced, torch.zeros((), dtype=F64), (torch.tensor(y0, dtype=F64),),
                  torch.tensor(h, dtype=F64), Adaptive(name, rtol=rtol, atol=atol))
    assert abs(float(y[0]) - float(forced_exact(torch.tensor(y0, dtype=F64),
                                                 torch.tensor(h, dtype=F64)))) < err


def test_every_element_gets_its_own_interval_and_named_state_keeps_its_type() -> None:
    # harmonic oscillator x'' = -w^2 x with a different w and interval per element
    w = torch.tensor([1.0, 5.0, 20.0], dtype=F64)
    h = torch.tensor([0.0, 0.7, 2.3], dtype=F64)

    def osc(t, y):
        return Osc(y.v, -w**2 * y.x)

    y0 = Osc(torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64))
    y = integrate(osc, torch.zeros(3, dtype=F64), y0, h, Adaptive("dopri5", rtol=1e-11,
                                                                   atol=1e-13))
    assert isinstance(y, Osc)
    torch.testing.assert_close(y.x, torch.cos(w * h), rtol=0, atol=1e-8)
    torch.testing.assert_close(y.v, -w * torch.sin(w * h), rtol=0, atol=1e-7)


def test_gradients_match_the_exact_derivatives() -> None:
    y0 = torch.tensor([1.0, 2.0, 0.5], dtype=F64, requires_grad=True)
    h = torch.tensor([0.0, 0.3, 2.0], dtype=F64, requires_grad=True)
    for name in TABLEAUS:
        rtol, atol, err = TIGHT[name]
        (y,) = integrate(forced, torch.zeros(3, dtype=F64), (y0,), h,
                         Adaptive(name, rtol=rtol, atol=atol))
        g_y0, g_h = torch.autograd.grad(y.sum(), [y0, h])
        torch.testing.assert_close(g_y0, torch.exp(-h.detach()), rtol=0, atol=err)
        # d/dh y(h) = f(h, y(h)), also for the zero-length interval
        dydh = -forced_exact(y0.detach(), h.detach()) + torch.sin(10 * h.detach())
        torch.testing.assert_close(g_h, dydh, rtol=0, atol=10 * err)


def test_tighter_tolerance_is_more_accurate() -> None:
    y0, h = (torch.tensor([1.5], dtype=F64),), torch.tensor([2.0], dtype=F64)
    exact = forced_exact(y0[0], h)
    errors = [float((integrate(forced, torch.zeros(1, dtype=F64), y0, h,
                               Adaptive("bosh3", rtol=r, atol=r * 1e-2))[0] - exact).abs())
              for r in (1e-3, 1e-5, 1e-7)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-5


def test_finite_time_blow_up_stops_at_the_last_finite_state() -> None:
    # y' = y^2 from y0 = 1 blows up at t = 1; integrating over 2 s must terminate.
    (y,) = integrate(lambda t, y: (y[0] ** 2,), torch.zeros(2, dtype=F64),
                     (torch.tensor([1.0, 0.1], dtype=F64),), torch.tensor([2.0, 2.0], dtype=F64),
                     Adaptive("dopri5", rtol=1e-8, atol=1e-10, max_steps=20_000))
    assert bool(torch.isfinite(y).all())
    assert float(y[0]) > 1e6                              # ran up to the singularity
    assert abs(float(y[1]) - 0.1 / (1 - 0.1 * 2.0)) < 1e-8  # the other element is exact


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown method 'rk45'"):
        Adaptive("rk45")
    with pytest.raises(ValueError, match="rtol must be a positive finite"):
        Adaptive("dopri5", rtol=0.0)
    with pytest.raises(ValueError, match="atol must be a positive finite"):
        Adaptive("dopri5", atol=float("nan"))
    with pytest.raises(ValueError, match="max_steps"):
        Adaptive("dopri5", max_steps=0)
    with pytest.raises(RuntimeError, match="more than 5 step attempts"):
        integrate(forced, torch.zeros(1, dtype=F64), (torch.ones(1, dtype=F64),),
                  torch.tensor([50.0], dtype=F64), Adaptive("dopri5", rtol=1e-12, max_steps=5))
