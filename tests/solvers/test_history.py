"""History buffers: exactness on polynomials, the lag rule, ring wrap-around, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.history import History, required_capacity

F64 = torch.float64


def poly(coeffs):
    """p(t) = sum c_i t^i and its derivative, on tensors."""

    def p(t):
        return sum(c * t**i for i, c in enumerate(coeffs)) + 0 * t

    def dp(t):
        return sum(i * c * t ** (i - 1) for i, c in enumerate(coeffs) if i > 0) + 0 * t

    return p, dp


def filled(coeffs, *, interp, t0, dt, max_delay, n_push, shape=(3,), capacity=None):
    """A History that has seen p on the grid (pre-history p as well)."""
    p, dp = poly(coeffs)
    hist = History(shape, max_delay, dt, initial=p, t0=t0, interp=interp, dtype=F64,
                   capacity=capacity)
    for k in range(n_push):
        t = torch.full(shape, t0 + k * dt, dtype=F64)
        hist.push(p(t), dp(t))
    return hist, p, dp


coeff = st.floats(-2.0, 2.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    interp_deg=st.sampled_from([("linear", 1), ("hermite", 3)]),
    data=st.data(),
    t0=st.floats(-3.0, 3.0),
    dt=st.floats(0.01, 0.5),
    max_delay=st.floats(0.05, 2.0),
    n_push=st.integers(1, 80),
)
def test_lookup_is_exact_for_polynomials(interp_deg, data, t0, dt, max_delay, n_push):
    # Linear interpolation is exact for degree <= 1, cubic Hermite for degree <= 3, including
    # after the ring has wrapped around, before t0 (pre-history) and at d = max_delay.
    interp, deg = interp_deg
    coeffs = data.draw(st.lists(coeff, min_size=deg + 1, max_size=deg + 1))
    delays = data.draw(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
    hist, p, dp = filled(coeffs, interp=interp, t0=t0, dt=dt, max_delay=max_delay,
                         n_push=n_push)
    d = torch.tensor(delays, dtype=F64) * max_delay
    d[0] = max_delay  # the longest lag is always honoured
    d.requires_grad_(True)
    got = hist.lookup(d)
    t_read = hist.t_last - d.detach()
    scale = 1.0 + max(abs(c) for c in coeffs) * (1.0 + abs(t0) + n_push * dt) ** deg
    assert torch.allclose(got, p(t_read), rtol=0, atol=1e-11 * scale)
    # d/dd p(t - d) = -p'(t - d): gradients w.r.t. the delay are exact as well.
    # (Except at t0 itself while only x(t0) is stored: no segment to differentiate.)
    (grad,) = torch.autograd.grad(got.sum(), d)
    keep = slice(None) if n_push > 1 else t_read != t0
    assert torch.allclose(grad[keep], -dp(t_read)[keep], rtol=0,
                          atol=1e-9 * scale / min(dt, 1.0))
    # A single (uniform) delay takes a separate path: same values.
    one = hist.lookup(float(d[1].detach()))
    assert torch.allclose(one, p(torch.tensor(hist.t_last - float(d[1]), dtype=F64)).expand(3),
                          rtol=0, atol=1e-11 * scale)


def test_interpolation_order_is_not_overstated():
    # Sanity of the exactness test: one degree more is no longer reproduced.
    for interp, deg in (("linear", 2), ("hermite", 4)):
        coeffs = [0.0] * deg + [1.0]
        hist, p, _ = filled(coeffs, interp=interp, t0=0.0, dt=0.1, max_delay=1.0, n_push=20)
        d = torch.tensor([0.05, 0.15, 0.55], dtype=F64)
        err = (hist.lookup(d) - p(hist.t_last - d)).abs().max().item()
        assert err > 1e-8, (interp, err)


def test_capacity_honours_max_delay_after_wrap_around():
    for max_delay, dt in ((1.0, 0.1), (0.3, 0.1), (0.3, 0.3 / 7), (0.25, 0.1), (0.05, 0.2)):
        cap = required_capacity(max_delay, dt)
        assert cap >= max_delay / dt + 2
        hist, p, _ = filled([0.5, -1.5], interp="linear", t0=0.0, dt=dt, max_delay=max_delay,
                            n_push=10 * cap + 3, shape=(2,))
        assert len(hist) == hist.capacity == cap
        got = hist.lookup(max_delay)
        assert torch.allclose(got, p(torch.tensor(hist.t_last - max_delay, dtype=F64)),
                              atol=1e-10)
        # A float32 delay equal to max_delay up to rounding is accepted as it is.
        hist.lookup(torch.tensor(max_delay, dtype=torch.float32))


def test_pre_history_constant_and_initial_jump():
    hist = History((2,), 1.0, 0.1, initial=torch.tensor([3.0, -1.0], dtype=F64), interp="linear")
    hist.push(torch.tensor([0.0, 0.0], dtype=F64))  # y(t0) != phi(t0): a jump at t0
    assert torch.equal(hist.lookup(0.0), torch.zeros(2, dtype=F64))
    assert torch.equal(hist.lookup(1e-3), torch.tensor([3.0, -1.0], dtype=F64))
    hist.push(torch.tensor([1.0, 2.0], dtype=F64))
    mid = hist.lookup(torch.tensor([0.05, 0.15], dtype=F64))
    assert torch.allclose(mid, torch.tensor([0.5, -1.0], dtype=F64))


def test_lag_inside_the_current_step_needs_dense_output():
    hist, p, _ = filled([1.0, 2.0], interp="hermite", t0=0.0, dt=0.1, max_delay=1.0, n_push=5)
    # Reading at t_last + offset with d < offset would extrapolate: refused.
    with pytest.raises(ValueError, match=r"does not extrapolate.*dense="):
        hist.lookup(0.02, offset=0.05)
    with pytest.raises(ValueError, match=r"does not extrapolate.*dense="):
        hist.lookup(torch.tensor([0.5, 0.02, 0.3], dtype=F64), offset=0.05)
    # d >= offset reads the stored past only.
    assert torch.allclose(hist.lookup(0.05, offset=0.05), p(torch.tensor(0.4, dtype=F64)))
    # With the caller's dense output, the part after the newest sample comes from it.
    seen = []

    def dense(s):
        seen.append(s)
        return 100.0 + s

    d = torch.tensor([0.5, 0.02, 0.05], dtype=F64)
    got = hist.lookup(d, offset=0.05, dense=dense)
    assert torch.allclose(got, torch.tensor([p(torch.tensor(0.4 + 0.05 - 0.5)), 100.03, 1.8],
                                            dtype=F64))
    assert seen and float(seen[0].max()) == pytest.approx(0.03)
    # Empty history: even d = 0 at offset 0 (the state at t0) needs the caller's value.
    empty = History((3,), 1.0, 0.1, initial=7.0, dtype=F64)
    assert torch.equal(empty.lookup(0.5), torch.full((3,), 7.0, dtype=F64))
    with pytest.raises(ValueError, match="dense="):
        empty.lookup(0.0)
    assert torch.equal(empty.lookup(0.0, dense=lambda s: torch.ones(3, dtype=F64)),
                       torch.ones(3, dtype=F64))


def test_per_connection_delays_broadcast():
    # A [B, N_pre] quantity stored as [B, 1, N_pre] (a free view) is read with per-connection
    # delays [N_post, N_pre] as [B, N_post, N_pre] by broadcasting.
    B, n_pre, n_post = 2, 3, 4
    p, dp = poly([0.3, -1.0, 0.5, 0.2])
    scale = torch.arange(1, B * n_pre + 1, dtype=F64).view(B, 1, n_pre)
    hist = History((B, 1, n_pre), 0.8, 0.05, initial=0.0, dtype=F64)
    for k in range(30):
        t = torch.tensor(k * 0.05, dtype=F64)
        hist.push(scale * p(t), scale * dp(t))
    d = torch.rand(n_post, n_pre, dtype=F64, generator=torch.Generator().manual_seed(0)) * 0.8
    got = hist.lookup(d)
    assert got.shape == (B, n_post, n_pre)
    want = scale * p(hist.t_last - d)
    assert torch.allclose(got, want, atol=1e-12)


def test_gradients_flow_to_stored_values():
    dt = 0.1
    d_grid = torch.tensor([[0.03, 0.47], [0.25, 0.0]], dtype=F64)

    def read(values, derivs, delay):
        hist = History((2,), 0.5, dt, initial=torch.tensor([0.5, -0.5], dtype=F64))
        for y, dy in zip(values, derivs, strict=True):
            hist.push(y, dy)
        return hist.lookup(delay)

    gen = torch.Generator().manual_seed(1)
    values = torch.randn(6, 2, dtype=F64, generator=gen).requires_grad_(True)
    derivs = torch.randn(6, 2, dtype=F64, generator=gen).requires_grad_(True)
    for delay in (d_grid, torch.tensor(0.37, dtype=F64)):
        assert torch.autograd.gradcheck(
            lambda v, m, delay=delay: read(v.unbind(0), m.unbind(0), delay), (values, derivs),
            fast_mode=True,
        )
    delay = torch.tensor([0.13, 0.42], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: read(values.unbind(0), derivs.unbind(0), d),
                                    (delay,), fast_mode=True)


def test_gradients_with_reads_between_pushes():
    # Per-element reads go through a ring tensor written in place on every push; reads taken
    # before later pushes keep their own gradients.
    def run(values, derivs):
        hist = History((2,), 0.3, 0.1, initial=0.0, dtype=F64)
        out = []
        for y, dy in zip(values.unbind(0), derivs.unbind(0), strict=True):
            hist.push(y, dy)
            out.append(hist.read(torch.tensor([0.05, 0.27], dtype=F64)))
        return torch.stack(out)

    gen = torch.Generator().manual_seed(2)
    values = torch.randn(7, 2, dtype=F64, generator=gen).requires_grad_(True)
    derivs = torch.randn(7, 2, dtype=F64, generator=gen).requires_grad_(True)
    assert torch.autograd.gradcheck(run, (values, derivs), fast_mode=True)


def test_per_element_offsets():
    # read() takes a tensor offset: every element at its own local time in the step.
    hist, p, _ = filled([0.2, 1.0, -0.5, 0.1], interp="hermite", t0=0.0, dt=0.1, max_delay=1.0,
                        n_push=8)
    offset = torch.tensor([0.0, 0.03, 0.1], dtype=F64)
    d = torch.tensor([0.4, 0.5, 0.1], dtype=F64)
    assert torch.allclose(hist.read(d, offset), p(hist.t_last + offset - d), atol=1e-13)
    with pytest.raises(ValueError, match="does not extrapolate"):
        hist.read(torch.tensor([0.4, 0.01, 0.1], dtype=F64), offset)


def test_explicit_clamping():
    hist, p, _ = filled([1.0, 2.0], interp="hermite", t0=0.0, dt=0.1, max_delay=0.5, n_push=20)
    d = torch.tensor([-0.2, 0.3, 0.9], dtype=F64, requires_grad=True)
    got = hist.lookup(d, clamp=True)
    want = p(hist.t_last - torch.tensor([0.0, 0.3, 0.5], dtype=F64))
    assert torch.allclose(got, want)
    (grad,) = torch.autograd.grad(got.sum(), d)
    assert grad[0] == 0 and grad[2] == 0 and grad[1] != 0  # no gradient where clamped
    with pytest.raises(ValueError, match="NaN"):  # clamping never hides NaN
        hist.lookup(torch.tensor([math.nan]), clamp=True)


# -- errors name the parameter ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"max_delay": -1.0}, ValueError, "max_delay must be positive"),
        ({"max_delay": 0.0}, ValueError, "max_delay.*zero-length"),
        ({"max_delay": math.nan}, ValueError, "max_delay must be finite"),
        ({"max_delay": "1"}, TypeError, "max_delay must be a real number"),
        ({"dt": 0.0}, ValueError, "dt must be positive"),
        ({"dt": math.inf}, ValueError, "dt must be finite"),
        ({"capacity": 0}, ValueError, "capacity.*zero-length"),
        ({"capacity": 11}, ValueError, r"capacity=11 .*too small.*at least .*12"),
        ({"interp": "cubic"}, ValueError, "unknown interp 'cubic'"),
        ({"shape": (2, -1)}, TypeError, "shape must be"),
        ({"initial": torch.zeros(4)}, ValueError, "initial has shape"),
        ({"initial": "zero"}, TypeError, "initial must be"),
    ],
)
def test_constructor_errors(kwargs, exc, match):
    args = {"shape": (3,), "max_delay": 1.0, "dt": 0.1, **kwargs}
    with pytest.raises(exc, match=match):
        History(**args)


def test_push_errors():
    hist = History((3,), 1.0, 0.1, dtype=F64)
    with pytest.raises(ValueError, match=r"y must have the element shape \[3\]"):
        hist.push(torch.zeros(4, dtype=F64), torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match=r"dy .*required with interp='hermite'"):
        hist.push(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="dy must have the element shape"):
        hist.push(torch.zeros(3, dtype=F64), torch.zeros(1, dtype=F64))
    with pytest.raises(TypeError, match="y has dtype torch.float32"):
        hist.push(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        hist.push([0.0, 0.0, 0.0])
    assert hist.count == 0  # failed pushes store nothing


@pytest.mark.parametrize(
    ("delay", "kwargs", "exc", "match"),
    [
        (-0.1, {}, ValueError, r"delay must be >= 0.*clamp=True"),
        (torch.tensor([0.1, -1e-3, 0.2]), {}, ValueError, r"delay must be >= 0"),
        (1.5, {}, ValueError, r"delay exceeds max_delay=1.0 .*clamp=True"),
        (torch.tensor([0.1, math.inf, 0.2]), {}, ValueError, r"delay must be finite.*\(1,\)"),
        (2.0**40, {}, ValueError, "delay exceeds max_delay"),
        (math.nan, {}, ValueError, r"delay contains NaN"),
        (torch.tensor([0.1, 0.2, math.nan]), {}, ValueError, r"delay contains NaN .*\(2,\)"),
        (torch.zeros(4), {}, ValueError, r"delay has shape \[4\].*element shape \[2, 3\]"),
        (torch.zeros(2), {}, ValueError, r"delay has shape \[2\]"),
        (True, {}, TypeError, "delay must be a number or a tensor"),
        ("0.1", {}, TypeError, "delay must be a number or a tensor"),
        (0.1, {"offset": -0.05}, ValueError, "offset must be >= 0"),
    ],
)
def test_lookup_errors(delay, kwargs, exc, match):
    hist = History((2, 3), 1.0, 0.1)
    for _ in range(3):
        hist.push(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(exc, match=match):
        hist.lookup(delay, **kwargs)
