"""Discrete-time EventProp (mlGeNN's grid, SEEDS C1.2-C1.4): F3.20, F3.24, F3.26, F3.27.

References: the C1.2 recursion written out in plain loops, the closed-form PSC, the exact
continuous EventProp (:mod:`ctsnn.gradients.eventprop`, itself checked against the engine's
autograd and finite differences), central finite differences of the continuous loss, and a
naive plain-loop forward + backward that stores the whole adjoint trajectory (no ring buffers).
"""

from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.gradients.discrete import delay_steps, discrete_layer_forward, discrete_trace
from ctsnn.gradients.saved import measure_saved_bytes
from ctsnn.training.schedules import ease_in

F64 = torch.float64
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "eventprop_discrete.py"
TAU_M, TAU_S = 0.02, 0.005


pytestmark = pytest.mark.usefixtures("float64")  # parameters are built in float64 too


# --------------------------------------------------------------------------- the test network
# 3 inputs -> 4 CubaLIF -> 2 CubaLI, batch 2, 60 ms; input times and delays are whole ms, so
# the 1, 0.1 and 0.01 ms grids all represent them exactly.
B, N_IN, N_HID, N_OUT = 2, 3, 4, 2
T_END = 0.06
LABELS = torch.tensor([0, 1])
MAX_DELAY = 0.01  # s


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n_ev = 12
    t = torch.randint(0, 30, (n_ev,), generator=g).to(F64) * 1e-3
    u = torch.randint(0, N_IN, (n_ev,), generator=g)
    b = torch.randint(0, B, (n_ev,), generator=g)
    w1 = 1.0 + 2.0 * torch.rand(N_HID, N_IN, generator=g, dtype=F64)
    d1 = torch.randint(0, 8, (N_HID, N_IN), generator=g).to(F64) * 1e-3
    w2 = 0.5 + torch.rand(N_OUT, N_HID, generator=g, dtype=F64)
    d2 = torch.randint(0, 8, (N_OUT, N_HID), generator=g).to(F64) * 1e-3
    return (t, u, b), [w1, d1, w2, d2]


def _spikes(events, dt, t_end=T_END, n_units=N_IN, batch_size=B):
    t, u, b = events
    return ctsnn.Spikes(t, u, b, dt=dt, n_steps=int(round(t_end / dt)), batch_size=batch_size,
                        n_units=n_units)


def _models():
    return (ctsnn.CubaLIF(N_HID, tau_mem=TAU_M, tau_syn=TAU_S),
            ctsnn.CubaLI(N_OUT, tau_mem=TAU_M, tau_syn=TAU_S))


def _net(params, time, models=_models, max_delay=None):
    """Two ``gradient="adjoint"`` layers with learnable weights and delays."""
    m1, m2 = models()
    return torch.nn.ModuleList([
        ctsnn.Layer(m1, params[0], delay=params[1], learn_delay=True, max_delay=max_delay,
                    time=time, gradient="adjoint"),
        ctsnn.Layer(m2, params[2], delay=params[3], learn_delay=True, max_delay=max_delay,
                    time=time, gradient="adjoint")])


def _run(net, spikes):
    """(readout z [B, N_OUT], hidden spikes) of a two-layer net."""
    res = ctsnn.simulate(net, spikes, readout="avg_exp")
    return res.output, res.layers[0].spikes


def _grads(net):
    return [t.grad.clone() for layer in net for t in (layer.synapse.weight, layer.synapse.delay)]


def _continuous(events, params, models=_models):
    """Exact continuous EventProp: loss, hidden spikes, [dW1, dD1, dW2, dD2]."""
    net = _net(params, "continuous", models)
    z, hidden = _run(net, _spikes(events, 1e-3))
    loss = F.cross_entropy(z, LABELS)
    loss.backward()
    return loss.item(), hidden, _grads(net)


def _discrete_net(params, dt, max_delay=MAX_DELAY, models=_models):
    k = int(round(max_delay / dt))  # the ring buffers hold k + 1 steps
    return _net(params, "discrete", models, max_delay=k * dt)


def _discrete(events, params, dt, models=_models):
    net = _discrete_net(params, dt, models=models)
    z, hidden = _run(net, _spikes(events, dt))
    loss = F.cross_entropy(z, LABELS)
    loss.backward()
    return loss.item(), hidden, _grads(net)


def _per_neuron_times(spikes):
    """Spike times sorted by (sample, neuron, time)."""
    key = sorted(zip(spikes.batch.tolist(), spikes.units.tolist(), spikes.times.tolist(),
                     strict=True))
    return torch.tensor([t for _, _, t in key])


def _rel(a, b):
    return (torch.cat([x.flatten() for x in a]) - torch.cat([x.flatten() for x in b])).norm() / \
        torch.cat([x.flatten() for x in b]).norm()


# --------------------------------------------------------------------------- F3.20 forward
def test_psc_follows_the_discrete_recursion_and_the_exponential():
    """F3.20 (discrete mode): one input spike at 3 ms through w = 0.7, d = 2.5 ms.

    ``syn`` is exactly the C1.2 recursion (``+= w`` at the arrival step, ``*= beta`` after each
    step) and equals ``w e^{-(t - t_s - d)/tau_s}`` at grid points up to rounding (1e-12): the
    decay per step is the exact ``e^{-dt/tau_s}``. The current fed to the voltage,
    ``I = syn (tau_s/dt)(1 - beta)``, is the mean of the continuous PSC over the step, so it
    differs from the grid-point value by the factor ``(tau_s/dt)(1 - beta) = 1 - dt/(2 tau_s)
    + O(dt^2)``: relative tolerance ``dt/(2 tau_s)`` (1 % at dt = 0.1 ms), which is the
    discretisation, not an error.
    """
    dt, w, t_s, d = 1e-4, 0.7, 0.003, 0.0025
    spikes = ctsnn.Spikes.from_events(torch.tensor([t_s]), [0], dt=dt, n_steps=300, n_units=1)
    model = ctsnn.CubaLI(1, tau_mem=TAU_M, tau_syn=TAU_S)
    tr = discrete_trace(model, spikes, torch.tensor([[w]]), torch.tensor([[d]]),
                        max_delay_steps=25)
    syn = tr.syn[:, 0, 0]
    beta = math.exp(-dt / TAU_S)
    n_arr = round((t_s + d) / dt)  # 55
    ref = []
    x = 0.0
    for n in range(300):  # the C1.2 recursion, plain floats
        if n == n_arr:
            x += w
        ref.append(x)
        x *= beta
    assert torch.equal(syn, torch.tensor(ref))
    assert bool((syn[:n_arr] == 0).all()) and syn[n_arr].item() == w
    t = torch.arange(300, dtype=F64) * dt
    psc = torch.where(t >= t_s + d - 1e-12, w * torch.exp(-(t - t_s - d) / TAU_S),
                      torch.zeros_like(t))
    torch.testing.assert_close(syn, psc, rtol=1e-12, atol=0)
    scale = (TAU_S / dt) * (1 - beta)
    torch.testing.assert_close(tr.current[:, 0, 0], syn * scale, rtol=1e-13, atol=0)
    after = slice(n_arr, None)
    dev = (tr.current[after, 0, 0] / psc[after] - 1).abs()
    assert float(dev.max()) <= dt / (2 * TAU_S)
    assert float(dev.max()) > 0.9 * dt / (2 * TAU_S)  # the step mean, not the point value
    # mean of the continuous PSC over each step, exactly
    mean = w * TAU_S / dt * (torch.exp(-(t[after] - t_s - d) / TAU_S)
                             - torch.exp(-(t[after] + dt - t_s - d) / TAU_S))
    torch.testing.assert_close(tr.current[after, 0, 0], mean, rtol=1e-10, atol=0)
    # V: exact exponential Euler of that current, V <- alpha V + (1 - alpha) I
    alpha = math.exp(-dt / TAU_M)
    v = tr.v[:, 0, 0]
    torch.testing.assert_close(v[1:], alpha * v[:-1] + (1 - alpha) * tr.current[:, 0, 0],
                               rtol=1e-13, atol=1e-16)


def test_voltage_converges_to_the_continuous_psp():
    """The discrete V approaches the exact PSP ``w tau_s/(tau_s - tau_m)(e^{-h/tau_s} -
    e^{-h/tau_m})`` at grid points; for on-grid arrivals the step-mean current makes the
    scheme second order (halving dt quarters the error)."""
    w, t_s = 0.7, 0.002
    errs = []
    for dt in (2e-4, 1e-4, 5e-5):
        n_steps = round(0.03 / dt)
        spikes = ctsnn.Spikes.from_events(torch.tensor([t_s]), [0], dt=dt, n_steps=n_steps,
                                          n_units=1)
        tr = discrete_trace(ctsnn.CubaLI(1, tau_mem=TAU_M, tau_syn=TAU_S), spikes,
                            torch.tensor([[w]]), max_delay_steps=0)
        h = (torch.arange(n_steps + 1, dtype=F64) * dt - t_s).clamp(min=0)
        psp = w * TAU_S / (TAU_S - TAU_M) * (torch.exp(-h / TAU_S) - torch.exp(-h / TAU_M))
        errs.append(float((tr.v[:, 0, 0] - psp).abs().max()))
    assert errs[0] < 1e-4 * w
    assert 0.2 < errs[1] / errs[0] < 0.3 and 0.2 < errs[2] / errs[1] < 0.3


def test_delays_round_half_to_even_and_max_is_honoured():
    """F0.3 for the discrete forward: round to nearest (2.6 -> 3, never truncated), ties to
    even, clamp to [0, max]; a delay equal to the max arrives max steps later (no wrap)."""
    dt = 1e-3
    d = torch.tensor([0.0026, 0.0024, 0.0025, 0.0035, 0.004, 0.009, -0.001])
    assert delay_steps(d, dt, 4).tolist() == [3, 2, 2, 4, 4, 4, 0]
    for k_max in (3, 4):
        spikes = ctsnn.Spikes.from_events(torch.tensor([0.001]), [0], dt=dt, n_steps=10,
                                          n_units=1)
        tr = discrete_trace(ctsnn.CubaLI(1), spikes, torch.tensor([[1.0]]),
                            torch.tensor([[k_max * dt]]), max_delay_steps=k_max)
        first = int((tr.syn[:, 0, 0] > 0).nonzero()[0])
        assert first == 1 + k_max


# --------------------------------------------------------------------------- F3.24 convergence
def test_discrete_gradients_converge_to_the_continuous_ones():
    """F3.24: dL/dW and dL/dD of both layers converge to exact continuous EventProp, first
    order in dt, with the same spikes (per sample and neuron) on every grid.

    The case has well-conditioned crossings (``I - V >= 0.5`` at every hidden spike): near a
    grazing crossing the spike-time error is amplified by ``1/V'`` and the error still goes
    to zero but not monotonically (a spike's sub-step phase is effectively random).
    """
    events, params = _problem(0)
    loss_c, hidden_c, g_c = _continuous(events, params)
    errs_w, errs_d = [], []
    for dt in (1e-3, 1e-4, 1e-5):
        loss_d, hidden_d, g_d = _discrete(events, params, dt)
        assert torch.equal(hidden_d.count(), hidden_c.count())
        # spikes are recorded at the end of the step that crosses, so they come late by up to
        # dt, plus what earlier late resets add (measured max: 4.6, 0.29, 0.043 ms)
        lag = _per_neuron_times(hidden_d) - _per_neuron_times(hidden_c)
        assert float(lag.min()) >= 0 and float(lag.max()) <= 5 * dt
        assert abs(loss_d - loss_c) < 0.01 * dt / 1e-3
        errs_w.append(float(_rel([g_d[0], g_d[2]], [g_c[0], g_c[2]])))
        errs_d.append(float(_rel([g_d[1], g_d[3]], [g_c[1], g_c[3]])))
    tr = discrete_trace(_models()[0], _spikes(events, 1e-5), params[0], params[1],
                        max_delay_steps=1000)
    steps = torch.round(tr.spikes.times / 1e-5).long()
    q = tr.current[steps - 1, tr.spikes.batch, tr.spikes.units] - \
        tr.v_pre[steps, tr.spikes.batch, tr.spikes.units]
    assert float(q.min()) >= 0.5
    # measured: w 7.1e-2, 5.1e-3, 6.0e-4; d 3.8e-2, 2.9e-3, 3.1e-4
    for errs in (errs_w, errs_d):
        assert errs[1] / errs[0] < 0.3, errs
        assert errs[2] / errs[1] < 0.3, errs
        assert errs[2] < 2e-3, errs
    # each tensor on its own at the finest grid (measured: dW1 6.6e-3, dD1 2.0e-3,
    # dW2 5.7e-4, dD2 6.3e-5; the hidden layer's gradients go through the spike jumps)
    _, _, g_d = _discrete(events, params, 1e-5)
    for a, b in zip(g_d, g_c, strict=True):
        assert float(_rel([a], [b])) < 1e-2


@pytest.mark.parametrize("tau_m, tau_s, r_hidden", [(0.02, 0.005, 1.5), (0.01, 0.01, 0.5)])
def test_convergence_with_general_neuron_parameters(tau_m, tau_s, r_hidden):
    """F3.24 with ``r != 1``, ``v_leak != 0``, ``v_reset != 0`` (both layers) and with
    ``tau_m == tau_s`` (the coupling's limit form). Measured relative errors at 0.1 / 0.01 ms:
    w 9.3e-3 / 7.0e-4, d 3.5e-3 / 3.7e-4 (first case); w 1.4e-2 / 1.1e-3, d 1.0e-2 / 7.8e-4."""

    def models():
        return (ctsnn.CubaLIF(N_HID, tau_mem=tau_m, tau_syn=tau_s, r=r_hidden, v_leak=0.1,
                              v_reset=-0.2),
                ctsnn.CubaLI(N_OUT, tau_mem=tau_m, tau_syn=tau_s, r=0.8, v_leak=-0.05))

    events, params = _problem(0)
    _, hidden_c, g_c = _continuous(events, params, models)
    errs = []
    for dt in (1e-4, 1e-5):
        _, hidden_d, g_d = _discrete(events, params, dt, models)
        assert torch.equal(hidden_d.count(), hidden_c.count())
        errs.append((float(_rel([g_d[0], g_d[2]], [g_c[0], g_c[2]])),
                     float(_rel([g_d[1], g_d[3]], [g_c[1], g_c[3]]))))
    for coarse, fine in zip(errs[0], errs[1], strict=True):
        assert fine / coarse < 0.3, errs
        assert fine < 5e-3, errs


def test_finest_grid_matches_finite_differences_of_the_continuous_loss():
    """The discrete adjoint at dt = 0.01 ms against central differences of the exact
    continuous loss (no spike created or deleted by the perturbations)."""
    events, params = _problem(0)
    _, _, g_d = _discrete(events, params, 1e-5)
    _, hidden_c, g_c = _continuous(events, params)
    count = hidden_c.count()

    def loss(ps):
        with torch.no_grad():
            l_c, hid, _ = _continuous_nograd(events, ps)
        assert torch.equal(hid.count(), count)
        return l_c

    for t_idx, eps in ((0, 1e-6), (1, 1e-8), (2, 1e-6), (3, 1e-8)):
        fd = torch.zeros_like(params[t_idx])
        for flat in range(fd.numel()):
            plus = [p.clone() for p in params]
            minus = [p.clone() for p in params]
            plus[t_idx].view(-1)[flat] += eps
            if t_idx % 2 and float(params[t_idx].view(-1)[flat]) == 0:
                fd.view(-1)[flat] = (loss(plus) - loss(params)) / eps  # zero delay: one-sided
                continue
            minus[t_idx].view(-1)[flat] -= eps
            fd.view(-1)[flat] = (loss(plus) - loss(minus)) / (2 * eps)
        torch.testing.assert_close(g_c[t_idx], fd, rtol=1e-4, atol=1e-5 * float(fd.abs().max()))
        assert float(_rel([g_d[t_idx]], [fd])) < 1e-2, t_idx


def _continuous_nograd(events, params):
    z, hidden = _run(_net(params, "continuous"), _spikes(events, 1e-3))
    return F.cross_entropy(z, LABELS).item(), hidden, None


def test_delay_gradient_sign():
    """C1.4 sign test: moving an input later along the delay gradient's descent direction
    lowers the loss of a single CubaLI readout whose target is to peak late."""
    dt = 1e-4
    spikes = ctsnn.Spikes.from_events(torch.tensor([0.005]), [0], dt=dt, n_steps=400, n_units=1)
    layer = ctsnn.Layer(ctsnn.CubaLI(1), torch.tensor([[1.0]]), delay=torch.tensor([[0.004]]),
                        learn_delay=True, max_delay=200 * dt, time="discrete", gradient="adjoint")
    z = ctsnn.simulate(layer, spikes, readout="avg_exp").output
    z.sum().backward()  # avg_exp readout: later arrival -> smaller e^{-t/T} weight -> smaller z
    assert layer.synapse.delay.grad.item() < 0
    assert layer.synapse.weight.grad.item() > 0


# --------------------------------------------------------------------------- F3.26 history
def _naive(events, params, dt, n_steps, k_max, g_out):
    """Plain-loop forward + backward of the 2-layer network storing the whole adjoint
    trajectory; loss ``sum(g_out * z)``. Returns (z, hidden spikes, grads, trajectories)."""
    alpha, beta = math.exp(-dt / TAU_M), math.exp(-dt / TAU_S)
    scale = TAU_S / dt * (1 - beta)
    cpl = TAU_M / (TAU_M - TAU_S) * (alpha - beta)
    t_end = n_steps * dt

    def steps_of(d):
        return [[min(k_max, max(0, round(x / dt))) for x in row] for row in d.tolist()]

    def forward(ev, w, k, n, spiking):
        arr = [[[0.0] * n for _ in range(B)] for _ in range(n_steps)]
        for m, b, j, a in ev:
            for i in range(n):
                if m + k[i][j] < n_steps:
                    arr[m + k[i][j]][b][i] += a * w[i][j]
        out, z = [], [[0.0] * n for _ in range(B)]
        for b in range(B):
            for i in range(n):
                syn, v = 0.0, 0.0
                for s in range(n_steps):
                    syn += arr[s][b][i]
                    cur = syn * scale
                    v = alpha * v + (1 - alpha) * cur
                    syn *= beta
                    if spiking and v >= 1.0:
                        out.append((s + 1, b, i, cur - v))
                        v = 0.0
                    z[b][i] += math.exp(-(s + 1) * dt / t_end) / n_steps * v
        return out, z

    def backward(ev, w, k, n, spikes, g_spk, drive):
        lam_v = [[0.0] * n for _ in range(B)]
        lam_i = [[0.0] * n for _ in range(B)]
        traj = [None] * (n_steps + 1)
        for s in range(n_steps, -1, -1):
            for b in range(B):
                for i in range(n):
                    if s < n_steps:
                        d = 0.0 if drive is None else \
                            -drive[b][i] * math.exp(-(s + 1) * dt / t_end) / t_end
                        lam_i[b][i] = d + beta * (lam_i[b][i] - d) + cpl * (lam_v[b][i] - d)
                        lam_v[b][i] = d + alpha * (lam_v[b][i] - d)
            traj[s] = ([r[:] for r in lam_v], [r[:] for r in lam_i])
            for idx, (m, b, i, q) in enumerate(spikes):
                if m == s:
                    lam_v[b][i] += (lam_v[b][i] + g_spk[idx]) / q
        gw = [[0.0] * len(w[0]) for _ in range(n)]
        gd = [[0.0] * len(w[0]) for _ in range(n)]
        g_ev = []
        for m, b, j, a in ev:
            tot = 0.0
            for i in range(n):
                s = m + k[i][j]
                lv, li = (traj[s][0][b][i], traj[s][1][b][i]) if s <= n_steps else (0.0, 0.0)
                gw[i][j] += -TAU_S * a * li
                ds = -a * w[i][j] * (li - lv)
                gd[i][j] += ds
                tot += ds
            g_ev.append(tot)
        return gw, gd, g_ev, traj

    t, u, b = events
    ev0 = [(round(x / dt), bb, j, 1.0) for x, j, bb in
           zip(t.tolist(), u.tolist(), b.tolist(), strict=True)]
    w1, w2 = params[0].tolist(), params[2].tolist()
    k1, k2 = steps_of(params[1]), steps_of(params[3])
    hid, _ = forward(ev0, w1, k1, N_HID, True)
    _, z = forward([(m, bb, i, 1.0) for m, bb, i, _ in hid], w2, k2, N_OUT, False)
    ev1 = [(m, bb, i, 1.0) for m, bb, i, _ in hid]
    gw2, gd2, g_hid, traj2 = backward(ev1, w2, k2, N_OUT, [], [], g_out.tolist())
    gw1, gd1, _, traj1 = backward(ev0, w1, k1, N_HID, hid, g_hid, None)
    grads = [torch.tensor(x) for x in (gw1, gd1, gw2, gd2)]
    return torch.tensor(z), hid, grads, (traj1, traj2)


@pytest.mark.parametrize("k_max", [5, 7])
def test_ring_buffers_equal_a_naive_full_trajectory_backward(k_max):
    """F3.26: forward dendritic ring and backward lambda history (``max_delay + 1`` slots)
    equal plain loops over the whole trajectory, with delays equal to ``max_delay`` in both
    layers (k_max = 7 = the largest delay; 5 clamps longer delays to the max); every value
    read at an arrival ``t_k + d`` equals the stored trajectory there (0 beyond T)."""
    dt, n_steps = 1e-3, 33  # some arrivals fall beyond T
    events, params = _problem(0)
    params = [p.clone() for p in params]
    params[1][0, 0] = params[3][1, 2] = k_max * dt  # exactly the max
    g_out = torch.tensor([[0.3, -0.7], [-0.4, 0.9]])
    z_ref, hid_ref, g_ref, (traj1, traj2) = _naive(events, params, dt, n_steps, k_max, g_out)

    reads: list[list] = [[], []]

    def probe_for(layer_reads):
        def probe(step, e, arrival, li, lv):
            layer_reads.append((step, e.clone(), arrival.clone(), li.clone(), lv.clone()))
        return probe

    m1, m2 = _models()
    w1, d1, w2, d2 = (p.clone().requires_grad_() for p in params)
    spikes = _spikes(events, dt, t_end=n_steps * dt)
    hid = discrete_layer_forward(m1, spikes, w1, d1, max_delay_steps=k_max,
                                 _probe=probe_for(reads[0]))
    z = discrete_layer_forward(m2, hid, w2, d2, max_delay_steps=k_max,
                               _probe=probe_for(reads[1]))
    (z * g_out).sum().backward()
    torch.testing.assert_close(z, z_ref, rtol=1e-12, atol=1e-15)
    got = sorted(zip(torch.round(hid.times / dt).long().tolist(), hid.batch.tolist(),
                     hid.units.tolist(), strict=True))
    assert got == sorted((m, b, i) for m, b, i, _ in hid_ref)
    for a, b in zip((w1.grad, d1.grad, w2.grad, d2.grad), g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    assert any(int(r[2].max()) > n_steps for r in reads[1] + reads[0])  # reads beyond T
    for layer_reads, traj, src in ((reads[0], traj1, spikes), (reads[1], traj2, hid)):
        assert layer_reads
        for _step, e, arrival, li, lv in layer_reads:
            for row in range(e.numel()):
                b = int(src.batch[e[row]])
                for i in range(arrival.shape[1]):
                    s = int(arrival[row, i])
                    ref_v, ref_i = (traj[s][0][b][i], traj[s][1][b][i]) if s <= n_steps \
                        else (0.0, 0.0)
                    assert li[row, i].item() == pytest.approx(ref_i, rel=1e-12, abs=1e-18)
                    assert lv[row, i].item() == pytest.approx(ref_v, rel=1e-12, abs=1e-18)


def test_nothing_persists_between_calls():
    """F3.26: two identical calls give identical gradients; after a different batch, a call
    gives exactly what a fresh network gives."""
    dt = 1e-4
    events, params = _problem(0)
    other, _ = _problem(5)

    def grads(net, ev):
        net.zero_grad()
        z, _ = _run(net, _spikes(ev, dt))
        F.cross_entropy(z, LABELS).backward()
        return [p.grad.clone() for p in net.parameters()]

    net = _discrete_net(params, dt)
    first = grads(net, events)
    assert all(torch.equal(a, b) for a, b in zip(first, grads(net, events), strict=True))
    grads(net, other)
    again = grads(net, events)
    fresh = grads(_discrete_net(params, dt), events)
    assert all(torch.equal(a, b) for a, b in zip(again, fresh, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(again, first, strict=True))


def test_saved_state_does_not_grow_with_the_number_of_steps():
    """Only spike steps and one number per spike are saved (plus inputs and parameters)."""
    events, params = _problem(0)

    def saved(t_end):
        net = _discrete_net(params, 1e-4)
        _, n_bytes = measure_saved_bytes(lambda: _run(net, _spikes(events, 1e-4, t_end=t_end)))
        return n_bytes

    assert saved(0.06) == saved(0.24)


def test_spike_tape_grows_and_hard_limit_raises():
    events, params = _problem(0)
    m1, _ = _models()
    many = discrete_layer_forward(m1, _spikes(events, 1e-4), params[0] * 5, params[1],
                                  max_delay_steps=100)
    assert len(many) > 30  # no fixed-size tape: every spike is kept
    with pytest.raises(RuntimeError, match="max_spikes"):
        discrete_layer_forward(m1, _spikes(events, 1e-4), params[0] * 5, params[1],
                               max_delay_steps=100, max_spikes=10)


def test_errors():
    w = torch.ones(2, 3)
    adjoint = dict(time="discrete", gradient="adjoint")
    with pytest.raises(ValueError, match="CubaLIF"):
        ctsnn.Layer(ctsnn.LIF(2), w, **adjoint)
    empty = ctsnn.Spikes.empty(dt=1e-3, n_steps=5, batch_size=1, n_units=3)
    with pytest.raises(ValueError, match="max_delay_steps"):
        discrete_layer_forward(ctsnn.CubaLI(2), empty, w, max_delay_steps=-1)
    with pytest.raises(ValueError, match="delay must have shape"):
        ctsnn.Layer(ctsnn.CubaLI(2), w, delay=torch.zeros(2, 2), max_delay=3e-3, **adjoint)
    layer = ctsnn.Layer(ctsnn.CubaLI(2), w, **adjoint)
    with pytest.raises(ValueError, match="CubaLI readout"):  # a CubaLI hidden layer
        ctsnn.simulate([layer, layer], empty, readout="avg_exp")


# --------------------------------------------------------------------------- F3.27 optimiser
def test_separate_delay_adam_and_clamp_keep_delays_in_range():
    """F3.27: weights Adam with ease-in, delays a separate Adam (large lr), delays clamped to
    [0, max_delay] after every step; some steps would push delays out of range."""
    dt, k_max = 1e-3, 8
    events, params = _problem(0)
    net = _discrete_net(params, dt, max_delay=k_max * dt)
    opt_w = torch.optim.Adam(ctsnn.weight_parameters(net), lr=1e-2)
    sched = ease_in(opt_w, factor=0.01, multiplier=1.5)
    opt_d = torch.optim.Adam(ctsnn.delay_parameters(net), lr=4e-3)  # 4 steps per update
    assert len(ctsnn.delay_parameters(net)) == 2 and len(ctsnn.weight_parameters(net)) == 2
    pushed_out = 0
    for _ in range(8):
        opt_w.zero_grad()
        opt_d.zero_grad()
        F.cross_entropy(_run(net, _spikes(events, dt))[0], LABELS).backward()
        opt_w.step()
        opt_d.step()
        sched.step()
        d = torch.cat([x.detach().flatten() for x in ctsnn.delay_parameters(net)])
        pushed_out += int(((d < 0) | (d > k_max * dt)).sum())
        ctsnn.clamp_delays_(net)
        d = torch.cat([x.detach().flatten() for x in ctsnn.delay_parameters(net)])
        assert float(d.min()) >= 0.0 and float(d.max()) <= k_max * dt
    assert pushed_out > 0


# --------------------------------------------------------------------------- example
def test_example_runs(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [EXAMPLE.name, "--quick"])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "dt" in out and "rel. error" in out
