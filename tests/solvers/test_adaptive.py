"""Tests of solvers.adaptive: both adaptive backends and the event-driven reference integrator,
against closed-form solutions."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch
from torch import Tensor

from solvers.adaptive import EventSolution, check_grid, solve, solve_batched, solve_events

F64 = torch.float64


def f64(x) -> Tensor:
    return torch.tensor(x, dtype=F64)


class V(NamedTuple):
    v: Tensor


# --------------------------------------------------------------------------- plain solves
LAMBDAS = f64([0.5, 1.0, 3.0])
T_OUT = torch.linspace(0.0, 2.0, 9, dtype=F64)


def test_solve_exp_decay_tensor_state() -> None:
    y0 = f64([1.0, 2.0, -1.0])
    exact = y0 * torch.exp(-LAMBDAS * T_OUT[:, None])
    ys = solve(lambda t, y: -LAMBDAS * y, y0, T_OUT)
    assert ys.shape == (len(T_OUT), 3)
    torch.testing.assert_close(ys, exact, rtol=0, atol=1e-8)


def test_solve_batched_exp_decay_per_sample_times() -> None:
    y0 = f64([[1.0], [2.0], [-1.0]])  # [B, 1]
    # every sample its own output times (and start time)
    t_eval = torch.stack([T_OUT, 0.5 * T_OUT, 0.25 + T_OUT])
    ys = solve_batched(lambda t, y: -LAMBDAS[:, None] * y, y0, t_eval)
    assert ys.shape == (len(T_OUT), 3, 1)  # time-first like solve
    exact = (y0 * torch.exp(-LAMBDAS[:, None] * (t_eval - t_eval[:, :1]))).T
    torch.testing.assert_close(ys[..., 0], exact, rtol=0, atol=1e-8)


class Osc(NamedTuple):
    x: Tensor
    p: Tensor


@pytest.mark.parametrize("backend", [solve, solve_batched])
def test_backends_agree_on_harmonic_oscillator(backend) -> None:
    """x'' = -w^2 x as a NamedTuple state: the tuple type is kept, closed form within 1e-8."""
    w = f64([1.0, 2.0, 5.0])
    y0 = Osc(f64([1.0, 0.0, 0.3]), f64([0.0, 1.0, -2.0]))
    seen = []

    def f(t: Tensor, y: Osc) -> tuple:
        seen.append(type(y))
        return (y.p, -(w**2) * y.x)

    ys = backend(f, y0, T_OUT)
    assert isinstance(ys, Osc) and seen[0] is Osc
    t = T_OUT[:, None]
    exact_x = y0.x * torch.cos(w * t) + y0.p / w * torch.sin(w * t)
    exact_p = -y0.x * w * torch.sin(w * t) + y0.p * torch.cos(w * t)
    torch.testing.assert_close(ys.x, exact_x, rtol=0, atol=1e-8)
    torch.testing.assert_close(ys.p, exact_p, rtol=0, atol=1e-8)


def test_solve_and_solve_batched_agree() -> None:
    w = f64([1.0, 3.0])
    y0 = Osc(f64([1.0, -0.5]), f64([0.5, 0.0]))

    def f(t: Tensor, y: Osc) -> tuple:
        return (y.p, -(w**2) * y.x - 0.1 * y.p)  # damped: no closed form needed here

    a, b = solve(f, y0, T_OUT), solve_batched(f, y0, T_OUT)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-8)


def test_solve_batched_sees_per_sample_time() -> None:
    """A time-dependent right-hand side gets each sample's own time, broadcastable."""
    y0 = f64([[0.0, 0.0], [0.0, 0.0]])
    t_eval = torch.stack([T_OUT, 1.0 + T_OUT])
    ys = solve_batched(lambda t, y: t.expand_as(y).clone(), y0, t_eval)  # y' = t
    exact = 0.5 * (t_eval**2 - t_eval[:, :1] ** 2).T
    torch.testing.assert_close(ys[..., 0], exact, rtol=0, atol=1e-8)
    torch.testing.assert_close(ys[..., 1], exact, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- events
TAU, R = 0.02, 1.0


def lif_rhs(t: Tensor, y: V, x: Tensor) -> tuple:
    return ((R * x - y.v) / TAU,)


def lif_event(y: V) -> Tensor:
    return y.v - 1.0


def lif_reset(y: V) -> V:
    return V(torch.zeros_like(y.v))


def lif_period(current: float, v0: float = 0.0) -> float:
    """Time for v to go from v0 to 1 under constant current (tau dv/dt = rI - v)."""
    return TAU * math.log((R * current - v0) / (R * current - 1.0))


def test_lif_two_elements_spike_times() -> None:
    """Two independent LIF elements with different currents spike at k tau ln(rI/(rI-1))."""
    currents = f64([1.5, 3.2])
    sol = solve_events(lif_rhs, V(torch.zeros(2, dtype=F64)), 0.1, event=lif_event,
                       jump=lif_reset, check_dt=2e-3, input_fn=lambda t: currents)
    assert isinstance(sol, EventSolution)
    assert sol.index.shape == (len(sol.times), 1)
    assert bool((sol.times[1:] >= sol.times[:-1]).all())
    for j, current in enumerate(currents.tolist()):
        times = sol.of(j)
        period = lif_period(current)
        k = torch.arange(1, len(times) + 1, dtype=F64)
        assert len(times) == math.floor(0.1 / period)
        torch.testing.assert_close(times, k * period, rtol=0, atol=1e-9)
    # the two elements spike at different times: no element fires with the other's events
    assert not set(sol.of(0).tolist()) & set(sol.of(1).tolist())
    # final state: v after the last spike of each element
    for j, current in enumerate(currents.tolist()):
        since = 0.1 - float(sol.of(j)[-1])
        expected = R * current * (1.0 - math.exp(-since / TAU))
        assert abs(float(sol.state.v[j]) - expected) < 1e-9


def test_simultaneous_events_fire_together() -> None:
    """Identical elements cross at the same instant: one event time, every element jumps."""
    sol = solve_events(lif_rhs, V(torch.zeros(2, 2, dtype=F64)), 0.03, event=lif_event,
                       jump=lif_reset, check_dt=5e-3, input_fn=lambda t: f64(2.0))
    period = lif_period(2.0)  # 13.9 ms: two spikes each
    assert len(sol.times) == 8 and sol.index.shape == (8, 2)
    expected = torch.tensor([period] * 4 + [2 * period] * 4, dtype=F64)
    torch.testing.assert_close(sol.times, expected, rtol=0, atol=1e-9)
    every = [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted(map(tuple, sol.index[:4].tolist())) == every
    assert sorted(map(tuple, sol.index[4:].tolist())) == every


def test_piecewise_constant_tensor_input() -> None:
    """A [T, N] input with its own step: the check grid includes its boundaries."""
    input_dt, n_steps = 0.025, 4  # current switches at 0.025, 0.05, 0.075
    levels = [1.5, 3.0, 0.5, 2.0]
    current = f64(levels)[:, None]  # [T, 1]
    sol = solve_events(lif_rhs, V(torch.zeros(1, dtype=F64)), n_steps * input_dt, event=lif_event,
                       jump=lif_reset, check_dt=0.01, input_fn=current, input_dt=input_dt)
    # closed form, segment by segment
    expected, t, v = [], 0.0, 0.0
    for n, current_n in enumerate(levels):
        end = (n + 1) * input_dt
        while R * current_n > 1.0 and t + lif_period(current_n, v) <= end:
            t += lif_period(current_n, v)
            v = 0.0
            expected.append(t)
        v = R * current_n + (v - R * current_n) * math.exp(-(end - t) / TAU)
        t = end
    assert len(expected) >= 5
    torch.testing.assert_close(sol.times, f64(expected), rtol=0, atol=1e-9)
    assert abs(float(sol.state.v[0]) - v) < 1e-9


def test_function_input_is_sampled_inside_check_intervals() -> None:
    """A callable input that switches at a check point gives the same spikes as the tensor."""
    current = f64([[1.5], [3.0]])
    a = solve_events(lif_rhs, V(torch.zeros(1, dtype=F64)), 0.06, event=lif_event,
                     jump=lif_reset, check_dt=0.01, input_fn=current, input_dt=0.03)
    b = solve_events(lif_rhs, V(torch.zeros(1, dtype=F64)), 0.06, event=lif_event,
                     jump=lif_reset, check_dt=0.01,
                     input_fn=lambda t: current[0] if t < 0.03 else current[1])
    torch.testing.assert_close(a.times, b.times, rtol=0, atol=1e-12)


def test_blow_up_after_threshold() -> None:
    """v' = 1 + v^2 (v = tan t) blows up at pi/2; the threshold 10 is met at atan(10).

    The integrator must stop at the threshold, not integrate into the singularity, even
    though every check interval reaches past it.
    """
    sol = solve_events(lambda t, y: (1.0 + y.v**2,), V(torch.zeros(1, dtype=F64)), 5.0,
                       event=lambda y: y.v - 10.0, jump=lif_reset, check_dt=1.0)
    period = math.atan(10.0)
    k = torch.arange(1, len(sol.times) + 1, dtype=F64)
    assert len(sol.times) == math.floor(5.0 / period)
    torch.testing.assert_close(sol.times, k * period, rtol=0, atol=1e-9)


def test_events_without_reset_are_upward_crossings_only() -> None:
    """No jump (like a Hodgkin-Huxley spike): x = sin t crosses 0.5 upwards at pi/6 + 2 pi k."""
    y0 = Osc(f64([0.0]), f64([1.0]))
    sol = solve_events(lambda t, y: (y.p, -y.x), y0, 8.0, event=lambda y: y.x - 0.5,
                       jump=lambda y: y, check_dt=0.5)
    expected = f64([math.pi / 6 + 2 * math.pi * k for k in range(2)])
    torch.testing.assert_close(sol.times, expected, rtol=0, atol=1e-9)
    assert abs(float(sol.state.x[0]) - math.sin(8.0)) < 1e-8


def test_no_events_returns_empty() -> None:
    sol = solve_events(lif_rhs, V(torch.zeros(3, dtype=F64)), 0.05, event=lif_event,
                       jump=lif_reset, check_dt=0.01, input_fn=lambda t: f64(0.5))
    assert sol.times.shape == (0,) and sol.index.shape == (0, 1)
    torch.testing.assert_close(sol.state.v, torch.full((3,), 0.5 * (1 - math.exp(-2.5)),
                                                       dtype=F64), rtol=0, atol=1e-10)


def test_check_grid_merges_input_boundaries() -> None:
    grid = check_grid(0.1, 0.03, input_dt=0.025)
    assert grid[0] == 0.0 and grid[-1] == 0.1
    for p in (0.025, 0.03, 0.05, 0.06, 0.075, 0.09):
        assert any(abs(g - p) < 1e-15 for g in grid)
    assert all(b > a for a, b in zip(grid, grid[1:], strict=False))
    # boundaries that coincide up to rounding are merged (no sliver intervals)
    grid = check_grid(0.3, 0.1, input_dt=0.1)
    assert len(grid) == 4


def test_errors() -> None:
    with pytest.raises(ValueError, match="check_dt"):
        check_grid(1.0, 0.0)
    with pytest.raises(ValueError, match="input_dt"):
        solve_events(lif_rhs, V(torch.zeros(1, dtype=F64)), 0.1, event=lif_event, jump=lif_reset,
                     check_dt=0.01, input_fn=f64([[1.0]]))
    with pytest.raises(ValueError, match="shorter than t_end"):
        solve_events(lif_rhs, V(torch.zeros(1, dtype=F64)), 0.1, event=lif_event, jump=lif_reset,
                     check_dt=0.01, input_fn=f64([[1.0]]), input_dt=0.05)
    with pytest.raises(ValueError, match="method"):
        solve_events(lif_rhs, V(torch.zeros(1, dtype=F64)), 0.1, event=lif_event, jump=lif_reset,
                     check_dt=0.01, method="rk4")
    with pytest.raises(TypeError, match="tuple"):
        solve_events(lif_rhs, torch.zeros(1, dtype=F64), 0.1, event=lif_event, jump=lif_reset,
                     check_dt=0.01)
