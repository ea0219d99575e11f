"""The compiled generic-model loop against the reference continuous engine (kernels off).

Each (model, method) compiles its loop once per process (tens of seconds on a loaded machine):
the default tests share three models and rk4; the other methods are marked slow.
"""

from __future__ import annotations

import pytest
import torch
from event_compare import assert_same, kernel_only, sorted_spikes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import kernel_threads, numba_threads, use_kernels
from ctsnn.engine import population, run_population
from ctsnn.engine.compiled import generic_loop
from ctsnn.engine.compiled.generic_loop import generic_loop_refusal
from ctsnn.models.base import NeuronModel
from ctsnn.spikes import Spikes
from ctsnn.synapses import Dense

F64 = torch.float64
DT = 2.0 ** -10  # a binary grid: sums of grid times and whole-step delays are exact


def _adex(n, gen):
    return ctsnn.AdEx(n, a=0.004 + 0.01 * torch.rand(n, generator=gen, dtype=F64),
                      b=0.05 + 0.1 * torch.rand(n, generator=gen, dtype=F64)).double()


def _qif(n, gen):
    """Quadratic integrate-and-fire: one variable (monotone: no hidden-crossing search); the
    state blows up past v_c, so the crossing search sees infinite and NaN values."""
    return ctsnn.from_equations(
        "dv/dt = (v - v_r)*(v - v_c)/tau", threshold="v >= v_peak", reset="v = v_r",
        parameters={"tau": 0.01 + 0.01 * torch.rand(n, generator=gen, dtype=F64),
                    "v_r": 0.0, "v_c": 1.0, "v_peak": 30.0}, n=n, name="QIF").double()


def _adaptive(n, gen):
    """LIF with adaptation and a time-dependent drive (uses t; two variables: hidden
    crossings are searched)."""
    return ctsnn.from_equations(
        "dv/dt = (v_l - v + amp*sin(2*pi*f*t) - w)/tau\ndw/dt = (a*(v - v_l) - w)/tau_w",
        threshold="v >= 1", reset="v = 0; w += b",
        parameters={"tau": 0.02, "tau_w": 0.1, "a": 0.3, "b": 0.2, "v_l": 0.0,
                    "amp": 0.5 + torch.rand(n, generator=gen, dtype=F64), "f": 40.0},
        n=n, name="AdaptiveLIF").double()


MODELS = {"adex": (_adex, 8.0), "qif": (_qif, 1.5), "adaptive": (_adaptive, 0.8)}


def _spikes(gen, n_in, batch, n_steps, n_events, dt=DT, grid=False):
    if grid:
        times = torch.randint(0, n_steps + 1, (n_events,), generator=gen).to(F64) * dt
    else:
        times = torch.rand(n_events, generator=gen, dtype=F64) * n_steps * dt
    return Spikes.from_events(times, torch.randint(0, n_in, (n_events,), generator=gen),
                              torch.randint(0, batch, (n_events,), generator=gen), dt=dt,
                              n_steps=n_steps, batch_size=batch, n_units=n_in)


def _synapse(gen, n_in, n_out, delays, scale, max_delay=0.01, step=None, zeros=True):
    weight = torch.rand(n_out, n_in, generator=gen, dtype=F64) * scale
    if zeros:  # zero weights still split the reference's steps
        weight[torch.rand(n_out, n_in, generator=gen) < 0.2] = 0.0
    if delays == "none":
        return Dense(weight=weight, learn_weight=False)
    shape = (n_out, n_in) if delays == "synapse" else (n_in,)
    if step is None:
        delay = torch.rand(shape, generator=gen, dtype=F64) * max_delay
    else:
        delay = torch.randint(0, int(max_delay / step) + 1, shape, generator=gen) * step
    return Dense(weight=weight, delay=delay, per=delays, learn_weight=False)


def _run(model, syn, spikes, *, kernels, n_steps, dtype=F64, **kw):
    with use_kernels(kernels), torch.no_grad():
        return run_population(model, dt=spikes.dt, n_steps=n_steps, batch_size=spikes.batch_size,
                              arrivals=syn.arrivals(spikes), time="continuous", dtype=dtype,
                              **kw)


def _compare(model, syn, spikes, n_steps, monkeypatch, **kw):
    ref = _run(model, syn, spikes, kernels=False, n_steps=n_steps, **kw)
    with monkeypatch.context() as m:
        kernel_only(m)
        got = _run(model, syn, spikes, kernels=True, n_steps=n_steps, **kw)
    assert_same(got, ref, model.n, tol=1e-12, close=1e-10)
    return ref


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("delays", ["none", "axon", "synapse"])
def test_loop_matches_reference(name, delays, monkeypatch):
    gen = torch.Generator().manual_seed(hash((name, delays)) % 2**31)
    make, scale = MODELS[name]
    n_in, n_out, batch, n_steps = 10, 4, 3, 40
    model = make(n_out, gen)
    ref = _compare(model, _synapse(gen, n_in, n_out, delays, scale),
                   _spikes(gen, n_in, batch, n_steps, 120), n_steps, monkeypatch)
    assert ref.spikes.times.numel() > 5  # the comparison saw spikes


@pytest.mark.parametrize("cls", [ctsnn.AdLIF, ctsnn.QIF])
def test_builtin_models_from_their_equation_forms(cls, monkeypatch):
    """AdLIF and QIF run from their equation forms (as AdEx in the tests above)."""
    gen = torch.Generator().manual_seed(12)
    model = cls(4, tau_mem=0.01 + 0.01 * torch.rand(4, generator=gen, dtype=F64)).double()
    syn = _synapse(gen, 8, 4, "synapse", 1.5)
    ref = _compare(model, syn, _spikes(gen, 8, 2, 40, 120), 40, monkeypatch)
    assert ref.spikes.times.numel() > 5


@pytest.mark.parametrize("name", list(MODELS))
def test_refractory_periods(name, monkeypatch):
    """Per-neuron refractory periods (0, whole steps, fractions; ends on grid points):
    clamped variables held, crossings suppressed, arrivals during the hold ignored by a
    clamped jump target; grid-aligned input makes arrivals coincide with hold ends."""
    gen = torch.Generator().manual_seed(13)
    make, scale = MODELS[name]
    n_out = 4
    base = make(n_out, gen)
    refractory = torch.tensor([0.0, 2 * DT, 2.3 * DT, 5 * DT], dtype=F64)
    if name == "adex":
        model = ctsnn.AdEx(n_out, refractory=refractory).double()
    else:
        values = {p: getattr(base, p) for p in base.spec.param_names}
        model = type(base)(n_out, refractory=refractory, **values)
    for grid in (False, True):
        syn = _synapse(gen, 8, n_out, "synapse", 2 * scale, max_delay=6 * DT,
                       step=DT if grid else None)
        ref = _compare(model, syn, _spikes(gen, 8, 2, 50, 200, grid=grid), 50, monkeypatch)
        assert ref.spikes.times.numel() > 5


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(list(MODELS)),
       n_in=st.integers(1, 6), n_out=st.integers(1, 4), batch=st.integers(1, 3),
       n_steps=st.integers(1, 25), n_events=st.integers(0, 40),
       delays=st.sampled_from(["none", "axon", "synapse"]), grid=st.booleans())
def test_random_layers(seed, name, n_in, n_out, batch, n_steps, n_events, delays, grid,
                       monkeypatch):
    gen = torch.Generator().manual_seed(seed)
    make, scale = MODELS[name]
    model = make(n_out, gen)
    syn = _synapse(gen, n_in, n_out, delays, scale, max_delay=6 * DT,
                   step=DT if grid else None)
    spikes = _spikes(gen, n_in, batch, n_steps, n_events, grid=grid)
    _compare(model, syn, spikes, n_steps, monkeypatch)


@pytest.mark.parametrize("name", list(MODELS))
def test_ties_grid_points_time_zero(name, monkeypatch):
    """Input on grid points with whole-step delays (simultaneous arrivals summed, arrivals on
    grid points, at t = 0 and at T), an input run longer than the simulation, and neurons that
    start above threshold (they fire at t = 0)."""
    gen = torch.Generator().manual_seed(5)
    make, scale = MODELS[name]
    n_in, n_out, batch, n_steps = 5, 4, 2, 30
    model = make(n_out, gen)
    syn = _synapse(gen, n_in, n_out, "synapse", scale * 2, max_delay=5 * DT, step=DT)
    spikes = _spikes(gen, n_in, batch, n_steps + 10, 50, grid=True)
    zero = torch.zeros(n_in, dtype=F64)
    spikes = Spikes.from_events(torch.cat([spikes.times, zero, zero]),
                                torch.cat([spikes.units, torch.arange(n_in).repeat(2)]),
                                torch.cat([spikes.batch, torch.zeros(2 * n_in, dtype=torch.long)]),
                                dt=DT, n_steps=n_steps + 10, batch_size=batch, n_units=n_in)
    state = model.initial_state(batch, dtype=F64)
    v = state[0].clone()
    v[0, :2] = 1e3 if name != "adex" else 0.0  # at or above the threshold at t = 0
    ref = _compare(model, syn, spikes, n_steps, monkeypatch, state=state._replace(v=v))
    assert bool((ref.spikes.times == 0).any())


def test_empty_input_and_no_input_events(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    model = type(_adaptive(3, gen))(3, amp=3.0, f=10.0)
    syn = _synapse(gen, 4, 3, "synapse", 0.8)
    empty = Spikes.empty(dt=DT, n_steps=40, batch_size=2, n_units=4, dtype=F64)
    ref = _compare(model, syn, empty, 40, monkeypatch)
    assert ref.spikes.times.numel() > 0  # the sinusoidal drive alone makes it fire


def test_tonic_firing_beyond_first_buffer(monkeypatch):
    """Resting above threshold (v_l = 2), the adaptive LIF fires on its own, more often than
    the first pass of the kernel has room for: those rows are run again with room."""
    gen = torch.Generator().manual_seed(4)
    model = type(_adaptive(3, gen))(3, v_l=torch.tensor([2.0, 0.0, 3.0], dtype=F64),
                                    tau=0.002)
    syn = _synapse(gen, 2, 3, "none", 0.5)
    spikes = _spikes(gen, 2, 2, 200, 10)
    ref = _compare(model, syn, spikes, 200, monkeypatch)
    counts = torch.bincount(ref.spikes.batch * 3 + ref.spikes.units)
    assert int(counts.max()) > 32


@pytest.mark.slow
@pytest.mark.parametrize("method", ["euler", "midpoint", "heun"])
def test_other_methods(method, monkeypatch):
    gen = torch.Generator().manual_seed(7)
    for name in ("adex", "adaptive"):
        make, scale = MODELS[name]
        model = make(4, gen)
        _compare(model, _synapse(gen, 8, 4, "synapse", scale), _spikes(gen, 8, 2, 40, 80), 40,
                 monkeypatch, method=method)


def test_float32_within_tolerance():
    """float32 runs are computed in float64 from the float32 schedule: their spike times are
    the float64 result's to float32 resolution (the float32 reference, integrating in
    float32 with xtol = 64 eps32 dt, is further from both)."""
    gen = torch.Generator().manual_seed(9)
    model = _adex(4, gen)
    syn = _synapse(gen, 8, 4, "synapse", 8.0)
    spikes = _spikes(gen, 8, 2, 60, 100)
    with use_kernels(True), torch.no_grad():
        got = _run(model, syn, spikes, kernels=True, n_steps=60, dtype=torch.float32)
    ref64 = _run(model, syn, spikes, kernels=False, n_steps=60)
    ref32 = _run(model, syn, spikes, kernels=False, n_steps=60, dtype=torch.float32)
    t, b, u = sorted_spikes(got.spikes, 4)
    t64, b64, u64 = sorted_spikes(ref64.spikes, 4)
    t32, _, _ = sorted_spikes(ref32.spikes, 4)
    assert got.spikes.times.dtype == torch.float32 and got.final_state.v.dtype == torch.float32
    assert torch.equal(b, b64) and torch.equal(u, u64) and t.numel() > 5
    assert float((t - t64).abs().max()) <= 2e-7  # float32 rounding of times <= 60 ms
    assert float((t32 - t64).abs().max()) <= 1e-5  # the float32 reference's own error


def test_thread_count_does_not_change_results(monkeypatch):
    if kernel_threads() < 2:
        pytest.skip("one thread only")
    gen = torch.Generator().manual_seed(8)
    model = _adex(6, gen)
    syn = _synapse(gen, 8, 6, "synapse", 8.0)
    spikes = _spikes(gen, 8, 5, 40, 150)
    monkeypatch.setattr(generic_loop, "_PARALLEL_WORK", 0)
    outs = []
    for n in (1, 2):
        with numba_threads(n):
            outs.append(_run(model, syn, spikes, kernels=True, n_steps=40))
    assert torch.equal(outs[0].spikes.times, outs[1].spikes.times)
    assert torch.equal(outs[0].spikes.units, outs[1].spikes.units)
    assert all(torch.equal(a, b) for a, b in zip(outs[0].final_state, outs[1].final_state,
                                                    strict=True))


def _refusal(model, syn, spikes, **kw):
    args = dict(time="continuous", method="rk4", arrivals=syn.arrivals(spikes), dt=DT,
                n_steps=spikes.n_steps, current=None, jumps=None, recurrent=None, record=(),
                saveat=None, integrand=None, state=None, dtype=F64)
    return generic_loop_refusal(model, **{**args, **kw})


class _Custom(NeuronModel):
    state_names = ("v",)
    jump_target = "v"

    def dynamics(self, t, state, input):
        return (-state.v / 0.01,)

    def threshold(self, state):
        return state.v - 1.0


def test_selection_rule():
    gen = torch.Generator().manual_seed(1)
    model = _adex(3, gen)
    syn = _synapse(gen, 4, 3, "synapse", 8.0)
    spikes = _spikes(gen, 4, 2, 10, 10)
    with torch.no_grad():
        assert _refusal(model, syn, spikes) is None
        assert "fixed-step" in _refusal(model, syn, spikes, method="dopri5")
        assert "fixed-step" in _refusal(model, syn, spikes, time="discrete")
        assert "neither" in _refusal(_Custom(3).double(), syn, spikes)

        class Overridden(type(_qif(3, gen))):  # the generated code would not see this
            def dynamics(self, t, state, input):
                return (-state.v,)

        assert "neither" in _refusal(Overridden(3).double(), syn, spikes)
        assert "neither" in _refusal(type("Sub", (ctsnn.AdEx,), {})(3).double(), syn, spikes)
        assert "record" in _refusal(model, syn, spikes, record=("v",))
        assert "current" in _refusal(model, syn, spikes, current=torch.zeros(1))
        assert _refusal(ctsnn.AdEx(3, refractory=0.002).double(), syn, spikes) is None
        with use_kernels(False):
            assert "kernels are off" in _refusal(model, syn, spikes)
    grad = _synapse(gen, 4, 3, "synapse", 8.0)
    grad.weight.requires_grad_(True)
    assert "autograd" in _refusal(model, grad, spikes)


def test_gradients_and_refused_models_take_the_reference_path(monkeypatch):
    """Where the loop does not apply the reference engine runs (and the loop is not called)."""
    gen = torch.Generator().manual_seed(6)
    syn = _synapse(gen, 4, 3, "synapse", 8.0)
    spikes = _spikes(gen, 4, 2, 10, 10)

    def fail(*a, **k):
        raise AssertionError("the compiled loop ran")

    monkeypatch.setattr(population, "run_generic_loop", fail)
    syn.weight.requires_grad_(True)
    out = run_population(_adex(3, gen), dt=DT, n_steps=10, batch_size=2,
                         arrivals=syn.arrivals(spikes), time="continuous", dtype=F64)
    assert out.final_state.v.requires_grad
    with torch.no_grad():
        run_population(_Custom(3).double(), dt=DT, n_steps=10, batch_size=2,
                       arrivals=syn.arrivals(spikes), time="continuous", dtype=F64,
                       method="rk4")


def test_diverging_state_falls_back_to_the_reference_error():
    """A state that blows up is not returned: the reference engine runs and explains."""
    blow = ctsnn.from_equations("dv/dt = v*v/tau", parameters={"tau": 0.001}, n=2,
                                initial={"v": 5.0}, name="Blowup").double()
    gen = torch.Generator().manual_seed(0)
    syn = _synapse(gen, 2, 2, "none", 1.0, zeros=False)
    spikes = _spikes(gen, 2, 1, 20, 4)
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        _run(blow, syn, spikes, kernels=True, n_steps=20)


def test_loop_module_is_a_cached_file_per_model_and_method(tmp_path, monkeypatch):
    """The generated loop is a module file named after its text's hash (numba's disk cache
    then serves later processes); the same text is imported once per process."""
    monkeypatch.setenv("CTSNN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(generic_loop, "_MODULES", {})
    source = generic_loop.generic_source(ctsnn.AdEx(2))
    text = generic_loop.loop_source(source, "rk4", True, 0)
    assert "METHOD = 3" in text and "def rhs(y, tt, p, j, out)" in text
    assert "raise NotImplementedError" not in text  # the placeholders were replaced
    assert generic_loop.loop_source(source, "euler", True, 0) != text
    module = generic_loop.loop_module(source, "rk4", True, 0)
    files = list((tmp_path / "generic_loop").glob("ctsnn_generic_loop_*.py"))
    assert len(files) == 1 and files[0].read_text() == text
    assert generic_loop.loop_module(source, "rk4", True, 0) is module
    assert callable(module.rows_range) and callable(module.rows_parallel)
