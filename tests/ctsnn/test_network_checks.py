"""simulate refuses bad arguments with clear messages (issue 9, item 6)."""

from __future__ import annotations

import math
import time as clock

import pytest
import torch

import ctsnn
from ctsnn import LIF, Layer, Spikes, simulate
from ctsnn.network import layers_of

pytestmark = pytest.mark.usefixtures("float64")


def current(t: int = 10, b: int = 1, n: int = 1) -> torch.Tensor:
    return torch.full((t, b, n), 30.0)


@pytest.mark.parametrize("xtol", [math.nan, math.inf, -math.inf, -1.0])
def test_xtol_nan_inf_or_negative_is_refused(xtol):
    # before: accepted; NaN / inf snapped every spike to the end of its step
    with pytest.raises(ValueError, match="xtol must be"):
        simulate(LIF(1, tau_mem=0.01), current(), dt=1e-3, time="continuous", xtol=xtol)


@pytest.mark.parametrize("batch_size, error", [(-1, ValueError), (0, ValueError),
                                               (2.5, TypeError), ("2", TypeError)])
def test_batch_size_must_be_a_positive_int(batch_size, error):
    # before: raw torch errors ("zeros: Dimension size must be non-negative", "zeros() takes")
    with pytest.raises(error, match="batch_size must be"):
        simulate(LIF(1), None, dt=1e-3, n_steps=5, batch_size=batch_size)


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_state_of_the_wrong_shape_names_the_variable(time):
    with pytest.raises(ValueError, match=r"state\.v must have shape \[B, N\] = \[1, 1\]"):
        simulate(LIF(1), current(), dt=1e-3, time=time, state=(torch.zeros(3, 4),))


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_nan_state_is_not_blamed_on_the_integrator(time):
    with pytest.raises(ValueError, match=r"initial state\.v contains a non-finite value"):
        simulate(LIF(1), current(), dt=1e-3, time=time,
                 state=(torch.full((1, 1), math.nan),))


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_one_late_input_spike_is_refused_first_and_named(time):
    # before: a 1e8-step run that died with a bare MemoryError (or std::bad_alloc)
    spikes = Spikes.from_events([0.001, 1e5], [0, 0], dt=1e-3)
    layer = Layer(LIF(1), weight=torch.ones(1, 1))
    start = clock.perf_counter()
    with pytest.raises(ValueError, match=r"input spike at t = 100000 s \(event 1: sample 0, "
                                         r"unit 0\) makes a grid of 100000000 steps of "
                                         r"dt = 0.001 s: "
                                         r"100000000 steps exceed the limit"):
        simulate(layer, spikes, time=time)
    assert clock.perf_counter() - start < 1.0  # refused before allocating anything


def test_an_explicit_n_steps_too_large_is_named(monkeypatch):
    monkeypatch.setattr(ctsnn.engine.limits, "MAX_STEPS", 100)
    with pytest.raises(ValueError, match=r"n_steps = 101 steps of dt = 0\.001 s: 101 steps"):
        simulate(LIF(1), None, dt=1e-3, n_steps=101, batch_size=1)
    with pytest.raises(ValueError, match=r"the input tensor has 200 steps"):
        simulate(LIF(1), current(200), dt=1e-3)


def test_layers_of_names_the_caller_and_the_bad_item():
    model = LIF(2, tau_mem=0.02)
    assert len(layers_of(model)) == 1 and len(layers_of([model, Layer(LIF(2))])) == 2
    with pytest.raises(TypeError, match=r"to_nir\(\): network item 1 is a str"):
        layers_of([model, "x"], caller="to_nir")
    with pytest.raises(TypeError, match=r"simulate\(\) takes .* non-empty sequence"):
        layers_of([])
