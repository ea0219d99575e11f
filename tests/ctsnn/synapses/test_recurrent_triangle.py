"""RecurrentDense with Triangle(sigma) (formerly DelayedRecurrent): DelRec recurrent delays
(SEEDS F0.1-F0.3, F2.13-F2.18).

Gradients in float64. The reference implementations here are written independently of the
module: they keep every past spike and sum ``W_ij h(τ) S_j[n - τ]`` over the whole history.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.surrogate import atan
from ctsnn.synapses import RecurrentDense, Triangle
from ctsnn.synapses.init import half_normal_delays, uniform_delays
from ctsnn.synapses.kernels import buffer_length, triangle_spread
from ctsnn.training import DelRecSigmaSchedule

DT = 1e-3
F64 = torch.float64


pytestmark = pytest.mark.usefixtures("float64_one_thread")


def delayed_recurrent(n, *, dt, sigma=0.0, per="axon", learn_delay=True, delay_init=0.0,
                      **kw) -> RecurrentDense:
    """A Triangle RecurrentDense as the old RecurrentDense built it (its defaults)."""
    return RecurrentDense(n, kernel=Triangle(sigma), dt=dt, per=per, learn_delay=learn_delay,
                          delay_init=delay_init, **kw)


def sigma_schedule(epoch, epochs, sigma_init=10.0, decay=0.95):
    return DelRecSigmaSchedule(epochs, sigma_init=sigma_init, decay=decay).sigma(epoch)


# --------------------------------------------------------------------------- references
def ref_h(d: torch.Tensor, s: torch.Tensor, tau: int) -> torch.Tensor:
    """Triangle of half-width ``s`` centred on lag ``1 + d``, area 1 (written out again)."""
    return torch.clamp(s - torch.abs(tau - 1.0 - d), min=0.0) / (s * s)


def ref_width(mod: RecurrentDense) -> torch.Tensor:
    if mod.p_spread is None:
        return 1.0 + mod.sigma
    return 1.0 + 2.0 * mod.sigma * torch.sigmoid(mod.p_spread)


class NaiveRecurrent:
    """Keeps all past spikes; ``X[n] = Σ_{m<n} Σ_j W_ij h_ij(n - m) S_j[m]`` (no buffer)."""

    def __init__(self, mod: RecurrentDense) -> None:
        self.mod = mod

    def start(self, batch_size, *, dtype, device):
        self.hist: list[torch.Tensor] = []
        self.shape = (batch_size, self.mod.n)

    def read(self, n):
        mod = self.mod
        d, s, w = mod.delay_steps, ref_width(mod), mod.weight
        x = torch.zeros(self.shape)
        for m, spikes in enumerate(self.hist):
            if mod.per == "axon":
                x = x + (spikes * ref_h(d, s, n - m)) @ w.t()
            else:
                s2 = s[None, :] if s.ndim == 1 else s
                x = x + spikes @ (w * ref_h(d, s2, n - m)).t()
        return x

    def write(self, n, spikes):
        self.hist.append(spikes)


class Buffered:
    """The reference code's circular buffer (SEEDS B1.4): autograd keeps ``[B, N, L]`` per step."""

    def __init__(self, mod: RecurrentDense) -> None:
        self.mod = mod

    def start(self, batch_size, *, dtype, device):
        mod = self.mod
        self.n_lags = mod.n_lags()
        self.mask = mod.kernel_tensor(self.n_lags).t()  # [N, L]
        self.buf = torch.zeros(batch_size, mod.n, self.n_lags)
        self.ptr = 0

    def read(self, n):
        return self.buf[:, :, self.ptr]

    def write(self, n, spikes):
        buf = self.buf.clone()
        buf[:, :, self.ptr] = 0.0
        self.ptr = (self.ptr + 1) % self.n_lags
        spread = torch.einsum("ij,bjl->bil", self.mod.weight, spikes[:, :, None] * self.mask)
        self.buf = buf + torch.roll(spread, shifts=self.ptr - 1, dims=2)


def make_rec(n=6, *, per="axon", sigma=1.5, learn_width=False, seed=0, d_lo=0.3, d_hi=4.0,
             **kw) -> RecurrentDense:
    g = torch.Generator().manual_seed(seed)
    shape = (n,) if per == "axon" else (n, n)
    d = d_lo + (d_hi - d_lo) * torch.rand(shape, generator=g)
    w = 1.5 * torch.linalg.qr(torch.randn(n, n, generator=g))[0]  # deterministic, orthogonal
    rec = delayed_recurrent(n, dt=DT, per=per, sigma=sigma, learn_width=learn_width,
                           delay_init=d * DT, weight_init=w, **kw)
    with torch.no_grad():
        if learn_width:
            rec.p_spread.copy_(torch.randn(n, generator=g))
    return rec


def inputs(t=50, b=3, n_in=4, n=6, seed=1, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, b, n_in, generator=g) < rate).to(F64)
    w_in = 1.2 * torch.randn(n, n_in, generator=g)
    c = torch.randn(t, b, n, generator=g)
    return x, w_in, c


def run_layer(rec, x, syn, tau=2e-3):
    layer = ctsnn.Layer(ctsnn.LIF(syn.n_out, tau_mem=tau), syn, recurrent=rec,
                        surrogate=atan(2.0), method="euler")
    return layer(x, dt=DT, input_as="jump")[0].raster()


def params_of(rec, syn):
    ps = [syn.weight, rec.weight, rec.delay_steps]
    return ps + ([rec.p_spread] if rec.p_spread is not None else [])


# --------------------------------------------------------------------------- F2.13 kernel
def test_spread_linear_interpolation_at_sigma_zero():
    h = triangle_spread(torch.tensor([2.3]), 1.0, 7)[:, 0]
    expect = torch.zeros(7)
    expect[3], expect[4] = 0.7, 0.3
    torch.testing.assert_close(h, expect, rtol=0, atol=1e-12)
    # through the module (seconds at the API): same weights, lags count from 1 + d
    rec = delayed_recurrent(1, dt=DT, delay_init=2.3e-3, weight_init=torch.ones(1, 1))
    torch.testing.assert_close(rec.kernel_tensor()[:, 0], expect[:rec.n_lags()], rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(sigma=st.integers(0, 4), extra=st.floats(0.0, 15.0), learn=st.booleans())
def test_spread_sums_to_one_for_whole_sigma(sigma, extra, learn):
    d = torch.tensor([sigma + extra])
    s = 1.0 + sigma
    h = triangle_spread(d, s, buffer_length(float(d), s))
    assert abs(float(h.sum()) - 1.0) < 1e-12
    assert h[0].item() == 0.0  # lag 0 never used
    assert h[-1].item() < 1e-15  # the buffer covers the support (up to rounding of 1 + d + s)


def test_spread_mass_loss_below_sigma_and_non_integer_sigma():
    # d < sigma: the part of the triangle on lags <= 0 is discarded (never delivered)
    sigma, d = 3.0, 1.2
    s = 1 + sigma
    h = triangle_spread(torch.tensor([d]), s, buffer_length(d, s))
    lost = sum(max(0.0, s - abs(tau - 1 - d)) / s**2 for tau in range(-10, 1))
    assert lost > 0.1
    assert float(h.sum()) == pytest.approx(1.0 - lost, abs=1e-12)
    # non-integer sigma: the sampled triangle does not sum to 1 (DelRec does not renormalise)
    h = triangle_spread(torch.tensor([5.0]), 1.06, 10)[:, 0]
    assert float(h[6]) == pytest.approx(1 / 1.06, abs=1e-12)
    assert float(h[5]) == float(h[7]) == pytest.approx(0.06 / 1.06**2, abs=1e-12)
    assert float(h.sum()) == pytest.approx(1.18 / 1.06**2, abs=1e-12)


def test_spread_gradient_is_sign_over_s_squared():
    d = torch.tensor([2.3], requires_grad=True)
    s = 2.5
    h = triangle_spread(d, s, 10)[:, 0]
    for tau in range(10):
        (g,) = torch.autograd.grad(h[tau], d, retain_graph=True)
        x = tau - 1 - 2.3
        expect = math.copysign(1.0, x) / s**2 if (tau > 0 and abs(x) < s) else 0.0
        assert float(g) == pytest.approx(expect, abs=1e-12)


def test_buffer_length_rule():
    assert buffer_length(0.0, 1.0) == 3
    assert buffer_length(30.0, 11.0) == 43
    assert buffer_length(-5.0, 1.0) == 2
    rec = make_rec(sigma=1.5, d_lo=1.0, d_hi=4.0)
    assert rec.n_lags() == math.ceil(1 + float(rec.delay_steps.detach().max()) + 2.5) + 1


# --------------------------------------------------------------------------- F0.1 integer shift
@pytest.mark.parametrize("per", ["axon", "synapse"])
def test_integer_delay_single_spike_arrives_at_one_plus_d_with_full_weight(per):
    n, b, t_len = 4, 2, 40
    g = torch.Generator().manual_seed(3)
    shape = (n,) if per == "axon" else (n, n)
    d = torch.randint(0, 6, shape, generator=g).to(F64)
    w = torch.randn(n, n, generator=g)
    rec = delayed_recurrent(n, dt=DT, per=per, delay_init=d * DT, weight_init=w)
    assert rec.n_lags() < 10  # t0 below puts the spike well past a wrap of the ring
    j, t0 = 2, 23
    rec.start(b, dtype=F64, device="cpu")
    reads = []
    for step in range(t_len):
        reads.append(rec.read(step))
        s = torch.zeros(b, n)
        if step == t0:
            s[1, j] = 1.0
        rec.write(step, s)
    x = torch.stack(reads)  # [T, B, N]
    expect = torch.zeros(t_len, b, n)
    for i in range(n):
        lag = 1 + int(d[j] if per == "axon" else d[i, j])
        expect[t0 + lag, 1, i] = w[i, j]
    assert torch.equal(x, expect)


def test_max_delay_is_honoured_not_wrapped():
    rec = delayed_recurrent(1, dt=DT, max_delay=7e-3, delay_init=7e-3, weight_init=torch.ones(1, 1))
    rec.start(1, dtype=F64, device="cpu")
    got = []
    for step in range(20):
        got.append(rec.read(step).item())
        rec.write(step, torch.ones(1, 1) if step == 0 else torch.zeros(1, 1))
    assert got.index(1.0) == 8 and sum(got) == 1.0


# --------------------------------------------------------------------------- F2.14 equivalence
@pytest.mark.parametrize("per", ["axon", "synapse"])
@pytest.mark.parametrize(("sigma", "learn_width"), [(0.0, False), (1.5, False), (2.3, True)])
def test_equals_naive_full_history_forward_and_all_gradients(per, sigma, learn_width):
    rec = make_rec(per=per, sigma=sigma, learn_width=learn_width)
    x, w_in, c = inputs(t=50)
    assert rec.n_lags() <= 12  # T = 50 >> L: the ring wraps several times
    syn = ctsnn.Dense(weight=w_in)
    out = run_layer(rec, x, syn)
    ref = run_layer(NaiveRecurrent(rec), x, syn)
    assert torch.equal(out, ref)
    rate = out.mean().item()
    assert 0.05 < rate < 0.6
    ps = params_of(rec, syn)
    grads = torch.autograd.grad((out * c).sum(), ps)
    ref_grads = torch.autograd.grad((ref * c).sum(), ps)
    for name, g, r in zip(["w_in", "w_rec", "delay", "p"], grads, ref_grads, strict=False):
        assert float(r.abs().max()) > 1e-6, name  # every gradient is exercised
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("per", ["axon", "synapse"])
def test_membrane_trace_equals_naive_through_run_population(per):
    rec = make_rec(per=per, sigma=0.7)
    x, w_in, _ = inputs(t=40, seed=5)
    kw = dict(dt=DT, n_steps=40, batch_size=3, jumps=x @ w_in.t(), method="euler",
              record=("v",), surrogate=atan(2.0))
    lif = ctsnn.LIF(6, tau_mem=2e-3)
    a = ctsnn.run_population(lif, recurrent=rec, **kw)
    b = ctsnn.run_population(lif, recurrent=NaiveRecurrent(rec), **kw)
    torch.testing.assert_close(a.states["v"], b.states["v"], rtol=0, atol=1e-12)
    assert torch.equal(a.raster, b.raster)


def test_module_equals_reference_buffer_scheme():
    rec = make_rec(sigma=1.5)
    x, w_in, c = inputs(t=30, seed=7)
    syn = ctsnn.Dense(weight=w_in)
    out = run_layer(rec, x, syn)
    ref = run_layer(Buffered(rec), x, syn)
    assert torch.equal(out, ref)
    ps = params_of(rec, syn)
    for g, r in zip(torch.autograd.grad((out * c).sum(), ps),
                    torch.autograd.grad((ref * c).sum(), ps), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- F2.15 FD
def _fd_check(param: torch.Tensor, loss_fn, raster_fn, eps=1e-6, n_checks=4):
    (grad,) = torch.autograd.grad(loss_fn(), param)
    base = raster_fn()
    flat = param.detach().view(-1)
    idx = torch.argsort(grad.abs().view(-1), descending=True)[:n_checks]
    for k in idx.tolist():
        old = float(flat[k])
        vals = []
        for sgn in (1.0, -1.0):
            with torch.no_grad():
                flat[k] = old + sgn * eps
            assert torch.equal(raster_fn(), base)  # the perturbation creates/deletes no spike
            with torch.no_grad():
                vals.append(float(loss_fn()))
        with torch.no_grad():
            flat[k] = old
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert fd == pytest.approx(float(grad.view(-1)[k]), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(("per", "sigma", "learn_width"),
                         [("axon", 0.0, False), ("axon", 0.7, True), ("synapse", 0.7, False)])
def test_finite_differences_of_delay_gradient(per, sigma, learn_width):
    """True derivative (no surrogate: spikes fixed under small perturbations) vs FD."""
    rec = make_rec(per=per, sigma=sigma, learn_width=learn_width, seed=11)
    with torch.no_grad():  # keep d away from the kinks at tau - 1 - d in {0, ±s}
        frac = rec.delay_steps - rec.delay_steps.floor()
        rec.delay_steps.add_(torch.where((frac - 0.5).abs() < 0.35, 0.0, 0.5 - frac))
        rec.delay_steps.add_(0.13)
    x, w_in, _ = inputs(t=40, seed=12, rate=0.4)
    g = torch.Generator().manual_seed(13)
    c = torch.randn(40, 3, 6, generator=g)
    lif = ctsnn.LIF(6, tau_mem=3e-3)

    def sim():
        return ctsnn.run_population(lif, dt=DT, n_steps=40, batch_size=3, jumps=x @ w_in.t(),
                                    method="euler", record=("v",), recurrent=rec)

    def loss():
        return (sim().states["v"] * c).sum()

    def raster():
        return sim().raster

    assert float(raster().mean()) > 0.05
    _fd_check(rec.delay_steps, loss, raster)
    _fd_check(rec.weight, loss, raster)
    if learn_width:
        _fd_check(rec.p_spread, loss, raster)


@pytest.mark.parametrize("per", ["axon", "synapse"])
def test_finite_differences_of_reads_for_fixed_spike_trains(per):
    rec = make_rec(per=per, sigma=1.3, learn_width=True, seed=21, n=5)
    g = torch.Generator().manual_seed(22)
    spikes = (torch.rand(30, 2, 5, generator=g) < 0.3).to(F64)
    c = torch.randn(30, 2, 5, generator=g)

    def loss():
        rec.start(2, dtype=F64, device="cpu")
        total = 0.0
        for step in range(30):
            total = total + (rec.read(step) * c[step]).sum()
            rec.write(step, spikes[step])
        return total

    for p in (rec.delay_steps, rec.p_spread, rec.weight):
        _fd_check(p, loss, lambda: spikes, n_checks=5)


# --------------------------------------------------------------------------- F2.16 schedule
def test_sigma_schedule_values():
    assert sigma_schedule(0, 150) == 10.0
    last = {150: 0.061, 100: 0.062, 200: 0.061, 30: 0.070}
    for epochs, value in last.items():
        assert round(sigma_schedule(epochs - 1, epochs), 3) == value
    for e in range(1, 100):
        assert sigma_schedule(e, 100) == pytest.approx(10 * 0.95 ** e, rel=1e-12)
        assert sigma_schedule(e, 100) < sigma_schedule(e - 1, 100)
    with pytest.raises(ValueError):
        sigma_schedule(-1, 10)
    with pytest.raises(ValueError):
        sigma_schedule(0, 0)


def test_p_spread_width():
    rec = make_rec(sigma=3.0, learn_width=False)
    rec_p = delayed_recurrent(6, dt=DT, sigma=3.0, learn_width=True,
                             delay_init=rec.delay_steps.detach() * DT)
    assert torch.equal(rec_p.p_spread.detach(), torch.zeros(6))
    torch.testing.assert_close(rec_p.kernel_tensor(), rec.kernel_tensor(), rtol=0, atol=1e-15)
    with torch.no_grad():
        rec_p.p_spread.copy_(torch.tensor([-50.0, -1.0, 0.0, 1.0, 2.0, 50.0]))
    s = rec_p.width().detach()
    torch.testing.assert_close(s, 1 + 6.0 * torch.sigmoid(rec_p.p_spread.detach()))
    assert float(s[0]) == pytest.approx(1.0) and float(s[-1]) == pytest.approx(7.0)
    rec_p.set_sigma(0.0)
    assert torch.equal(rec_p.width().detach(), torch.ones(6))
    with pytest.raises(ValueError):
        rec_p.set_sigma(-0.1)
    assert [p.shape for p in rec_p.delay_parameters()] == [(6,), (6,)]
    assert [p.shape for p in rec_p.weight_parameters()] == [(6, 6)]


# --------------------------------------------------------------------------- F2.17 vanilla
def test_vanilla_limit_equals_hand_written_rsnn():
    n, n_in, t_len, b = 6, 4, 40, 3
    x, w_in, c = inputs(t=t_len, b=b, n_in=n_in, n=n, seed=31)
    rec = delayed_recurrent(n, dt=DT, sigma=0.0, delay_init=0.0)
    with torch.no_grad():
        rec.weight.mul_(1.5)
    syn = ctsnn.Dense(weight=w_in)
    out = run_layer(rec, x, syn, tau=2e-3)

    sur, tau = atan(2.0), 2e-3
    v = torch.zeros(b, n)
    s_prev = torch.zeros(b, n)
    rows = []
    for t in range(t_len):
        v = v + DT * ((0.0 - v + 1.0 * 0.0) / tau)
        v = v + x[t] @ syn.weight.t()
        v = v + s_prev @ rec.weight.t()
        s = sur(v - 1.0)
        v = v + s * (0.0 - v)
        rows.append(s)
        s_prev = s
    ref = torch.stack(rows)
    assert torch.equal(out, ref)
    ps = [syn.weight, rec.weight]
    for g, r in zip(torch.autograd.grad((out * c).sum(), ps),
                    torch.autograd.grad((ref * c).sum(), ps), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- F2.18 eval modes
def test_paper_eval_mode_integer_lags_without_touching_training_state():
    d = torch.tensor([2.6, 2.5, 3.5, -0.7, 0.2, 4.49])
    rec = delayed_recurrent(6, dt=DT, sigma=2.0, learn_width=True, weight_init=torch.eye(6))
    with torch.no_grad():
        rec.delay_steps.copy_(d)
        rec.p_spread.copy_(torch.linspace(-1, 1, 6))
    state = {k: v.clone() for k, v in rec.state_dict().items()}
    train_kernel = rec.kernel_tensor().detach().clone()
    layer = ctsnn.Layer(ctsnn.LIF(6), None, recurrent=rec)
    layer.eval()
    assert not rec.training
    lags = [1 + 3, 1 + 2, 1 + 4, 1 + 0, 1 + 0, 1 + 4]  # round half to even; clamp >= 0
    h = rec.kernel_tensor()
    assert torch.equal(h.argmax(0), torch.tensor(lags))
    assert torch.equal(h.sum(0), torch.ones(6)) and torch.equal(h.max(0).values, torch.ones(6))
    for k, v in rec.state_dict().items():
        assert torch.equal(v, state[k]), k
    layer.train()
    assert torch.equal(rec.kernel_tensor().detach(), train_kernel)


def test_paper_eval_delivers_rounded_spike_exactly():
    rec = delayed_recurrent(1, dt=DT, sigma=0.5, delay_init=2.6e-3, weight_init=torch.ones(1, 1))
    rec.eval()
    rec.start(1, dtype=F64, device="cpu")
    got = []
    for step in range(10):
        got.append(rec.read(step).item())
        rec.write(step, torch.ones(1, 1) if step == 0 else torch.zeros(1, 1))
    assert got == [0.0] * 4 + [1.0] + [0.0] * 5  # lag 1 + round(2.6) = 4, no leak


def test_reference_eval_mode_rounds_in_place_and_leaks():
    sigma = sigma_schedule(99, 100)
    rec = delayed_recurrent(3, dt=DT, sigma=sigma, eval_mode="reference",
                           delay_init=torch.tensor([2.4, 5.6, 0.3]) * DT)
    with torch.no_grad():
        rec.delay_steps.sub_(0.5)  # a training step that makes one delay negative
    rec.eval()
    assert torch.equal(rec.delay_steps.detach(), torch.tensor([2.0, 5.0, 0.0]))  # in place
    h = rec.kernel_tensor().detach()
    assert float(h[3, 0]) == pytest.approx(0.942, abs=1e-3)  # centre at lag 1 + 2
    assert float(h[2, 0]) == pytest.approx(0.055, abs=1e-3)
    assert float(h[4, 0]) == pytest.approx(0.055, abs=1e-3)
    assert float(h[0, 2]) == 0.0 and float(h[2, 2]) == pytest.approx(0.055, abs=1e-3)
    rec.train()  # no restore: training continues from the rounded delays
    assert torch.equal(rec.delay_steps.detach(), torch.tensor([2.0, 5.0, 0.0]))
    with torch.no_grad():
        rec.delay_steps.add_(torch.tensor([0.7, -0.2, 1.4]))
    rec.eval()  # the next epoch's evaluation rounds again
    assert torch.equal(rec.delay_steps.detach(), torch.tensor([3.0, 5.0, 1.0]))


def test_continuous_eval_mode_keeps_training_kernel():
    rec = make_rec(sigma=1.5, eval_mode="continuous")
    k = rec.kernel_tensor().detach().clone()
    rec.eval()
    assert torch.equal(rec.kernel_tensor().detach(), k)


def test_clamp():
    rec = delayed_recurrent(3, dt=DT, max_delay=4e-3, delay_init=torch.tensor([1.0, 2.0, 3.0]) * DT)
    with torch.no_grad():
        rec.delay_steps.copy_(torch.tensor([-1.0, 2.5, 9.0]))
    with pytest.raises(ValueError, match="clamp_"):
        rec.start(1, dtype=F64, device="cpu")
    rec.clamp_delays_()
    assert torch.equal(rec.delay_steps.detach(), torch.tensor([0.0, 2.5, 4.0]))
    rec.start(1, dtype=F64, device="cpu")


# --------------------------------------------------------------------------- dropout, causality
def test_recurrent_dropout_mask_is_fixed_over_the_sequence():
    rec = make_rec(sigma=1.0, dropout=0.5, n=8)
    plain = make_rec(sigma=1.0, n=8)
    plain.load_state_dict(rec.state_dict())
    g = torch.Generator().manual_seed(41)
    spikes = (torch.rand(30, 5, 8, generator=g) < 0.4).to(F64)
    for m in (rec, plain):
        m.start(5, dtype=F64, device="cpu")
    ratios = []
    for step in range(30):
        a, b = rec.read(step), plain.read(step)
        nz = b.abs() > 1e-9
        ratio = torch.full_like(b, float("nan"))
        ratio[nz] = a[nz] / b[nz]
        ratios.append(ratio)
        rec.write(step, spikes[step])
        plain.write(step, spikes[step])
    r = torch.stack(ratios)
    first = torch.nanmean(r, dim=0)  # one value per (sample, neuron)
    ok = ~torch.isnan(r)
    torch.testing.assert_close(r[ok], first.expand_as(r)[ok])
    vals = set(first[~torch.isnan(first)].round(decimals=9).tolist())
    assert vals == {0.0, 2.0}
    rec.eval()
    plain.eval()
    rec.start(5, dtype=F64, device="cpu")
    plain.start(5, dtype=F64, device="cpu")
    for step in range(5):
        assert torch.equal(rec.read(step), plain.read(step))
        rec.write(step, spikes[step])
        plain.write(step, spikes[step])


@pytest.mark.parametrize("per", ["axon", "synapse"])
def test_causality(per):
    rec = make_rec(per=per, sigma=2.0)
    x, w_in, _ = inputs(t=40, seed=51)
    syn = ctsnn.Dense(weight=w_in)
    out = run_layer(rec, x, syn)
    for t0 in (0, 7, 25):
        x2 = x.clone()
        x2[t0 + 1:] = (torch.rand_like(x2[t0 + 1:]) < 0.5).to(F64)
        out2 = run_layer(rec, x2, syn)
        assert torch.equal(out2[:t0 + 1], out[:t0 + 1])
        assert not torch.equal(out2, out)


# --------------------------------------------------------------------------- memory
def _saved_bytes(fn) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        st_ = t.untyped_storage()
        seen[st_.data_ptr()] = st_.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_autograd_memory_does_not_grow_with_buffer_length_or_time():
    """Saved-for-backward bytes: the connection adds only its parameters' kernel (no per-step
    activations), whatever L and T; the reference buffer scheme adds O(T B N L)."""
    b, n = 8, 16
    extra = {}
    for t_len in (30, 60):
        x, w_in, _ = inputs(t=t_len, b=b, n_in=n, n=n, seed=61)
        syn = ctsnn.Dense(weight=w_in)
        with use_kernels(False):  # the same step loop without the connection (no fused LIF)
            base = _saved_bytes(lambda x=x, syn=syn: run_layer(None, x, syn))
        for d_hi, sigma in ((2.0, 0.0), (40.0, 10.0)):
            rec = make_rec(n=n, sigma=sigma, d_lo=0.5, d_hi=d_hi)
            got = _saved_bytes(lambda rec=rec, x=x, syn=syn: run_layer(rec, x, syn))
            extra[t_len, rec.n_lags()] = got - base
    (l_small, l_big) = sorted({lags for _, lags in extra})
    assert l_big >= 8 * l_small
    for lags in (l_small, l_big):
        assert extra[30, lags] == extra[60, lags]  # nothing per step
        assert extra[60, lags] <= 8 * (n * n + 4 * n * lags)  # W and the spread kernel
    x, w_in, _ = inputs(t=60, b=b, n_in=n, n=n, seed=61)
    syn = ctsnn.Dense(weight=w_in)
    base = _saved_bytes(lambda: run_layer(None, x, syn))
    ref = make_rec(n=n, sigma=10.0, d_lo=0.5, d_hi=40.0)
    naive = _saved_bytes(lambda: run_layer(Buffered(ref), x, syn))
    assert naive - base > 60 * b * n * l_big * 8  # O(T B N L) in the reference scheme


# --------------------------------------------------------------------------- API, errors
def test_parameters_train_with_the_layer_and_convert_dtype():
    torch.set_default_dtype(torch.float32)
    rec = delayed_recurrent(4, dt=DT, sigma=1.0, learn_width=True,
                           delay_init=uniform_delays(1e-3, 3e-3))
    layer = ctsnn.Layer(ctsnn.LIF(4), torch.randn(4, 3), recurrent=rec, surrogate=atan())
    names = {name for name, _ in layer.named_parameters()}
    assert {"recurrent.weight", "recurrent.delay_steps", "recurrent.p_spread"} <= names
    assert rec.weight.dtype == torch.float32
    layer.double()
    assert rec.sigma.dtype == F64 and rec.delay_steps.dtype == F64
    out = layer(torch.ones(5, 2, 3, dtype=F64), dt=DT, input_as="jump")[0].raster()
    assert out.shape == (5, 2, 4)
    assert torch.allclose(rec.delay, rec.delay_steps * DT)
    w = rec.weight.detach()
    torch.testing.assert_close(w @ w.t(), torch.eye(4, dtype=F64), rtol=0, atol=1e-6)  # orthogonal


def test_delay_initialisers():
    torch.manual_seed(0)
    u = uniform_delays(0.01, 0.03)((1000,))
    assert 0.01 <= float(u.min()) and float(u.max()) <= 0.03
    h = half_normal_delays(0.012)((20000,))
    assert float(h.min()) >= 0 and float(h.mean()) == pytest.approx(0.012 * math.sqrt(2 / math.pi),
                                                                    rel=0.05)
    rec = delayed_recurrent(5, dt=0.01, delay_init=uniform_delays(0.1, 0.3))
    d = rec.delay_steps.detach()
    assert 10.0 - 1e-9 <= float(d.min()) and float(d.max()) <= 30.0 + 1e-9
    rec = delayed_recurrent(3, dt=DT, per="synapse", delay_init=2e-3, learn_delay=False,
                           learn_weight=False, weight_init=torch.nn.init.zeros_)
    assert list(rec.parameters()) == [] and rec.delay_steps.shape == (3, 3)
    assert torch.equal(rec.weight, torch.zeros(3, 3))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(n=0), ValueError, "positive int"),
    (dict(dt=0.0), ValueError, "dt"),
    (dict(per="dendrite"), ValueError, "per"),
    (dict(sigma=-1.0), ValueError, "sigma"),
    (dict(sigma=float("nan")), ValueError, "sigma"),
    (dict(dropout=1.0), ValueError, "dropout"),
    (dict(eval_mode="rounded"), ValueError, "eval_mode"),
    (dict(delay_init=-1e-3), ValueError, "non-negative"),
    (dict(delay_init=float("nan")), ValueError, "non-finite"),
    (dict(delay_init=torch.zeros(4)), ValueError, "shape"),
    (dict(delay_init=torch.zeros(3, 3)), ValueError, "per"),
    (dict(delay_init=5e-3, max_delay=4e-3), ValueError, "max_delay"),
    (dict(delay_init="uniform"), ValueError, "max_delay"),
    (dict(weight_init=torch.zeros(3, 2)), ValueError, "weight_init"),
    (dict(weight_init="kaiming"), ValueError, "weight_init"),
    (dict(max_delay=-1.0), ValueError, "max_delay"),
])
def test_constructor_errors(kwargs, error, match):
    args = dict(n=3, dt=DT)
    args.update(kwargs)
    n = args.pop("n")
    with pytest.raises(error, match=match):
        delayed_recurrent(n, **args)


def test_protocol_errors():
    rec = delayed_recurrent(3, dt=DT, delay_init=1e-3)
    with pytest.raises(RuntimeError, match="before start"):
        rec.read(0)
    with pytest.raises(TypeError, match="dtype"):
        rec.start(2, dtype=torch.float32, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        rec.start(0, dtype=F64, device="cpu")
    rec.start(2, dtype=F64, device="cpu")
    with pytest.raises(ValueError, match="out of order"):
        rec.read(1)
    rec.read(0)
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        rec.write(0, torch.zeros(3, 2))
    rec.write(0, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="out of order"):
        rec.write(0, torch.zeros(2, 3))
    with torch.no_grad():
        rec.delay_steps[1] = float("nan")
    with pytest.raises(ValueError, match="delay_steps"):
        rec.start(2, dtype=F64, device="cpu")
    with pytest.raises(ValueError, match="n_lags"):
        triangle_spread(torch.zeros(2), 1.0, 0)


def test_deepcopy_after_a_forward_pass():
    import copy

    rec = make_rec(sigma=1.0)
    x, w_in, _ = inputs(t=10)
    syn = ctsnn.Dense(weight=w_in)
    out = run_layer(rec, x, syn)  # leaves a working set holding graph tensors
    clone = copy.deepcopy(rec)
    assert torch.equal(run_layer(clone, x, syn), out)
    rec.release()
    assert torch.equal(run_layer(rec, x, syn), out)


@pytest.mark.parametrize("kernels", [False, True], ids=["reference", "scatter"])
def test_training_steps_do_not_accumulate_memory(kernels):
    """Regression: each step's working set stayed alive through a reference cycle (ctx -> run ->
    spike tensors -> graph -> ctx); the number of live tensors must stay flat across steps.
    The reference path refuses a second backward; the scatter path supports it."""
    import gc

    rec = delayed_recurrent(6, dt=DT, sigma=1.0, delay_init=uniform_delays(1e-3, 4e-3))
    layer = ctsnn.Layer(ctsnn.LIF(6, tau_mem=0.01), 0.8 * torch.ones(6, 3), recurrent=rec,
                        surrogate=atan(), method="euler")
    x = (torch.rand(40, 2, 3, generator=torch.Generator().manual_seed(0)) < 0.3).double()

    def live() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, torch.nn.Parameter))

    with use_kernels(kernels):
        counts = []
        for _ in range(4):
            out = layer(x, dt=DT, input_as="jump")[0].raster()
            out.sum().backward()
            del out
            counts.append(live())
        assert counts[-1] <= counts[1], counts
        layer.zero_grad()
        out = layer(x, dt=DT, input_as="jump")[0].raster()
        loss = out.sum()
        loss.backward(retain_graph=True)
        if not kernels:
            with pytest.raises(RuntimeError, match="retain_graph"):
                loss.backward()
            return
        first = rec.delay_steps.grad.clone()
        loss.backward()
    assert torch.equal(rec.delay_steps.grad, 2 * first)
