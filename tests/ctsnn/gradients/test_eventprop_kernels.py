"""Compiled EventProp (``ctsnn.gradients.eventprop.kernels``) against the PyTorch reference.

Every returned gradient (input spike times, amplitudes, weights, delays) and the readout
values must agree in float64 to ~1e-10 relative, on random layers (hypothesis) and on the edge
cases: equal arrival times, arrivals on grid points and at t = 0, silent layers, batch > 1,
each readout, LIF spikes fired by an arrival, the spike-count regulariser. One finite-difference
check runs with the kernels on.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.gradients import eventprop as ep

F64 = torch.float64
pytestmark = [pytest.mark.usefixtures("float64_one_thread"),
              pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                 reason="kernels off (CTSNN_KERNELS=0) or no numba")]

DT = 2e-3
MODELS = {
    "CubaLIF": lambda n: ctsnn.CubaLIF(n, tau_mem=0.02, tau_syn=0.005, v_threshold=1.0),
    "LIF": lambda n: ctsnn.LIF(n, tau_mem=0.02, v_threshold=1.0),
    "CubaLI": lambda n: ctsnn.CubaLI(n, tau_mem=0.02, tau_syn=0.006),
    "LI": lambda n: ctsnn.LI(n, tau_mem=0.015),
}


def _run(model, events, weight, delay, *, readout=None, spike_reg=None, kernels=True,
         n_steps=30, coef_seed=0):
    """Forward + backward of one layer; returns the output value(s) and every gradient."""
    t_in, u_in, b_in, amp, bsz, n_in = events
    leaves = [x.clone().requires_grad_() for x in (t_in, amp, weight)]
    d = None if delay is None else delay.clone().requires_grad_()
    if d is not None:
        leaves.append(d)
    with use_kernels(kernels):
        spikes = ctsnn.Spikes(leaves[0], u_in, b_in, leaves[1], dt=DT, n_steps=n_steps,
                              batch_size=bsz, n_units=n_in)
        out = ep.layer_forward(model, spikes, leaves[2], d, readout=readout,
                               spike_reg=spike_reg)
        g = torch.Generator().manual_seed(coef_seed)
        if isinstance(out, ctsnn.Spikes):
            value = out.times
            coef = torch.randn(value.shape, generator=g, dtype=F64)
            # a smooth function of the spike times and, through spike_reg, of the counts
            loss = (coef * value).sum() + (value ** 2).sum()
        else:
            value = out
            coef = torch.randn(value.shape, generator=g, dtype=F64)
            loss = (coef * value).sum()
        grads = torch.autograd.grad(loss, leaves, allow_unused=True) if loss.requires_grad \
            else [None] * len(leaves)
    return value.detach(), [None if x is None else x.detach() for x in grads]


def _assert_same(model, events, weight, delay, **kw):
    ref_val, ref = _run(model, events, weight, delay, kernels=False, **kw)
    val, got = _run(model, events, weight, delay, kernels=True, **kw)
    torch.testing.assert_close(val, ref_val, rtol=1e-10, atol=1e-12)
    names = ["t_in", "amplitude", "weight", "delay"]
    for name, a, b in zip(names, got, ref, strict=False):
        if b is None:
            assert a is None or not bool(a.any()), name
            continue
        assert a is not None, name
        scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale, msg=name)
    return ref


def _events(seed, n_ev, bsz, n_in, *, grid=False, ties=False, t_max=0.04):
    g = torch.Generator().manual_seed(seed)
    t_in = torch.rand(n_ev, generator=g, dtype=F64) * t_max
    if grid:
        t_in = torch.round(t_in / DT) * DT
    if ties and n_ev > 1:
        t_in[1::2] = t_in[0:-1:2][: t_in[1::2].numel()]
    if n_ev:
        t_in[0] = 0.0
    u_in = torch.randint(0, n_in, (n_ev,), generator=g)
    b_in = torch.randint(0, bsz, (n_ev,), generator=g)
    amp = 0.8 + 0.4 * torch.rand(n_ev, generator=g, dtype=F64)
    return t_in, u_in, b_in, amp, bsz, n_in


def _params(seed, n, n_in, *, delay="synapse", w_mean=2.0, d_max=0.01, grid_delay=False):
    g = torch.Generator().manual_seed(seed + 1000)
    w = w_mean + 1.5 * torch.randn(n, n_in, generator=g, dtype=F64)
    if delay == "synapse":
        d = d_max * torch.rand(n, n_in, generator=g, dtype=F64)
    elif delay == "axon":
        d = d_max * torch.rand(n_in, generator=g, dtype=F64)
    else:
        d = None
    if d is not None and grid_delay:
        d = torch.round(d / DT) * DT
    return w, d


# --------------------------------------------------------------------------- hypothesis
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), model=st.sampled_from(["CubaLIF", "LIF", "CubaLI", "LI"]),
       n_ev=st.integers(0, 14), bsz=st.integers(1, 3), n_in=st.integers(1, 4),
       n=st.integers(1, 5), delay=st.sampled_from(["synapse", "axon", "none"]),
       grid=st.booleans(), ties=st.booleans(), readout=st.sampled_from(["avg_exp", "sum", "max"]),
       reg=st.booleans())
def test_random_layers_kernel_equals_reference(seed, model, n_ev, bsz, n_in, n, delay, grid,
                                               ties, readout, reg):
    events = _events(seed, n_ev, bsz, n_in, grid=grid, ties=ties)
    w, d = _params(seed, n, n_in, delay=delay, grid_delay=grid)
    nrn = MODELS[model](n)
    if nrn.spiking:
        _assert_same(nrn, events, w, d, spike_reg=(0.3, 1.0) if reg else None)
    else:
        _assert_same(nrn, events, 0.3 * w, d, readout=readout)


# --------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("model", ["CubaLIF", "LIF"])
def test_spiking_layer_batch_ties_grid_points_and_regulariser(model):
    events = _events(3, 40, 4, 5, grid=True, ties=True)
    w, d = _params(3, 8, 5, grid_delay=True)
    ref = _assert_same(MODELS[model](8), events, w, d, spike_reg=(0.5, 0.5))
    assert bool(ref[2].abs().sum() > 0) or model == "LIF"
    assert bool(ref[3].abs().sum() > 0)  # the comparison is not between zeros


def test_spiking_layer_many_spikes_per_neuron():
    events = _events(5, 60, 2, 3, t_max=0.05)
    w, d = _params(5, 6, 3, w_mean=6.0)
    ref = _assert_same(MODELS["CubaLIF"](6), events, w, d, n_steps=40)
    assert bool(ref[2].abs().sum() > 0)


def test_silent_layer_and_no_input_give_zero_gradients():
    events = _events(1, 10, 2, 3)
    w, d = _params(1, 4, 3, w_mean=-5.0)  # inhibitory: no spikes
    _, grads = _run(MODELS["CubaLIF"](4), events, w, d, kernels=True)
    assert all(g is None or not bool(g.any()) for g in grads)
    empty = _events(1, 0, 2, 3)
    for readout in ("max", "avg_exp", "sum"):
        _assert_same(MODELS["CubaLI"](4), empty, w, d, readout=readout)


@pytest.mark.parametrize("model", ["CubaLI", "LI"])
@pytest.mark.parametrize("readout", ["avg_exp", "sum", "max"])
def test_each_readout_batch_and_arrivals_past_the_end(model, readout):
    events = _events(7, 30, 3, 4, t_max=0.058)  # some arrivals s = t + D fall past T
    w, d = _params(7, 5, 4, w_mean=0.0, d_max=0.02)
    ref = _assert_same(MODELS[model](5), events, w, d, readout=readout)
    assert bool(ref[2].abs().sum() > 0)


def test_max_readout_at_rest_and_at_a_jump():
    """Negative weights only: the maximum is V(0) = v_leak (no gradient); one big LI jump: the
    maximum is just after that arrival (pinned, ``dL/dt`` gets ``g V'``)."""
    events = _events(2, 6, 2, 2)
    w = -torch.ones(3, 2, dtype=F64)
    _assert_same(MODELS["CubaLI"](3), events, w, None, readout="max")
    _assert_same(MODELS["LI"](3), events, -w, None, readout="max")


@pytest.mark.parametrize("model", ["LI", "CubaLI"])
@pytest.mark.parametrize("positive_first", [True, False])
@pytest.mark.parametrize("kernels", [False, True])
def test_max_readout_of_simultaneous_arrivals(model, positive_first, kernels):
    """Arrivals at one instant jump together: the maximum never sees the state between two of
    their jumps (hypothesis found the old forward taking ``V- + w+`` of a +/- tie at 24 ms as
    the maximum). LI: closed form of the true maximum; both paths: finite differences."""
    tau = 0.015
    nrn = MODELS[model](1)
    # input 0 at 10 ms (+1.0); inputs 1 (-0.3) and 2 (+0.6) arrive together at 12 ms, one
    # sent at 8 ms through a 4 ms delay (0.008 + 0.004 == 0.012 in float64): it is the first
    # of the tie in the arrivals' order
    early = 2 if positive_first else 1
    t_in = torch.tensor([0.010, 0.012, 0.008], dtype=F64)
    u_in = torch.tensor([0, 3 - early, early])
    b_in = torch.zeros(3, dtype=torch.long)
    amp = torch.ones(3, dtype=F64)
    w = torch.tensor([[1.0, -0.3, 0.6]], dtype=F64)
    d = torch.zeros(1, 3, dtype=F64)
    d[0, early] = 0.004
    assert float(t_in[2] + d[0, early]) == float(t_in[1])

    def value(w_):
        with use_kernels(kernels):
            spikes = ctsnn.Spikes(t_in, u_in, b_in, amp, dt=DT, n_steps=30, batch_size=1,
                                  n_units=3)
            return ep.layer_forward(nrn, spikes, w_, d, readout="max")[0, 0]

    wl = w.clone().requires_grad_()
    z = value(wl)
    (grad,) = torch.autograd.grad(z, wl)
    if model == "LI":  # V(12 ms+) = e^{-2/15} + 0.3 beats V(10 ms+) = 1: the true maximum
        expected = math.exp(-0.002 / tau) + 0.3
        assert abs(float(z) - expected) < 1e-12  # not e^{-2/15} + 0.6, between the jumps
    with torch.no_grad():
        eps = 1e-6
        for j in range(3):
            dw = torch.zeros_like(w)
            dw[0, j] = eps
            fd = (value(w + dw) - value(w - dw)) / (2 * eps)
            assert abs(float(grad[0, j]) - float(fd)) < 1e-6, (j, float(grad[0, j]), float(fd))
    _assert_same(nrn, (t_in, u_in, b_in, amp, 1, 3), w, d, readout="max")


def test_kernel_path_matches_finite_differences():
    """Two adjoint layers (CubaLIF -> CubaLI, max readout) with the kernels on: central
    differences of the loss, spike counts unchanged."""
    events = _events(11, 16, 2, 3)
    w1, d1 = _params(11, 6, 3)
    w2, d2 = _params(12, 2, 6, w_mean=0.3)
    coef = torch.tensor([[1.0, -0.5], [0.3, 0.8]], dtype=F64)
    t_in, u_in, b_in, amp, bsz, n_in = events

    def loss(w1_, d1_, w2_, d2_, t_):
        spikes = ctsnn.Spikes(t_, u_in, b_in, amp, dt=DT, n_steps=30, batch_size=bsz,
                              n_units=n_in)
        h = ep.layer_forward(MODELS["CubaLIF"](6), spikes, w1_, d1_)
        z = ep.layer_forward(MODELS["CubaLI"](2), h, w2_, d2_, readout="max")
        return (coef * z).sum(), len(h)

    base = [w1, d1, w2, d2, t_in]
    with use_kernels(True):
        args = [x.clone().requires_grad_() for x in base]
        value, count = loss(*args)
        assert count > 0
        grads = torch.autograd.grad(value, args)
        eps = 1e-7
        for which, idx in [(0, (1, 2)), (1, (0, 1)), (1, (4, 2)), (2, (1, 3)), (3, (0, 5)),
                           (4, (3,)), (4, (8,))]:
            vals = []
            for sign in (1, -1):
                p = [x.clone() for x in base]
                p[which][idx] += sign * eps
                v, c = loss(*p)
                assert c == count
                vals.append(v.item())
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert math.isclose(grads[which][idx].item(), fd, rel_tol=1e-5, abs_tol=1e-8), \
                (which, idx, grads[which][idx].item(), fd)


@pytest.mark.parametrize("readout", [None, "max", "avg_exp"])
def test_float32_layer_gets_float32_gradients_close_to_float64(readout):
    """The kernels compute in float64 and cast back: a float32 layer's gradients are float32
    and agree with the float64 reference to float32 rounding of the inputs."""
    events = _events(9, 20, 2, 3)
    w, d = _params(9, 4, 3, w_mean=2.0 if readout is None else 0.3)
    model = "CubaLIF" if readout is None else "CubaLI"
    ref_val, ref = _run(MODELS[model](4), events, w, d, readout=readout, kernels=False)
    ev32 = tuple(x.float() if torch.is_tensor(x) and x.is_floating_point() else x
                 for x in events)
    val, got = _run(MODELS[model](4).to(torch.float32), ev32, w.float(), d.float(),
                    readout=readout, kernels=True)
    assert val.dtype == torch.float32 and val.shape == ref_val.shape
    torch.testing.assert_close(val.double(), ref_val, rtol=1e-4, atol=1e-6)
    for a, b in zip(got, ref, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=2e-3, atol=2e-3 * float(b.abs().max()))


@pytest.mark.parametrize(("tau_m", "tau_s"), [(0.02, 0.005), (0.005, 0.02), (0.01, 0.01),
                                              (0.02, 0.02 * (1 + 1e-9))])
def test_fused_decays_equal_the_separate_closed_forms(tau_m, tau_s):
    """The backward's two-transcendental form of ``(e^{-h/tau_m}, e^{-h/tau_s}, kappa)``
    equals the separate exponentials and ``kappa`` to a few ulps in float64, times the
    condition number of ``exp(-h/tau)`` (``h/tau``: its argument is rounded differently)."""
    from ctsnn.engine.compiled import closed_forms as kernels

    ulp = 2.0 ** -52
    for h in (0.0, 1e-9, 3e-4, 0.007, 0.02, 0.05, 0.9):
        em, es, kappa = kernels.decays(h, tau_m, tau_s)
        tol = 8 * ulp * (1 + h / min(tau_m, tau_s))
        assert math.isclose(em, math.exp(-h / tau_m), rel_tol=tol, abs_tol=1e-300)
        assert math.isclose(es, math.exp(-h / tau_s), rel_tol=tol, abs_tol=1e-300)
        assert math.isclose(kappa, kernels.kappa(h, tau_m, tau_s), rel_tol=tol,
                            abs_tol=1e-300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_spikes=st.integers(1, 40),
       per_spike=st.sampled_from([1, 2, 3, 8]), t_end=st.sampled_from([1.0, 0.25, 1e-3, 0.3]))
def test_bucket_index_finds_the_same_next_spike_as_a_binary_search(seed, n_spikes, per_spike,
                                                                    t_end):
    """The spiking backward's bucketed next-spike lookup (first spike strictly after each
    arrival) equals ``searchsorted(side="right")``, with ties between spikes, arrivals on spike
    times, on bucket edges, at 0, at ``t_end`` and spikes crowded in one bucket."""
    import numpy as np

    from ctsnn.gradients.eventprop import layout

    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 50, size=n_spikes) * (t_end / 50)  # ties and exact bucket edges
    sp = np.sort(np.where(rng.random(n_spikes) < 0.5, grid, rng.random(n_spikes) * t_end))
    pad = 3  # the spikes sit at k0 = pad of a larger array, as a row of the kernel's layout
    sp_t = np.concatenate([np.full(pad, -1.0), sp, np.full(pad, 9.0)])
    k0, k1 = pad, pad + n_spikes
    nb = per_spike * n_spikes
    inv_w = nb / t_end
    first = np.full(nb + 1, -7, dtype=np.int64)
    layout.next_spike_index(k0, k1, sp_t, inv_w, first)
    arrivals = np.concatenate([sp, np.nextafter(sp, -1.0), np.nextafter(sp, 2.0), [0.0],
                               np.arange(nb + 1) * (t_end / nb), rng.random(50) * t_end])
    for s in arrivals:
        want = k0 + int(np.searchsorted(sp, s, side="right"))
        if want >= k1:
            continue  # no spike after s: the kernel skips the arrival before the lookup
        k = first[layout.bucket(s, inv_w, nb)]
        assert k0 <= k <= want
        while sp_t[k] <= s:
            k += 1
        assert k == want, (s, k, want)


@pytest.mark.parametrize(("tau_m", "tau_s"), [(0.02, 0.005), (0.005, 0.02), (0.01, 0.01),
                                              (0.02, 0.02 * (1 + 1e-9))])
@pytest.mark.parametrize("model", ["CubaLIF", "LIF"])
def test_factored_decays_equal_the_per_pair_closed_forms(monkeypatch, tau_m, tau_s, model):
    """The spiking backward's factored decays (shared time constants: products of per-spike,
    per-input-spike and per-synapse exponentials) give the gradients of the per-pair
    ``decays`` path (forced by a zero exponent range) to ~1e-12 relative, in float64."""
    from ctsnn.gradients.eventprop import readout_kernels

    nrn = (ctsnn.CubaLIF(6, tau_mem=tau_m, tau_syn=tau_s, v_threshold=1.0) if model == "CubaLIF"
           else ctsnn.LIF(6, tau_mem=tau_m, v_threshold=1.0))
    events = _events(7, 80, 2, 3, t_max=0.06)
    w, d = _params(7, 6, 3, w_mean=6.0, d_max=0.02)
    _, fast = _run(nrn, events, w, d, n_steps=50)
    monkeypatch.setattr(readout_kernels, "FACTOR_RANGE", 0.0)
    _, slow = _run(nrn, events, w, d, n_steps=50)
    assert bool(slow[3].abs().sum() > 0)
    for name, a, b in zip(["t_in", "amplitude", "weight", "delay"], fast, slow, strict=True):
        scale = float(b.abs().max())
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * scale, msg=name)


def test_factors_off_for_per_neuron_time_constants_and_long_spans():
    """No factored decays (empty factors: the per-pair path) when the neurons' time
    constants differ or an exponent would leave the safe range."""
    import numpy as np

    from ctsnn.gradients.eventprop import kernels as kern

    t = np.array([0.0, 0.01])
    d = np.full((2, 3), 0.005)
    same, other = np.full(2, 0.02), np.array([0.02, 0.03])
    assert kern._factors(t, d, True, 6, same, same / 4, 0.05).shape == (12,)
    assert kern._factors(t, d, False, 6, same, same / 4, 0.05).shape == (12,)
    assert kern._factors(t, d, True, 6, other, same / 4, 0.05).size == 0
    assert kern._factors(t, d, True, 6, same, other, 0.05).size == 0
    assert kern._factors(t, d, True, 6, same, same / 4, 300 * 0.005 * 1.01).size == 0


def test_phi_series_equals_expm1_form_on_its_range():
    """``closed_forms.phi_series`` (``phi1`` for ``x <= 0.5`` in the spiking backward and the
    forward flow's ``decays``, instead of ``expm1``) equals ``-expm1(-x)/x`` within 2 ulp on
    ``[0, 0.5]`` (and 1 at 0)."""
    import numpy as np

    from ctsnn.engine.compiled import closed_forms as kern

    assert kern.phi_series(0.0) == 1.0
    for x in np.concatenate([np.linspace(1e-12, 0.5, 2001), np.geomspace(1e-300, 1e-3, 50)]):
        want = -math.expm1(-x) / x
        assert abs(kern.phi_series(float(x)) - want) <= 2 * math.ulp(want), x


@pytest.mark.parametrize("model", ["CubaLIF", "LIF"])
def test_backward_of_input_spikes_out_of_sample_order(monkeypatch, model):
    """The compiled spiking backward reads a sample's input spikes directly when they stand in
    :class:`ctsnn.Spikes` order and through the sample-grouping permutation otherwise: the
    same layer with its saved input spikes shuffled gives the shuffled ``dL/dt_in``, ``dL/da``
    and the same ``dL/dW``, ``dL/dD`` (float64, to rounding)."""
    from ctsnn.gradients.eventprop import kernels as kern

    calls = []
    orig = kern.spiking_backward

    def capture(cfg, saved, g_t, need, reg, need_tau=(False, False)):
        calls.append((cfg, saved, g_t, need, reg, need_tau))
        return orig(cfg, saved, g_t, need, reg, need_tau)

    monkeypatch.setattr(kern, "spiking_backward", capture)
    nrn = (ctsnn.CubaLIF(5, tau_mem=0.02, tau_syn=0.005, v_threshold=1.0) if model == "CubaLIF"
           else ctsnn.LIF(5, tau_mem=0.02, v_threshold=1.0))
    events = _events(11, 90, 3, 4, t_max=0.05)
    w, d = _params(11, 5, 4, w_mean=5.0, d_max=0.02)
    _run(nrn, events, w, d, n_steps=40)
    cfg, saved, g_t, need, reg, need_tau = calls[0]
    assert saved[6].numel() > 0  # the layer fires
    perm = torch.randperm(saved[0].numel(), generator=torch.Generator().manual_seed(3))
    shuffled = list(saved)
    for k in (0, 3, 4, 5):  # t_in, b_in, j_in, v_in
        shuffled[k] = saved[k][perm]
    want = orig(cfg, saved, g_t, need, reg, need_tau)
    got = orig(cfg, tuple(shuffled), g_t, need, reg, need_tau)
    assert bool(want[0].abs().sum() > 0)  # (a LIF spike's time does not move with W)
    for k, name in enumerate(["t_in", "weight", "delay", "amplitude"]):
        a, b = got[k], want[k]
        if name in ("t_in", "amplitude"):
            b = b[perm]
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13 * float(b.abs().max()),
                                   msg=name)
