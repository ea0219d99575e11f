"""The fused multi-step LIF kernel equals the engine's step-by-step loop (forward and every
gradient, float64), and the engine selects it only where it applies."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.engine import run_population
from ctsnn.engine.compiled import lif_bptt
from ctsnn.surrogate import Surrogate, atan, fast_sigmoid, sigmoid, superspike, triangle

T, B, N = 7, 3, 5
DT = 1e-3


def _model(kind: str, reset: str, learn: bool):
    g = torch.Generator().manual_seed(1)
    tau = 2e-3 + 3e-3 * torch.rand(N, generator=g, dtype=torch.float64)
    common = dict(tau_mem=tau, v_threshold=0.8 + 0.4 * torch.rand(N, generator=g,
                                                                   dtype=torch.float64),
                  v_reset=-0.1 * torch.rand(N, generator=g, dtype=torch.float64),
                  v_leak=0.05 * torch.ones(N, dtype=torch.float64),
                  r=1.0 + 0.2 * torch.rand(N, generator=g, dtype=torch.float64),
                  reset=reset, learn_tau=learn, learn_threshold=learn)
    if kind == "lif":
        return ctsnn.LIF(N, **common)
    return ctsnn.CubaLIF(N, tau_syn=1.5e-3 * torch.ones(N, dtype=torch.float64), **common)


def _inputs(seed: int, scale: float = 1.5):
    g = torch.Generator().manual_seed(seed)
    jumps = (scale * torch.rand(T, B, N, generator=g, dtype=torch.float64)).requires_grad_()
    cur = (0.5 * torch.randn(T, B, N, generator=g, dtype=torch.float64)).requires_grad_()
    return jumps, cur


def _run(model, jumps, cur, *, kernels: bool, method: str, surrogate, detach: bool,
         state=None):
    with use_kernels(kernels):
        res = run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps, current=cur,
                             method=method, surrogate=surrogate, detach_reset=detach,
                             state=state)
    return res


def _grads(res, tensors, seed: int):
    g = torch.Generator().manual_seed(seed + 100)
    w = torch.randn(res.raster.shape, generator=g, dtype=torch.float64)
    wv = torch.randn(res.final_state.v.shape, generator=g, dtype=torch.float64)
    loss = (res.raster * w).sum() + (res.final_state.v * wv).sum()
    if len(res.final_state) > 1:
        loss = loss + (res.final_state.i * wv.flip(0)).sum()
    return torch.autograd.grad(loss, tensors, allow_unused=True)


@pytest.mark.parametrize("kind", ["lif", "cuba"])
@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
@pytest.mark.parametrize("method", ["exact", "euler"])
@pytest.mark.parametrize("detach", [False, True])
def test_fused_equals_reference(kind, reset, method, detach):
    model = _model(kind, reset, learn=True)
    jumps, cur = _inputs(3)
    gen = torch.Generator().manual_seed(5)
    state0 = model.State(*(
        (s + 0.1 * torch.rand(s.shape, dtype=torch.float64, generator=gen)).requires_grad_()
        for s in model.initial_state(B, dtype=torch.float64)))
    params = [model.tau_mem, model.v_threshold]
    if kind == "cuba":
        params.append(model.tau_syn)
    tensors = [jumps, cur, *state0, *params]
    outs = {}
    for kernels in (False, True):
        res = _run(model, jumps, cur, kernels=kernels, method=method, surrogate=atan(2.0),
                   detach=detach, state=state0)
        outs[kernels] = (res.raster.detach(), [s.detach() for s in res.final_state],
                         _grads(res, tensors, 3))
    ref, fused = outs[False], outs[True]
    assert ref[0].sum() > 0  # the test has spikes
    torch.testing.assert_close(fused[0], ref[0], rtol=0, atol=0)
    for a, b in zip(fused[1], ref[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    names = ["jumps", "cur", *model.state_names, "tau_mem", "v_threshold", "tau_syn"]
    names = names[:len(tensors)]
    for name, a, b in zip(names, fused[2], ref[2], strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


CUSTOM = Surrogate("custom", lambda x: torch.exp(-x.abs()))  # no family: PyTorch evaluates it


@pytest.mark.parametrize("surrogate", [atan(2.0), fast_sigmoid(10.0), superspike(20.0),
                                       triangle(0.7), sigmoid(3.0), CUSTOM],
                         ids=lambda s: s.name)
def test_every_surrogate(surrogate, monkeypatch):
    monkeypatch.setattr(lif_bptt, "_CHUNK", 2 * B * N)  # several chunks for a user surrogate
    model = _model("lif", "zero", learn=False)
    jumps, _ = _inputs(4)
    grads = []
    for kernels in (False, True):
        res = _run(model, jumps, None, kernels=kernels, method="euler", surrogate=surrogate,
                   detach=False)
        grads.append(_grads(res, [jumps], 4)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 3.0),
       kind=st.sampled_from(["lif", "cuba"]), reset=st.sampled_from(["zero", "subtract", "none"]))
def test_random_inputs(seed, scale, kind, reset):
    model = _model(kind, reset, learn=False)
    jumps, _ = _inputs(seed, scale)
    res = [_run(model, jumps, None, kernels=k, method="exact", surrogate=atan(2.0),
                detach=False) for k in (False, True)]
    torch.testing.assert_close(res[1].raster, res[0].raster, rtol=0, atol=0)
    g = [_grads(r, [jumps], seed)[0] for r in res]
    torch.testing.assert_close(g[1], g[0], rtol=1e-10, atol=1e-12)


def test_float32_and_empty_input():
    model = ctsnn.LIF(N, tau_mem=2e-3)
    jumps = torch.zeros(T, B, N, requires_grad=True)
    res = [_run(model, jumps, None, kernels=k, method="euler", surrogate=atan(2.0),
                detach=False) for k in (False, True)]
    assert res[1].raster.dtype == torch.float32
    assert res[1].raster.sum() == 0
    g = [_grads(r, [jumps], 0)[0] for r in res]
    torch.testing.assert_close(g[1], g[0], rtol=1e-5, atol=1e-6)


def test_selected_only_where_it_applies(monkeypatch):
    calls = []
    real = lif_bptt.fused_lif

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(lif_bptt, "fused_lif", spy)
    model = _model("lif", "zero", learn=False)
    jumps, _ = _inputs(1)
    _run(model, jumps, None, kernels=True, method="euler", surrogate=atan(), detach=False)
    _run(model, jumps, None, kernels=True, method="euler", surrogate=None, detach=False)
    assert calls == [1, 1]
    _run(model, jumps, None, kernels=False, method="euler", surrogate=atan(), detach=False)
    _run(model, jumps, None, kernels=True, method="rk4", surrogate=atan(), detach=False)
    with use_kernels(True):
        for record, every in ((("v",), 2), (("v", "i"), 1)):
            cuba = _model("cuba", "zero", learn=False)
            run_population(cuba, dt=DT, n_steps=T, batch_size=B, jumps=jumps, method="euler",
                           surrogate=atan(), record=record, record_every=every)
    ref = ctsnn.LIF(N, tau_mem=torch.full((N,), 2e-3, dtype=torch.float64), refractory=2e-3)
    _run(ref, jumps, None, kernels=True, method="euler", surrogate=atan(), detach=False)
    hot = model.initial_state(B, dtype=torch.float64)
    hot = model.State(hot.v + 5.0)  # fires at t = 0: the reference loop logs that spike
    _run(model, jumps, None, kernels=True, method="euler", surrogate=atan(), detach=False,
         state=hot)
    assert calls == [1, 1]


@pytest.mark.parametrize("kind", ["lif", "cuba"])
@pytest.mark.parametrize("surrogate", [None, atan(2.0)], ids=["hard", "atan"])
def test_recorded_membrane_and_hard_spikes(kind, surrogate):
    """A readout-style run: ``record=("v",)``, gradients through the recorded trace."""
    model = _model(kind, "zero", learn=True)
    jumps, cur = _inputs(8)
    params = [model.tau_mem, model.v_threshold]
    out = []
    for kernels in (False, True):
        with use_kernels(kernels):
            res = run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps,
                                 current=cur, method="exact", surrogate=surrogate,
                                 record=("v",))
        w = torch.randn(res.states["v"].shape, generator=torch.Generator().manual_seed(2),
                        dtype=torch.float64)
        loss = (res.states["v"] * w).sum() + (res.raster * w.flip(0)).sum()
        out.append((res.states["v"].detach(), res.raster.detach(),
                    torch.autograd.grad(loss, [jumps, cur, *params], allow_unused=True)))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=0, atol=0)
    assert out[0][1].sum() > 0
    for a, b in zip(out[1][2], out[0][2], strict=True):
        if b is None:  # no path in the reference graph (hard spikes: threshold): zero here
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_rejects_other_models():
    with pytest.raises(TypeError, match="LIF and CubaLIF"):
        lif_bptt.fused_lif(ctsnn.LI(3), dt=DT, n_steps=2, state=None, jumps=None, current=None,
                           method="exact", surrogate=atan(), detach_reset=False)
    with pytest.raises(ValueError, match="methods"):
        lif_bptt.step_coefficients(ctsnn.LIF(3), "rk4", DT)


@pytest.mark.skipif(not ctsnn.compiled.kernels_enabled(torch.zeros(1)), reason="kernels off")
@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_parallel_forward_equals_serial_on_any_thread_count(kind, monkeypatch):
    """The forward's sample chunks on 1 or 2 threads give the serial kernel's results bit for
    bit (forced on this small call), gradients included."""
    from ctsnn.compiled import kernel_threads, numba_threads

    model = _model(kind, "zero", learn=False)
    jumps, cur = _inputs(4)
    runs = []
    for parallel, threads in ((False, 1), (True, 1), (True, kernel_threads())):
        monkeypatch.setattr(lif_bptt, "_PARALLEL_WORK", 0 if parallel else 1 << 62)
        monkeypatch.setattr(lif_bptt, "kernel_threads", lambda t=threads: t)
        with numba_threads(threads):
            res = _run(model, jumps, cur, kernels=True, method="exact", surrogate=atan(),
                       detach=False)
        runs.append((res.raster.detach(), res.final_state.v.detach(),
                     *_grads(res, [jumps, cur], 0)))
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert torch.equal(a, b)
    ref = _run(model, jumps, cur, kernels=False, method="exact", surrogate=atan(),
               detach=False)
    torch.testing.assert_close(runs[0][0], ref.raster.detach())


@pytest.mark.skipif(not ctsnn.compiled.kernels_enabled(torch.zeros(1)), reason="kernels off")
@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_parallel_backward_same_on_any_thread_count(kind, monkeypatch):
    """The backward's sample chunks (forced on this small call) give the same gradients on 1
    and 2 threads bit for bit, the parameter gradients (summed per chunk, then over the chunks
    in order) included, and equal the serial kernel's and the reference loop's to rounding."""
    from ctsnn.compiled import kernel_threads, numba_threads

    model = _model(kind, "subtract", learn=True)
    params = [p for p in model.parameters() if p.requires_grad]
    assert params
    jumps, cur = _inputs(6)
    runs = []
    for parallel, threads in ((True, 1), (True, kernel_threads()), (False, 1)):
        monkeypatch.setattr(lif_bptt, "_PARALLEL_WORK", 0 if parallel else 1 << 62)
        monkeypatch.setattr(lif_bptt, "kernel_threads", lambda t=threads: t)
        with numba_threads(threads):
            res = _run(model, jumps, cur, kernels=True, method="exact", surrogate=atan(),
                       detach=False)
            runs.append(_grads(res, [jumps, cur, *params], 0))
    for a, b in zip(runs[0], runs[1], strict=True):
        assert torch.equal(a, b)
    ref = _grads(_run(model, jumps, cur, kernels=False, method="exact", surrogate=atan(),
                      detach=False), [jumps, cur, *params], 0)
    for a, b, c in zip(runs[0], runs[2], ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not ctsnn.compiled.kernels_enabled(torch.zeros(1)), reason="kernels off")
@pytest.mark.parametrize("surrogate", [atan(), fast_sigmoid(), superspike(), triangle(),
                                       sigmoid()])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_plain_backward_equals_general_kernel(surrogate, reset, detach, dtype, monkeypatch):
    """A LIF on jumps alone without parameter gradients takes the plain backward kernel: the
    same dL/djumps and dL/dv0 as the general kernel (taken when the threshold is learnable)
    bit for bit, and as the reference loop (float64, 1e-12), on 1 and 2 threads."""
    from ctsnn.compiled import kernel_threads, numba_threads

    jumps = _inputs(7)[0].detach().to(dtype).requires_grad_()
    v0 = (0.3 * torch.rand(B, N, generator=torch.Generator().manual_seed(2),
                           dtype=torch.float64)).to(dtype).requires_grad_()
    calls = []
    real = lif_bptt._backward_plain
    monkeypatch.setattr(lif_bptt, "_backward_plain", lambda *a: (calls.append(1), real(*a)))
    monkeypatch.setattr(lif_bptt, "_backward_plain_chunks",
                        lambda n, *a: [real(*lif_bptt.chunk_bounds(c, n, a[-1].shape[0]), *a)
                                       for c in range(n)])
    out = {}
    for learn in (False, True):
        model = _model("lif", reset, learn=learn).to(dtype)
        with use_kernels(True):
            res = run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps,
                                 method="euler", surrogate=surrogate, detach_reset=detach,
                                 state=model.State(v0))
        out[learn] = torch.autograd.grad((res.raster * jumps.detach().flip(0)).sum()
                                         + res.final_state.v.sum(), [jumps, v0])
    assert calls  # the plain kernel ran (without parameter gradients only)
    for a, b in zip(out[False], out[True], strict=True):
        assert torch.equal(a, b)
    if dtype == torch.float64:
        model = _model("lif", reset, learn=False)
        with use_kernels(False):
            res = run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps,
                                 method="euler", surrogate=surrogate, detach_reset=detach,
                                 state=model.State(v0))
        ref = torch.autograd.grad((res.raster * jumps.detach().flip(0)).sum()
                                  + res.final_state.v.sum(), [jumps, v0])
        for a, b in zip(out[False], ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    monkeypatch.undo()
    monkeypatch.setattr(lif_bptt, "_PARALLEL_WORK", 0)  # the chunked form, 1 and 2 threads
    chunked = lif_bptt._backward_plain_chunks
    monkeypatch.setattr(lif_bptt, "_backward_plain_chunks",
                        lambda *a: (calls.append(2), chunked(*a))[1])
    runs = []
    for threads in (1, kernel_threads()):
        with numba_threads(threads):
            model = _model("lif", reset, learn=False).to(dtype)
            res = run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps,
                                 method="euler", surrogate=surrogate, detach_reset=detach,
                                 state=model.State(v0))
            runs.append(torch.autograd.grad(res.raster.sum(), [jumps]))
    assert calls.count(2) == 2
    assert torch.equal(runs[0][0], runs[1][0])


@pytest.mark.skipif(not ctsnn.compiled.kernels_enabled(torch.zeros(1)), reason="kernels off")
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("record_v", [False, True])
def test_plain_forward_equals_general_kernel(reset, dtype, record_v, monkeypatch):
    """A LIF on jumps alone takes the plain forward loop (``v`` recorded or not): spikes, the
    recorded and the final membrane bit-identical to the general loop (``_PLAIN`` off) and,
    in float64, equal to the reference loop."""
    model = _model("lif", reset, learn=False).to(dtype)
    jumps = _inputs(8, scale=2.0)[0].detach().to(dtype)
    v0 = (0.3 * torch.rand(B, N, generator=torch.Generator().manual_seed(4),
                           dtype=torch.float64)).to(dtype)
    runs = []
    for plain in (True, False):
        monkeypatch.setattr(lif_bptt, "_PLAIN", plain)
        runs.append(lif_bptt.fused_lif(model, dt=DT, n_steps=T, state=model.State(v0),
                                       jumps=jumps, current=None, method="euler",
                                       surrogate=atan(), detach_reset=True, record_v=record_v))
    assert runs[0].raster.sum() > 0
    assert torch.equal(runs[0].raster, runs[1].raster)
    assert torch.equal(runs[0].final_state.v, runs[1].final_state.v)
    if record_v:
        assert torch.equal(runs[0].v, runs[1].v)
        assert torch.equal(runs[0].v[-1], runs[0].final_state.v)
    if dtype == torch.float64:
        ref = _run(model, jumps, None, kernels=False, method="euler", surrogate=atan(),
                   detach=True, state=model.State(v0))
        assert torch.equal(runs[0].raster, ref.raster)
        torch.testing.assert_close(runs[0].final_state.v, ref.final_state.v, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.skipif(not ctsnn.compiled.kernels_enabled(torch.zeros(1)), reason="kernels off")
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("surrogate", [None, atan(), triangle()], ids=lambda s: str(s)[:9])
def test_plain_backward_with_recorded_membrane(reset, dtype, surrogate, monkeypatch):
    """A readout-style LIF (``v`` recorded, hard spikes or a surrogate) takes the plain
    backward kernel: dL/djumps and dL/dv0 bit-identical to the general kernel (``_PLAIN``
    off) and, in float64, equal to the reference loop."""
    model = _model("lif", reset, learn=False).to(dtype)
    jumps = _inputs(9, scale=2.0)[0].detach().to(dtype).requires_grad_()
    v0 = (0.3 * torch.rand(B, N, generator=torch.Generator().manual_seed(6),
                           dtype=torch.float64)).to(dtype).requires_grad_()
    g = torch.Generator().manual_seed(7)
    w_v = torch.randn(T, B, N, generator=g, dtype=torch.float64).to(dtype)
    w_s = torch.randn(T, B, N, generator=g, dtype=torch.float64).to(dtype)
    calls = []
    real = lif_bptt._backward_plain
    monkeypatch.setattr(lif_bptt, "_backward_plain", lambda *a: (calls.append(1), real(*a)))

    def grads(kernels):
        with use_kernels(kernels):
            res = run_population(model, dt=DT, n_steps=T, batch_size=B, jumps=jumps,
                                 method="euler", surrogate=surrogate, detach_reset=False,
                                 state=model.State(v0), record=("v",))
        assert res.raster.sum() > 0
        loss = (res.states["v"] * w_v).sum() + (res.raster * w_s).sum()
        return torch.autograd.grad(loss, [jumps, v0])

    plain = grads(True)
    assert calls
    monkeypatch.setattr(lif_bptt, "_PLAIN", False)
    general = grads(True)
    for a, b in zip(plain, general, strict=True):
        assert torch.equal(a, b)
    if dtype == torch.float64:
        for a, b in zip(plain, grads(False), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
