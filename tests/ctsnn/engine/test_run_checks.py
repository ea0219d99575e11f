"""run_population refuses bad arguments with clear messages (issue 9, item 6): xtol NaN/inf,
batch_size -1 / 2.5, an initial state of the wrong shape or not finite, a grid too large."""

from __future__ import annotations

import math

import pytest
import torch

import ctsnn
from ctsnn.engine import limits, run_population

pytestmark = pytest.mark.usefixtures("float64")


def run(**kw):
    model = kw.pop("model", ctsnn.LIF(2, tau_mem=0.01))
    args = dict(dt=1e-3, n_steps=10, batch_size=1, current=torch.full((10, 1, 2), 30.0),
                time="continuous")
    args.update(kw)
    return run_population(model, **args)


@pytest.mark.parametrize("xtol, message", [(math.nan, "xtol must be finite"),
                                           (math.inf, "xtol must be finite"),
                                           (-1e-9, "xtol must be non-negative")])
def test_xtol_must_be_finite_and_non_negative(xtol, message):
    # before: NaN / inf were accepted and snapped every spike to the end of its step
    with pytest.raises(ValueError, match=message):
        run(xtol=xtol)


def test_xtol_zero_means_to_the_last_bit():
    exact = run(xtol=0.0).spikes.times
    t1 = 0.01 * math.log(30.0 / 29.0)  # LIF from 0 at constant input 30 reaches 1
    assert abs(float(exact[0]) - t1) < 1e-15


@pytest.mark.parametrize("batch_size, error, message", [
    (-1, ValueError, "batch_size must be >= 1"), (0, ValueError, "batch_size must be >= 1"),
    (2.5, TypeError, "batch_size must be an integer"),
    (True, TypeError, "batch_size must be an integer")])
def test_batch_size_is_a_positive_int(batch_size, error, message):
    with pytest.raises(error, match=message):
        run_population(ctsnn.LIF(2), dt=1e-3, n_steps=5, batch_size=batch_size)


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_initial_state_of_the_wrong_shape_is_refused(time):
    # before: [3, 4] broadcast silently over [1, 2] (discrete) or a raw error (continuous)
    with pytest.raises(ValueError, match=r"state\.v must have shape \[B, N\] = \[1, 2\].*"
                                         r"got \[3, 4\]"):
        run(state=(torch.zeros(3, 4),), time=time)


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_non_finite_initial_state_is_refused_as_such(time):
    # before: blamed on "the integrator is probably unstable" after the run
    state = (torch.tensor([[0.0, math.nan]]),)
    with pytest.raises(ValueError, match=r"initial state\.v contains a non-finite value "
                                         r"\(nan\) at index \(0, 1\)"):
        run(state=state, time=time)


def test_an_initial_state_that_fits_is_used():
    out = run(state=(torch.tensor([[0.5, 0.0]]),), record=("v",), time="discrete")
    assert out.states["v"].shape == (10, 1, 2)


def test_a_grid_above_the_step_limit_is_refused_before_running(monkeypatch):
    monkeypatch.setattr(limits, "MAX_STEPS", 1000)
    with pytest.raises(ValueError, match=r"n_steps = 1001 .*1001 steps exceed the limit "
                                         r"ctsnn\.engine\.limits\.MAX_STEPS = 1000"):
        run_population(ctsnn.LIF(2), dt=1e-3, n_steps=1001, batch_size=1)
    run_population(ctsnn.LIF(2), dt=1e-3, n_steps=1000, batch_size=1)


def test_a_grid_above_the_memory_is_refused_before_running(monkeypatch):
    monkeypatch.setattr(limits, "physical_memory", lambda: 2**20)
    with pytest.raises(ValueError, match=r"need about .* GiB \(estimated\), more than"):
        run_population(ctsnn.LIF(2), dt=1e-3, n_steps=1000, batch_size=1)
