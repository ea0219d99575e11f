"""Adaptive pairs' continuous extension and event search on it (solvers.embedded.Steps,
advance_with_events(dense=...)): exactness on polynomials, stopping at the bracketing step,
the same events as re-integration, no duplicate events without reset, event-time gradients."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.embedded import Adaptive, integrate, solve
from solvers.events import advance_with_events

F64 = torch.float64


class Y(NamedTuple):
    y: torch.Tensor


class Piece:
    """The Piece protocol of advance_with_events for a plain right-hand side."""

    def __init__(self, steps):
        self.steps, self.end, self.reached = steps, steps.end, steps.reached

    def __call__(self, x):
        return self.steps(x)

    def replay(self, keep=None):
        return self.steps.replay(keep)


def flows(rhs, spec):
    def flow(y, tau, h, held):
        return integrate(rhs, tau, y, h, spec)

    def dense(y, tau, h, held, event, watch):
        return Piece(solve(rhs, tau, y, h, spec, event, watch))

    return flow, dense


@pytest.mark.parametrize("name, degree", [("dopri5", 3), ("bosh3", 2)])
@given(coef=st.lists(st.floats(-3, 3), min_size=4, max_size=4), h=st.floats(0.1, 3.0),
       frac=st.lists(st.floats(0, 1), min_size=5, max_size=5))
@settings(max_examples=10, deadline=None)
def test_extension_is_exact_for_polynomial_solutions(name, degree, coef, h, frac) -> None:
    # y' = p(t) with deg p = degree: the extension (order 4 for dopri5, cubic Hermite for
    # bosh3) reproduces y(t) = y0 + P(t) exactly inside every accepted step.
    c = coef[: degree + 1]

    def rhs(t, y):
        return (sum(a * t**k for k, a in enumerate(c)) + 0 * y[0],)

    def exact(t):
        return 0.5 + sum(a * t ** (k + 1) / (k + 1) for k, a in enumerate(c))

    steps = solve(rhs, torch.zeros(1, dtype=F64), (torch.full((1,), 0.5, dtype=F64),),
                  torch.tensor([h], dtype=F64), Adaptive(name, rtol=1e-3, atol=1e-5))
    for f in frac:
        x = torch.tensor([f * h], dtype=F64)
        assert abs(float(steps(x)[0] - exact(x))) < 1e-12 * (1 + abs(float(exact(x))))


def forced(t, y):
    return (-y[0] + torch.sin(10 * t),)


def forced_exact(y0, t):
    return (y0 + 10 / 101) * torch.exp(-t) + (torch.sin(10 * t) - 10 * torch.cos(10 * t)) / 101


@pytest.mark.parametrize("name, bound", [("dopri5", 1e-7), ("bosh3", 1e-7)])
def test_extension_is_accurate_to_the_tolerance(name, bound) -> None:
    # measured max errors over the interval at rtol 1e-8: 4.7e-8 (dopri5), 6.2e-9 (bosh3)
    y0 = torch.tensor([1.0, 0.5], dtype=F64)
    h = torch.tensor([2.0, 1.0], dtype=F64)
    steps = solve(forced, torch.zeros(2, dtype=F64), (y0,), h,
                  Adaptive(name, rtol=1e-8, atol=1e-10))
    worst = max(float((steps(f * h)[0] - forced_exact(y0, f * h)).abs().max())
                for f in torch.linspace(0, 1, 101, dtype=F64))
    assert worst < bound
    assert torch.equal(steps.reached, h)


def test_watched_elements_stop_at_the_step_that_brackets_the_crossing() -> None:
    # y' = y^2 from 1 blows up at t = 1; watching g = y - 10 (crossing at t = 0.9) stops the
    # first element there, the unwatched one runs into the blow-up.
    spec = Adaptive("dopri5", rtol=1e-8, atol=1e-10, max_steps=20_000)

    def rhs(t, y):
        return (y[0] ** 2,)

    y0 = (torch.ones(2, dtype=F64),)
    h = torch.full((2,), 2.0, dtype=F64)
    watched = solve(rhs, torch.zeros(2, dtype=F64), y0, h, spec, lambda s: s[0] - 10.0,
                    torch.tensor([True, False]))
    alone = solve(rhs, torch.zeros(1, dtype=F64), (torch.ones(1, dtype=F64),),
                  torch.full((1,), 2.0, dtype=F64), spec, lambda s: s[0] - 10.0,
                  torch.tensor([True]))
    reached = float(watched.reached[0])
    assert 0.9 < reached < 1.0 and float(watched.end[0][0]) >= 10.0
    assert float(watched.reached[1]) < 1.0 + 1e-6 and float(watched.end[0][1]) > 1e6  # blow-up
    assert len(alone.taken) < 60 < len(watched.taken)      # the blow-up costs the steps
    assert abs(float(watched(torch.tensor([0.9, 0.9], dtype=F64))[0][0]) - 10.0) < 1e-6


def _times(events, i):
    return [float(ev.time[i]) for ev in events if bool(ev.mask[i])]


def _grid_events(flow, dense, end, chunk, **args):
    """advance_with_events over grid steps of length ``chunk`` (as the engine calls it)."""
    y, times = Y(torch.zeros(len(end), dtype=F64)), [[] for _ in end]
    for k in range(round(float(end.max()) / chunk)):
        tau = torch.minimum(torch.full_like(end, k * chunk), end)
        stop = torch.minimum(tau + chunk, end)
        y, _, _, events = advance_with_events(flow, y, tau, stop, dense=dense, **args)
        for i in range(len(end)):
            times[i] += _times(events, i)
    return times


@pytest.mark.parametrize("name", ["dopri5", "bosh3"])
def test_dense_search_gives_the_events_of_reintegration_without_duplicates(name) -> None:
    # y' = cos t, y = sin t: upward crossings of 0.5 at pi/6 + 2 pi k; no reset (the jump is
    # the identity), so the state right after an event must not cross again
    spec = Adaptive(name, rtol=1e-8, atol=1e-10)
    flow, dense = flows(lambda t, y: Y(torch.cos(t) + 0 * y.y), spec)
    end = torch.tensor([7.0, 1.0], dtype=F64)
    args = dict(event=lambda s: s.y - 0.5, jump=lambda s: s, xtol=1e-15)
    with_dense = _grid_events(flow, dense, end, 0.5, **args)
    without = _grid_events(flow, None, end, 0.5, **args)
    for i in range(2):
        expected = [math.pi / 6 + 2 * math.pi * k
                    for k in range(4) if math.pi / 6 + 2 * math.pi * k < float(end[i])]
        got = with_dense[i]
        assert len(got) == len(expected) == len(without[i])
        assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-7
        assert max(abs(a - b) for a, b in zip(got, without[i], strict=True)) < 1e-12


@pytest.mark.parametrize("use_dense", [False, True])
def test_event_time_gradient_through_an_adaptive_flow(use_dense) -> None:
    # y' = a (1 + y^2), y(0) = 0: y = tan(a t) crosses 1 at t* = pi / (4 a) (one crossing
    # per element before the end), dt*/da = -pi / (4 a^2). The speed dg/dt = 2a at the root
    # used to come out as zero through the adaptive flow (then 1 after the guard): -2 t*.
    a = torch.tensor([3.0, 0.7], dtype=F64, requires_grad=True)
    flow, dense = flows(lambda t, y: Y(a * (1 + y.y**2)), Adaptive("dopri5", rtol=1e-12,
                                                                    atol=1e-14))

    def rate(s):
        return a.detach() * (1 + s.y**2)

    _, _, _, events = advance_with_events(
        flow, Y(torch.zeros(2, dtype=F64)), torch.zeros(2, dtype=F64),
        torch.tensor([0.3, 1.2], dtype=F64), lambda s: s.y - 1.0,
        lambda s: Y(torch.full_like(s.y, -1.0)), rate=rate, xtol=1e-15,
        dense=dense if use_dense else None)
    first = events[0]
    assert bool(first.mask.all())
    (g,) = torch.autograd.grad(first.time.sum(), a)
    torch.testing.assert_close(first.time.detach(), math.pi / (4 * a.detach()), rtol=1e-10,
                               atol=0)
    torch.testing.assert_close(g, -math.pi / (4 * a.detach() ** 2), rtol=1e-8, atol=0)
