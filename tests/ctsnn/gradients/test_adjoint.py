"""Generic adjoint (``ctsnn.gradients.adjoint``) and ``Layer(gradient=...)``, float64.

References: the hand-derived closed-form EventProp (LIF family), autograd through the
continuous engine (itself checked against finite differences elsewhere), and central finite
differences with the spike count asserted unchanged by every perturbation (SEEDS F3.23).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.gradients import adjoint as adj
from ctsnn.gradients import eventprop as ep
from ctsnn.gradients.saved import measure_saved_bytes
from ctsnn.losses import time_invariant_mse
from ctsnn.synapses import Dense, Gaussian, RecurrentDense

pytestmark = pytest.mark.usefixtures("float64")

B, N_IN = 2, 3
LABELS = torch.tensor([0, 1])


def _input(seed: int, n_ev: int, span: float, *, dt: float, n_steps: int, amp: bool = False,
           grad: bool = False) -> ctsnn.Spikes:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n_ev, generator=g, dtype=torch.float64) * span
    u = torch.randint(0, N_IN, (n_ev,), generator=g)
    b = torch.randint(0, B, (n_ev,), generator=g)
    a = (0.8 + 0.4 * torch.rand(n_ev, generator=g, dtype=torch.float64)) if amp else None
    if grad:
        t = t.clone().requires_grad_()
        a = a.clone().requires_grad_() if a is not None else None
    return ctsnn.Spikes(t, u, b, a, dt=dt, n_steps=n_steps, batch_size=B, n_units=N_IN)


def _rand(seed: int, *shape: int, lo: float, hi: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)


def _exp_avg(t_end: float):
    return lambda t, s: s.v * torch.exp(-t / t_end) / t_end


# --------------------------------------------------------------------------- = EventProp
@pytest.mark.parametrize("cuba", [True, False], ids=["CubaLIF", "LIF"])
def test_generic_adjoint_equals_hand_derived_eventprop(cuba):
    dt, steps = 5e-3, 24
    t_end = dt * steps
    hid = ctsnn.CubaLIF(5, tau_mem=0.02, tau_syn=0.005) if cuba else ctsnn.LIF(5, tau_mem=0.02)
    out = ctsnn.CubaLI(3, tau_mem=0.02, tau_syn=0.005) if cuba else ctsnn.LI(3, tau_mem=0.02)
    w1 = _rand(1, 5, N_IN, lo=1.0, hi=3.0) if cuba else _rand(1, 5, N_IN, lo=0.3, hi=0.7)
    d1, w2, d2 = (_rand(2, 5, N_IN, lo=0, hi=0.01), _rand(3, 3, 5, lo=0.5, hi=1.5),
                  _rand(4, 3, 5, lo=0, hi=0.01))

    def grads(generic: bool):
        spikes = _input(7, 30, 0.08, dt=dt, n_steps=steps, amp=True, grad=True)
        params = [x.clone().requires_grad_() for x in (w1, d1, w2, d2)]
        if generic:
            hidden, _, _, _ = adj.adjoint_layer(hid, spikes, params[0], params[1])
            _, z, _, _ = adj.adjoint_layer(out, hidden, params[2], params[3],
                                           integrand=_exp_avg(t_end))
        else:
            hidden = ep.layer_forward(hid, spikes, params[0], params[1])
            z = ep.layer_forward(out, hidden, params[2], params[3], readout="avg_exp")
        loss = F.cross_entropy(z, LABELS)
        n_spk = len(hidden)
        return n_spk, torch.autograd.grad(loss, [spikes.times, spikes.values, *params])

    n_gen, g_gen = grads(True)
    assert adj.last_replay_error < 1e-12  # the backward replays exactly the forward's steps
    n_ref, g_ref = grads(False)
    assert n_gen == n_ref >= 10
    for name, a, b in zip(["t_in", "amplitude", "w1", "d1", "w2", "d2"], g_gen, g_ref,
                          strict=True):
        if not cuba and name in ("amplitude", "w1"):
            # a spike-driven LIF fires at the arrival that carries it over threshold: its input
            # weights and amplitudes do not move its spike times (both methods agree on zero)
            assert a.abs().max() == 0 and b.abs().max() == 0, name
            continue
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12 * b.abs().max().item(),
                                   msg=name)


# --------------------------------------------------------------------------- FD, non-linear
def _fd_check(build, make_input, weight, delay, loss_fn, params: list[str], *, dt, steps,
              eps=1e-7, entries=2, rtol=1e-5, method=None):
    """Adjoint gradients (weights, delays, input times, neuron parameters) vs central FD."""

    def run(w, d, spikes, model, grad):
        if grad:
            out, z, _, _ = adj.adjoint_layer(model, spikes, w, d, integrand=lambda t, s: s.v,
                                             method=method)
            return loss_fn(out, z), len(out)
        with torch.no_grad():
            res = ctsnn.simulate(ctsnn.Layer(model, w, delay=d), spikes, dt=dt,
                                 time="continuous", readout=lambda t, s: s.v, method=method)
        return loss_fn(res.spikes, res.output), len(res.spikes)

    model = build()
    spikes = make_input(grad=True)
    w = weight.clone().requires_grad_()
    d = delay.clone().requires_grad_()
    loss, n_spk = run(w, d, spikes, model, True)
    assert n_spk >= 6, "the case must spike"
    wanted = [spikes.times, w, d, *[getattr(model, p) for p in params]]
    grads = torch.autograd.grad(loss, wanted)

    # autograd through the engine (implicit-function-theorem spike times along the Runge-Kutta
    # step map) agrees, and stays finite where the state runs away past the threshold
    layer = ctsnn.Layer(build(), weight.clone(), delay=delay.clone(), learn_delay=True,
                        time="continuous")
    res = ctsnn.simulate(layer, make_input(grad=False), dt=dt, time="continuous",
                         readout=lambda t, s: s.v, method=method)
    g_engine = torch.autograd.grad(loss_fn(res.spikes, res.output),
                                   [layer.synapse.weight, layer.synapse.delay])
    for a, b in zip(grads[1:3], g_engine, strict=True):
        assert bool(torch.isfinite(b).all())
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-9)

    def perturbed(which: int, index, h: float) -> tuple[float, int]:
        m = build()
        sp = make_input(grad=False)
        ww, dd = weight.clone(), delay.clone()
        if which == 0:
            t = sp.times.clone()
            t[index] += h
            sp = ctsnn.Spikes(t, sp.units, sp.batch, sp.values, dt=dt, n_steps=steps,
                              batch_size=B, n_units=N_IN)
        elif which == 1:
            ww[index] += h
        elif which == 2:
            dd[index] += h
        else:
            name = params[which - 3]
            value = getattr(m, name).detach().clone()
            value[index] += h
            m.add_parameter(name, value, learnable=True)
        value, count = run(ww, dd, sp, m, False)
        return float(value), count

    g = torch.Generator().manual_seed(0)
    checked = 0
    for which, grad in enumerate(grads):
        flat = torch.randperm(grad.numel(), generator=g)[:entries]
        for f in flat.tolist():
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(f), grad.shape))
            (lp, cp), (lm, cm) = perturbed(which, index, eps), perturbed(which, index, -eps)
            assert cp == cm == n_spk, "a perturbation created or deleted a spike"
            fd = (lp - lm) / (2 * eps)
            got = grad[index].item()
            assert abs(got - fd) <= rtol * abs(fd) + 1e-9, (which, index, got, fd)
            checked += 1
    assert checked >= 3 * entries


def _learnable(model: ctsnn.NeuronModel, names: list[str]) -> ctsnn.NeuronModel:
    for name in names:
        model.add_parameter(name, getattr(model, name).detach().clone(), learnable=True)
    return model


def _smooth_loss(out: ctsnn.Spikes, z: torch.Tensor) -> torch.Tensor:
    return (out.times * (1.0 + out.units)).sin().sum() + 1e-4 * z.square().sum()


def _equation_model(n: int) -> ctsnn.NeuronModel:
    """Adaptive exponential IF from equation strings (dimensionless units)."""
    return ctsnn.from_equations(
        """
        dv/dt = (-v + 0.2*exp((v - 1)/0.2) - w) / tau_m
        dw/dt = -w / tau_w
        """,
        threshold="v >= 2", reset="v = 0; w = w + b",
        parameters=dict(tau_m=0.01, tau_w=0.05, b=0.1), n=n, positive=("tau_m", "tau_w"),
        name="EqExpIF")


@pytest.mark.parametrize("model, params, seed, w_range, dt", [
    (ctsnn.AdEx, ["b", "tau_w"], 3, (10.0, 16.0), 2e-4),
    (ctsnn.Izhikevich, ["a", "d"], 4, (8.0, 12.0), 2e-4),
    (_equation_model, ["b", "tau_m"], 5, (0.4, 0.8), 5e-4),
], ids=["AdEx", "Izhikevich", "equation-strings"])
def test_generic_adjoint_matches_finite_differences_on_nonlinear_models(model, params, seed,
                                                                       w_range, dt):
    steps = round(0.03 / dt)
    _fd_check(lambda: _learnable(model(3), params),
              lambda grad: _input(seed, 30, 0.025, dt=dt, n_steps=steps, grad=grad),
              _rand(seed + 2, 3, N_IN, lo=w_range[0], hi=w_range[1]),
              _rand(seed + 3, 3, N_IN, lo=0.0, hi=0.01),
              _smooth_loss, params, dt=dt, steps=steps)


@pytest.mark.slow
def test_generic_adjoint_with_an_adaptive_solver_matches_finite_differences():
    # dopri5 on a coarse 1 ms grid: every grid step is integrated to the tolerance, so the
    # gradients of the simulated trajectory are those of the ODE to ~rtol; FD steps of 1e-6
    # stay well above the solver's noise (step-size choices change with the perturbation).
    # Slow: every dense-output evaluation of the root finder re-integrates its piece.
    from solvers.embedded import Adaptive

    dt, steps = 1e-3, 15
    _fd_check(lambda: _learnable(ctsnn.AdEx(3), ["b", "tau_w"]),
              lambda grad: _input(3, 14, 0.012, dt=dt, n_steps=steps, grad=grad),
              _rand(5, 3, N_IN, lo=10.0, hi=16.0), _rand(6, 3, N_IN, lo=0.0, hi=0.003),
              _smooth_loss, ["b", "tau_w"], dt=dt, steps=steps, eps=1e-6, rtol=1e-4,
              entries=1, method=Adaptive("dopri5", rtol=1e-10, atol=1e-12))


# --------------------------------------------------------------------------- F3.23 recurrent
N_HID, N_OUT = 4, 2
DT_R, STEPS_R = 2e-3, 60


def _recurrent_net(p: dict, *, adjoint: bool, spiking_out: bool):
    grad = "adjoint" if adjoint else "surrogate"
    hid = ctsnn.Layer(ctsnn.CubaLIF(N_HID, tau_mem=0.02, tau_syn=0.005), p["w1"],
                      delay=p["d1"], learn_delay=True,
                      recurrent=RecurrentDense(weight=p["wr"], delay=p["dr"], learn_delay=True),
                      time="continuous", gradient=grad)
    out_model = (ctsnn.CubaLIF(N_OUT, tau_mem=0.02, tau_syn=0.005) if spiking_out
                 else ctsnn.CubaLI(N_OUT, tau_mem=0.02, tau_syn=0.005))
    out = ctsnn.Layer(out_model, p["w2"], delay=p["d2"], learn_delay=True, time="continuous",
                      gradient=grad)
    return [hid, out]


def _recurrent_params():
    return {"w1": _rand(11, N_HID, N_IN, lo=1.5, hi=3.0),
            "d1": _rand(12, N_HID, N_IN, lo=0.0, hi=0.01),
            "wr": _rand(13, N_HID, N_HID, lo=-0.6, hi=0.8),
            "dr": _rand(14, N_HID, N_HID, lo=DT_R, hi=0.008),
            "w2": _rand(15, N_OUT, N_HID, lo=0.8, hi=2.0),
            "d2": _rand(16, N_OUT, N_HID, lo=0.0, hi=0.01)}


def _recurrent_loss(p: dict, *, adjoint: bool, spiking_out: bool, grad: bool):
    layers = _recurrent_net(p, adjoint=adjoint, spiking_out=spiking_out)
    spikes = _input(21, 36, 0.08, dt=DT_R, n_steps=STEPS_R)
    t_end = DT_R * STEPS_R
    res = ctsnn.simulate(layers, spikes, dt=DT_R, time="continuous",
                         readout=None if spiking_out else _exp_avg(t_end))
    if spiking_out:
        loss = time_invariant_mse(res.spikes.first_times(), LABELS, 0.002)
    else:
        loss = F.cross_entropy(res.output, LABELS)
    hidden = res.layers[0].spikes
    tensors = {"w1": layers[0].synapse.weight, "d1": layers[0].synapse.delay,
               "wr": layers[0].recurrent.weight, "dr": layers[0].recurrent.delay,
               "w2": layers[1].synapse.weight, "d2": layers[1].synapse.delay}
    counts = (len(hidden), len(res.spikes))
    if not grad:
        return loss.item(), counts, hidden
    names = list(tensors)
    g = torch.autograd.grad(loss, [tensors[k] for k in names])
    return loss.item(), counts, hidden, dict(zip(names, g, strict=True))


@pytest.mark.parametrize("spiking_out", [False, True], ids=["exp-avg-CE", "first-spike-MSE"])
def test_recurrent_adjoint_matches_finite_differences(spiking_out):
    p = _recurrent_params()
    _, counts, hidden, g = _recurrent_loss(p, adjoint=True, spiking_out=spiking_out, grad=True)
    assert adj.last_replay_error < 1e-12  # block replays from checkpoints = the forward
    per_neuron = torch.bincount(hidden.units * B + hidden.batch, minlength=N_HID * B)
    assert int(per_neuron.max()) >= 3 and counts[0] >= 12, "several spikes per neuron"
    if spiking_out:
        assert bool((_recurrent_loss(p, adjoint=True, spiking_out=True,
                                     grad=False)[2].first_times() < DT_R * STEPS_R).any())
    # the same network through autograd of the engine agrees
    _, counts_s, _, g_s = _recurrent_loss(p, adjoint=False, spiking_out=spiking_out, grad=True)
    assert counts_s == counts
    eps = 1e-7
    gen = torch.Generator().manual_seed(1)
    for name, grad in g.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(grad, g_s[name], rtol=1e-6, atol=1e-9, msg=name)
        for f in torch.randperm(grad.numel(), generator=gen)[:3].tolist():
            idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(f), grad.shape))
            up = {k: v.clone() for k, v in p.items()}
            dn = {k: v.clone() for k, v in p.items()}
            up[name][idx] += eps
            dn[name][idx] -= eps
            lp, cp, _ = _recurrent_loss(up, adjoint=True, spiking_out=spiking_out, grad=False)
            lm, cm, _ = _recurrent_loss(dn, adjoint=True, spiking_out=spiking_out, grad=False)
            assert cp == cm == counts, "a perturbation created or deleted a spike"
            fd = (lp - lm) / (2 * eps)
            assert abs(grad[idx].item() - fd) <= 1e-4 * abs(fd) + 1e-8, (name, idx, fd)


def test_generic_adjoint_saves_one_checkpoint_per_block_not_the_trajectory():
    model = ctsnn.AdEx(8)
    w = _rand(61, 8, N_IN, lo=10.0, hi=16.0)

    def saved(steps: int) -> int:
        spikes = _input(62, 30, 0.03, dt=2e-4, n_steps=steps, grad=True)
        weight = w.clone().requires_grad_()
        _, n_bytes = measure_saved_bytes(
            lambda: adj.adjoint_layer(model, spikes, weight)[0].times.sum())
        return n_bytes

    # a different block length gives the same gradient
    spikes = _input(62, 30, 0.03, dt=2e-4, n_steps=200, grad=True)
    g = [torch.autograd.grad(adj.adjoint_layer(model, spikes, w, checkpoint_every=k)[0]
                             .times.square().sum(), spikes.times)[0] for k in (7, 32, 500)]
    torch.testing.assert_close(g[0], g[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(g[2], g[1], rtol=1e-12, atol=0)

    steps = 640
    trajectory = steps * B * 8 * len(model.state_names) * 8  # float64 states per step
    growth = saved(steps) - saved(steps // 2)
    per_checkpoint = B * 8 * len(model.state_names) * 8
    assert growth <= (steps // 2) // 32 * per_checkpoint + 1024
    assert saved(steps) < 0.1 * trajectory


# --------------------------------------------------------------------------- mixing
def _mixed(order: tuple[str, str, str], w, *, surrogate_time: str = "continuous"):
    dt, steps = 2e-3, 50
    kinds = []
    models = [ctsnn.CubaLIF(5, tau_mem=0.02, tau_syn=0.005),
              ctsnn.CubaLIF(4, tau_mem=0.02, tau_syn=0.005),
              ctsnn.CubaLI(2, tau_mem=0.02, tau_syn=0.005)]
    for k, (model, grad) in enumerate(zip(models, order, strict=True)):
        kinds.append(ctsnn.Layer(model, w[2 * k].clone(), delay=w[2 * k + 1].clone(),
                                 learn_delay=True, time="continuous", gradient=grad))
    spikes = _input(31, 40, 0.06, dt=dt, n_steps=steps, amp=True, grad=True)
    res = ctsnn.simulate(kinds, spikes, dt=dt, time="continuous",
                         readout=_exp_avg(dt * steps))
    loss = F.cross_entropy(res.output, LABELS)
    wanted = [spikes.times, spikes.values]
    for layer in kinds:
        wanted += [layer.synapse.weight, layer.synapse.delay]
    return [len(r.spikes) for r in res.layers[:2]], torch.autograd.grad(loss, wanted)


def _mixed_weights():
    return [_rand(41, 5, N_IN, lo=1.5, hi=3.0), _rand(42, 5, N_IN, lo=0, hi=0.01),
            _rand(43, 4, 5, lo=0.8, hi=2.0), _rand(44, 4, 5, lo=0, hi=0.01),
            _rand(45, 2, 4, lo=0.5, hi=1.5), _rand(46, 2, 4, lo=0, hi=0.01)]


@pytest.mark.parametrize("order", [("surrogate", "adjoint", "adjoint"),
                                   ("adjoint", "surrogate", "adjoint"),
                                   ("adjoint", "adjoint", "surrogate")])
def test_mixed_network_equals_all_surrogate_in_continuous_time(order):
    w = _mixed_weights()
    counts, g_mixed = _mixed(order, w)
    counts_ref, g_ref = _mixed(("surrogate",) * 3, w)
    assert counts == counts_ref and min(counts) >= 5
    for a, b in zip(g_mixed, g_ref, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10 * b.abs().max().item())


def test_discrete_surrogate_layer_below_adjoint_layer_gets_the_exact_spike_gradient():
    """Mixed: discrete surrogate LIF -> adjoint readout. The surrogate layer's gradients equal
    those obtained by substituting, by hand, the readout's exact gradient w.r.t. the
    amplitudes of the spikes it received (autograd through the continuous engine)."""
    dt, steps = 1e-3, 60
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(steps, B, N_IN, generator=g) < 0.2).double()
    w0 = _rand(51, 6, N_IN, lo=0.4, hi=1.2)
    w1, d1 = _rand(52, 2, 6, lo=0.5, hi=1.5), _rand(53, 2, 6, lo=0, hi=0.01)
    surrogate = ctsnn.surrogate.atan(2.0)
    integrand = _exp_avg(dt * steps)

    def lower():
        layer = ctsnn.Layer(ctsnn.LIF(6, tau_mem=0.01), w0.clone(), surrogate=surrogate)
        spikes, _ = layer(x, dt=dt, input_as="jump")  # x is a spike raster
        return layer, spikes.raster()  # carries the surrogate gradient

    # mixed network
    low, raster = lower()
    top = ctsnn.Layer(ctsnn.CubaLI(2, tau_mem=0.02, tau_syn=0.005), w1.clone(), delay=d1,
                      time="continuous", gradient="adjoint")
    res = ctsnn.simulate(top, ctsnn.Spikes.from_raster(raster, dt), dt=dt,
                         time="continuous", readout=integrand)
    F.cross_entropy(res.output, LABELS).backward()
    g_mixed = low.synapse.weight.grad.clone()
    assert int(raster.detach().sum()) >= 10

    # by hand: exact dL/d(amplitude) of every received spike, then backprop into the raster
    low, raster = lower()
    events = ctsnn.Spikes.from_raster(raster.detach(), dt)
    values = events.values.clone().requires_grad_()
    events = ctsnn.Spikes(events.times, events.units, events.batch, values, dt=dt,
                          n_steps=steps, batch_size=B, n_units=6)
    ref_top = ctsnn.Layer(ctsnn.CubaLI(2, tau_mem=0.02, tau_syn=0.005), w1.clone(), delay=d1,
                          time="continuous")
    out = ctsnn.simulate(ref_top, events, dt=dt, time="continuous", readout=integrand)
    (g_values,) = torch.autograd.grad(F.cross_entropy(out.output, LABELS), values)
    g_raster = torch.zeros_like(raster)
    step = torch.round(events.times / dt).long() - 1
    g_raster[step, events.batch, events.units] = g_values
    raster.backward(g_raster)
    torch.testing.assert_close(g_mixed, low.synapse.weight.grad, rtol=1e-9, atol=1e-14)
    assert g_mixed.abs().max() > 0


# --------------------------------------------------------------------------- bad input
class _SignThreshold(ctsnn.NeuronModel):
    state_names = ("v",)
    jump_target = "v"

    def dynamics(self, t, state, input):
        return (-state.v / 0.01,)

    def threshold(self, state):
        return torch.sign(state.v - 1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(time="discrete"), "time='continuous'"),
    (dict(surrogate=ctsnn.surrogate.atan()), "drop surrogate="),
    (dict(model=ctsnn.LIF(3, refractory=0.002)), "refractory"),
    (dict(model=_SignThreshold(3)), "not differentiable"),
    (dict(weight=Dense(N_IN, 3, kernel=Gaussian(), max_delay=0.005, dt=1e-3)), "exact synapses"),
])
def test_unsupported_adjoint_combinations_fail_at_construction(kwargs, message):
    args = dict(model=ctsnn.LIF(3), weight=torch.ones(3, N_IN), time="continuous",
                gradient="adjoint")
    args.update(kwargs)
    model, weight = args.pop("model"), args.pop("weight")
    with pytest.raises(ValueError, match=message):
        ctsnn.Layer(model, weight, **args)


def test_adjoint_layer_in_a_discrete_simulation_is_refused():
    layer = ctsnn.Layer(ctsnn.LIF(3), torch.ones(3, N_IN), time="continuous",
                        gradient="adjoint")
    spikes = _input(1, 5, 0.01, dt=1e-3, n_steps=20)
    with pytest.raises(ValueError, match="conflicts with layer 0's own time='continuous'"):
        ctsnn.simulate(layer, spikes, dt=1e-3, time="discrete")
    # a layer that leaves its time open: the adjoint in discrete time refuses LIF
    layer = ctsnn.Layer(ctsnn.LIF(3), torch.ones(3, N_IN), gradient="adjoint")
    with pytest.raises(ValueError, match="time='continuous'"):
        ctsnn.simulate(layer, spikes, dt=1e-3, time="discrete")


def test_time_summed_softmax_readout_goes_to_the_generic_adjoint_and_is_exact():
    """DCLS-style readout: ``z = Σ_n softmax_N(V(t_n))`` couples the neurons: the grid rule;
    the layer routes it to the generic adjoint (jumps of lam at the grid points). The exact
    quadrature refuses such an integrand."""
    dt, steps = 2e-3, 40
    w = _mixed_weights()

    def run(grad: str):
        layers = [ctsnn.Layer(ctsnn.CubaLIF(5, tau_mem=0.02, tau_syn=0.005), w[0].clone(),
                              delay=w[1].clone(), learn_delay=True, time="continuous",
                              gradient=grad),
                  ctsnn.Layer(ctsnn.CubaLI(2, tau_mem=0.02, tau_syn=0.005), w[2][:2].clone(),
                              delay=w[3][:2].clone(), learn_delay=True, time="continuous",
                              gradient=grad)]
        spikes = _input(71, 30, 0.05, dt=dt, n_steps=steps)
        res = ctsnn.simulate(layers, spikes, dt=dt, time="continuous", integral_rule="grid",
                             readout=lambda t, s: torch.softmax(4.0 * s.v, dim=-1))
        loss = F.nll_loss(torch.log(res.output / (dt * steps)), LABELS)
        params = [p for layer in layers for p in (layer.synapse.weight, layer.synapse.delay)]
        return torch.autograd.grad(loss, params)

    for a, b in zip(run("adjoint"), run("surrogate"), strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12)
    with pytest.raises(ValueError, match="integral_rule='grid'"):
        ctsnn.simulate(ctsnn.CubaLI(3), _input(1, 5, 0.01, dt=dt, n_steps=10), dt=dt,
                       time="continuous", readout=lambda t, s: torch.softmax(s.v, dim=-1))
