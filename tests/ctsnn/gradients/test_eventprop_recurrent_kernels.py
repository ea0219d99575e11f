"""Compiled EventProp of recurrent spiking layers (``eventprop.recurrent_kernels``) against the
reference backward, the generic adjoint (``ctsnn.gradients.adjoint.adjoint_layer``).

Every gradient (input spike times, amplitudes, weights, delays, recurrent weights and delays)
must agree in float64 to 1e-10 relative on random recurrent networks (hypothesis) and on the
edge cases: batch > 1, equal input times, zero / sub-step / per-axon recurrent delays, no input,
a layer that never spikes, LIF spikes at simultaneous arrivals. Cases the kernel refuses fall
back to the reference (same gradients); one central finite-difference check runs compiled.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import kernels_enabled, use_kernels
from ctsnn.gradients import eventprop as ep
from ctsnn.gradients.adjoint import adjoint_layer
from ctsnn.gradients.eventprop import recurrent_kernels
from ctsnn.synapses import RecurrentDense

F64 = torch.float64
DT = 2e-3
pytestmark = [pytest.mark.usefixtures("float64_one_thread"),
              pytest.mark.skipif(not kernels_enabled(torch.zeros(1)),
                                 reason="kernels off (CTSNN_KERNELS=0) or no numba")]
MODELS = {
    "CubaLIF": lambda n: ctsnn.CubaLIF(n, tau_mem=0.02, tau_syn=0.005, v_threshold=1.0),
    "LIF": lambda n: ctsnn.LIF(n, tau_mem=0.02, v_threshold=1.0),
}
NAMES = ["t_in", "amplitude", "weight", "delay", "rec_weight", "rec_delay"]


def _net(seed, *, n=5, n_in=4, n_ev=24, bsz=2, t_max=0.04, w_mean=2.0, rec_scale=0.5,
         delay="synapse", rec_delay=(0.0, 0.006), ties=False, grid=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n_ev, generator=g, dtype=F64) * t_max
    if grid:  # (not at t = 0: the reference refuses a LIF spike at t = 0)
        t = torch.round(t / DT).clamp(min=1) * DT
    if ties and n_ev > 1:
        t[1::2] = t[0:-1:2][: t[1::2].numel()]
    u = torch.randint(0, n_in, (n_ev,), generator=g)
    b = torch.randint(0, bsz, (n_ev,), generator=g)
    a = 0.8 + 0.4 * torch.rand(n_ev, generator=g, dtype=F64)
    w = w_mean + 1.5 * torch.randn(n, n_in, generator=g, dtype=F64)
    d = {"synapse": 0.01 * torch.rand(n, n_in, generator=g, dtype=F64),
         "axon": 0.01 * torch.rand(n_in, generator=g, dtype=F64), "none": None}[delay]
    wr = rec_scale * torch.randn(n, n, generator=g, dtype=F64)
    lo, hi = rec_delay
    dr = lo + (hi - lo) * torch.rand(n, n, generator=g, dtype=F64)
    return dict(t=t, u=u, b=b, a=a, w=w, d=d, wr=wr, dr=dr, bsz=bsz, n_in=n_in)


def _run(model, p, *, kernel, n_steps=30, spike_reg=None, axon_rec=False):
    """Forward + backward of one recurrent layer: sorted spike times, gradients, count."""
    n = p["w"].shape[0]
    leaves = [p[k].clone().requires_grad_() for k in ("t", "a", "w")]
    leaves.append(None if p["d"] is None else p["d"].clone().requires_grad_())
    dr = p["dr"][0] if axon_rec else p["dr"]
    spikes = ctsnn.Spikes(leaves[0], p["u"], p["b"], leaves[1], dt=DT, n_steps=n_steps,
                          batch_size=p["bsz"], n_units=p["n_in"])
    if kernel:
        wr, drl = p["wr"].clone().requires_grad_(), dr.clone().requires_grad_()
        out = ep.recurrent_layer_forward(model, spikes, leaves[2], leaves[3], wr, drl,
                                         spike_reg=spike_reg)
    else:
        with use_kernels(False):
            rec = RecurrentDense(weight=p["wr"], delay=dr, learn_weight=True, learn_delay=True,
                                 per="axon" if axon_rec else "synapse")
            out, *_ = adjoint_layer(model, spikes, leaves[2], leaves[3], recurrent=rec)
        wr, drl = rec.weight, rec.delay
    o = torch.argsort(out.times.detach(), stable=True)
    o = o[torch.argsort((out.batch * n + out.units)[o], stable=True)]
    times = out.times[o]
    coef = torch.randn(times.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    loss = (coef * times).sum() + (times ** 2).sum()
    with use_kernels(kernel):
        want = [x for x in (*leaves, wr, drl) if x is not None]
        grads = (torch.autograd.grad(loss, want, allow_unused=True) if loss.requires_grad
                 else [None] * len(want))
    it = iter(grads)
    grads = [None if x is None else next(it) for x in (*leaves, wr, drl)]
    return times.detach(), grads, len(out)


def _assert_same(model_name, p, *, compiled=True, **kw):
    """Kernel == reference; ``compiled``: the kernel did not refuse (fall back)."""
    ref_t, ref, count = _run(MODELS[model_name](p["w"].shape[0]), p, kernel=False, **kw)
    got_t, got, count_k = _run(MODELS[model_name](p["w"].shape[0]), p, kernel=True, **kw)
    if compiled:
        assert recurrent_kernels.last_refusal is None or count == 0, \
            recurrent_kernels.last_refusal
    assert count_k == count
    torch.testing.assert_close(got_t, ref_t, rtol=1e-12, atol=1e-14)
    for name, a, b in zip(NAMES, got, ref, strict=True):
        if b is None:
            assert a is None or not bool(a.any()), name
            continue
        assert a is not None, name
        scale = max(1.0, float(b.detach().abs().max())) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale, msg=name)
    return count, ref


# --------------------------------------------------------------------------- hypothesis
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), model=st.sampled_from(["CubaLIF", "LIF"]),
       n_ev=st.integers(0, 12), bsz=st.integers(1, 3), n_in=st.integers(1, 3),
       n=st.integers(1, 4), delay=st.sampled_from(["synapse", "axon", "none"]),
       rec=st.sampled_from(["positive", "substep", "zero"]), ties=st.booleans(),
       grid=st.booleans())
def test_random_recurrent_layers_kernel_equals_reference(seed, model, n_ev, bsz, n_in, n, delay,
                                                         rec, ties, grid):
    rec_delay = {"positive": (DT, 0.006), "substep": (0.0, DT), "zero": (0.0, 0.0)}[rec]
    p = _net(seed, n=n, n_in=n_in, n_ev=n_ev, bsz=bsz, delay=delay, rec_delay=rec_delay,
             ties=ties, grid=grid, rec_scale=0.3)
    # a LIF zero-delay cascade is refused (falls back): compared, not required compiled
    _assert_same(model, p, n_steps=20, compiled=model == "CubaLIF")


# --------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("model", ["CubaLIF", "LIF"])
def test_batch_ties_grid_and_many_recurrent_spikes(model):
    p = _net(3, n=6, n_ev=30, bsz=3, ties=True, grid=True, rec_delay=(DT, 0.006))
    count, ref = _assert_same(model, p)
    assert count > 40  # recurrence keeps neurons firing: several spikes per neuron
    assert bool(ref[5].abs().sum() > 0)
    # exact LIF weight gradients vanish (a LIF spike is at its firing arrival's time)
    assert bool(ref[4].abs().sum() > 0) == (model == "CubaLIF")


def test_zero_and_substep_recurrent_delays_cuba():
    for rec in ((0.0, 0.0), (0.0, 0.5 * DT)):
        count, ref = _assert_same("CubaLIF", _net(5, rec_delay=rec))
        assert count > 0 and bool(ref[4].abs().sum() > 0)


def test_per_axon_recurrent_delays_and_no_feed_forward_delay():
    _assert_same("CubaLIF", _net(8, delay="none"), axon_rec=True)


def test_no_input_and_a_layer_that_never_spikes():
    count, _ = _assert_same("CubaLIF", _net(1, n_ev=0))
    assert count == 0
    p = _net(2, w_mean=-5.0, rec_scale=0.1)  # inhibitory input: silent
    count, ref = _assert_same("CubaLIF", p)
    assert count == 0
    assert all(g is None or not bool(g.any()) for g in ref)


def test_lif_spike_at_simultaneous_recurrent_arrivals():
    """Recurrent LIF spike times are sums of delays, so two paths often arrive at exactly the
    same time: the kernel gives the reference's firing arrival (no fallback)."""
    p = _net(3, n=5, n_ev=30, rec_delay=(0.0, 0.006))
    count, _ = _assert_same("LIF", p, n_steps=40)
    spikes = ctsnn.Spikes(p["t"], p["u"], p["b"], p["a"], dt=DT, n_steps=40,
                          batch_size=p["bsz"], n_units=p["n_in"])
    with torch.no_grad():
        out = ep.recurrent_layer_forward(MODELS["LIF"](5), spikes, p["w"], p["d"], p["wr"],
                                         p["dr"])
    t, b, n = out.times, out.batch, out.units
    arrive = t[None, :] + p["dr"][n[:, None], n[None, :]]  # [spike k, sender k']
    same = (arrive == t[:, None]) & (b[:, None] == b[None, :])
    assert count > 100 and int((same.sum(1) >= 2).sum()) >= 2


def test_refused_cases_fall_back_to_the_reference():
    """A LIF zero-delay cascade (a spike fired by a zero-delay arrival at its sender's instant)
    is refused: the reference runs and the gradients are its own."""
    p = _net(4, n=4, n_ev=20, rec_delay=(0.0, 0.0), rec_scale=1.5)
    _assert_same("LIF", p, compiled=False)
    assert recurrent_kernels.last_refusal is not None
    with pytest.raises(NotImplementedError, match="spike_reg"):
        _run(MODELS["LIF"](4), p, kernel=True, spike_reg=(0.1, 1.0))


def test_spike_reg_equals_feed_forward_layer_without_recurrent_weights():
    """With zero recurrent weights the layer is feed-forward: the spike-count regulariser's
    gradients equal the feed-forward EventProp's (whose kernel and reference agree)."""
    p = _net(6, n_ev=30, bsz=3)
    p["wr"] = torch.zeros_like(p["wr"])
    times, grads, count = _run(MODELS["CubaLIF"](5), p, kernel=True, spike_reg=(0.3, 1.0))
    assert count > 0 and recurrent_kernels.last_refusal is None
    leaves = [p[k].clone().requires_grad_() for k in ("t", "a", "w", "d")]
    spikes = ctsnn.Spikes(leaves[0], p["u"], p["b"], leaves[1], dt=DT, n_steps=30,
                          batch_size=p["bsz"], n_units=p["n_in"])
    with use_kernels(False):
        out = ep.layer_forward(MODELS["CubaLIF"](5), spikes, leaves[2], leaves[3],
                               spike_reg=(0.3, 1.0))
        o = torch.argsort(out.times.detach(), stable=True)
        o = o[torch.argsort((out.batch * 5 + out.units)[o], stable=True)]
        t_ff = out.times[o]
        coef = torch.randn(t_ff.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
        ref = torch.autograd.grad((coef * t_ff).sum() + (t_ff ** 2).sum(), leaves)
    torch.testing.assert_close(times, t_ff.detach(), rtol=1e-12, atol=1e-14)
    for name, a, b in zip(NAMES, grads, ref, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


def test_saved_state_is_flat_in_the_number_of_steps():
    """The forward keeps events and spikes only: the same spikes over 4x the steps save the same
    bytes (the generic adjoint keeps a state checkpoint per block)."""
    p = _net(9, n_ev=20, rec_delay=(DT, 0.006), rec_scale=0.2)

    def saved_bytes(n_steps):
        sizes = []

        def pack(x):
            sizes.append(x.numel() * x.element_size())
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            _, _, count = _run(MODELS["CubaLIF"](5), p, kernel=True, n_steps=n_steps)
        return sum(sizes), count

    (short, c1), (long, c2) = saved_bytes(50), saved_bytes(200)
    assert c1 == c2 > 0, "the example must have the same spikes over both horizons"
    assert long == short


def test_layer_dispatch_uses_the_compiled_path_and_matches():
    """``ctsnn.Layer(..., recurrent=RecurrentDense, gradient="adjoint")`` runs the compiled
    path on the CPU (kernels on) and the generic adjoint with kernels off: same gradients."""
    p = _net(12, n_ev=20)

    def grads(kernels):
        with use_kernels(kernels):
            rec = RecurrentDense(weight=p["wr"], delay=p["dr"], learn_delay=True)
            layer = ctsnn.Layer(MODELS["CubaLIF"](5), p["w"].clone(), delay=p["d"].clone(),
                                learn_delay=True, recurrent=rec, time="continuous",
                                gradient="adjoint")
            spikes = ctsnn.Spikes(p["t"], p["u"], p["b"], p["a"], dt=DT, n_steps=30,
                                  batch_size=p["bsz"], n_units=p["n_in"])
            recurrent_kernels.last_refusal = "not run"
            res = ctsnn.simulate([layer], spikes, dt=DT, time="continuous",
                                 readout="first_spike")
            z = torch.where(torch.isfinite(res.output), res.output, torch.zeros_like(res.output))
            params = [layer.synapse.weight, layer.synapse.delay, rec.weight, rec.delay]
            out = torch.autograd.grad(z.sum(), params)
            return out, recurrent_kernels.last_refusal

    got, status = grads(True)
    assert status is None  # the compiled backward ran
    ref, status = grads(False)
    assert status == "not run"  # the generic adjoint ran
    for a, b in zip(got, ref, strict=True):
        assert bool(b.abs().sum() > 0)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_compiled_path_matches_finite_differences():
    """Central differences of a smooth loss of the spike times (spike counts unchanged)."""
    p = _net(21, n=4, n_ev=16, rec_delay=(DT, 0.006), rec_scale=0.4)
    model = MODELS["CubaLIF"](4)
    coef = torch.randn(200, generator=torch.Generator().manual_seed(3), dtype=F64)

    def loss(q, grad):
        leaves = {k: q[k].clone().requires_grad_(grad) for k in ("t", "w", "d", "wr", "dr")}
        spikes = ctsnn.Spikes(leaves["t"], q["u"], q["b"], q["a"], dt=DT, n_steps=30,
                              batch_size=q["bsz"], n_units=q["n_in"])
        out = ep.recurrent_layer_forward(model, spikes, leaves["w"], leaves["d"], leaves["wr"],
                                         leaves["dr"])
        o = torch.argsort(out.times.detach(), stable=True)
        o = o[torch.argsort((out.batch * 4 + out.units)[o], stable=True)]
        t = out.times[o]
        value = (coef[: t.numel()] * t).sum() + 10 * (t ** 2).sum()
        if not grad:
            return float(value), len(out)
        return dict(zip(leaves, torch.autograd.grad(value, list(leaves.values())),
                        strict=True)), len(out)

    g, count = loss(p, True)
    assert count >= 8 and recurrent_kernels.last_refusal is None
    eps = 1e-7
    for name, idx in [("t", (3,)), ("w", (1, 2)), ("d", (0, 1)), ("wr", (2, 1)),
                      ("wr", (0, 0)), ("dr", (1, 3)), ("dr", (3, 2))]:
        vals = []
        for sign in (1, -1):
            q = dict(p)
            q[name] = p[name].clone()
            q[name][idx] += sign * eps
            v, c = loss(q, False)
            assert c == count, "a perturbation created or deleted a spike"
            vals.append(v)
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert abs(g[name][idx].item() - fd) <= 1e-5 * abs(fd) + 1e-7, (name, idx, fd)


def test_float32_layer_runs_compiled_close_to_float64():
    """A float32 layer (zero recurrent delays) runs compiled, without refusal; its gradients are
    float32 and close to the float64 ones."""
    p = _net(14, n_ev=40, bsz=2, rec_delay=(0.0, 0.0))
    _, ref, count = _run(MODELS["CubaLIF"](5), p, kernel=True)
    assert count > 0 and recurrent_kernels.last_refusal is None
    p32 = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
           for k, v in p.items()}
    model = MODELS["CubaLIF"](5).to(torch.float32)
    _, got, count32 = _run(model, p32, kernel=True)
    assert count32 == count and recurrent_kernels.last_refusal is None
    for name, a, b in zip(NAMES, got, ref, strict=True):
        assert a.dtype == torch.float32, name
        scale = float(b.abs().max())
        torch.testing.assert_close(a.double(), b, rtol=0, atol=1e-3 * scale + 1e-6, msg=name)
