"""The fused recurrent LIF with DelRec's spike scatter (ctsnn/engine/compiled/lif_recurrent.py)
equals the engine's step loop: spikes identical, final state, recorded ``v`` and every gradient
(inputs, initial state, neuron parameters, recurrent weight, delays, width logits) to 1e-12
relative in float64; the engine selects it exactly where it applies.

The reference is the step loop with kernels off (``RingRead``); one test also compares with the
step loop on the scatter path (the fused path refused), the previous kernel path.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
import ctsnn.engine.population as population
from ctsnn.compiled import use_kernels
from ctsnn.engine import run_population
from ctsnn.surrogate import Surrogate, atan, fast_sigmoid, triangle
from ctsnn.synapses import RecurrentDense, Triangle

F64 = torch.float64
DT = 1e-3

pytestmark = pytest.mark.usefixtures("float64_one_thread")


def _model(kind: str, n: int, reset: str, *, dtype=F64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    common = dict(tau_mem=(2e-3 + 3e-3 * torch.rand(n, generator=g, dtype=F64)).to(dtype),
                  v_threshold=(0.8 + 0.4 * torch.rand(n, generator=g, dtype=F64)).to(dtype),
                  v_reset=(-0.1 * torch.rand(n, generator=g, dtype=F64)).to(dtype),
                  reset=reset, learn_tau=True, learn_threshold=True)
    if kind == "lif":
        return ctsnn.LIF(n, **common)
    return ctsnn.CubaLIF(n, tau_syn=(1.5e-3 * torch.ones(n, dtype=F64)).to(dtype), **common)


def _recurrent(n: int, *, sigma: float, delays=None, max_steps: float = 6.0, seed: int = 0,
               learn_width: bool = False, dtype=F64, gain: float = 2.0, **kw) -> RecurrentDense:
    g = torch.Generator().manual_seed(seed)
    if delays is None:
        delays = torch.rand(n, generator=g, dtype=F64) * max_steps
    rec = RecurrentDense(n, kernel=Triangle(sigma), dt=DT, per="axon", learn_delay=True,
                         delay=delays * DT, max_delay=max_steps * DT, learn_width=learn_width,
                         generator=g, dtype=dtype, **kw)
    with torch.no_grad():
        rec.weight.mul_(gain)
        if learn_width:
            rec.p_spread.copy_(torch.randn(n, generator=g, dtype=F64).to(dtype))
    return rec


class _Counter:
    """Counts the engine's calls of the fused recurrent path."""

    def __init__(self, monkeypatch):
        self.calls = 0
        inner = population.run_fused_recurrent

        def wrapped(*a, **k):
            self.calls += 1
            return inner(*a, **k)

        monkeypatch.setattr(population, "run_fused_recurrent", wrapped)


def _run(model, rec, jumps, cur, *, kernels: bool, method="euler", surrogate=None,
         detach=False, record=(), seed=0):
    torch.manual_seed(seed)  # the dropout mask, drawn by start()
    n_steps, batch, _ = (jumps if jumps is not None else cur).shape
    with use_kernels(kernels):
        return run_population(model, dt=DT, n_steps=n_steps, batch_size=batch, jumps=jumps,
                              current=cur, method=method, surrogate=surrogate,
                              detach_reset=detach, recurrent=rec, record=record)


def _loss(res, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    dtype = res.raster.dtype
    loss = (res.raster * torch.randn(res.raster.shape, generator=g, dtype=F64).to(dtype)).sum()
    for x in res.final_state:
        loss = loss + (x * torch.randn(x.shape, generator=g, dtype=F64).to(dtype)).sum()
    if "v" in res.states:
        v = res.states["v"]
        loss = loss + (v * torch.randn(v.shape, generator=g, dtype=F64).to(dtype)).sum()
    return loss


@pytest.fixture(autouse=True)
def fused_calls(monkeypatch):
    """Every test here counts the engine's calls of the fused path (``_compare`` checks that
    its fused side took it)."""
    global _COUNT
    _COUNT = _Counter(monkeypatch)
    yield _COUNT


_COUNT: _Counter | None = None


def _compare(model, rec, jumps, cur, *, rtol=1e-12, reference=None, **kw):
    """Run fused and reference, compare spikes (identical), state, recordings, gradients."""
    before = _COUNT.calls
    leaves = [t for t in (jumps, cur) if t is not None and t.requires_grad]
    params = [p for p in (*model.parameters(), *rec.parameters()) if p.requires_grad]
    out = {}
    for side in ("fused", "reference"):
        if side == "reference" and reference is not None:
            res = reference()
        else:
            res = _run(model, rec, jumps, cur, kernels=side == "fused", **kw)
        assert _COUNT.calls == before + 1  # the fused side only
        grads = torch.autograd.grad(_loss(res), leaves + params, allow_unused=True)
        out[side] = res, grads
    (a, ga), (b, gb) = out["fused"], out["reference"]
    assert torch.equal(a.raster, b.raster)
    for x, y in zip(a.final_state, b.final_state, strict=True):
        _close(x, y, rtol)
    assert a.states.keys() == b.states.keys()
    for name in a.states:
        _close(a.states[name], b.states[name], rtol)
    for x, y, leaf in zip(ga, gb, leaves + params, strict=True):
        # a parameter the reference's graph does not reach (the threshold with hard spikes
        # and a zero reset) gets a zero gradient from the fused node
        _close(torch.zeros_like(leaf) if x is None else x,
               torch.zeros_like(leaf) if y is None else y, rtol)
    return a


def _close(a, b, rtol):
    scale = float(b.detach().abs().max()) if b.numel() else 0.0
    err = float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0
    assert err <= rtol * max(scale, 1e-300), (err, scale)


def _inputs(n_steps, batch, n, *, seed=0, scale=1.2, cur=False):
    g = torch.Generator().manual_seed(seed)
    jumps = (scale * torch.rand(n_steps, batch, n, generator=g, dtype=F64)).requires_grad_()
    current = (0.3 * torch.randn(n_steps, batch, n, generator=g, dtype=F64)).requires_grad_() \
        if cur else None
    return jumps, current


@pytest.mark.parametrize("kind", ["lif", "cuba"])
@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
@pytest.mark.parametrize("method", ["euler", "exact"])
def test_fused_equals_step_loop(kind, reset, method, fused_calls):
    count = fused_calls
    model, rec = _model(kind, 6, reset), _recurrent(6, sigma=1.5)
    jumps, cur = _inputs(25, 3, 6, cur=True)
    res = _compare(model, rec, jumps, cur, method=method, surrogate=atan(), record=("v",))
    assert count.calls == 1 and float(res.raster.detach().sum()) > 0


@pytest.mark.parametrize("surrogate", [atan(2.0), fast_sigmoid(), triangle(0.7), None,
                                       Surrogate("user", lambda x: 1.0 / (1.0 + x * x))],
                         ids=["atan", "fast_sigmoid", "triangle", "none", "user"])
@pytest.mark.parametrize("detach", [False, True])
def test_surrogates_and_detached_reset(surrogate, detach):
    model, rec = _model("lif", 5, "zero"), _recurrent(5, sigma=0.7, learn_width=True)
    jumps, _ = _inputs(20, 2, 5, seed=3)
    _compare(model, rec, jumps, None, surrogate=surrogate, detach=detach)


@pytest.mark.parametrize("sigma", [0.0, 1e-3, 12.0], ids=["sigma0", "tiny", "large"])
def test_spread_widths(sigma):
    """σ = 0 (linear interpolation, 2 taps), tiny, and large (K = 26 taps, beyond the delays)."""
    model, rec = _model("lif", 6, "subtract"), _recurrent(6, sigma=sigma, max_steps=8.0)
    jumps, _ = _inputs(40, 2, 6, seed=4)
    _compare(model, rec, jumps, None, surrogate=atan())


def test_delays_on_grid_points_and_range_ends():
    """Integer delays (tap ties), 0 and the maximum."""
    delays = torch.tensor([0.0, 6.0, 3.0, 1.0, 6.0, 0.0], dtype=F64)
    for sigma in (0.0, 2.0):
        model, rec = _model("lif", 6, "zero"), _recurrent(6, sigma=sigma, delays=delays)
        jumps, _ = _inputs(30, 2, 6, seed=5)
        _compare(model, rec, jumps, None, surrogate=atan())


def test_dropout_and_fan_in(fused_calls):
    count = fused_calls
    model = _model("lif", 8, "zero")
    rec = _recurrent(8, sigma=1.0, dropout=0.3, fan_in=3, learn_width=True)
    jumps, _ = _inputs(30, 4, 8, seed=6)
    _compare(model, rec, jumps, None, surrogate=atan(), seed=11)
    assert count.calls == 1


def test_empty_spikes_and_batch_one():
    model, rec = _model("lif", 5, "zero"), _recurrent(5, sigma=1.0)
    jumps, _ = _inputs(15, 1, 5, seed=7, scale=0.0)  # nothing fires
    res = _compare(model, rec, jumps, None, surrogate=atan())
    assert float(res.raster.detach().sum()) == 0.0
    jumps, _ = _inputs(15, 1, 5, seed=7)
    _compare(model, rec, jumps, None, surrogate=atan())


def test_equals_scatter_step_loop(monkeypatch):
    """Also equal to the step loop on the scatter path (the fused path refused)."""
    model, rec = _model("lif", 7, "zero"), _recurrent(7, sigma=2.5, dropout=0.2)
    jumps, _ = _inputs(30, 3, 7, seed=8)
    inner = population.fused_lif_applies

    def loop_on_scatter():
        monkeypatch.setattr(population, "fused_lif_applies",
                            lambda *a, **k: k["recurrent"] is None and inner(*a, **k))
        try:
            return _run(model, rec, jumps, None, kernels=True, surrogate=atan())
        finally:
            monkeypatch.setattr(population, "fused_lif_applies", inner)

    _compare(model, rec, jumps, None, surrogate=atan(), reference=loop_on_scatter)


def test_float32_within_rounding():
    """float32: spikes identical on this layer, state and gradients to rounding (documented
    tolerance: 1e-5 of the largest entry)."""
    f32 = torch.float32
    model = _model("lif", 16, "zero", dtype=f32)
    rec = _recurrent(16, sigma=3.0, dtype=f32, dropout=0.2)
    jumps = _inputs(40, 4, 16, seed=9)[0].detach().float().requires_grad_()
    _compare(model, rec, jumps, None, rtol=1e-5, surrogate=atan())


def test_selection(fused_calls):
    """Not taken: kernels off, per-synapse delays, refractory neurons, recordings of other
    variables; taken without grad (inference)."""
    count = fused_calls
    model = _model("lif", 4, "zero")
    jumps, _ = _inputs(10, 2, 4, seed=10)
    _run(model, _recurrent(4, sigma=1.0), jumps, None, kernels=False, surrogate=atan())
    syn = RecurrentDense(4, kernel=Triangle(1.0), dt=DT, per="synapse",
                         delay=2 * DT * torch.ones(4, 4, dtype=F64), dtype=F64)
    _run(model, syn, jumps, None, kernels=True, surrogate=atan())
    refractory = ctsnn.LIF(4, tau_mem=3e-3, refractory=2e-3)
    _run(refractory, _recurrent(4, sigma=1.0), jumps, None, kernels=True, surrogate=atan())
    cuba = _model("cuba", 4, "zero")
    _run(cuba, _recurrent(4, sigma=1.0), jumps, None, kernels=True, record=("i",))
    assert count.calls == 0
    with torch.no_grad():
        _run(model, _recurrent(4, sigma=1.0), jumps, None, kernels=True, surrogate=atan())
    assert count.calls == 1


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 6), batch=st.integers(1, 3), n_steps=st.integers(1, 25),
       sigma=st.floats(0.0, 4.0), max_steps=st.floats(1.0, 8.0), seed=st.integers(0, 1000),
       kind=st.sampled_from(["lif", "cuba"]), dropout=st.sampled_from([0.0, 0.3]))
def test_property_random_layers(n, batch, n_steps, sigma, max_steps, seed, kind, dropout):
    model = _model(kind, n, "zero", seed=seed)
    rec = _recurrent(n, sigma=sigma, max_steps=max_steps, seed=seed, dropout=dropout)
    jumps, _ = _inputs(n_steps, batch, n, seed=seed)
    _compare(model, rec, jumps, None, surrogate=atan(), seed=seed)


def test_same_bits_on_one_and_two_threads():
    """Deterministic: the fused path gives the same bits on 1 and 2 intra-op threads (float32,
    sizes at which PyTorch's products would split their work)."""
    f32 = torch.float32
    model = _model("lif", 96, "zero", dtype=f32)
    rec = _recurrent(96, sigma=4.0, dtype=f32, dropout=0.2, max_steps=10.0, gain=1.0)
    jumps = _inputs(60, 24, 96, seed=12)[0].detach().float().requires_grad_()
    before = torch.get_num_threads()
    out = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            res = _run(model, rec, jumps, None, kernels=True, surrogate=atan())
            leaves = [jumps, *rec.parameters(), *model.parameters()]
            out.append((res.raster.detach(), res.final_state.v.detach(),
                        torch.autograd.grad(_loss(res), leaves)))
    finally:
        torch.set_num_threads(before)
    (r1, v1, g1), (r2, v2, g2) = out
    assert torch.equal(r1, r2) and torch.equal(v1, v2) and float(r1.sum()) > 0
    for a, b in zip(g1, g2, strict=True):
        assert torch.equal(a, b)
