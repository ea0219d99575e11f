"""Exact adjoint (EventProp) gradients with delays: SEEDS F3.21-F3.26, float64.

References: the closed-form golden values (F3.22), autograd through the continuous engine
(implicit-function-theorem spike-time gradients, itself checked against finite differences in
``tests/ctsnn/gradients/test_autodiff.py``) and central finite differences with the spike
count asserted unchanged. The continuous engine is exact for these linear models at any grid
step, so most tests use a coarse grid to stay fast.
"""

from __future__ import annotations

import copy
import math
import runpy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.gradients import eventprop as ep
from ctsnn.gradients.eventprop.common import LayerConfig, neuron_constants
from ctsnn.gradients.eventprop.spiking import _current_at_spikes
from ctsnn.gradients.saved import measure_saved_bytes
from ctsnn.losses import time_invariant_mse

F64 = torch.float64
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sequence_detection.py"


pytestmark = pytest.mark.usefixtures("float64")  # parameters are built in float64 too


# --------------------------------------------------------------------------- fixtures
B, N_IN, N_HID, N_OUT = 2, 4, 5, 3
DT, STEPS = 5e-3, 24  # 120 ms; exact for any grid step (linear models)
LABELS = torch.tensor([0, 2])


def _problem(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    t_in = torch.rand(30, generator=g, dtype=F64) * 0.08
    u_in = torch.randint(0, N_IN, (30,), generator=g)
    b_in = torch.randint(0, B, (30,), generator=g)
    amp = 0.8 + 0.4 * torch.rand(30, generator=g, dtype=F64)  # graded spike amplitudes
    w1 = 1.0 + 2.0 * torch.rand(N_HID, N_IN, generator=g, dtype=F64)
    d1 = 0.01 * torch.rand(N_HID, N_IN, generator=g, dtype=F64)
    w2 = 0.5 + torch.rand(N_OUT, N_HID, generator=g, dtype=F64)
    d2 = 0.01 * torch.rand(N_OUT, N_HID, generator=g, dtype=F64)
    return (t_in, u_in, b_in, amp), [w1, d1, w2, d2]


def _spikes(events, dt=DT, n_steps=STEPS):
    t_in, u_in, b_in, amp = events
    return ctsnn.Spikes(t_in, u_in, b_in, amp, dt=dt, n_steps=n_steps, batch_size=B,
                        n_units=N_IN)


def _hidden():
    return ctsnn.CubaLIF(N_HID, tau_mem=0.02, tau_syn=0.005)


def _readout(kind):
    if kind == "voltage":
        return ctsnn.CubaLI(N_OUT, tau_mem=0.02, tau_syn=0.005)
    return ctsnn.CubaLIF(N_OUT, tau_mem=0.02, tau_syn=0.005)


def _layers(kind, params, gradient="surrogate"):
    w1, d1, w2, d2 = params
    layers = [ctsnn.Layer(_hidden(), w1, delay=d1, gradient=gradient),
              ctsnn.Layer(_readout(kind), w2, delay=d2, gradient=gradient)]
    for layer in layers:
        layer.synapse.delay.requires_grad_()
    return layers


def _grad_tensors(layers):
    return [x for layer in layers for x in (layer.synapse.weight, layer.synapse.delay)]


def _t_end(n_steps=STEPS, dt=DT):
    return n_steps * dt


def _loss_engine(kind, events, params, dt=DT, n_steps=STEPS):
    """Autograd through the continuous engine (the IFT reference); returns loss, counts, grads."""
    layers = _layers(kind, params)
    t_end = _t_end(n_steps, dt)
    if kind == "voltage":
        res = ctsnn.simulate(layers, _spikes(events, dt, n_steps), dt=dt, time="continuous",
                             readout=lambda t, s: s.v * torch.exp(-t / t_end) / t_end)
        loss = F.cross_entropy(res.output, LABELS)
    else:
        res = ctsnn.simulate(layers, _spikes(events, dt, n_steps), dt=dt, time="continuous")
        loss = time_invariant_mse(res.spikes.first_times(), LABELS, 0.002)
    counts = [len(r.spikes) for r in res.layers]
    if kind == "voltage":
        counts = counts[:1]  # the readout does not spike
    return loss, counts, layers


def _loss_adjoint(kind, events, params, dt=DT, n_steps=STEPS):
    layers = _layers(kind, params, "adjoint")
    readout = "avg_exp" if kind == "voltage" else "first_spike"
    res = ctsnn.simulate(layers, _spikes(events, dt, n_steps), time="continuous",
                         readout=readout)
    if kind == "voltage":
        loss = F.cross_entropy(res.output, LABELS)
    else:
        loss = time_invariant_mse(res.output, LABELS, 0.002)
    counts = [len(r.spikes) for r in res.layers]
    if kind == "voltage":
        counts = counts[:1]  # the readout does not spike
    return loss, counts, layers


# --------------------------------------------------------------------------- F3.22 golden
@pytest.mark.parametrize("dt", [1e-3, 2.5e-3])
def test_golden_single_synapse_values(dt):
    """One spike at 10 ms -> CubaLI (20 ms / 5 ms) through w = 0.7, d = 3.3 ms,
    L = ∫_0^100ms V^2 e^{-t/100ms} dt; in seconds L and dL/dw are the ms values / 1000."""
    n_steps = int(round(0.1 / dt))

    def run(adjoint):
        spikes = ctsnn.Spikes.from_events(torch.tensor([0.010]), [0], dt=dt, n_steps=n_steps,
                                          n_units=1)
        layer = ctsnn.Layer(ctsnn.CubaLI(1, tau_mem=0.02, tau_syn=0.005), torch.tensor([[0.7]]),
                            delay=torch.tensor([[0.0033]]),
                            gradient="adjoint" if adjoint else "surrogate")
        layer.synapse.delay.requires_grad_()
        integrand = lambda t, s: s.v**2 * torch.exp(-t / 0.1)  # noqa: E731
        if adjoint:
            loss = ctsnn.simulate(layer, spikes, time="continuous",
                                  readout=integrand).output.sum()
        else:
            loss = ctsnn.simulate(layer, spikes, dt=dt, time="continuous",
                                  readout=integrand).output.sum()
        g_w, g_d = torch.autograd.grad(loss, (layer.synapse.weight, layer.synapse.delay))
        return loss.item(), g_w.item(), g_d.item()

    loss, g_w, g_d = run(adjoint=True)
    assert loss * 1e3 == pytest.approx(0.182886148, abs=1e-9)
    assert g_w * 1e3 == pytest.approx(0.5225318507, abs=1e-10)
    assert g_d == pytest.approx(-0.0018322996, abs=1e-10)
    assert g_w == pytest.approx(2 * loss / 0.7, rel=1e-12)  # closed form dL/dw = 2L/w
    ref = run(adjoint=False)
    for ours, theirs in zip((loss, g_w, g_d), ref, strict=True):
        assert ours == pytest.approx(theirs, rel=1e-10)


# --------------------------------------------------------------------------- F3.23
@pytest.mark.parametrize("kind", ["voltage", "first_spike"])
def test_two_layer_gradients_equal_engine_autograd(kind):
    """CubaLIF hidden (several spikes per neuron) with per-synapse delays; readout CubaLI with
    the exp-weighted voltage cross-entropy, or CubaLIF ("LIF" of EventProp) with the
    time-invariant MSE on first-spike times. Also dL/d(input spike times), which is what a
    further upstream layer receives."""
    events, params = _problem()
    results = []
    for runner in (_loss_engine, _loss_adjoint):
        times = events[0].clone().requires_grad_()
        loss, counts, layers = runner(kind, (times, *events[1:]), params)
        grads = torch.autograd.grad(loss, [*_grad_tensors(layers), times])
        results.append((loss.item(), counts, grads))
    (loss_ref, counts_ref, g_ref), (loss_adj, counts_adj, g_adj) = results
    assert counts_ref == counts_adj
    assert counts_adj[0] >= 2 * N_HID
    if kind == "first_spike":
        assert counts_adj[1] >= 2 * N_OUT
    assert loss_adj == pytest.approx(loss_ref, rel=1e-12)
    for name, a, b in zip(("W1", "D1", "W2", "D2", "t_in"), g_adj, g_ref, strict=True):
        assert b.abs().max() > 0, name
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-8 * b.abs().max().item()), name


@pytest.mark.parametrize("kind", ["voltage", "first_spike"])
def test_two_layer_gradients_match_finite_differences(kind):
    events, params = _problem()
    loss, counts, layers = _loss_adjoint(kind, events, params)
    grads = torch.autograd.grad(loss, _grad_tensors(layers))
    with torch.no_grad():  # the hidden layer does not depend on W2, D2: run it once
        hidden = ctsnn.simulate(_layers(kind, params, "adjoint")[:1], _spikes(events),
                                time="continuous").spikes

    def perturbed_loss(p: list[torch.Tensor], which: int) -> tuple[float, list[int]]:
        if which < 2:
            l_fd, c_fd, _ = _loss_adjoint(kind, events, p)
            return l_fd.item(), c_fd
        out = ep.layer_forward(_readout(kind), hidden, p[2], p[3],
                               readout="avg_exp" if kind == "voltage" else None)
        if kind == "voltage":
            return F.cross_entropy(out, LABELS).item(), [len(hidden)]
        l_fd = time_invariant_mse(out.first_times(), LABELS, 0.002)
        return l_fd.item(), [len(hidden), len(out)]

    checked = 0
    for which, idx in [(0, (3, 2)), (1, (1, 1)), (2, (2, 4)), (3, (1, 0))]:
        eps = 1e-6 if which in (0, 2) else 1e-8
        values = []
        for sign in (1, -1):
            p = [x.clone() for x in params]
            p[which][idx] += sign * eps
            with torch.no_grad():
                l_fd, c_fd = perturbed_loss(p, which)
            assert c_fd == counts, "perturbation changed the spike count"
            values.append(l_fd)
        fd = (values[0] - values[1]) / (2 * eps)
        g = grads[which][idx].item()
        assert abs(fd) > 1e-9, (which, idx)
        assert math.isclose(g, fd, rel_tol=1e-4), (which, idx, g, fd)
        checked += 1
    assert checked == 4


# --------------------------------------------------------------------------- F3.21
def test_zero_delay_reduction():
    """All d = 0: the delayed path equals the no-delay path and autograd without delays."""
    events, (w1, _, w2, _) = _problem()
    spikes = _spikes(events)
    d1, d2 = torch.zeros_like(w1), torch.zeros_like(w2)
    with_delay = [ctsnn.Layer(_hidden(), w1, delay=d1, learn_delay=True, gradient="adjoint"),
                  ctsnn.Layer(_readout("voltage"), w2, delay=d2, learn_delay=True,
                              gradient="adjoint")]
    no_delay = [ctsnn.Layer(_hidden(), w1, gradient="adjoint"),
                ctsnn.Layer(_readout("voltage"), w2, gradient="adjoint")]
    grads = []
    for net in (with_delay, no_delay):
        z = ctsnn.simulate(net, spikes, time="continuous", readout="avg_exp").output
        F.cross_entropy(z, LABELS).backward()
        grads.append([layer.synapse.weight.grad for layer in net])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-13, atol=0)
    layers = [ctsnn.Layer(_hidden(), w1), ctsnn.Layer(_readout("voltage"), w2)]
    t_end = _t_end()
    res = ctsnn.simulate(layers, spikes, dt=DT, time="continuous",
                         readout=lambda t, s: s.v * torch.exp(-t / t_end) / t_end)
    ref = torch.autograd.grad(F.cross_entropy(res.output, LABELS),
                              [layer.synapse.weight for layer in layers])
    for a, b in zip(grads[1], ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert all(layer.synapse.delay.grad.abs().sum() > 0 for layer in with_delay)


# --------------------------------------------------------------------------- F3.25 / D5
def test_sequence_detection_learns_and_flipped_sign_does_not():
    train = runpy.run_path(str(EXAMPLE))["train"]
    shown, layer = train(sign=1.0, max_epochs=10)
    assert shown is not None and shown <= 6, shown  # paper: 100 % after 6 presentations each
    d = layer.synapse.delay.detach()
    assert d[0, 0] > d[0, 1] and d[1, 1] > d[1, 0]  # moved towards diag 10 / off-diag 0 ms
    flipped, _ = train(sign=-1.0, max_epochs=10)
    assert flipped is None


# --------------------------------------------------------------------------- memory
def test_saved_state_does_not_grow_with_the_number_of_steps():
    """Same spikes, T = 1000 vs 4000 steps: the tensors kept for backward are equal in size."""
    events, params = _problem()
    sizes, counts = [], []
    for n_steps in (1000, 4000):
        res, nbytes = measure_saved_bytes(lambda n=n_steps: ctsnn.simulate(
            _layers("voltage", params, "adjoint"), _spikes(events, dt=1e-4, n_steps=n),
            time="continuous", readout="avg_exp"))
        sizes.append(nbytes)
        counts.append(len(res.layers[0].spikes))
        F.cross_entropy(res.output, LABELS).backward()  # the saved state suffices
    assert counts[0] == counts[1] > 0
    assert 0 < sizes[1] <= sizes[0]
    print(f"saved for backward: {sizes} bytes, hidden spikes {counts}")


# --------------------------------------------------------------------------- F3.26
def test_no_state_leaks_between_batches():
    events, (w1, d1, w2, d2) = _problem()
    other, _ = _problem(seed=7)
    net = torch.nn.ModuleList([
        ctsnn.Layer(_hidden(), w1, delay=d1, learn_delay=True, gradient="adjoint"),
        ctsnn.Layer(_readout("voltage"), w2, delay=d2, learn_delay=True, gradient="adjoint")])
    fresh = copy.deepcopy(net)

    def grads(model, ev, labels):
        model.zero_grad()
        z = ctsnn.simulate(model, _spikes(ev), time="continuous", readout="avg_exp").output
        F.cross_entropy(z, labels).backward()
        return [p.grad.clone() for p in model.parameters()]

    grads(net, other, torch.tensor([1, 1]))
    second = grads(net, events, LABELS)
    alone = grads(fresh, events, LABELS)
    for a, b in zip(second, alone, strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- other readouts
@pytest.mark.parametrize("model", ["CubaLI", "LI"])
def test_max_and_sum_readouts_match_finite_differences(model):
    g = torch.Generator().manual_seed(4)
    t_in = torch.rand(12, generator=g, dtype=F64) * 0.04
    u_in = torch.randint(0, N_IN, (12,), generator=g)
    b_in = torch.randint(0, B, (12,), generator=g)
    w = torch.rand(N_OUT, N_IN, generator=g, dtype=F64) - 0.3
    d = 0.01 * torch.rand(N_OUT, N_IN, generator=g, dtype=F64)
    coef = torch.randn(B, N_OUT, generator=g, dtype=F64)
    neurons = (ctsnn.CubaLI(N_OUT, tau_mem=0.01, tau_syn=0.005) if model == "CubaLI"
               else ctsnn.LI(N_OUT, tau_mem=0.01))
    for readout in ("max", "sum"):
        def f(w_, d_, t_, readout=readout):
            spikes = ctsnn.Spikes(t_, u_in, b_in, dt=1e-3, n_steps=60, batch_size=B,
                                  n_units=N_IN)
            return (ep.layer_forward(neurons, spikes, w_, d_, readout=readout) * coef).sum()

        args = [x.clone().requires_grad_() for x in (w, d, t_in)]
        grads = torch.autograd.grad(f(*args), args)
        for which, idx in [(0, (0, 0)), (0, (2, 3)), (1, (1, 2)), (1, (2, 1)), (2, (3,)),
                           (2, (9,))]:
            eps = 1e-7
            vals = []
            for sign in (1, -1):
                p = [w.clone(), d.clone(), t_in.clone()]
                p[which][idx] += sign * eps
                vals.append(f(*p).item())
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert math.isclose(grads[which][idx].item(), fd, rel_tol=1e-5, abs_tol=1e-8), \
                (readout, which, idx)


def test_sum_readout_equals_engine_integral():
    events, (_, _, w2, d2) = _problem()
    spikes = _spikes(events)
    z = ep.layer_forward(_readout("voltage"), spikes, w2[:, :N_IN], d2[:, :N_IN], readout="sum")
    layer = ctsnn.Layer(_readout("voltage"), w2[:, :N_IN], delay=d2[:, :N_IN])
    ref = ctsnn.simulate(layer, spikes, dt=DT, time="continuous",
                         readout=lambda t, s: s.v / DT).output
    assert torch.allclose(z, ref, rtol=1e-12, atol=1e-12)


def test_lif_hidden_layer_matches_engine():
    """V-jump LIF fires at arrivals: exact weight gradients of its inputs vanish, delays and
    upstream times still get theirs; LI readout."""
    events, (w1, d1, w2, d2) = _problem()
    t_end = _t_end()
    grads = []
    for adjoint in (False, True):
        grad = "adjoint" if adjoint else "surrogate"
        layers = [ctsnn.Layer(ctsnn.LIF(N_HID, tau_mem=0.02), 0.6 * w1, delay=d1, gradient=grad),
                  ctsnn.Layer(ctsnn.LI(N_OUT, tau_mem=0.01), 0.1 * w2, delay=d2, gradient=grad)]
        for layer in layers:
            layer.synapse.delay.requires_grad_()
        if adjoint:
            z = ctsnn.simulate(layers, _spikes(events), time="continuous",
                               readout="avg_exp").output
        else:
            z = ctsnn.simulate(layers, _spikes(events), dt=DT, time="continuous",
                               readout=lambda t, s: s.v * torch.exp(-t / t_end) / t_end
                               ).output
        out = torch.autograd.grad(F.cross_entropy(z, LABELS), _grad_tensors(layers),
                                  allow_unused=True)
        grads.append([torch.zeros(1) if x is None else x for x in out])
    assert torch.equal(grads[1][0], torch.zeros_like(grads[1][0]))
    for a, b in zip(grads[1][1:], grads[0][1:], strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert grads[1][1].abs().sum() > 0


def test_spike_count_regulariser_is_a_voltage_jump_at_each_spike():
    """spike_reg adds c_k = strength (mean count - target) / B to dL/dV just before each
    spike; that equals adding the spike-time gradient -c_k Vdot^-_k."""
    events, (w1, d1, _, _) = _problem()
    spikes = _spikes(events)
    strength, target = 0.3, 2.0
    model = _hidden()
    out = ep.layer_forward(model, spikes, w1.clone().requires_grad_(), d1, spike_reg=None)
    cfg = LayerConfig(nrn=neuron_constants(model), dt=DT, n_steps=STEPS, batch_size=B,
                      n_in=N_IN, t_end=_t_end())
    cur = _current_at_spikes(cfg, (spikes.times, spikes.batch, spikes.units, spikes.values,
                                      w1, d1), out.times.detach(), out.batch, out.units)
    mean = torch.bincount(out.units, minlength=N_HID).to(F64) / B
    c = strength * (mean[out.units] - target) / B
    vdot = (model.v_leak[out.units] - model.v_threshold[out.units] + cur) / model.tau_mem[0]
    grads = []
    for reg in ((strength, target), None):
        w = w1.clone().requires_grad_()
        o = ep.layer_forward(model, spikes, w, d1, spike_reg=reg)
        loss = (o.times ** 2).sum()
        if reg is None:
            loss = loss + (-(c * vdot).detach() * o.times).sum()
        grads.append(torch.autograd.grad(loss, w)[0])
    assert torch.allclose(grads[0], grads[1], rtol=1e-12, atol=1e-15)


def _per_axon_layer():
    layer = ctsnn.Layer(ctsnn.CubaLI(2), torch.ones(2, 3), delay=torch.full((3,), 0.02),
                        learn_delay=True, max_delay=0.02, gradient="adjoint")
    with torch.no_grad():
        layer.synapse.delay.fill_(0.015)
    spikes = ctsnn.Spikes.from_events(torch.tensor([0.001]), [0], dt=1e-3, n_steps=10, n_units=3)
    return layer, spikes


def test_errors_and_delay_clamp():
    spikes = ctsnn.Spikes.from_events(torch.tensor([0.001]), [0], dt=1e-3, n_steps=10, n_units=2)
    with pytest.raises(TypeError, match="support LI, LIF"):
        ep.layer_forward(ctsnn.AdLIF(2), spikes, torch.ones(2, 2))
    with pytest.raises(NotImplementedError, match="refractory"):
        ep.layer_forward(ctsnn.LIF(2, refractory=1e-3), spikes, torch.ones(2, 2))
    layer, spikes = _per_axon_layer()
    with pytest.raises(ValueError, match="readout"):
        ep.layer_forward(layer.model, spikes, layer.synapse.weight, layer.synapse.delay)
    ctsnn.simulate(layer, spikes, time="continuous", readout="max").output.sum().backward()
    assert layer.synapse.delay.grad is not None
    with torch.no_grad():  # as after an optimiser step that pushed the delays out of range
        layer.synapse.delay.fill_(0.03)
    with pytest.raises(ValueError, match=r"Dense\.delay: 0\.03 s at \[0\] is above max_delay"):
        ctsnn.simulate(layer, spikes, time="continuous", readout="max")
    ctsnn.clamp_delays_(layer)
    assert torch.all(layer.synapse.delay == 0.02)


def test_per_axon_delays_stay_per_axon():
    layer, spikes = _per_axon_layer()
    ctsnn.simulate(layer, spikes, time="continuous", readout="max").output.sum().backward()
    assert layer.synapse.delay.grad.shape == (3,)  # per-axon delays


def test_a_silent_hidden_layer_gives_zero_gradients_not_an_error():
    """Regression (found by the W2 benchmark): a spiking layer without any output spike in the
    batch crashed in backward."""
    events, params = _problem()
    w1 = 1e-3 * params[0]  # far below threshold: the hidden layer stays silent
    spikes = ctsnn.Spikes(*events[:1], events[1], events[2], events[3], dt=DT, n_steps=STEPS,
                          batch_size=B, n_units=N_IN)
    net = [
        ctsnn.Layer(ctsnn.CubaLIF(N_HID, tau_mem=0.02, tau_syn=0.005), w1, delay=params[1],
                    learn_delay=True, gradient="adjoint"),
        ctsnn.Layer(ctsnn.CubaLI(N_OUT, tau_mem=0.02, tau_syn=0.005), params[2],
                    delay=params[3], learn_delay=True, gradient="adjoint"),
    ]
    res = ctsnn.simulate(net, spikes, time="continuous", readout="avg_exp")
    assert len(res.layers[0].spikes) == 0
    F.cross_entropy(res.output, LABELS).backward()
    first = net[0].synapse
    assert torch.equal(first.weight.grad, torch.zeros_like(first.weight))
    assert torch.equal(first.delay.grad, torch.zeros_like(first.delay))
