"""In-step events: several per interval, hidden crossings, holds (refractoriness)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from solvers.events import advance_with_events

F64 = torch.float64


class V(NamedTuple):
    v: torch.Tensor


def lif_flow(v_inf, tau):
    def flow(y, tau0, h, held):
        new = v_inf + (y.v - v_inf) * torch.exp(-h / tau)
        if held is not None:
            new = torch.where(held, y.v, new)
        return V(new)

    return flow


def test_several_events_per_interval_per_element():
    tau, v_inf = 0.01, torch.tensor([11.0, 2.0], dtype=F64)
    y = V(torch.zeros(2, dtype=F64))
    tau0 = torch.zeros(2, dtype=F64)
    end = torch.full((2,), 0.01, dtype=F64)
    y, t, _, events = advance_with_events(
        lif_flow(v_inf, tau), y, tau0, end, lambda s: s.v - 1.0,
        lambda s: V(torch.zeros_like(s.v)), xtol=1e-16,
    )
    times = {0: [], 1: []}
    for ev in events:
        for i in ev.mask.nonzero().flatten().tolist():
            times[i].append(ev.time[i].item())
    period = [tau * math.log(11 / 10), tau * math.log(2 / 1)]
    for i in range(2):
        k = len(times[i])
        assert k == int(0.01 / period[i])
        expected = [(j + 1) * period[i] for j in range(k)]
        assert max(abs(a - b) for a, b in zip(times[i], expected, strict=True)) < 1e-15
    assert torch.equal(t, end)


def test_hold_delays_the_next_event_exactly():
    tau, v_inf, hold = 0.01, torch.tensor([3.0], dtype=F64), 0.0025
    period = tau * math.log(3 / 2)
    y, t, until, events = advance_with_events(
        lif_flow(v_inf, tau), V(torch.zeros(1, dtype=F64)), torch.zeros(1, dtype=F64),
        torch.full((1,), 0.02, dtype=F64), lambda s: s.v - 1.0,
        lambda s: V(torch.zeros_like(s.v)), hold_until=torch.full((1,), -1.0, dtype=F64),
        hold_time=hold, xtol=1e-16,
    )
    times = [ev.time.item() for ev in events]
    expected = [period + j * (period + hold) for j in range(len(times))]
    assert len(times) == int((0.02 - period) // (period + hold)) + 1
    assert max(abs(a - b) for a, b in zip(times, expected, strict=True)) < 1e-15
    assert until.item() == times[-1] + hold


def test_hidden_crossing_needs_the_slope():
    # g(t) = 1 - 4 (t - 0.5)^2 - 0.5 peaks above zero inside [0, 1]; the ends are negative.
    class P(NamedTuple):
        s: torch.Tensor

    def flow(y, tau0, h, held):
        return P(y.s + h)

    def event(y):
        return 0.5 - 4 * (y.s - 0.5) ** 2

    def slope(y):
        return -8 * (y.s - 0.5)

    start = P(torch.full((1,), -0.3, dtype=F64))
    event_start = event(start)
    assert event_start < 0 and event(P(start.s + 1.3)) < 0
    args = (flow, start, torch.zeros(1, dtype=F64), torch.full((1,), 1.3, dtype=F64), event,
            lambda y: y)
    _, _, _, blind = advance_with_events(*args)
    assert blind == []
    _, _, _, seen = advance_with_events(*args, slope=slope, xtol=1e-15)
    assert len(seen) == 1
    root = 0.5 - math.sqrt(0.5 / 4)  # first upward zero of g in s, s = -0.3 + t
    assert abs(seen[0].time.item() - (root + 0.3)) < 1e-13
