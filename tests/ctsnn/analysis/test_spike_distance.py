"""The van Rossum distance: closed forms, numerical integration, kernel == reference."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from ctsnn.analysis import van_rossum_distance, van_rossum_pair
from ctsnn.compiled import use_kernels
from ctsnn.spikes import Spikes

F64 = torch.float64


def T(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def trains(*per_unit: list[float], batch: int = 0, n_units: int | None = None) -> Spikes:
    times, units = [], []
    for u, ts in enumerate(per_unit):
        times += ts
        units += [u] * len(ts)
    return Spikes.from_events(torch.tensor(times, dtype=F64), torch.tensor(units),
                              torch.full((len(times),), batch), dt=1e-3, n_steps=1000,
                              n_units=n_units or len(per_unit), batch_size=batch + 1)


def integrated(x: list[float], y: list[float], tau: float, t_end: float = 1.0) -> float:
    """(2 / tau) * integral (f - g)^2 by the midpoint rule, float64 (spikes on cell edges)."""
    h = t_end / 400_000
    t = (torch.arange(400_000, dtype=F64) + 0.5) * h

    def filt(ts: list[float]) -> torch.Tensor:
        out = torch.zeros_like(t)
        for s in ts:
            out += torch.where(t >= s, torch.exp(-(t - s) / tau), 0.0)
        return out

    return math.sqrt(2.0 / tau * h * ((filt(x) - filt(y)) ** 2).sum().item())


def test_closed_forms():
    tau = 0.01
    assert van_rossum_pair(T([0.1]), T([]), tau) == pytest.approx(1.0)
    assert van_rossum_pair(T([]), T([]), tau) == 0.0
    for shift in (1e-4, 3e-3, 0.05):
        d = van_rossum_pair(T([0.2]), T([0.2 + shift]), tau)
        assert d == pytest.approx(math.sqrt(2 * (1 - math.exp(-shift / tau))), rel=1e-12)
    # two spikes far apart behave as two independent single spikes
    far = van_rossum_pair(T([0.1, 0.6]), T([0.101, 0.6]), tau)
    assert far == pytest.approx(math.sqrt(2 * (1 - math.exp(-0.1))), rel=1e-9)
    with pytest.raises(ValueError, match="tau"):
        van_rossum_pair(T([0.1]), T([0.1]), 0.0)


def test_against_numerical_integration():
    x, y, tau = [0.1, 0.13, 0.135, 0.4], [0.102, 0.14, 0.5], 0.02
    expected = integrated(x, y, tau)
    assert van_rossum_pair(T(x), T(y), tau) == pytest.approx(expected,
                                                                                   rel=1e-6)
    d = van_rossum_distance(trains(x), trains(y), tau)
    assert d.shape == (1,) and d.item() == pytest.approx(expected, rel=1e-6)


def test_population_adds_squared_distances_and_checks_shapes():
    tau = 0.01
    a = trains([0.1, 0.2], [], [0.05])
    b = trains([0.1005], [0.3], [0.05])
    per_unit = [van_rossum_pair(T(x), T(y), tau)
                for x, y in (([0.1, 0.2], [0.1005]), ([], [0.3]), ([0.05], [0.05]))]
    expected = math.sqrt(sum(d * d for d in per_unit))
    for kernels in (True, False):
        with use_kernels(kernels):
            assert van_rossum_distance(a, b, tau).item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="2 x 3 neurons|cannot be compared"):
        van_rossum_distance(a, trains([0.1], batch=1, n_units=3), tau)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2), st.floats(0.0, 0.19),
                          st.booleans()), max_size=25),
       st.floats(1e-3, 0.1))
def test_kernel_matches_reference(events, tau):
    def build(keep: bool) -> Spikes:
        ev = [(b, u, t) for b, u, t, side in events if side == keep]
        return Spikes.from_events(torch.tensor([t for *_, t in ev], dtype=F64),
                                  torch.tensor([u for _, u, _ in ev], dtype=torch.long),
                                  torch.tensor([b for b, *_ in ev], dtype=torch.long),
                                  dt=1e-3, n_steps=200, n_units=3, batch_size=2)

    a, b = build(True), build(False)
    fast = van_rossum_distance(a, b, tau)
    with use_kernels(False):
        slow = van_rossum_distance(a, b, tau)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    # and the per-sample pairwise form
    for s in range(2):
        sq = sum(van_rossum_pair(a.times[(a.batch == s) & (a.units == u)],
                                 b.times[(b.batch == s) & (b.units == u)], tau) ** 2
                 for u in range(3))
        assert slow[s].item() == pytest.approx(math.sqrt(sq), rel=1e-9, abs=1e-9)


times_lists = st.lists(st.floats(0.0, 0.5), max_size=8)


@settings(max_examples=40, deadline=None)
@given(times_lists, times_lists, times_lists, st.floats(1e-3, 0.1))
def test_metric_properties(x, y, z, tau):
    """Symmetric, zero on identical trains, and the triangle inequality (it is an L2 norm)."""
    a, b, c = T(x), T(y), T(z)
    d_ab = van_rossum_pair(a, b, tau)
    assert d_ab == pytest.approx(van_rossum_pair(b, a, tau), abs=1e-9)
    assert van_rossum_pair(a, a, tau) == pytest.approx(0.0, abs=1e-6)
    assert d_ab <= van_rossum_pair(a, c, tau) + van_rossum_pair(c, b, tau) + 1e-6
