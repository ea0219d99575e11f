"""Time-constant gradients of the closed-form EventProp (``ctsnn.gradients.eventprop``).

``dL/dtau_mem`` and ``dL/dtau_syn`` of LIF / CubaLIF (spike-time losses) and LI / CubaLI
(``avg_exp``, ``sum`` and ``max`` readouts) against fourth-order central finite differences of
the loss (float64), with the PyTorch reference and with the compiled kernels on, per-neuron and
shared (scalar) time constants, ``tau_mem == tau_syn``; the divided differences of ``exp`` against
mpmath; one network against the generic adjoint; the refusals (recurrent layers, integrand
readouts, other learnable parameters).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import mpmath
import numba
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.gradients import eventprop as ep
from ctsnn.gradients.adjoint import adjoint_layer
from ctsnn.gradients.eventprop import kernels as ep_kernels
from ctsnn.gradients.eventprop import recurrent_kernels, tau_kernels
from ctsnn.gradients.eventprop.common import dd_exp, divided_q
from ctsnn.synapses import RecurrentDense

F64 = torch.float64
DT, N_STEPS, N_IN, N, BSZ = 2e-3, 30, 4, 3, 2
pytestmark = pytest.mark.usefixtures("float64_one_thread")

CASES = [("CubaLIF", None), ("LIF", None), ("CubaLI", "avg_exp"), ("CubaLI", "sum"),
         ("CubaLI", "max"), ("LI", "avg_exp"), ("LI", "sum"), ("LI", "max")]


def _model(kind: str, tau_m, tau_s):
    if kind == "CubaLIF":
        return ctsnn.CubaLIF(N, tau_mem=tau_m, tau_syn=tau_s, v_threshold=1.0, learn_tau=True)
    if kind == "LIF":
        return ctsnn.LIF(N, tau_mem=tau_m, v_threshold=1.0, learn_tau=True)
    if kind == "CubaLI":
        return ctsnn.CubaLI(N, tau_mem=tau_m, tau_syn=tau_s, learn_tau=True)
    return ctsnn.LI(N, tau_mem=tau_m, learn_tau=True)


def _network(kind: str, seed: int, per: int = 5):
    g = torch.Generator().manual_seed(seed)
    e = N_IN * per
    t = torch.rand(e, generator=g, dtype=F64) * N_STEPS * DT * 0.8
    u = torch.randint(0, N_IN, (e,), generator=g)
    b = torch.randint(0, BSZ, (e,), generator=g)
    if kind in ("CubaLIF", "LIF"):  # excitatory enough to fire
        w = torch.rand(N, N_IN, generator=g, dtype=F64) * (3.0 if kind == "CubaLIF" else 1.8)
    else:
        w = torch.randn(N, N_IN, generator=g, dtype=F64)
    d = torch.rand(N, N_IN, generator=g, dtype=F64) * 0.01
    coef = torch.randn(1024, generator=g, dtype=F64)
    return t, u, b, w, d, coef


def _loss(kind, readout, tau_m, tau_s, seed, *, kernels=False, grads=True):
    """The loss and, with ``grads``, ``(dL/dtau_m, dL/dtau_s)`` (``[N]`` each, or None)."""
    t, u, b, w, d, coef = _network(kind, seed)
    model = _model(kind, tau_m, tau_s)
    with use_kernels(kernels):
        spikes = ctsnn.Spikes(t, u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ, n_units=N_IN)
        out = ep.layer_forward(model, spikes, w, d, readout=readout)
        if isinstance(out, ctsnn.Spikes):  # a smooth function of the spike times
            k = out.times.numel()
            loss = (coef[:k] * out.times).sum() + 30.0 * (out.times ** 2).sum()
        else:
            loss = (coef[: out.numel()].reshape(out.shape) * out).sum()
        if not grads:
            return loss.item()
        params = [model.tau_mem] + ([model.tau_syn] if hasattr(model, "tau_syn") else [])
        g = torch.autograd.grad(loss, params, allow_unused=True)  # (the backward also checks
    return loss.item(), g[0], (g[1] if len(g) > 1 else None)  # kernels_enabled: inside)


def _fd(kind, readout, tau_m, tau_s, seed, which, eps, kernels=False):
    """Fourth-order central differences of the loss w.r.t. each entry of tau ``which``."""
    out = []
    for i in range(N):
        vals = []
        for step in (-2, -1, 1, 2):
            taus = [tau_m.clone(), tau_s.clone()]
            taus[which][i] += step * eps
            vals.append(_loss(kind, readout, *taus, seed, kernels=kernels, grads=False))
        out.append((vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * eps))
    return torch.tensor(out, dtype=F64)


def _check_fd(kind, readout, tau_m, tau_s, seed, *, kernels=False, tol=1e-7, eps=1e-6):
    _, g_m, g_s = _loss(kind, readout, tau_m, tau_s, seed, kernels=kernels)
    cuba = kind.startswith("Cuba")
    assert (g_s is not None) == cuba
    for which, g in enumerate([g_m, g_s] if cuba else [g_m]):
        fd = _fd(kind, readout, tau_m, tau_s, seed, which, eps, kernels)
        scale = fd.abs().max()
        if kind == "LIF":  # spike times are arrival times: no dependence on tau_mem
            assert float(scale) < 1e-8 and float(g.abs().max()) == 0.0
            continue
        assert float(scale) > 0
        err = float((g - fd).abs().max() / scale)
        assert err < tol, (kind, readout, which, g.tolist(), fd.tolist())
    return g_m, g_s


@pytest.mark.parametrize(("kind", "readout"), CASES)
@pytest.mark.parametrize("kernels", [False, True])
def test_tau_gradients_match_finite_differences(kind, readout, kernels):
    tau_m = torch.tensor([0.02, 0.026, 0.016], dtype=F64)
    tau_s = torch.tensor([0.005, 0.0035, 0.006], dtype=F64)
    _check_fd(kind, readout, tau_m, tau_s, seed=0, kernels=kernels)


@pytest.mark.parametrize(("kind", "readout"), [c for c in CASES if c[1] != "max"][:4])
def test_tau_gradients_shared_scalar_time_constants(kind, readout):
    """A model built from scalar time constants (broadcast to ``[N]``)."""
    t, u, b, w, d, coef = _network(kind, 1)
    model = _model(kind, 0.015, 0.004)
    spikes = ctsnn.Spikes(t, u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ, n_units=N_IN)
    out = ep.layer_forward(model, spikes, w, d, readout=readout)
    assert model.tau_mem.shape == (N,)
    val = out.times if isinstance(out, ctsnn.Spikes) else out.reshape(-1)
    (val * coef[: val.numel()]).sum().backward()
    assert model.tau_mem.grad is not None and model.tau_mem.grad.shape == (N,)
    _check_fd(kind, readout, torch.full((N,), 0.015, dtype=F64),
              torch.full((N,), 0.004, dtype=F64), seed=1)


@pytest.mark.parametrize(("kind", "readout"),
                         [("CubaLIF", None), ("CubaLI", "avg_exp"), ("CubaLI", "sum")])
def test_tau_gradients_equal_time_constants(kind, readout):
    """``tau_mem == tau_syn``: the closed forms have no singularity there. The gradient at
    equality equals the one at ``tau_syn = tau_mem (1 + 1e-12)`` and the mean of those at
    ``tau_syn = tau_mem (1 ± 1e-6)`` (where the finite differences above are tight; the
    engine's forward itself is only ~1e-7 accurate closer to equality), and the finite
    differences to the accuracy the forward's near-equal branch allows (~1e-5)."""
    tau_m = torch.tensor([0.01, 0.013, 0.008], dtype=F64)
    _, g_m, g_s = _loss(kind, readout, tau_m, tau_m.clone(), 0)
    _, n_m, n_s = _loss(kind, readout, tau_m, tau_m * (1 + 1e-12), 0)
    _, p_m, p_s = _loss(kind, readout, tau_m, tau_m * (1 + 1e-6), 0)
    _, m_m, m_s = _loss(kind, readout, tau_m, tau_m * (1 - 1e-6), 0)
    for a, near, mean in ((g_m, n_m, 0.5 * (p_m + m_m)), (g_s, n_s, 0.5 * (p_s + m_s))):
        assert float((a - near).abs().max() / a.abs().max()) < 1e-9
        assert float((a - mean).abs().max() / a.abs().max()) < 1e-8
    for which, g in enumerate((g_m, g_s)):
        fd = _fd(kind, readout, tau_m, tau_m.clone(), 0, which, 1e-6)
        assert float((g - fd).abs().max() / fd.abs().max()) < 1e-5


@pytest.mark.parametrize(("kind", "readout"), CASES)
def test_kernels_equal_reference_with_learnable_taus(kind, readout):
    """Every gradient (tau, weights, delays, input times) with the kernels on equals the
    reference's to ~1e-10 relative when the time constants are learnable."""
    res = []
    for kernels in (False, True):
        t, u, b, w, d, coef = _network(kind, 2)
        model = _model(kind, torch.tensor([0.02, 0.026, 0.016]), torch.tensor([0.005, 0.0035,
                                                                               0.006]))
        leaves = [t.clone().requires_grad_(), w.clone().requires_grad_(),
                  d.clone().requires_grad_()]
        with use_kernels(kernels):
            spikes = ctsnn.Spikes(leaves[0], u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ,
                                  n_units=N_IN)
            out = ep.layer_forward(model, spikes, leaves[1], leaves[2], readout=readout)
            val = out.times if isinstance(out, ctsnn.Spikes) else out.reshape(-1)
            loss = (val * coef[: val.numel()]).sum()
            params = leaves + [p for p in model.parameters()]
            res.append(torch.autograd.grad(loss, params, allow_unused=True))
    for a, c in zip(*res, strict=True):
        if a is None or c is None:
            assert a is None and c is None
            continue
        assert torch.allclose(a, c, rtol=1e-10, atol=1e-10 * float(c.abs().max()))


def test_tau_gradients_match_generic_adjoint():
    """The closed form against the generic adjoint (which integrates the adjoint ODE)."""
    t, u, b, w, d, coef = _network("CubaLIF", 3)
    grads = []
    for closed in (True, False):
        model = _model("CubaLIF", torch.tensor([0.02, 0.026, 0.016]),
                       torch.tensor([0.005, 0.0035, 0.006]))
        spikes = ctsnn.Spikes(t, u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ, n_units=N_IN)
        out = (ep.layer_forward(model, spikes, w, d) if closed
               else adjoint_layer(model, spikes, w, d)[0])
        order = torch.argsort(out.batch * 1000 + out.units)  # per neuron, then time (stable)
        val = out.times[order]
        loss = (val * coef[: val.numel()]).sum() + 30.0 * (val ** 2).sum()
        grads.append(torch.autograd.grad(loss, [model.tau_mem, model.tau_syn]))
    for a, c in zip(*grads, strict=True):
        assert torch.allclose(a, c, rtol=1e-6, atol=1e-6 * float(c.abs().max()))


@pytest.mark.slow
@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["CubaLIF", "CubaLI", "LI"]),
       ratio=st.floats(0.2, 5.0))
def test_tau_gradients_random_networks(seed, kind, ratio):
    """Random small networks and time-constant ratios: gradients match finite differences."""
    readout = None if kind == "CubaLIF" else "avg_exp"
    tau_m = torch.tensor([0.02, 0.015, 0.025], dtype=F64)
    tau_s = tau_m * ratio * torch.tensor([1.0, 0.9, 1.1], dtype=F64)
    _check_fd(kind, readout, tau_m, tau_s, seed, tol=1e-6)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 4), scale=st.floats(-7.0, 3.0), data=st.data())
def test_dd_exp_matches_high_precision(n, scale, data):
    """Divided differences of exp, points ``<= 0`` with repeats, against mpmath (~1e-14)."""
    pts = [-(10.0 ** scale) * data.draw(st.floats(0.0, 1.0)) for _ in range(n)]
    if data.draw(st.booleans()):
        pts[1] = pts[0]
    mpmath.mp.dps = 150
    q = [mpmath.mpf(p) + i * mpmath.mpf("1e-40") for i, p in enumerate(pts)]

    def dd(a):
        return mpmath.exp(a[0]) if len(a) == 1 else (dd(a[1:]) - dd(a[:-1])) / (a[-1] - a[0])

    want = float(dd(q))
    got = float(dd_exp(*[torch.tensor(p, dtype=F64) for p in pts]))
    assert abs(got - want) <= 1e-14 * abs(want) + 1e-300


def test_refusals():
    spikes = ctsnn.Spikes(torch.tensor([0.001], dtype=F64), torch.tensor([0]),
                          torch.tensor([0]), dt=DT, n_steps=N_STEPS, batch_size=1, n_units=1)
    w = torch.ones(N, 1, dtype=F64)
    thr = ctsnn.CubaLIF(N, learn_threshold=True)
    assert not ep.supports(thr)
    with pytest.raises(NotImplementedError, match="v_threshold is learnable"):
        ep.layer_forward(thr, spikes, w)
    tau = _model("CubaLIF", 0.02, 0.005)
    assert ep.supports(tau) and not ep.supports(tau, integrand=True)
    li = _model("LI", 0.02, None)
    assert not ep.supports(li, integrand=True)
    with pytest.raises(NotImplementedError, match="integrand"):
        ep.layer_forward(li, spikes, w, integrand=lambda t, s: s.v)


def test_simulate_routes_learnable_taus():
    """``gradient='adjoint'``: a feed-forward layer with learnable time constants takes the
    closed form (same gradient as calling it directly); a recurrent one the generic adjoint."""
    t, u, b, w, d, coef = _network("CubaLI", 4)
    spikes = ctsnn.Spikes(t, u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ, n_units=N_IN)
    got = []
    for direct in (True, False):
        model = _model("CubaLI", 0.02, 0.005)
        if direct:
            z = ep.layer_forward(model, spikes, w, d, readout="avg_exp")
        else:
            layer = ctsnn.Layer(model, w.clone(), delay=d.clone(), max_delay=0.02,
                                gradient="adjoint")
            z = ctsnn.simulate([layer], spikes, time="continuous", readout="avg_exp").output
        (z.reshape(-1) * coef[: z.numel()]).sum().backward()
        got.append(model.tau_mem.grad.clone())
    assert torch.allclose(got[0], got[1], rtol=1e-10, atol=0)


@pytest.mark.slow
def test_time_constants_example_reduces_the_loss(capsys, monkeypatch):
    path = Path(__file__).resolve().parents[3] / "examples" / "eventprop_time_constants.py"
    monkeypatch.setattr(sys, "argv", [path.name, "--steps", "6"])
    runpy.run_path(str(path), run_name="__main__")
    losses = [float(line.split()[3]) for line in capsys.readouterr().out.splitlines()
              if line.startswith("step")]
    assert len(losses) == 2 and losses[-1] < losses[0]


# =========================================================================== recurrent layers
def _recurrent_loss(kind, tau_m, tau_s, seed, *, generic=False, grads=True):
    """A recurrent layer's spike-time loss and ``(dL/dtau_m, dL/dtau_s)``: the compiled
    closed form (``recurrent_layer_forward``) or the generic adjoint (``generic``)."""
    t, u, b, w, d, coef = _network(kind, seed, per=8)
    g = torch.Generator().manual_seed(seed + 7)
    rec_w = 0.8 * torch.randn(N, N, generator=g, dtype=F64)
    rec_d = 0.002 + 0.01 * torch.rand(N, N, generator=g, dtype=F64)
    model = _model(kind, tau_m, tau_s)
    spikes = ctsnn.Spikes(t, u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ, n_units=N_IN)
    if generic:
        rec = RecurrentDense(weight=rec_w, delay=rec_d, learn_weight=False)
        out = adjoint_layer(model, spikes, w, d, recurrent=rec)[0]
    else:
        out = ep.recurrent_layer_forward(model, spikes, w, d, rec_w, rec_d)
    val = out.times[torch.argsort(out.batch * N + out.units, stable=True)]
    loss = (coef[: val.numel()] * val).sum() + 30.0 * (val ** 2).sum()
    if not grads:
        return loss.item()
    params = [model.tau_mem] + ([model.tau_syn] if kind == "CubaLIF" else [])
    return val.numel(), torch.autograd.grad(loss, params)


@pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off or no numba")
@pytest.mark.parametrize("kind", ["CubaLIF", "LIF"])
@pytest.mark.parametrize("equal", [False, True])
def test_recurrent_tau_gradients(kind, equal):
    """Compiled recurrent backward: against fourth-order finite differences (1e-7; equal time
    constants 1e-6) and the generic adjoint (1e-9, also at equal time constants: the model's
    flow is differentiable there, ctsnn.models.exponentials; before, its derivative w.r.t.
    tau_syn vanished at the tie and this network's gradient read 42.78 against 43.92)."""
    tau_m = torch.tensor([0.02, 0.026, 0.016], dtype=F64)
    tau_s = tau_m.clone() if equal else torch.tensor([0.005, 0.0035, 0.006], dtype=F64)
    k, grads = _recurrent_loss(kind, tau_m, tau_s, 5)
    assert recurrent_kernels.last_refusal is None and k >= 10
    _, ref = _recurrent_loss(kind, tau_m, tau_s, 5, generic=True)
    for which, g in enumerate(grads):
        scale = float(ref[which].abs().max())
        assert torch.allclose(g, ref[which], rtol=0, atol=1e-9 * max(scale, 1e-12))
        rows = []
        for i in range(N):
            vals = []
            for step in (-2, -1, 1, 2):
                taus = [tau_m.clone(), tau_s.clone()]
                taus[which][i] += step * 1e-6
                vals.append(_recurrent_loss(kind, *taus, 5, grads=False))
            rows.append((vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / 12e-6)
        fd = torch.tensor(rows, dtype=F64)
        if kind == "LIF":
            assert float(fd.abs().max()) < 1e-8 and float(g.abs().max()) == 0.0
            continue
        assert float((g - fd).abs().max() / fd.abs().max()) < (1e-6 if equal else 1e-7)


def test_simulate_recurrent_layer_takes_the_closed_form_with_learnable_taus():
    model = _model("CubaLIF", 0.02, 0.005)
    rec = RecurrentDense(weight=0.5 * torch.ones(N, N, dtype=F64), delay=0.004 * torch.ones(N, N,
                         dtype=F64))
    layer = ctsnn.Layer(model, 2.0 * torch.ones(N, N_IN, dtype=F64), recurrent=rec,
                        gradient="adjoint")
    t, u, b, *_ = _network("CubaLIF", 6)
    spikes = ctsnn.Spikes(t, u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ, n_units=N_IN)
    recurrent_kernels.last_refusal = "unset"
    out = ctsnn.simulate([layer], spikes, time="continuous").spikes
    out.times.sum().backward()
    assert model.tau_mem.grad is not None and model.tau_syn.grad is not None
    if kernels_enabled(torch.zeros(1)):
        assert recurrent_kernels.last_refusal is None  # the compiled backward ran


@pytest.mark.skipif(not kernels_enabled(torch.zeros(1)) or numba.config.NUMBA_NUM_THREADS < 2,
                    reason="kernels off, no numba or one numba thread")
def test_compiled_tau_gradients_same_on_one_and_two_threads(monkeypatch):
    """The chunked parallel backward (forced here) sums each chunk's ``dL/dtau`` in chunk
    order: 1 and 2 threads give bit-identical time-constant gradients, equal to the
    reference's to 1e-10."""
    monkeypatch.setattr(ep_kernels, "_PARALLEL_PAIRS", 0)
    tau_m = torch.tensor([0.02, 0.026, 0.016], dtype=F64)
    tau_s = torch.tensor([0.005, 0.0035, 0.006], dtype=F64)
    before = torch.get_num_threads()
    got = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            got.append(_loss("CubaLIF", None, tau_m, tau_s, 0, kernels=True)[1:])
    finally:
        torch.set_num_threads(before)
    ref = _loss("CubaLIF", None, tau_m, tau_s, 0, kernels=False)[1:]
    for a, b, c in zip(*got, ref, strict=True):
        assert torch.equal(a, b)
        assert torch.allclose(a, c, rtol=1e-10, atol=1e-10 * float(c.abs().max()))


@pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off or no numba")
@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 4), scale=st.floats(-7.0, 3.0), data=st.data())
def test_compiled_divided_differences_equal_the_reference(n, scale, data):
    """``tau_kernels.dd2/dd3/dd4`` (numba, scalar) against :func:`taus.dd_exp` (~1e-14)."""
    pts = [-(10.0 ** scale) * data.draw(st.floats(0.0, 1.0)) for _ in range(n)]
    if data.draw(st.booleans()):
        pts[-1] = pts[0]
    fn = {2: tau_kernels.dd2, 3: tau_kernels.dd3, 4: tau_kernels.dd4}[n]
    want = float(dd_exp(*[torch.tensor(p, dtype=F64) for p in pts]))
    assert abs(fn(*pts, tau_kernels.scratch()) - want) <= 1e-14 * abs(want) + 1e-300


@pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off or no numba")
@settings(max_examples=200, deadline=None)
@given(h=st.floats(0.0, 2.0), tm=st.floats(1e-3, 0.1), ratio=st.sampled_from(
    [1.0, 1.0 + 1e-12, 1.0 - 1e-9, 1.001, 0.3, 3.0, 50.0]))
def test_two_rate_forms_equal_the_divided_differences(h, tm, ratio):
    """``tau_kernels.two_rate`` (one expm1) against :func:`taus.dd_exp` (1e-14 relative)."""
    ts = tm * ratio
    got = tau_kernels.two_rate(h, tm, ts)
    xm, xs = (torch.tensor(-h / tau, dtype=F64) for tau in (tm, ts))
    want = [torch.exp(xm), torch.exp(xs), dd_exp(xm, xs), dd_exp(xm, xm, xs), dd_exp(xs, xs, xm)]
    for a, b in zip(got, want, strict=True):
        assert abs(a - float(b)) <= 1e-14 * abs(float(b)) + 1e-300


@pytest.mark.parametrize(("kind", "readout"), [("CubaLIF", None), ("CubaLI", "avg_exp"),
                                               ("LI", "max")])
@pytest.mark.parametrize("kernels", [False, True])
def test_float32_time_constants(kind, readout, kernels):
    """A float32 model: gradients come back in float32, close to float64's (the forward's float32
    spike times bound the agreement)."""
    t, u, b, w, d, coef = _network(kind, 0)
    grads = {}
    for dtype in (torch.float32, F64):
        model = _model(kind, torch.tensor([0.02, 0.026, 0.016], dtype=dtype),
                       torch.tensor([0.005, 0.0035, 0.006], dtype=dtype))
        with use_kernels(kernels):
            spikes = ctsnn.Spikes(t.to(dtype), u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ,
                                  n_units=N_IN)
            out = ep.layer_forward(model, spikes, w.to(dtype), d.to(dtype), readout=readout)
            val = out.times if isinstance(out, ctsnn.Spikes) else out.reshape(-1)
            (val * coef[: val.numel()].to(dtype)).sum().backward()
        grads[dtype] = model.tau_mem.grad
    assert grads[torch.float32].dtype == torch.float32
    ref = grads[F64]
    assert torch.allclose(grads[torch.float32].double(), ref, rtol=1e-3,
                          atol=1e-3 * float(ref.abs().max()))


@pytest.mark.parametrize("kind", ["CubaLIF", "LIF"])
def test_tau_gradients_with_spike_reg_kernel_equals_reference(kind):
    """With the spike-count regulariser (a heuristic dL/dV before each spike, so no finite
    differences), the compiled time-constant gradients equal the reference's (1e-10)."""
    res = []
    for kernels in (False, True):
        t, u, b, w, d, coef = _network(kind, 2)
        model = _model(kind, torch.tensor([0.02, 0.026, 0.016], dtype=F64),
                       torch.tensor([0.005, 0.0035, 0.006], dtype=F64))
        with use_kernels(kernels):
            spikes = ctsnn.Spikes(t, u, b, dt=DT, n_steps=N_STEPS, batch_size=BSZ,
                                  n_units=N_IN)
            out = ep.layer_forward(model, spikes, w, d, spike_reg=(0.5, 1.0))
            (out.times * coef[: out.times.numel()]).sum().backward()
        res.append([p.grad for p in model.parameters()])
    for a, c in zip(*res, strict=True):
        assert float(c.abs().max()) > 0  # LIF too: the regulariser drives lam_V
        assert torch.allclose(a, c, rtol=1e-10, atol=1e-10 * float(c.abs().max()))


@pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="kernels off or no numba")
def test_recurrent_fallback_returns_tau_gradients(monkeypatch):
    """Where the recurrent kernel refuses, the generic-adjoint fallback gives the time
    constants' gradients too (equal to the compiled ones)."""
    tau_m = torch.tensor([0.02, 0.026, 0.016], dtype=F64)
    tau_s = torch.tensor([0.005, 0.0035, 0.006], dtype=F64)
    _, compiled = _recurrent_loss("CubaLIF", tau_m, tau_s, 5)
    monkeypatch.setattr(recurrent_kernels, "recurrent_backward", lambda *a, **k: None)
    _, fallback = _recurrent_loss("CubaLIF", tau_m, tau_s, 5)
    for a, c in zip(compiled, fallback, strict=True):
        assert torch.allclose(a, c, rtol=0, atol=1e-9 * float(c.abs().max()))


@pytest.mark.parametrize("rel", [0.0, 1e-9, 1e-6, 9e-6, 2e-5, 0.3])
def test_divided_q_is_exact_near_equal_rates(rel):
    """``common.divided_q`` (the CubaLI linear readout's response) against mpmath quadrature,
    including just below and above the old midpoint switch at 1e-5 relative."""
    h, b1 = 0.5, 300.0
    b2 = b1 * (1 + rel)
    mpmath.mp.dps = 50
    if rel == 0.0:
        want = mpmath.quad(lambda u: u * mpmath.exp(-u * b1), [0, h])
    else:
        want = mpmath.quad(lambda u: (mpmath.exp(-u * b1) - mpmath.exp(-u * b2)) / (b2 - b1),
                           [0, h])
    got = float(divided_q(*(torch.tensor(x, dtype=F64) for x in (h, b1, b2))))
    assert abs(got - float(want)) <= 1e-14 * float(want)
