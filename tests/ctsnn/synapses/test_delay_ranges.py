"""Delays stay causal and in range: ``clamp_delays_`` projects into ``[0, max_delay]``, and the
forward of every synapse (both time modes, every kernel, the adjoint paths) refuses a delay out
of range or not finite, naming the parameter (issue 9, item 4)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn import LIF, CubaLIF, Layer, Spikes, simulate
from ctsnn.synapses import Dense, Gaussian, RecurrentDense, Rounded, Triangle

pytestmark = pytest.mark.usefixtures("float64")

FAST = settings(max_examples=40, deadline=None)
BAD = {"negative": -0.002, "nan": math.nan, "inf": math.inf, "-inf": -math.inf,
       "too long": 0.05}
WHAT = {"negative": "negative", "nan": "non-finite", "inf": "non-finite",
        "-inf": "non-finite", "too long": "above max_delay"}


def one_spike(t: float = 0.003, n_steps: int = 20) -> Spikes:
    return Spikes.from_events([t], [0], dt=1e-3, n_steps=n_steps, n_units=1)


def exact_dense(value: float) -> Dense:
    syn = Dense(weight=torch.tensor([[3.0], [3.0]]), delay=0.001, max_delay=0.01,
                learn_delay=True)
    with torch.no_grad():
        syn.delay[1, 0] = value
    return syn


# --------------------------------------------------------------------------- the reproduction
@pytest.mark.parametrize("time", ["discrete", "continuous"])
@pytest.mark.parametrize("kind", list(BAD))
def test_dense_forward_refuses_a_delay_out_of_range(time, kind):
    # before: a -2 ms delay made a spike at 3 ms arrive at 1 ms, NaN gave an IndexError
    # (discrete) or dropped the input (continuous), 50 ms > max_delay passed silently.
    layer = Layer(LIF(2, tau_mem=0.01), exact_dense(BAD[kind]))
    with pytest.raises(ValueError, match=rf"Dense\.delay: .* at \[1, 0\] is {WHAT[kind]}"):
        simulate(layer, one_spike(), time=time)


def test_the_message_says_how_to_fix_it():
    layer = Layer(LIF(2, tau_mem=0.01), exact_dense(-0.002))
    with pytest.raises(ValueError, match=r"-0\.002 s at \[1, 0\] is negative.*"
                                         r"ctsnn\.clamp_delays_\(net\) after each optimiser"):
        simulate(layer, one_spike(), time="continuous")


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_after_clamp_the_spike_is_causal(time):
    layer = Layer(LIF(2, tau_mem=0.01, v_threshold=1.0), exact_dense(-0.002))
    ctsnn.clamp_delays_(layer)
    assert layer.synapse.delay[1, 0].item() == 0.0
    out = simulate(layer, one_spike(), time=time).spikes
    assert out.times.detach().min().item() >= 0.003 - 1e-12  # nothing before the input spike


def test_clamp_refuses_a_nan_delay_and_a_nan_max_delay():
    syn = exact_dense(math.nan)
    with pytest.raises(ValueError, match=r"Dense\.delay: nan at \[1, 0\] is non-finite"):
        ctsnn.clamp_delays_(syn)
    syn = exact_dense(0.002)
    syn.max_delay = math.nan  # before: every delay became NaN
    with pytest.raises(ValueError, match="max_delay must be finite"):
        syn.clamp_delays_()
    assert syn.delay[1, 0].item() == 0.002


# --------------------------------------------------------------------------- max_delay
@pytest.mark.parametrize("bad", [math.nan, math.inf, -1e-3])
@pytest.mark.parametrize("build", [
    lambda m: Dense(2, 3, max_delay=m),
    lambda m: RecurrentDense(3, max_delay=m),
    lambda m: Layer(LIF(3), n_in=2, max_delay=m),
])
def test_max_delay_must_be_finite_and_non_negative(build, bad):
    with pytest.raises(ValueError, match="max_delay"):
        build(bad)


@pytest.mark.parametrize("build", [
    lambda: Dense(2, 3, max_delay=0.0, learn_delay=True),
    lambda: RecurrentDense(3, delay=0.0, max_delay=0.0, learn_delay=True),
    lambda: Layer(LIF(3), n_in=2, max_delay=0.0, learn_delay=True),
    lambda: Dense(2, 3, kernel=Triangle(1.0), dt=1e-3, max_delay=0.0, learn_delay=True),
])
def test_max_delay_zero_with_learnable_delays_is_an_error(build):
    with pytest.raises(ValueError, match="max_delay = 0 with learn_delay=True"):
        build()


def test_max_delay_zero_without_learning_is_fine():
    syn = Dense(2, 3, max_delay=0.0)
    assert float(syn.delay.abs().max()) == 0.0


# --------------------------------------------------------------------------- grid kernels
@pytest.mark.parametrize("kernel", [Rounded(), Triangle(1.0), Gaussian()])
@pytest.mark.parametrize("value, what", [(-1.5, "negative"), (math.nan, "non-finite"),
                                         (30.0, "above max_delay")])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_grid_kernels_refuse_delay_steps_out_of_range(kernel, value, what, mode):
    syn = Dense(2, 3, kernel=kernel, dt=1e-3, max_delay=0.01, learn_delay=True)
    syn.train(mode == "train")
    with torch.no_grad():
        syn.delay_steps[2, 1] = value
    raster = torch.zeros(12, 1, 2)
    raster[2, 0, 1] = 1.0
    with pytest.raises(ValueError, match=rf"Dense\.delay_steps: .* steps at \[2, 1\] is {what}"):
        syn.jumps(raster)
    if what != "non-finite":
        syn.clamp_delays_()
        syn.jumps(raster)


# --------------------------------------------------------------------------- recurrent
def rec_layer(kernel: str, value: float, time: str) -> Layer:
    if kernel == "exact":
        rec = RecurrentDense(weight=torch.full((2, 2), 0.5), delay=0.002, max_delay=0.01,
                             learn_delay=True)
        with torch.no_grad():
            rec.delay[0, 1] = value
    else:
        rec = RecurrentDense(2, kernel=Triangle(1.0), dt=1e-3, delay=0.002, max_delay=0.01,
                             learn_delay=True)
        with torch.no_grad():
            rec.delay_steps[0, 1] = value / 1e-3
    return Layer(LIF(2, tau_mem=0.01), weight=torch.tensor([[3.0], [3.0]]), recurrent=rec,
                 time=time)


@pytest.mark.parametrize("kernel, time, kind", [
    (kernel, time, kind)
    for kernel, time in (("exact", "discrete"), ("exact", "continuous"), ("triangle", "discrete"))
    for kind in BAD
])
def test_recurrent_forward_refuses_a_delay_out_of_range(kernel, time, kind):
    layer = rec_layer(kernel, BAD[kind], time)
    name = r"RecurrentDense\.delay" + ("" if kernel == "exact" else "_steps")
    with pytest.raises(ValueError, match=rf"{name}: .* at \[0, 1\] is {WHAT[kind]}"):
        simulate(layer, one_spike())


def test_recurrent_triangle_refuses_a_negative_delay_and_clamp_projects_it():
    """A negative Triangle delay asks for lags below one step (acausal; the kernel would drop
    that mass silently): the forward refuses it naming the parameter, clamp_delays_ projects."""
    rec = RecurrentDense(2, kernel=Triangle(0.0), dt=1e-3, delay=0.002, max_delay=0.01,
                         learn_delay=True)
    with torch.no_grad():
        rec.delay_steps.fill_(-0.4)
    with pytest.raises(ValueError, match=r"RecurrentDense\.delay_steps: -0\.4.* is negative"):
        rec.check_delays()
    layer = Layer(LIF(2, tau_mem=0.01), weight=torch.tensor([[3.0], [3.0]]), recurrent=rec)
    with pytest.raises(ValueError, match=r"RecurrentDense\.delay_steps: .* is negative"):
        simulate(layer, one_spike())
    rec.clamp_delays_()
    assert torch.equal(rec.delay_steps.detach(), torch.zeros(2, 2))
    simulate(layer, one_spike())  # in range again


# --------------------------------------------------------------------------- adjoint paths
@pytest.mark.parametrize("kind", ["negative", "nan", "too long"])
@pytest.mark.parametrize("case", ["closed_form", "generic", "recurrent", "discrete"])
def test_adjoint_paths_refuse_a_delay_out_of_range(case, kind):
    if case == "discrete":
        layer = Layer(CubaLIF(2), exact_dense(BAD[kind]), gradient="adjoint", time="discrete")
    elif case == "recurrent":
        layer = rec_layer("exact", BAD[kind], "continuous")
        layer = Layer(LIF(2, tau_mem=0.01), weight=torch.tensor([[3.0], [3.0]]),
                      recurrent=layer.recurrent, gradient="adjoint", time="continuous")
    else:
        layer = Layer(LIF(2, tau_mem=0.01), exact_dense(BAD[kind]), gradient="adjoint",
                      time="continuous")
    record = ("v",) if case == "generic" else ()
    name = r"RecurrentDense\.delay" if case == "recurrent" else r"Dense\.delay"
    with pytest.raises(ValueError, match=rf"{name}: .* is {WHAT[kind]}"):
        simulate(layer, one_spike(), record=record)


# --------------------------------------------------------------------------- invariants
delays = st.lists(st.floats(min_value=-1.0, max_value=1.0, allow_nan=False), min_size=6,
                  max_size=6)


@FAST
@given(values=delays, max_delay=st.floats(min_value=1e-4, max_value=0.5))
def test_after_clamp_every_delay_is_finite_and_in_range(values, max_delay):
    syn = Dense(3, 2, max_delay=max_delay, learn_delay=True)
    rec = RecurrentDense(2, max_delay=max_delay, learn_delay=True, delay_init="uniform")
    tri = RecurrentDense(2, kernel=Triangle(1.0), dt=1e-4, max_delay=max_delay,
                         learn_delay=True)
    with torch.no_grad():
        syn.delay.copy_(torch.tensor(values).reshape(2, 3))
        rec.delay.copy_(torch.tensor(values[:4]).reshape(2, 2))
        tri.delay_steps.copy_(torch.tensor(values[2:]).reshape(2, 2) * 1e4)
    ctsnn.clamp_delays_([syn, rec, tri])
    for d, high in ((syn.delay, max_delay), (rec.delay, max_delay),
                    (tri.delay_steps, tri.max_delay_steps)):
        d = d.detach()
        assert bool(torch.isfinite(d).all())
        assert float(d.min()) >= 0.0 and float(d.max()) <= high
    syn.check_delays(), rec.check_delays(), tri.check_delays()  # the forward accepts them


@FAST
@given(index=st.integers(0, 5), bad=st.sampled_from([math.nan, math.inf, -math.inf]),
       kernel=st.sampled_from(["exact", "rounded", "triangle", "gaussian", "rec_exact",
                               "rec_triangle"]))
def test_every_synapse_refuses_any_non_finite_delay(index, bad, kernel):
    kernels = {"rounded": Rounded(), "triangle": Triangle(1.0), "gaussian": Gaussian()}
    if kernel.startswith("rec_"):
        syn = (RecurrentDense(3, max_delay=0.01, learn_delay=True) if kernel == "rec_exact"
               else RecurrentDense(3, kernel=Triangle(1.0), dt=1e-3, max_delay=0.01,
                                   learn_delay=True))
        param = syn.delay if kernel == "rec_exact" else syn.delay_steps
        with torch.no_grad():
            param.view(-1)[index] = bad
        with pytest.raises(ValueError, match="non-finite"):
            syn.start(2, dtype=torch.float64, device=torch.device("cpu"), dt=1e-3,
                      time="discrete")
        return
    if kernel == "exact":
        syn = Dense(3, 2, max_delay=0.01, learn_delay=True)
        param, x = syn.delay, Spikes.from_events([0.001], [0], dt=1e-3, n_steps=5, n_units=3)
    else:
        syn = Dense(3, 2, kernel=kernels[kernel], dt=1e-3, max_delay=0.01, learn_delay=True)
        param, x = syn.delay_steps, torch.ones(5, 1, 3)
    with torch.no_grad():
        param.view(-1)[index] = bad
    with pytest.raises(ValueError, match="non-finite"):
        syn.jumps(x)
    if kernel == "exact":
        with pytest.raises(ValueError, match="non-finite"):
            syn.arrivals(x)
