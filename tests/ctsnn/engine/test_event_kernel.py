"""The compiled event-driven engine against the reference continuous engine (kernels off)."""

from __future__ import annotations

import pytest
import torch
from event_compare import assert_same, kernel_only, sorted_spikes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.engine import population, run_population
from ctsnn.engine.compiled import event_driven
from ctsnn.engine.compiled.event_driven import event_driven_refusal, run_event_driven
from ctsnn.models.lif import LI, LIF, CubaLI, CubaLIF
from ctsnn.spikes import Spikes
from ctsnn.synapses import Dense

F64 = torch.float64
DT = 2.0 ** -10  # a binary grid: sums of grid times and whole-step delays are exact


def _spikes(gen, n_in, batch, n_steps, n_events, dt=DT, dtype=F64, grid=False):
    if grid:
        times = torch.randint(0, n_steps + 1, (n_events,), generator=gen).to(dtype) * dt
    else:
        times = torch.rand(n_events, generator=gen, dtype=F64).to(dtype) * n_steps * dt
    return Spikes.from_events(times, torch.randint(0, n_in, (n_events,), generator=gen),
                              torch.randint(0, batch, (n_events,), generator=gen), dt=dt,
                              n_steps=n_steps, batch_size=batch, n_units=n_in)


def _synapse(gen, n_in, n_out, delays, scale=2.0, dtype=F64, max_delay=0.02, step=None):
    weight = (torch.rand(n_out, n_in, generator=gen, dtype=F64) - 0.3) * scale
    if delays == "none":
        delay, per = None, "synapse"
    else:
        shape = (n_out, n_in) if delays == "synapse" else (n_in,)
        if step is None:
            delay = torch.rand(shape, generator=gen, dtype=F64) * max_delay
        else:
            delay = torch.randint(0, int(max_delay / step) + 1, shape, generator=gen) * step
        per = delays
    syn = Dense(weight=weight.to(dtype), delay=None if delay is None else delay.to(dtype),
                per=per, learn_weight=False)
    return syn


def _run(model, syn, spikes, *, kernels, n_steps, state=None, dtype=F64, **kw):
    with use_kernels(kernels), torch.no_grad():
        return run_population(model, dt=spikes.dt, n_steps=n_steps, batch_size=spikes.batch_size,
                              arrivals=syn.arrivals(spikes), time="continuous", state=state,
                              dtype=dtype, **kw)


def _model(cls, n, reset, gen, **kw):
    per_neuron = {"tau_mem": 0.005 + 0.02 * torch.rand(n, generator=gen, dtype=F64)}
    if cls in (CubaLI, CubaLIF):
        per_neuron["tau_syn"] = 0.002 + 0.01 * torch.rand(n, generator=gen, dtype=F64)
    if cls in (LIF, CubaLIF):
        per_neuron["v_threshold"] = 0.8 + 0.4 * torch.rand(n, generator=gen, dtype=F64)
        kw["reset"] = reset
    return cls(n, **per_neuron, **kw)


MODELS = [(LIF, "zero"), (LIF, "subtract"), (LIF, "none"), (CubaLIF, "zero"),
          (CubaLIF, "subtract"), (CubaLIF, "none"), (LI, None), (CubaLI, None)]


@pytest.mark.parametrize(("cls", "reset"), MODELS)
@pytest.mark.parametrize("delays", ["none", "axon", "synapse"])
def test_kernel_matches_reference(cls, reset, delays, monkeypatch):
    gen = torch.Generator().manual_seed(hash((cls.__name__, reset, delays)) % 2**31)
    n_in, n_out, batch, n_steps = 12, 5, 3, 80
    model = _model(cls, n_out, reset, gen, r=1.5 if cls in (CubaLIF, CubaLI) else 1.0)
    syn = _synapse(gen, n_in, n_out, delays, scale=3.0)
    spikes = _spikes(gen, n_in, batch, n_steps, 150)
    ref = _run(model, syn, spikes, kernels=False, n_steps=n_steps)
    kernel_only(monkeypatch)
    got = _run(model, syn, spikes, kernels=True, n_steps=n_steps)
    assert_same(got, ref, n_out)
    if model.spiking:
        assert ref.spikes.times.numel() > 0  # the comparison saw spikes


@pytest.mark.parametrize("cls", [LIF, CubaLIF])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_refractory_and_tonic_firing(cls, reset, monkeypatch):
    """v_leak above threshold: regular firing found by root finding between arrivals, many
    spikes per neuron (more than the kernel's first-pass capacity), refractory holds."""
    gen = torch.Generator().manual_seed(3)
    n_out, n_steps = 4, 400
    model = cls(n_out, tau_mem=0.01, v_leak=torch.tensor([1.3, 1.3, 1.3, 0.0], dtype=F64),
                v_threshold=1.0, reset=reset,
                refractory=torch.tensor([0.0, 0.001, 0.0023, 0.004], dtype=F64))
    syn = _synapse(gen, 6, n_out, "synapse", scale=1.0)
    spikes = _spikes(gen, 6, 2, n_steps, 60)
    ref = _run(model, syn, spikes, kernels=False, n_steps=n_steps)
    kernel_only(monkeypatch)
    monkeypatch.setattr(event_driven, "_BUDGET", 1)  # 16 spike slots per neuron on pass one
    got = _run(model, syn, spikes, kernels=True, n_steps=n_steps)
    assert_same(got, ref, n_out)
    counts = torch.bincount(ref.spikes.batch * n_out + ref.spikes.units)
    assert int(counts.max()) > 16 and int(counts.min()) <= 16  # both passes are used


@pytest.mark.parametrize(("cls", "reset"), MODELS[:6])
def test_ties_grid_points_and_time_zero(cls, reset, monkeypatch):
    """Input on grid points with whole-step delays: simultaneous arrivals (summed), arrivals
    on grid points, at t = 0 and at T, refractory ends on grid points."""
    gen = torch.Generator().manual_seed(11)
    n_in, n_out, batch, n_steps = 5, 4, 2, 40
    model = _model(cls, n_out, reset, gen, refractory=3 * DT, r=2.0)
    syn = _synapse(gen, n_in, n_out, "synapse", scale=4.0, max_delay=8 * DT, step=DT)
    spikes = _spikes(gen, n_in, batch, n_steps, 60, grid=True)
    zero = Spikes.from_events(torch.zeros(n_in, dtype=F64), torch.arange(n_in),
                              torch.zeros(n_in, dtype=torch.long), dt=DT, n_steps=n_steps,
                              batch_size=batch, n_units=n_in)
    spikes = Spikes.from_events(torch.cat([spikes.times, zero.times]),
                                torch.cat([spikes.units, zero.units]),
                                torch.cat([spikes.batch, zero.batch]), dt=DT, n_steps=n_steps,
                                batch_size=batch, n_units=n_in)
    with torch.no_grad():
        syn.delay[:, 0] = 0.0  # the t = 0 spike of input 0 arrives at t = 0
    ref = _run(model, syn, spikes, kernels=False, n_steps=n_steps)
    kernel_only(monkeypatch)
    got = _run(model, syn, spikes, kernels=True, n_steps=n_steps)
    assert_same(got, ref, n_out)


def test_initial_state_above_threshold_and_given_state(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    model = CubaLIF(3, tau_mem=0.01, tau_syn=0.01, v_threshold=1.0, refractory=0.002)
    syn = _synapse(gen, 4, 3, "axon")
    spikes = _spikes(gen, 4, 2, 50, 30)
    state = model.State(torch.tensor([[1.2, 0.5, 0.99], [0.0, 1.0, -1.0]], dtype=F64),
                        torch.tensor([[0.0, 50.0, 5.0], [150.0, 0.0, -3.0]], dtype=F64))
    ref = _run(model, syn, spikes, kernels=False, n_steps=50, state=state)
    kernel_only(monkeypatch)
    got = _run(model, syn, spikes, kernels=True, n_steps=50, state=state)
    assert_same(got, ref, 3)
    assert ref.spikes.times.numel() > 2


def test_empty_input_and_empty_samples(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    model = LIF(3, v_leak=1.5)  # fires without input
    syn = _synapse(gen, 4, 3, "synapse")
    none = Spikes.from_events(torch.zeros(0, dtype=F64), torch.zeros(0, dtype=torch.long),
                              torch.zeros(0, dtype=torch.long), dt=DT, n_steps=30,
                              batch_size=2, n_units=4)
    ref = _run(model, syn, none, kernels=False, n_steps=30)
    quiet = LIF(3)
    ref_quiet = _run(quiet, syn, none, kernels=False, n_steps=30)
    kernel_only(monkeypatch)
    assert_same(_run(model, syn, none, kernels=True, n_steps=30), ref, 3)
    got = _run(quiet, syn, none, kernels=True, n_steps=30)
    assert_same(got, ref_quiet, 3)
    assert got.spikes.times.numel() == 0 and got.spikes.times.dtype == F64


def test_arrivals_after_the_end_are_dropped(monkeypatch):
    """Delays push every arrival of sample 1 past T (and sample 2 has no input at all)."""
    syn = Dense(weight=torch.full((2, 3), 2.0, dtype=F64),
                delay=torch.tensor([0.0, 0.01, 0.5], dtype=F64), per="axon", learn_weight=False)
    spikes = Spikes.from_events(torch.tensor([0.002, 0.02, 0.02], dtype=F64),
                                torch.tensor([0, 2, 1]), torch.tensor([0, 1, 0]), dt=DT,
                                n_steps=25, batch_size=3, n_units=3)
    model = LIF(2)
    ref = _run(model, syn, spikes, kernels=False, n_steps=25)
    kernel_only(monkeypatch)
    got = _run(model, syn, spikes, kernels=True, n_steps=25)
    assert_same(got, ref, 2)
    assert got.spikes.batch.tolist() == [0, 0]


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), which=st.integers(0, len(MODELS) - 1),
       delays=st.sampled_from(["none", "axon", "synapse"]), n_in=st.integers(1, 6),
       n_out=st.integers(1, 4), batch=st.integers(1, 3), n_events=st.integers(0, 40),
       grid=st.booleans(), refractory=st.sampled_from([0.0, 2 * DT, 0.0031]))
def test_random_networks(seed, which, delays, n_in, n_out, batch, n_events, grid, refractory):
    gen = torch.Generator().manual_seed(seed)
    cls, reset = MODELS[which]
    model = _model(cls, n_out, reset, gen, refractory=refractory)
    syn = _synapse(gen, n_in, n_out, delays, scale=3.0, step=DT if grid else None)
    spikes = _spikes(gen, n_in, batch, 30, n_events, grid=grid)
    ref = _run(model, syn, spikes, kernels=False, n_steps=30)
    got = _run(model, syn, spikes, kernels=True, n_steps=30)
    assert_same(got, ref, n_out)


@pytest.mark.parametrize("dt", [1e-3, 5e-3, 25e-3])
@pytest.mark.parametrize("cls", [LIF, CubaLIF])
def test_float32_within_a_microsecond_at_any_dt(cls, dt):
    """float32 runs are computed in float64: spike times within 1e-6 s of the float64 run of
    the same (float32-valued) network, whatever ``dt``."""
    gen = torch.Generator().manual_seed(7)
    horizon = 0.5
    n_steps = round(horizon / dt)
    model64 = cls(6, tau_mem=0.02, v_threshold=1.0, **({"tau_syn": 0.005} if cls is CubaLIF
                                                      else {}))
    syn64 = _synapse(gen, 10, 6, "synapse", scale=2.0 if cls is LIF else 8.0, max_delay=0.05)
    spikes64 = _spikes(gen, 10, 2, n_steps, 300, dt=dt)
    model32, syn32 = model64.float(), Dense(weight=syn64.weight.float(), learn_weight=False,
                                            delay=syn64.delay.float())
    spikes32 = spikes64.to(dtype=torch.float32)
    syn64 = Dense(weight=syn32.weight.double(), delay=syn32.delay.double(), learn_weight=False)
    spikes64 = spikes32.to(dtype=F64)
    ref = _run(model32.double(), syn64, spikes64, kernels=False, n_steps=n_steps)
    got = _run(model32, syn32, spikes32, kernels=True, n_steps=n_steps, dtype=torch.float32)
    ta, _, _ = sorted_spikes(got.spikes, 6)
    tb, _, _ = sorted_spikes(ref.spikes, 6)
    assert got.spikes.times.dtype == torch.float32
    assert ta.numel() == tb.numel() > 10
    assert float((ta - tb).abs().max()) <= 1e-6


def test_selection_rule():
    model, gen = LIF(3), torch.Generator().manual_seed(0)
    syn = _synapse(gen, 4, 3, "synapse")
    spikes = _spikes(gen, 4, 1, 10, 5)
    arr = syn.arrivals(spikes)
    base = dict(time="continuous", method="exact", arrivals=arr, dt=DT, n_steps=10, current=None,
                jumps=None, recurrent=None, record=(), saveat=None, integrand=None, state=None,
                dtype=F64)
    with torch.no_grad():
        assert event_driven_refusal(model, **base) is None
        with use_kernels(False):
            assert "off" in event_driven_refusal(model, **base)
        assert "record" in event_driven_refusal(model, **{**base, "record": ("v",)})
        assert "saveat" in event_driven_refusal(model, **{**base, "saveat": (0.001,)})
        assert "rk4" not in str(event_driven_refusal(model, **{**base, "method": "rk4"}))
        assert event_driven_refusal(model, **{**base, "method": "rk4"}) is not None
        assert "dt" in event_driven_refusal(model, **{**base, "dt": 2 * DT})
        assert "longer" in event_driven_refusal(model, **{**base, "n_steps": 11})
    grad_syn = Dense(weight=syn.weight.detach().clone(), delay=syn.delay.detach().clone())
    grad_arr = grad_syn.arrivals(spikes)
    assert "autograd" in event_driven_refusal(model, **{**base, "arrivals": grad_arr})
    with torch.no_grad():
        assert event_driven_refusal(model, **{**base, "arrivals": grad_arr}) is None


def test_grad_requiring_run_takes_the_reference(monkeypatch):
    gen = torch.Generator().manual_seed(4)
    syn = _synapse(gen, 4, 3, "synapse", scale=4.0)
    syn.weight.requires_grad_(True)
    spikes = _spikes(gen, 4, 1, 30, 20)
    called = []
    monkeypatch.setattr(population, "run_event_driven",
                        lambda *a, **k: called.append(1) or run_event_driven(*a, **k))
    res = run_population(LIF(3), dt=DT, n_steps=30, batch_size=1, arrivals=syn.arrivals(spikes),
                         time="continuous")
    assert not called and res.final_state.v.requires_grad
    with torch.no_grad():
        run_population(LIF(3), dt=DT, n_steps=30, batch_size=1, arrivals=syn.arrivals(spikes),
                       time="continuous")
    assert called


def test_simulate_layer_under_no_grad_uses_the_kernel(monkeypatch):
    gen = torch.Generator().manual_seed(8)
    syn = _synapse(gen, 5, 4, "synapse", scale=3.0)
    layer = ctsnn.Layer(CubaLIF(4, r=2.0).double(), syn, time="continuous")
    spikes = _spikes(gen, 5, 2, 60, 50)
    with torch.no_grad(), use_kernels(False):
        ref = ctsnn.simulate(layer, spikes)
    kernel_only(monkeypatch)
    with torch.no_grad():
        got = ctsnn.simulate(layer, spikes)
    assert_same(got, ref, 4)


def test_jump_only_reference_fires_on_upward_crossings_only():
    """LIF reset='none' above threshold: a further arrival does not fire again (the jump-only
    reference step used to, unlike the general step and the kernel)."""
    syn = Dense(weight=torch.tensor([[1.5]], dtype=F64), learn_weight=False)
    spikes = Spikes.from_events(torch.tensor([0.001, 0.0012], dtype=F64), torch.tensor([0, 0]),
                                dt=DT, n_steps=10, batch_size=1, n_units=1)
    model = LIF(1, reset="none", tau_mem=0.02)
    for kernels in (False, True):
        res = _run(model, syn, spikes, kernels=kernels, n_steps=10)
        assert res.spikes.times.tolist() == [0.001]


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_output_is_in_spikes_order(dtype):
    """The kernel emits its events through the trusted Spikes constructor: they must be exactly
    what the validating, sorting constructor makes of them (order, steps, amplitudes)."""
    gen = torch.Generator().manual_seed(9)
    model = LIF(6, v_leak=1.2, refractory=0.001).to(dtype)
    syn = _synapse(gen, 5, 6, "synapse", scale=2.0, dtype=dtype, step=DT)
    spikes = _spikes(gen, 5, 3, 60, 80, dtype=dtype, grid=True)
    got = _run(model, syn, spikes, kernels=True, n_steps=60, dtype=dtype).spikes
    ref = Spikes.from_events(got.times, got.units, got.batch, dt=DT, n_steps=60, batch_size=3,
                             n_units=6)
    assert len(got) > 50
    for name in ("times", "units", "batch", "values", "step"):
        assert torch.equal(getattr(got, name), getattr(ref, name)), name


@pytest.mark.parametrize("delays", ["none", "synapse"])
def test_run_shorter_than_the_input(delays, monkeypatch):
    """n_steps below the input's grid: later arrivals never come."""
    gen = torch.Generator().manual_seed(12)
    model = LIF(3, v_leak=0.5)
    syn = _synapse(gen, 4, 3, delays, scale=4.0)
    spikes = _spikes(gen, 4, 2, 40, 60)
    refs = {n: _run(model, syn, spikes, kernels=False, n_steps=n) for n in (20, 40)}
    kernel_only(monkeypatch)
    for n, ref in refs.items():
        assert_same(_run(model, syn, spikes, kernels=True, n_steps=n), ref, 3)


def test_crossing_after_a_dip_below_threshold_is_found_on_any_grid():
    """CubaLIF, reset='none', starting above threshold with a negative current: v dips below
    threshold and climbs back to v_leak > threshold. The upward crossing is a spike whatever
    the grid: the kernel finds it in one 0.2 s step as the reference does on a 1 ms grid, at
    the root of the closed form (bisection on the reference flow)."""
    model = CubaLIF(1, tau_mem=0.02, tau_syn=0.005, v_leak=1.5, v_threshold=1.0,
                    reset="none").double()
    state = model.State(torch.tensor([[1.2]], dtype=F64), torch.tensor([[-30.0]], dtype=F64))
    syn = Dense(weight=torch.ones(1, 1, dtype=F64), learn_weight=False)
    lo, hi = torch.tensor(0.002, dtype=F64), torch.tensor(0.2, dtype=F64)
    for _ in range(200):  # v is below threshold at 2 ms and above at 0.2 s
        mid = 0.5 * (lo + hi)
        below = bool(model.flow(state, torch.zeros(()), mid).v < 1.0)
        lo, hi = (mid, hi) if below else (lo, mid)
    for dt, kernels in ((0.2, True), (0.001, False), (0.001, True)):
        n_steps = round(0.2 / dt)
        none = Spikes.from_events(torch.zeros(0, dtype=F64), torch.zeros(0, dtype=torch.long),
                                  dt=dt, n_steps=n_steps, batch_size=1, n_units=1)
        res = _run(model, syn, none, kernels=kernels, n_steps=n_steps, state=state)
        assert res.spikes.times.numel() == 1, (dt, kernels)
        assert abs(float(res.spikes.times[0]) - float(hi)) <= 1e-12
