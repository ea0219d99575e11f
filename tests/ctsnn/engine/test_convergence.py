"""Convergence of simulated spike times to a tight-tolerance reference.

The reference is :func:`solvers.adaptive.solve_events` (torchdiffeq, event times refined by
root finding on re-integrations) with the same model equations. For a sequence of halved
``dt`` the spike-time error of ``ctsnn.simulate`` must shrink with the order of the method:

* ``time="continuous", method="rk4"``: order 4 (spike times are roots of the RK4 dense
  output, so nothing is quantised);
* ``time="discrete"``: order 1, whatever the stepper, because a spike is reported at the end
  of the grid step in which the threshold is passed (quantisation error in ``[0, dt)``).

Each model runs a batch of samples with slightly different constant currents (one neuron per
sample), which costs nothing extra in either integrator and averages the quantisation phase
in discrete time. The ``dt`` ranges are chosen per model inside the asymptotic regime (see
``docs/accuracy.md`` for the measurements and for AdEx's spike cut); the fast tests use a
short window and three ``dt``, the ``slow`` ones a longer window and more ``dt``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

import ctsnn
from ctsnn.models import NeuronModel
from solvers.adaptive import solve_events

F64 = torch.float64

REFERENCE_METHOD = "dopri8"
"""Reference integrator. At rtol 1e-12 it agrees with rtol 1e-13 to ~1e-14 s on these models
(see ``test_reference_is_converged``), well below the smallest rk4 error compared (~1e-12 s);
dopri5 at rtol 1e-10 is off by up to ~1e-11 s on AdEx, too much for the finest rk4 levels.
Hodgkin-Huxley, whose right-hand side is expensive, uses rtol 1e-10 (within ~1e-13 s)."""

MARGIN = 0.05
"""Reference spikes in the last 5 % of a window are not compared (a coarse discrete run may
place them after the end)."""


@dataclass(frozen=True)
class Case:
    """One model configuration and its ``dt`` ranges."""

    build: Callable[[], NeuronModel]
    currents: tuple[float, ...]
    fast_t_end: float
    fast_rk4: tuple[float, ...]
    fast_euler: tuple[float, ...]
    slow_t_end: float
    slow_rk4: tuple[float, ...]
    slow_discrete: tuple[float, ...]
    rtol: float = 1e-12
    check_dt: float = 1e-3


def halving(dt0: float, n: int) -> tuple[float, ...]:
    return tuple(dt0 / 2**k for k in range(n))


def _spread(base: float, n: int, step: float = 0.03) -> tuple[float, ...]:
    return tuple(base * (1.0 + step * k) for k in range(n))


CASES: dict[str, Case] = {
    # Spike cut 2 delta_t above v_t (the default 5 delta_t sits so close to the exponential
    # blow-up that rk4 stays pre-asymptotic down to dt ~ 5 us, where errors reach 1e-12 s).
    "AdEx": Case(
        build=lambda: ctsnn.AdEx(1, v_peak=-46.4).double(),
        currents=_spread(0.8, 4),  # nA: regular spiking with adaptation, 5 spikes in 0.2 s
        fast_t_end=0.0192, fast_rk4=halving(1.6e-4, 3), fast_euler=halving(1.6e-4, 5),
        slow_t_end=0.2, slow_rk4=halving(3.2e-4, 4), slow_discrete=halving(1.6e-4, 5),
    ),
    "Izhikevich": Case(
        build=lambda: ctsnn.Izhikevich(1).double(),
        currents=_spread(10.0, 4),  # regular spiking
        fast_t_end=0.03, fast_rk4=halving(2e-4, 3), fast_euler=halving(1e-4, 5),
        slow_t_end=0.2, slow_rk4=halving(1e-4, 4), slow_discrete=halving(1e-4, 5),
    ),
    "HodgkinHuxley": Case(
        build=lambda: ctsnn.HodgkinHuxley(1).double(),
        currents=_spread(10.0, 4),  # uA/cm^2; spike = upward crossing of 0 mV
        fast_t_end=0.0025, fast_rk4=halving(2e-5, 3), fast_euler=halving(2e-5, 4),
        slow_t_end=0.035, slow_rk4=halving(4e-5, 4), slow_discrete=halving(2e-5, 4), rtol=1e-10,
    ),
    "AdLIF": Case(
        build=lambda: ctsnn.AdLIF(1).double(),
        currents=_spread(2.0, 4),
        fast_t_end=0.0192, fast_rk4=halving(1.6e-3, 3), fast_euler=halving(4e-4, 5),
        slow_t_end=0.2, slow_rk4=halving(1.6e-3, 4), slow_discrete=halving(4e-4, 5),
    ),
    "QIF": Case(
        build=lambda: ctsnn.QIF(1).double(),
        currents=_spread(1.0, 4),
        fast_t_end=0.03, fast_rk4=halving(4e-4, 3), fast_euler=halving(4e-4, 5),
        slow_t_end=0.2, slow_rk4=halving(4e-4, 5), slow_discrete=halving(4e-4, 5),
    ),
}


# --------------------------------------------------------------------------- helpers
@functools.cache
def reference_times(name: str, t_end: float) -> tuple[Tensor, ...]:
    """Reference spike times per sample (cached: shared by the tests of one model)."""
    case = CASES[name]
    model = case.build()
    current = torch.tensor(case.currents, dtype=F64)[:, None]  # [B, 1]
    sol = solve_events(
        lambda t, y, x: model.dynamics(t, y, x), model.initial_state(len(case.currents), dtype=F64),
        t_end, event=model.threshold, jump=model.reset, check_dt=case.check_dt,
        input_fn=lambda t: current, method=REFERENCE_METHOD, rtol=case.rtol, atol=case.rtol * 1e-2,
    )
    return tuple(sol.times[sol.index[:, 0] == b] for b in range(len(case.currents)))


def simulated_times(name: str, t_end: float, dt: float, time: str, method: str) -> list[Tensor]:
    """``ctsnn.simulate`` spike times per sample for a constant current."""
    case = CASES[name]
    n_steps = round(t_end / dt)
    assert abs(n_steps * dt - t_end) < 1e-9 * t_end, "t_end must be a multiple of dt"
    current = torch.tensor(case.currents, dtype=F64)[None, :, None].expand(n_steps, -1, 1)
    spikes = ctsnn.simulate(case.build(), current.contiguous(), dt=dt, time=time,
                            method=method).spikes
    return [spikes.times[spikes.batch == b] for b in range(len(case.currents))]


def spike_errors(name: str, t_end: float, dt: float, time: str, method: str) -> Tensor:
    """Absolute errors of the spike times of all samples, matched in order.

    Every reference spike before ``(1 - MARGIN) t_end`` must have its simulated counterpart;
    simulated spikes after the last compared one are ignored.
    """
    ref = reference_times(name, t_end)
    sim = simulated_times(name, t_end, dt, time, method)
    errors = []
    for b, (r, s) in enumerate(zip(ref, sim, strict=True)):
        r = r[r < (1.0 - MARGIN) * t_end]
        assert len(r) > 0, f"{name}: sample {b} does not spike in the window of {t_end} s"
        assert len(s) >= len(r), (
            f"{name} {time}/{method} dt={dt}: sample {b} has {len(s)} spikes, reference {len(r)}"
        )
        errors.append((s[: len(r)] - r).abs())
    return torch.cat(errors)


def observed_orders(errors: list[float]) -> list[float]:
    """``log2`` of the ratios of successive errors (``dt`` halved each time)."""
    return [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]


def fitted_order(dts: tuple[float, ...], errors: list[float]) -> float:
    """Least-squares slope of ``log(error)`` against ``log(dt)``."""
    x = torch.log(torch.tensor(dts, dtype=F64))
    y = torch.log(torch.tensor(errors, dtype=F64))
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def check_rk4(name: str, t_end: float, dts: tuple[float, ...]) -> list[float]:
    errors = [float(spike_errors(name, t_end, dt, "continuous", "rk4").max()) for dt in dts]
    orders = observed_orders(errors)
    detail = f"{name}: dt={dts} max errors={errors} orders={orders}"
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), detail
    assert all(3.5 <= p <= 5.0 for p in orders), detail
    return orders


def check_discrete(name: str, t_end: float, dts: tuple[float, ...], method: str) -> float:
    errors = [float(spike_errors(name, t_end, dt, "discrete", method).mean()) for dt in dts]
    order = fitted_order(dts, errors)
    detail = f"{name} {method}: dt={dts} mean errors={errors} fitted order={order}"
    # quantisation makes successive ratios noisy: the fitted slope is the order, and the error
    # must shrink over every two halvings
    assert 0.8 <= order <= 1.5, detail
    assert all(b < a for a, b in zip(errors, errors[2:], strict=False)), detail
    assert errors[-1] < errors[0] / 4, detail
    return order


# --------------------------------------------------------------------------- fast tests
@pytest.mark.parametrize("name", list(CASES))
def test_continuous_rk4_spike_times_converge_with_order_4(name: str) -> None:
    case = CASES[name]
    check_rk4(name, case.fast_t_end, case.fast_rk4)


@pytest.mark.parametrize("name", ["AdEx", "Izhikevich", "HodgkinHuxley"])
def test_discrete_euler_spike_times_converge_with_order_1(name: str) -> None:
    case = CASES[name]
    check_discrete(name, case.fast_t_end, case.fast_euler, "euler")


def test_piecewise_constant_input_keeps_order_4() -> None:
    """A random current that changes every 2 ms (on the grid): still order 4 in continuous time.

    The reference takes the current as a ``[T, B, 1]`` tensor with its own step, so it
    integrates each constant piece separately, like the simulator.
    """
    torch.manual_seed(0)
    model = ctsnn.QIF(1).double()
    input_dt, n_in = 2e-3, 15
    current = 1.0 + 0.8 * torch.rand(n_in, 4, 1, dtype=F64)
    sol = solve_events(
        lambda t, y, x: model.dynamics(t, y, x), model.initial_state(4, dtype=F64),
        n_in * input_dt, event=model.threshold, jump=model.reset, check_dt=1e-3,
        input_fn=current, input_dt=input_dt, method=REFERENCE_METHOD, rtol=1e-12, atol=1e-14,
    )
    assert sorted(sol.index[:, 0].tolist()) == [0, 1, 2, 3]  # one spike per sample
    errors = []
    for k in (8, 16, 32):  # dt = 250, 125, 62.5 us
        spikes = ctsnn.simulate(model, current.repeat_interleave(k, dim=0), dt=input_dt / k,
                                time="continuous", method="rk4").spikes
        assert torch.equal(spikes.batch, sol.index[:, 0].sort().values)
        errors.append(float((spikes.times - sol.times[sol.index[:, 0].argsort()]).abs().max()))
    orders = observed_orders(errors)
    assert all(3.5 <= p <= 5.0 for p in orders), (errors, orders)


@pytest.mark.parametrize(
    "name", ["AdEx", pytest.param("HodgkinHuxley", marks=pytest.mark.slow)]
)
def test_reference_is_converged(name: str) -> None:
    """The reference itself: tightening rtol tenfold moves its spike times by < 1e-13 s."""
    case = CASES[name]
    model = case.build()
    current = torch.tensor(case.currents, dtype=F64)[:, None]
    rtol = case.rtol / 10
    tight = solve_events(
        lambda t, y, x: model.dynamics(t, y, x), model.initial_state(len(case.currents), dtype=F64),
        case.fast_t_end, event=model.threshold, jump=model.reset, check_dt=case.check_dt,
        input_fn=lambda t: current, method=REFERENCE_METHOD, rtol=rtol, atol=rtol * 1e-2,
    )
    for b, times in enumerate(reference_times(name, case.fast_t_end)):
        again = tight.times[tight.index[:, 0] == b]
        assert len(times) == len(again) >= 1
        assert float((times - again).abs().max()) < 1e-13


# --------------------------------------------------------------------------- slow tests
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_continuous_rk4_order_4_long_window(name: str) -> None:
    case = CASES[name]
    check_rk4(name, case.slow_t_end, case.slow_rk4)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("name", list(CASES))
def test_discrete_order_1_long_window(name: str, method: str) -> None:
    case = CASES[name]
    check_discrete(name, case.slow_t_end, case.slow_discrete, method)
