"""Exactness and edge cases of ctsnn.simulate in both time modes (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ctsnn

DT_RANGE = [1e-5, 1e-4, 1e-3, 1e-2]


pytestmark = pytest.mark.usefixtures("float64")


# ----------------------------------------------------------------------------- references
def cuba_reference(t_in, w_in, *, tau_m, tau_s, v_th, t_end, r=1.0):
    """Independent event-driven CubaLIF: closed form between events, bisection to 1e-13 s.

    Input spikes at times ``t_in`` make I jump by ``w_in``; v resets to 0. Written from the
    equations with numpy, sharing no code with the library.
    """

    def advance(v, i, h):
        em, es = math.exp(-h / tau_m), math.exp(-h / tau_s)
        return v * em + r * i * tau_s / (tau_s - tau_m) * (es - em), i * es

    events = sorted(zip(t_in, w_in, strict=True)) + [(t_end, 0.0)]
    t, v, i, spikes = 0.0, 0.0, 0.0, []
    for t_next, w in events:
        # Scan the interval finely for upward crossings, refine each by bisection.
        grid = np.linspace(t, t_next, 2001)
        k = 1
        while k < len(grid):
            v1, _ = advance(v, i, grid[k] - t)
            if v1 >= v_th:
                lo, hi = grid[k - 1], grid[k]
                while hi - lo > 1e-13:
                    mid = 0.5 * (lo + hi)
                    if advance(v, i, mid - t)[0] >= v_th:
                        hi = mid
                    else:
                        lo = mid
                _, i = advance(v, i, hi - t)
                v, t = 0.0, hi
                spikes.append(hi)
                grid = np.linspace(t, t_next, 2001)
                k = 1
                continue
            k += 1
        v, i = advance(v, i, t_next - t)
        t = t_next
        i += w
    return np.array(spikes)


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("dt", DT_RANGE)
def test_lif_constant_current_matches_closed_form(dt):
    tau, r, current = 0.01, 2.0, 0.8  # r I = 1.6 > threshold 1
    model = ctsnn.LIF(1, tau_mem=tau, r=r)
    n_steps = int(round(0.35 / dt))
    res = ctsnn.simulate(model, torch.full((n_steps, 1, 1), current), dt=dt, time="continuous")
    times = res.spikes.times
    assert len(times) >= 20
    k = torch.arange(1, len(times) + 1)
    expected = k * tau * math.log(r * current / (r * current - 1.0))
    assert torch.allclose(times, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("dt", [1e-4, 1e-3, 7e-3])
def test_cubalif_input_spikes_match_event_driven_reference(dt):
    gen = torch.Generator().manual_seed(3)
    n_in, t_end = 6, 0.2
    t_in = torch.rand(40, generator=gen) * 0.15
    units = torch.randint(0, n_in, (40,), generator=gen)
    weight = 2.0 + torch.rand(1, n_in, generator=gen) * 2.0
    n_steps = int(round(t_end / dt))
    spikes = ctsnn.Spikes.from_events(t_in, units, dt=dt, n_steps=n_steps, n_units=n_in)
    model = ctsnn.CubaLIF(1, tau_mem=0.02, tau_syn=0.005)
    res = ctsnn.simulate(ctsnn.Layer(model, weight), spikes, dt=dt, time="continuous")
    ref = cuba_reference(
        t_in.tolist(), weight[0, units].tolist(), tau_m=0.02, tau_s=0.005, v_th=1.0, t_end=t_end
    )
    assert len(ref) >= 5
    got = res.spikes.times.detach().numpy()
    assert got.shape == ref.shape, (got, ref)
    assert np.abs(got - ref).max() < 1e-9


def test_cubalif_hidden_crossing_inside_a_step_is_found():
    # One input spike gives a PSP that peaks just above threshold and decays below it, all
    # inside a single 10 ms step: the end points of the step are both sub-threshold.
    tau_m, tau_s = 0.02, 0.005
    t_peak = tau_m * tau_s / (tau_m - tau_s) * math.log(tau_m / tau_s)
    kernel_peak = tau_s / (tau_s - tau_m) * (math.exp(-t_peak / tau_s) - math.exp(-t_peak / tau_m))
    w = 1.0005 / kernel_peak
    spikes = ctsnn.Spikes.from_events([0.0005], [0], dt=0.02, n_steps=3, n_units=1)
    model = ctsnn.CubaLIF(1, tau_mem=tau_m, tau_syn=tau_s)
    res = ctsnn.simulate(ctsnn.Layer(model, torch.tensor([[w]])), spikes, dt=0.02,
                         time="continuous", record=["v"])
    assert res.states["v"][0, 0, 0] < 1.0  # end of step 0: below threshold again
    ref = cuba_reference([0.0005], [w], tau_m=tau_m, tau_s=tau_s, v_th=1.0, t_end=0.06)
    assert len(ref) == 1 and len(res.spikes) == 1
    assert abs(res.spikes.times[0].item() - ref[0]) < 1e-9


def test_batch_independence():
    gen = torch.Generator().manual_seed(0)
    current = torch.rand(300, 5, 4, generator=gen) * 3.0
    model = ctsnn.CubaLIF(4, tau_mem=torch.tensor([0.01, 0.02, 0.03, 0.015]), tau_syn=0.004,
                          refractory=0.002)
    for time in ("continuous", "discrete"):
        whole = ctsnn.simulate(model, current, dt=1e-3, time=time, record=["v", "i"])
        for b in range(5):
            alone = ctsnn.simulate(model, current[:, b : b + 1], dt=1e-3, time=time, record=["v"])
            mine = whole.spikes.select([b])
            assert torch.equal(mine.units, alone.spikes.units)
            assert torch.equal(mine.times, alone.spikes.times)
            assert torch.equal(whole.states["v"][:, b : b + 1], alone.states["v"])


# ----------------------------------------------------------------------------- edge cases
def test_several_crossings_in_one_step():
    # rI = 11 with tau = 10 ms: period tau ln(11/10) = 0.953 ms, so a 10 ms step holds ~10 spikes.
    model = ctsnn.LIF(1, tau_mem=0.01)
    res = ctsnn.simulate(model, torch.full((2, 1, 1), 11.0), dt=0.01, time="continuous")
    period = 0.01 * math.log(11.0 / 10.0)
    n = len(res.spikes)
    assert n == int(0.02 / period)
    assert (res.spikes.raster()[0, 0, 0]).item() == int(0.01 / period)
    assert torch.allclose(res.spikes.times, torch.arange(1, n + 1) * period, atol=1e-12, rtol=0)


def test_crossing_exactly_at_step_boundary():
    # Choose the current so that the first crossing is exactly at t = 2 dt.
    tau, dt = 0.01, 0.001
    current = 1.0 / (1.0 - math.exp(-2 * dt / tau))
    model = ctsnn.LIF(1, tau_mem=tau)
    res = ctsnn.simulate(model, torch.full((5, 1, 1), current), dt=dt, time="continuous")
    first = res.spikes.times[0].item()
    assert abs(first - 2 * dt) < 1e-15
    assert res.spikes.step[0].item() == 1  # step 1 covers (dt, 2 dt]
    assert res.spikes.raster()[:, 0, 0].tolist()[:3] == [0.0, 1.0, 0.0]
    # Discrete exact-exponential mode puts the same spike on the same grid point.
    disc = ctsnn.simulate(model, torch.full((5, 1, 1), current + 1e-9), dt=dt, time="discrete")
    assert disc.spikes.times[0].item() == pytest.approx(2 * dt)


@pytest.mark.parametrize("time", ["continuous", "discrete"])
def test_neuron_starting_at_threshold_fires_at_zero(time):
    model = ctsnn.LIF(2, tau_mem=0.01)
    state = model.initial_state(1, v=torch.tensor([1.0, 0.5]))
    res = ctsnn.simulate(model, torch.zeros(3, 1, 2), dt=1e-3, time=time, state=state)
    assert res.spikes.times.tolist() == [0.0]
    assert res.spikes.units.tolist() == [0]


def test_non_resetting_model_starting_above_threshold_does_not_fire():
    model = ctsnn.HodgkinHuxley(1)
    state = model.initial_state(1, v=torch.tensor([5.0]))
    res = ctsnn.simulate(model, torch.zeros(50, 1, 1), dt=2e-5, time="continuous", state=state)
    assert len(res.spikes) == 0 or res.spikes.times[0] > 2e-5


def test_refractory_period_spanning_steps():
    tau, dt, t_ref = 0.01, 1e-3, 2.5e-3
    current = 3.0
    model = ctsnn.LIF(1, tau_mem=tau, refractory=t_ref)
    res = ctsnn.simulate(model, torch.full((40, 1, 1), current), dt=dt, time="continuous",
                         record=["v"])
    period = tau * math.log(current / (current - 1.0)) + t_ref
    times = res.spikes.times
    expected = tau * math.log(current / (current - 1.0)) + torch.arange(len(times)) * period
    assert len(times) >= 5
    assert torch.allclose(times, expected, atol=1e-12, rtol=0)
    # v is held at the reset value throughout each refractory period, across step boundaries.
    v = res.states["v"][:, 0, 0]
    grid = torch.arange(1, 41) * dt
    for t_spike in times.tolist():
        inside = (grid > t_spike) & (grid < t_spike + t_ref)
        assert inside.sum() >= 2
        assert torch.all(v[inside] == 0.0)


def test_refractory_discards_input_jumps():
    model = ctsnn.LIF(1, tau_mem=0.01, refractory=0.005)
    # First spike fires at 1 ms; the second input (1.5 ms) falls in the refractory period.
    spikes = ctsnn.Spikes.from_events([0.001, 0.0015, 0.0080], [0, 0, 0], dt=1e-3, n_steps=10,
                                      n_units=1)
    res = ctsnn.simulate(ctsnn.Layer(model, torch.tensor([[1.5]])), spikes, dt=1e-3,
                         time="continuous")
    assert res.spikes.times.tolist() == pytest.approx([0.001, 0.008])


# ----------------------------------------------------------------------------- discretisations
def test_discrete_euler_jump_is_the_spikingjelly_update():
    # u[t] = (1 - dt/tau) u[t-1] + I[t], spike if u >= 1, hard reset to 0 (SEEDS A1.1).
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(50, 3, 7, generator=gen) * 0.7
    dt, tau = 0.01, 0.01005
    model = ctsnn.LIF(7, tau_mem=tau)
    res = ctsnn.simulate(model, x, dt=dt, time="discrete", method="euler", input_as="jump",
                         record=["v"])
    u = torch.zeros(3, 7)
    raster = []
    for t in range(50):
        u = (1 - dt / tau) * u + x[t]
        s = (u >= 1.0).double()
        raster.append(s)
        u = u * (1 - s)
    assert torch.equal(res.spikes.raster(), torch.stack(raster))


def test_discrete_exact_is_exponential_euler():
    x = torch.rand(30, 2, 3, generator=torch.Generator().manual_seed(2)) * 2
    dt, tau = 1e-3, 0.02
    res = ctsnn.simulate(ctsnn.LI(3, tau_mem=tau), x, dt=dt, time="discrete", record=["v"])
    alpha = math.exp(-dt / tau)
    v = torch.zeros(2, 3)
    for t in range(30):
        v = alpha * v + (1 - alpha) * x[t]
        assert torch.allclose(res.states["v"][t], v, atol=1e-14)


def test_continuous_and_discrete_agree_as_dt_shrinks():
    tau, current = 0.01, 1.6
    model = ctsnn.LIF(1, tau_mem=tau)
    cont = ctsnn.simulate(model, torch.full((100, 1, 1), current), dt=1e-3, time="continuous")
    errors = []
    for dt in [1e-3, 1e-4, 1e-5]:
        n = int(round(0.1 / dt))
        disc = ctsnn.simulate(model, torch.full((n, 1, 1), current), dt=dt, time="discrete")
        k = min(len(disc.spikes), len(cont.spikes))
        errors.append((disc.spikes.times[:k] - cont.spikes.times[:k]).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    # Each grid spike is late by less than one step, and the lateness carries over resets.
    assert errors[2] <= len(cont.spikes) * 1e-5


def test_network_of_layers_feeds_spikes_forward_exactly():
    # Two layers with zero delay: a spike of layer 1 at real time t arrives in layer 2 at t.
    l1 = ctsnn.Layer(ctsnn.LIF(1, tau_mem=0.01))
    l2 = ctsnn.Layer(ctsnn.LIF(1, tau_mem=0.01), torch.tensor([[1.2]]))
    current = torch.full((20, 1, 1), 1.6)
    res = ctsnn.simulate([l1, l2], current, dt=1e-3, time="continuous")
    first = res.layers[0].spikes.times
    assert torch.allclose(res.spikes.times, first, atol=1e-15)  # a 1.2 jump fires at once


# ----------------------------------------------------------------------------- bad input
def test_bad_input_messages():
    model = ctsnn.LIF(3)
    good = torch.zeros(5, 2, 3)
    with pytest.raises(ValueError, match="dt must be positive"):
        ctsnn.simulate(model, good, dt=0.0)
    with pytest.raises(ValueError, match="unknown time 'exactish'"):
        ctsnn.simulate(model, good, dt=1e-3, time="exactish")
    with pytest.raises(ValueError, match="unknown method 'rk45'"):
        ctsnn.simulate(model, good, dt=1e-3, method="rk45")
    with pytest.raises(ValueError, match="input must have 3 dimensions"):
        ctsnn.simulate(model, torch.zeros(5, 3), dt=1e-3)
    with pytest.raises(ValueError, match="input has 4 channels but the first layer expects 3"):
        ctsnn.simulate(model, torch.zeros(5, 2, 4), dt=1e-3)
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        ctsnn.simulate(model, torch.zeros(5, 2, 3, dtype=torch.long), dt=1e-3)
    with pytest.raises(ValueError, match="input contains a non-finite value"):
        ctsnn.simulate(model, torch.full((5, 2, 3), float("nan")), dt=1e-3)
    with pytest.raises(ValueError, match="tau_mem must be positive"):
        ctsnn.LIF(3, tau_mem=-0.01)
    with pytest.raises(ValueError, match="tau_syn must be positive"):
        ctsnn.CubaLIF(3, tau_syn=torch.tensor([0.01, 0.0, 0.01]))
    with pytest.raises(ValueError, match="v_reset must be below v_threshold"):
        ctsnn.LIF(3, v_reset=1.0)
    with pytest.raises(ValueError, match="method='exact' needs a closed-form flow"):
        ctsnn.simulate(ctsnn.AdEx(3), good, dt=1e-3, method="exact")
    with pytest.raises(ValueError, match="has no state variable 'u'"):
        ctsnn.simulate(model, good, dt=1e-3, record=["u"])
    with pytest.raises(ValueError, match=r"parameter tau_mem must be a scalar or have shape \[3\]"):
        ctsnn.LIF(3, tau_mem=torch.ones(4))
    with pytest.raises(ValueError, match="n \\(number of neurons\\) must be a positive int"):
        ctsnn.LIF(0)
    with pytest.raises(ValueError, match="weight has 2 rows but the model has n = 3"):
        ctsnn.Layer(model, torch.ones(2, 4))


def test_spike_caused_at_the_last_grid_point_stays_on_the_grid():
    # n dt + dt can round past T dt; the spike must stay in the last step (regression).
    dt, n_steps = 0.001, 60
    spikes = ctsnn.Spikes.from_events([n_steps * dt], [0], dt=dt, n_steps=n_steps, n_units=1)
    layer = ctsnn.Layer(ctsnn.LIF(1), torch.tensor([[2.0]]))
    res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous")
    assert len(res.spikes) == 1
    assert res.spikes.step.tolist() == [n_steps - 1]
    assert res.spikes.times[0].item() <= n_steps * dt


def test_diverging_integration_raises_instead_of_returning_nan():
    with pytest.raises(FloatingPointError, match="became NaN or infinite by step"):
        ctsnn.simulate(ctsnn.HH(1), torch.full((200, 1, 1), 10.0), dt=2e-4, time="continuous",
                       method="rk4")


def test_model_state_pickles_and_modules_save():
    import io
    import pickle

    m = ctsnn.CubaLIF(3)
    s = m.initial_state(2)
    back = pickle.loads(pickle.dumps(s))
    assert type(back) is type(s) and all(torch.equal(a, b) for a, b in zip(back, s, strict=True))
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False).initial_state(2)
    assert all(torch.equal(a, b) for a, b in zip(again, s, strict=True))


# ----------------------------------------------------------------------------- one way to run
def _spikes(batch=2, n_in=3, n_steps=20, dt=1e-3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    raster = (torch.rand(n_steps, batch, n_in, generator=gen) < 0.3).double()
    return ctsnn.Spikes.from_raster(raster, dt)


def test_layer_time_mode_is_respected_and_a_conflict_is_an_error():
    w = torch.full((2, 3), 0.6)
    layer = ctsnn.Layer(ctsnn.LIF(2, tau_mem=0.01), w, time="continuous")
    x = _spikes()
    res = ctsnn.simulate(layer, x)  # dt from the spikes, time from the layer
    assert res.raster is None  # continuous: exact event times, no grid raster
    ref = ctsnn.simulate(ctsnn.Layer(ctsnn.LIF(2, tau_mem=0.01), w), x, time="continuous")
    assert torch.equal(res.spikes.times, ref.spikes.times)
    with pytest.raises(ValueError, match="conflicts with layer 0's own time='continuous'"):
        ctsnn.simulate(layer, x, time="discrete")


def test_dt_is_required_for_tensors_and_taken_from_spikes():
    model = ctsnn.LIF(3, tau_mem=0.01)
    with pytest.raises(ValueError, match="dt is required"):
        ctsnn.simulate(model, torch.ones(5, 2, 3))
    x = _spikes(dt=5e-4)
    assert ctsnn.simulate(model, x).spikes.dt == 5e-4
    # an explicit dt re-grids the spikes (their exact times are kept)
    assert ctsnn.simulate(model, x, dt=2.5e-4).spikes.n_steps == 2 * x.n_steps


@pytest.mark.parametrize("time", ["discrete", "continuous"])
def test_forward_returns_spikes_in_both_modes_and_reads_a_tensor_like_simulate(time):
    w = torch.rand(4, 3, generator=torch.Generator().manual_seed(1)) * 3
    layer = ctsnn.Layer(ctsnn.CubaLIF(4, tau_mem=0.01, tau_syn=0.005), w, time=time)
    current = torch.rand(30, 2, 3, generator=torch.Generator().manual_seed(2)) * 2
    out, final = layer(current, dt=1e-3)
    assert isinstance(out, ctsnn.Spikes) and final.v.shape == (2, 4)
    ref = ctsnn.simulate(layer, current, dt=1e-3)  # a tensor is a current in both
    assert torch.equal(out.times, ref.spikes.times) and len(out) > 0


def test_surrogate_in_continuous_time_warns():
    layer = ctsnn.Layer(ctsnn.LIF(2), torch.ones(2, 3), surrogate=ctsnn.surrogate.atan())
    with pytest.warns(UserWarning, match="no effect in continuous time"):
        ctsnn.simulate(layer, _spikes(), time="continuous")


def test_layers_may_run_in_different_time_modes():
    """A discrete layer's spikes feed a continuous layer as events at their grid times."""
    w1, w2 = torch.full((3, 3), 0.9), torch.full((2, 3), 0.7)
    l1 = ctsnn.Layer(ctsnn.LIF(3, tau_mem=0.02), w1, time="discrete")
    l2 = ctsnn.Layer(ctsnn.LIF(2, tau_mem=0.02), w2, time="continuous")
    x = _spikes(n_steps=40)
    res = ctsnn.simulate([l1, l2], x)
    hidden = res.layers[0].spikes
    alone = ctsnn.simulate(ctsnn.Layer(ctsnn.LIF(2, tau_mem=0.02), w2),
                           ctsnn.Spikes.from_raster(hidden.raster(), x.dt), time="continuous")
    assert len(hidden) > 0 and torch.equal(res.spikes.times, alone.spikes.times)


def test_dense_backed_spikes_keep_the_raster_and_build_events_lazily():
    raster = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]], [[0.0, 1.0]]], requires_grad=True)
    s = ctsnn.Spikes.from_dense(raster, 1e-3)
    assert s.raster() is raster or torch.equal(s.raster(), raster)
    assert s._events is None  # nothing built yet
    assert s.times.tolist() == pytest.approx([1e-3, 2e-3, 3e-3]) and s.units.tolist() == [1, 0, 1]
    s.values.sum().backward()  # event values carry the raster's gradient
    assert raster.grad.sum() == 3


def test_readout_names_check_the_model():
    class Leak(ctsnn.NeuronModel):
        state_names = ("x",)
        jump_target = "x"

        def dynamics(self, t, state, input):
            return (input - state.x,)

    with pytest.raises(ValueError, match="reads the voltage v"):
        ctsnn.simulate(Leak(2), torch.zeros(3, 1, 2), dt=1e-3, readout="sum")
    with pytest.raises(ValueError, match="needs a spiking last layer"):
        ctsnn.simulate(ctsnn.LI(2), torch.zeros(3, 1, 2), dt=1e-3, readout="first_spike")
    with pytest.raises(ValueError, match="unknown readout"):
        ctsnn.simulate(ctsnn.LI(2), torch.zeros(3, 1, 2), dt=1e-3, readout="mean")


def test_layer_builds_default_synapses_from_n_in():
    """Layer(model, n_in=..., max_delay=..., learn_delay=True) is enough (issue 8)."""
    torch.manual_seed(0)
    layer = ctsnn.Layer(ctsnn.CubaLIF(64), n_in=5, max_delay=0.01, learn_delay=True)
    syn = layer.synapse
    assert isinstance(syn, ctsnn.Dense) and syn.weight.shape == (64, 5)
    assert isinstance(syn.delay, torch.nn.Parameter) and syn.delay.shape == (64, 5)
    assert 0.0 <= float(syn.delay.min()) and float(syn.delay.max()) <= 0.01
    assert ctsnn.delay_parameters(layer) == [syn.delay]
    res = ctsnn.simulate(layer, _spikes(n_in=5), time="continuous")
    assert res.spikes.n_units == 64
    sparse = ctsnn.Layer(ctsnn.LIF(8), n_in=6, fan_in=2)
    assert sparse.synapse.effective_weight.ne(0).sum(1).tolist() == [2] * 8
    axon = ctsnn.Layer(ctsnn.LIF(4), torch.ones(4, 3), delay=torch.tensor([1e-3, 2e-3, 0.0]),
                       learn_delay=True)
    assert axon.synapse.delay.shape == (3,)  # a per-axon delay stays per axon


def test_layer_shortcuts_refuse_what_they_cannot_apply():
    syn = ctsnn.Dense(3, 2)
    with pytest.raises(ValueError, match="a synapse module carries its own"):
        ctsnn.Layer(ctsnn.LIF(2), syn, max_delay=0.01)
    with pytest.raises(ValueError, match="one-to-one input"):
        ctsnn.Layer(ctsnn.LIF(2), delay=torch.zeros(2))
    with pytest.raises(ValueError, match="fan_in draws a random connectivity"):
        ctsnn.Layer(ctsnn.LIF(2), torch.ones(2, 3), fan_in=1)


def test_options_of_the_other_time_mode_are_refused_or_warned():
    with pytest.raises(ValueError, match="xtol is the spike-time tolerance of continuous time"):
        ctsnn.simulate(ctsnn.LIF(3), _spikes(), xtol=1e-9)
    layer = ctsnn.Layer(ctsnn.LIF(2), torch.ones(2, 3), detach_reset=True)
    with pytest.warns(UserWarning, match="detach_reset= have no effect in continuous time"):
        ctsnn.simulate(layer, _spikes(), time="continuous")


def test_batch_size_that_contradicts_the_input_is_an_error():
    with pytest.raises(ValueError, match="batch_size=3 disagrees with the input's 2 samples"):
        ctsnn.simulate(ctsnn.LIF(3), _spikes(batch=2), batch_size=3)
    with pytest.raises(ValueError, match="batch_size=5 disagrees with the input's 4 samples"):
        ctsnn.simulate(ctsnn.LIF(3), torch.zeros(6, 4, 3), dt=1e-3, batch_size=5)
    assert ctsnn.simulate(ctsnn.LIF(3), _spikes(batch=2), batch_size=2).spikes.batch_size == 2
