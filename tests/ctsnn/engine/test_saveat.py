"""State at any time (issue 9, item 9): ``saveat`` returns the engine's own trajectory at chosen
times — exact for closed-form models (right-continuous at arrivals and spikes), the Runge-Kutta
dense output otherwise — without changing the run; grid points only in discrete time."""

from __future__ import annotations

import math

import pytest
import torch

import ctsnn
from ctsnn import CubaLIF, Layer, Spikes, simulate
from ctsnn.compiled import use_kernels
from ctsnn.engine import run_population

pytestmark = pytest.mark.usefixtures("float64")

DT, T = 1e-3, 40


# --------------------------------------------------------------------------- references
def lif_current(s: float, spikes: list[float], i0: float, tau: float, ref: float = 0.0) -> float:
    """LIF (v_reset = 0, r = 1) from rest under a constant current, reset at ``spikes``."""
    last = max([t for t in spikes if t <= s], default=None)
    start = 0.0 if last is None else last + ref
    if s <= start:
        return 0.0
    return i0 * (1.0 - math.exp(-(s - start) / tau))


def cuba_reference(s: float, arrivals: list[tuple[float, float]], spikes: list[float],
                   tm: float, ts: float) -> tuple[float, float]:
    """CubaLIF (r = 1, v_reset = 0) from rest: (v, i) at ``s``, right-continuous. Jumps of
    ``i`` at the arrivals, ``v = 0`` at the spikes (an arrival before a spike at the same time)."""
    events = sorted([(t, 0, w) for t, w in arrivals] + [(t, 1, 0.0) for t in spikes])
    v = i = t = 0.0
    for te, kind, w in events:
        if te > s:
            break
        v, i = _cuba_flow(v, i, te - t, tm, ts)
        t = te
        if kind == 0:
            i += w
        else:
            v = 0.0
    return _cuba_flow(v, i, s - t, tm, ts)


def _cuba_flow(v: float, i: float, h: float, tm: float, ts: float) -> tuple[float, float]:
    em, es = math.exp(-h / tm), math.exp(-h / ts)
    return v * em + i * ts / (ts - tm) * (es - em), i * es


# --------------------------------------------------------------------------- LIF, current
def lif_run(saveat=None, ref=0.0, **kw):
    model = ctsnn.LIF(1, tau_mem=0.01, refractory=ref)
    return run_population(model, dt=DT, n_steps=T, batch_size=1,
                          current=torch.full((T, 1, 1), 1.5), time="continuous",
                          record=("v",), saveat=saveat, **kw)


@pytest.mark.parametrize("ref", [0.0, 0.0023])
def test_lif_saved_values_are_the_closed_form(ref):
    # before: run_population had no saveat argument (TypeError)
    plain = lif_run(ref=ref)
    spikes = plain.spikes.times.tolist()
    assert len(spikes) >= 3
    times = sorted([0.0, 0.0005, 0.0031234, 0.005, 0.017, 0.0250001, 0.0399999, 0.04,
                    *spikes[:2], spikes[0] + ref, spikes[1] + 0.5 * ref, spikes[0] - 1e-7])
    res = lif_run(times, ref=ref)
    saved = res.saved["v"]
    assert saved.shape == (len(times), 1, 1)
    for s, v in zip(times, saved[:, 0, 0].tolist(), strict=True):
        assert abs(v - lif_current(s, spikes, 1.5, 0.01, ref)) < 1e-12, s
    # at a spike: the value after the reset (right-continuous)
    for t in spikes[:2]:
        assert abs(float(saved[times.index(t), 0, 0])) < 1e-12
    # grid points: the step-end recordings
    for k in (5, 17, 25, 40):
        s = k * DT
        if s in times:
            assert float(saved[times.index(s), 0, 0]) == float(plain.states["v"][k - 1, 0, 0])


def test_saveat_leaves_the_run_bit_identical():
    for ref in (0.0, 0.0023):
        plain = lif_run(ref=ref)
        saved = lif_run(torch.linspace(0, T * DT, 97), ref=ref)
        assert torch.equal(plain.spikes.times, saved.spikes.times)
        assert torch.equal(plain.states["v"], saved.states["v"])
        assert torch.equal(plain.final_state.v, saved.final_state.v)


# --------------------------------------------------------------------------- CubaLIF, arrivals
TM, TS = 0.01, 0.005
IN_TIMES = [[0.0025, 0.003, 0.0121], [0.001, 0.0042, 0.0042]]  # per sample (input unit 0 / 1)
W = torch.tensor([[7.0, 1.5], [2.0, 3.0]], dtype=torch.float64)


def cuba_net(weight=W):
    return Layer(CubaLIF(2, tau_mem=TM, tau_syn=TS), weight.clone(), time="continuous")


def cuba_input():
    times, units, batch = [], [], []
    for b, ts in enumerate(IN_TIMES):
        for k, t in enumerate(ts):
            times.append(t)
            units.append(k % 2)
            batch.append(b)
    return Spikes.from_events(torch.tensor(times), torch.tensor(units), torch.tensor(batch),
                              dt=DT, n_steps=T, batch_size=2, n_units=2)


def cuba_arrivals(b: int, n: int) -> list[tuple[float, float]]:
    return [(t, float(W[n, k % 2])) for k, t in enumerate(IN_TIMES[b])]


def test_cubalif_saved_values_are_the_closed_form():
    plain = simulate(cuba_net(), cuba_input(), record=("v", "i"))
    sp = plain.spikes
    spikes = {(b, n): [] for b in range(2) for n in range(2)}
    for t, b, n in zip(sp.times.tolist(), sp.batch.tolist(), sp.units.tolist(), strict=True):
        spikes[(b, n)].append(t)
    assert sum(len(v) for v in spikes.values()) >= 2  # some neurons spike
    extra = [t for v in spikes.values() for t in v]
    times = sorted({0.0, 0.0007, 0.001, 0.0025, 0.003, 0.0042, 0.0121, 0.0123456, 0.02,
                    0.0333, 0.04, *extra})
    res = simulate(cuba_net(), cuba_input(), record=("v", "i"), saveat=times)
    assert res.saved["v"].shape == (len(times), 2, 2)
    for b in range(2):
        for n in range(2):
            for j, s in enumerate(times):
                v, i = cuba_reference(s, cuba_arrivals(b, n), spikes[(b, n)], TM, TS)
                assert abs(float(res.saved["v"][j, b, n].detach()) - v) < 1e-12, (b, n, s)
                assert abs(float(res.saved["i"][j, b, n].detach()) - i) < 1e-12, (b, n, s)
    # spikes are where the closed form reaches the threshold
    for (b, n), ts in spikes.items():
        for t in ts:
            v_before, _ = cuba_reference(t - 1e-13, cuba_arrivals(b, n), [u for u in ts if u < t],
                                         TM, TS)
            assert abs(v_before - 1.0) < 1e-9
    assert torch.equal(res.spikes.times, plain.spikes.times)
    assert torch.equal(res.states["v"], plain.states["v"])
    assert torch.equal(res.final_state.i, plain.final_state.i)


def test_jump_driven_lif_and_non_spiking_cubali():
    # LIF driven by jumps only takes the engine's jump-only path; CubaLI has no threshold
    tau = 0.01
    lif = Layer(ctsnn.LIF(2, tau_mem=tau), W.clone(), time="continuous")
    times = sorted({0.0, 0.001, 0.0025, 0.0026, 0.003, 0.0041, 0.0042, 0.0042001, 0.02, 0.04})
    res = simulate(lif, cuba_input(), record=("v",), saveat=times)
    plain = simulate(lif, cuba_input(), record=("v",))
    assert torch.equal(res.spikes.times, plain.spikes.times)
    assert res.spikes.times.numel() >= 1
    for b in range(2):
        for n in range(2):
            arrivals = sorted(cuba_arrivals(b, n))
            for j, s in enumerate(times):
                v, t = 0.0, 0.0
                for ta, w in arrivals:
                    if ta > s:
                        break
                    v = v * math.exp(-(ta - t) / tau) + w
                    v, t = (0.0 if v >= 1.0 else v), ta
                v *= math.exp(-(s - t) / tau)
                assert abs(float(res.saved["v"][j, b, n].detach()) - v) < 1e-12, (b, n, s)
    li = Layer(ctsnn.CubaLI(2, tau_mem=TM, tau_syn=TS), W.clone(), time="continuous")
    res = simulate(li, cuba_input(), record=("v", "i"), saveat=times)
    for b in range(2):
        for n in range(2):
            for j, s in enumerate(times):
                v, i = cuba_reference(s, cuba_arrivals(b, n), [], TM, TS)
                assert abs(float(res.saved["v"][j, b, n].detach()) - v) < 1e-12, (b, n, s)
                assert abs(float(res.saved["i"][j, b, n].detach()) - i) < 1e-12, (b, n, s)


def test_batch_first_saved_layout():
    res = simulate(cuba_net(), cuba_input(), record=("v",), saveat=[0.001, 0.002, 0.0025],
                   batch_first=True)
    assert res.saved["v"].shape == (2, 3, 2)


def test_gradient_of_a_saved_value_matches_finite_differences():
    s = [0.0123456]  # after neuron (0, 0)'s spike: depends on the spike time

    def value(weight):
        return simulate(cuba_net(weight), cuba_input(), record=("v",), saveat=s).saved["v"]

    layer = cuba_net()
    out = simulate(layer, cuba_input(), record=("v",), saveat=s).saved["v"]
    assert int(simulate(cuba_net(), cuba_input()).spikes.times.numel()) >= 1
    target = out[0, 0, 0] + 0.7 * out[0, 1, 1]
    (grad,) = torch.autograd.grad(target, layer.synapse.weight)
    eps = 1e-6
    fd = torch.zeros_like(W)
    for idx in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        wp, wm = W.clone(), W.clone()
        wp[idx] += eps
        wm[idx] -= eps
        with torch.no_grad():
            vp, vm = value(wp), value(wm)
        up, down = vp[0, 0, 0] + 0.7 * vp[0, 1, 1], vm[0, 0, 0] + 0.7 * vm[0, 1, 1]
        fd[idx] = (up - down) / (2 * eps)
    assert torch.allclose(grad, fd, rtol=1e-6, atol=1e-8), (grad, fd)
    assert bool((grad != 0).all())


# --------------------------------------------------------------------------- Runge-Kutta
def test_rk4_saved_values_converge_with_dt():
    times = [0.0013, 0.0027, 0.00415, 0.005]
    end = 0.005

    def saved(dt):
        n = round(end / dt)
        model = ctsnn.AdEx(1)
        return run_population(model, dt=dt, n_steps=n, batch_size=1, method="rk4",
                              current=torch.full((n, 1, 1), 0.5), time="continuous",
                              record=("v", "w"), saveat=times).saved["v"][:, 0, 0]

    ref = saved(1e-5)
    errors = [float((saved(dt) - ref).abs().max()) for dt in (1e-3, 5e-4, 2.5e-4)]
    assert errors[0] > 0
    assert errors[1] < errors[0] / 8 and errors[2] < errors[1] / 8, errors


# --------------------------------------------------------------------------- discrete time
def test_discrete_saveat_is_the_grid_state():
    model = ctsnn.LIF(1, tau_mem=0.01)
    kw = dict(dt=DT, n_steps=T, batch_size=1, current=torch.full((T, 1, 1), 1.5),
              record=("v",))
    with use_kernels(False):  # the same step loop for both (saveat never takes the fused LIF)
        plain = run_population(model, **kw)
    res = run_population(model, saveat=[0.0, 0.003, 0.017, 0.04], **kw)
    got = res.saved["v"][:, 0, 0]
    assert float(got[0]) == 0.0
    for j, k in enumerate((3, 17, 40)):
        assert float(got[j + 1]) == float(plain.states["v"][k - 1, 0, 0])
    with pytest.raises(ValueError, match=r"saveat\[1\] = 0.0035 s is not a grid point"):
        run_population(model, saveat=[0.001, 0.0035], **kw)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("saveat, error, message", [
    ([0.002, 0.001], ValueError, r"saveat must be sorted ascending: saveat\[1\]"),
    ([-0.001], ValueError, r"saveat\[0\] = -0.001 s is outside"),
    ([0.0401], ValueError, r"outside the simulated interval \[0, n_steps dt\]"),
    ([math.nan], ValueError, r"saveat\[0\] = nan is not finite"),
    (torch.zeros(2, 2), ValueError, "saveat must be a 1-D tensor"),
    ("0.01", TypeError, "saveat must be a 1-D tensor or a sequence"),
    ([0.001, "x"], TypeError, r"saveat\[1\] must be a real number"),
])
def test_bad_saveat_is_refused(saveat, error, message):
    with pytest.raises(error, match=message):
        lif_run(saveat)


def test_saveat_needs_record():
    with pytest.raises(ValueError, match="saveat: name the variables to save with record="):
        run_population(ctsnn.LIF(1), dt=DT, n_steps=T, batch_size=1, time="continuous",
                       saveat=[0.001])
    with pytest.raises(ValueError, match="saveat: name the variables to save with record="):
        simulate(cuba_net(), cuba_input(), saveat=[0.001])


def test_adjoint_refuses_saveat():
    layer = Layer(CubaLIF(2, tau_mem=TM, tau_syn=TS), W.clone(), time="continuous",
                  gradient="adjoint")
    with pytest.raises(ValueError, match="saveat= is not supported with gradient='adjoint'"):
        simulate(layer, cuba_input(), record=("v",), saveat=[0.001])
