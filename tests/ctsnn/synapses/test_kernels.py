"""Delay kernel functions: rounding, the DCLS position convention, Gaussian/triangle/rounded
kernels (float64). SEEDS F0.3 (rounding), F1.5 (position <-> delay), F1.6 (normalisation),
F1.7 (sigma -> 0 and the sigma_eff = 0.5 values). The sigma schedules are tested in
tests/ctsnn/training.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctsnn.synapses.kernels import (
    DCLS_EPS,
    Taps,
    clamp_delay,
    delay_to_position,
    gaussian_kernel,
    gaussian_mass,
    kernel_size,
    position_to_delay,
    round_delay,
    rounded_kernel,
    rounded_taps,
    taps_to_dense,
    triangle_kernel,
    triangle_taps,
)


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


FAST = settings(max_examples=40, deadline=None)


# --------------------------------------------------------------------------- sizes, positions
def test_kernel_size_is_odd_and_checks_multiples():
    assert kernel_size(0.25, 0.01) == 25          # SHD
    assert kernel_size(0.3, 0.01) == 31           # SSC/GSC: 30 -> 31
    assert kernel_size(0.08, 0.01) == 9
    assert kernel_size(0.0, 0.01) == 1
    assert kernel_size(0.7, 0.1) == 7             # 0.7 / 0.1 = 6.999999999999999
    with pytest.raises(ValueError, match="whole number of steps"):
        kernel_size(0.255, 0.01)
    with pytest.raises(ValueError, match="non-negative"):
        kernel_size(-0.1, 0.01)
    with pytest.raises(ValueError, match="positive"):
        kernel_size(0.1, 0.0)


def test_position_delay_map_matches_dcls():
    # SEEDS A1.3: K = 25, P = 12 / 0 / -12 / 3 -> delays 0 / 12 / 24 / 9.
    p = torch.tensor([12.0, 0.0, -12.0, 3.0])
    d = position_to_delay(p, 25)
    assert d.tolist() == [0.0, 12.0, 24.0, 9.0]
    assert torch.equal(delay_to_position(d, 25), p)
    assert position_to_delay(0.5, 31) == 14.5
    with pytest.raises(ValueError, match="odd K"):
        position_to_delay(p, 24)


def test_position_convention_is_dcls_cross_correlation():
    """Our lag kernel, flipped, is the DCLS kernel with centre index ``c = P + K // 2``."""
    k, sigma = 25, 1.7
    p = torch.tensor([[5.3, -11.2], [0.0, 12.0]])
    n = torch.arange(k, dtype=p.dtype)
    c = (p + k // 2).unsqueeze(-1)
    g = torch.exp(-0.5 * ((n - c) / sigma) ** 2)
    dcls = g / (g.sum(-1, keepdim=True) + DCLS_EPS)  # indexed like the conv weight
    ours = gaussian_kernel(position_to_delay(p, k), sigma, k)
    torch.testing.assert_close(ours.flip(-1), dcls, rtol=0, atol=1e-15)


def test_clamp_keeps_delays_in_window():
    d = torch.tensor([-3.0, 0.0, 7.5, 24.0, 30.0])
    out = clamp_delay(d, 25)
    assert out.tolist() == [0.0, 0.0, 7.5, 24.0, 24.0]
    p = delay_to_position(out, 25)
    assert bool((p.abs() <= 12).all())


# --------------------------------------------------------------------------- rounding
def test_round_to_nearest_not_truncation():
    d = torch.tensor([2.6, 2.4, 2.9999, 0.4, 24.0, 23.51])
    assert round_delay(d).tolist() == [3.0, 2.0, 3.0, 0.0, 24.0, 24.0]
    assert round_delay(d, mode="half_away").tolist() == [3.0, 2.0, 3.0, 0.0, 24.0, 24.0]


def test_round_tie_rules():
    halves = torch.tensor([0.5, 1.5, 2.5, 3.5, -0.5, -2.5])
    assert round_delay(halves).tolist() == [0.0, 2.0, 2.0, 4.0, -0.0, -2.0]   # half to even
    assert round_delay(halves, mode="half_away").tolist() == [1.0, 2.0, 3.0, 4.0, -1.0, -3.0]
    # The classic floor(x + 0.5) bug: the largest double below 0.5 must round down.
    below = torch.tensor([0.49999999999999994])
    assert round_delay(below, mode="half_away").item() == 0.0
    with pytest.raises(ValueError, match="unknown mode"):
        round_delay(halves, mode="floor")


def test_round_straight_through():
    d = torch.tensor([2.6, 0.2], requires_grad=True)
    r = round_delay(d, straight_through=True)
    assert r.tolist() == [3.0, 0.0]
    r.sum().backward()
    assert d.grad.tolist() == [1.0, 1.0]
    assert not round_delay(d).requires_grad


# --------------------------------------------------------------------------- Gaussian
@FAST
@given(d=st.floats(-5, 30), sigma=st.floats(0.05, 20), k=st.sampled_from([1, 5, 9, 25, 31]))
def test_gaussian_normalised_over_window(d, sigma, k):
    """F1.6: sum_n k[n] = S / (S + 1e-7), even when the window truncates the Gaussian."""
    dd = torch.tensor(d)
    kern = gaussian_kernel(dd, sigma, k)
    s = gaussian_mass(dd, sigma, k)
    assert kern.shape == (k,)
    assert bool((kern >= 0).all())
    assert math.isclose(kern.sum().item(), (s / (s + DCLS_EPS)).item(), rel_tol=1e-12)


def test_gaussian_weighted_sum_and_batch_shapes():
    w = torch.tensor([[0.3, -1.2, 2.0]])
    d = torch.tensor([[0.0, 11.4, 24.0]])
    kern = gaussian_kernel(d, torch.tensor([[0.6, 3.0, 12.27]]), 25) * w.unsqueeze(-1)
    s = gaussian_mass(d, torch.tensor([[0.6, 3.0, 12.27]]), 25)
    assert kern.shape == (1, 3, 25)
    torch.testing.assert_close(kern.sum(-1), w * s / (s + DCLS_EPS), rtol=1e-13, atol=0)


def test_gaussian_end_of_schedule_values():
    """F1.7: sigma_eff = 0.5 at an integer centre: 0.78657 w, 0.10645 w, 0.00026 w (K = 25)."""
    for centre in (12, 5):
        kern = gaussian_kernel(torch.tensor(float(centre)), 0.5, 25)
        assert kern.argmax().item() == centre          # mass at lag d
        assert round(kern[centre].item(), 5) == 0.78657
        assert round(kern[centre - 1].item(), 5) == round(kern[centre + 1].item(), 5) == 0.10645
        assert round(kern[centre - 2].item(), 5) == round(kern[centre + 2].item(), 5) == 0.00026


def test_gaussian_sigma_to_zero_is_one_hot():
    """F1.7: at an integer centre with sigma_eff = 0.05 the kernel is the rounded one-hot."""
    d = torch.arange(25, dtype=torch.float64)
    kern = gaussian_kernel(d, 0.05, 25)
    torch.testing.assert_close(kern, rounded_kernel(d, 25), rtol=0, atol=1e-6)


def test_gaussian_gradcheck_delay_and_sigma():
    d = torch.tensor([0.3, 7.7, 23.9], requires_grad=True)
    s = torch.tensor([0.6, 2.0, 12.27], requires_grad=True)
    assert torch.autograd.gradcheck(lambda d, s: gaussian_kernel(d, s, 25), (d, s))
    p = torch.tensor([11.2, -3.4], requires_grad=True)  # through the position convention
    assert torch.autograd.gradcheck(
        lambda p: gaussian_kernel(position_to_delay(p, 25), 1.3, 25), (p,))


def test_gaussian_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        gaussian_kernel(torch.tensor(1.0), 0.0, 5)
    with pytest.raises(ValueError, match="positive int"):
        gaussian_kernel(torch.tensor(1.0), 1.0, 0)


# --------------------------------------------------------------------------- triangle
@FAST
@given(d=st.floats(0, 24), k=st.sampled_from([2, 3, 25]))
def test_triangle_mass_and_formula(d, k):
    d = min(d, k - 1)
    dd = torch.tensor(d)
    dense = triangle_kernel(dd, k)
    n = torch.arange(k, dtype=dd.dtype)
    torch.testing.assert_close(dense, torch.relu(1 - (n - dd).abs()), rtol=0, atol=1e-12)
    assert math.isclose(dense.sum().item(), 1.0, rel_tol=0, abs_tol=1e-15)
    assert int((dense != 0).sum()) <= 2


def test_triangle_integer_delay_is_exact_one_tap():
    for d in (0.0, 3.0, 24.0):
        dense = triangle_kernel(torch.tensor(d), 25)
        expected = torch.zeros(25)
        expected[int(d)] = 1.0
        assert torch.equal(dense, expected)
    assert torch.equal(triangle_kernel(torch.tensor(0.0), 1), torch.ones(1))


def test_triangle_taps_and_gradient():
    d = torch.tensor([2.3, 24.0], requires_grad=True)
    lags, coefs = triangle_taps(d, 25)
    assert lags.tolist() == [[2, 23], [3, 24]]
    torch.testing.assert_close(coefs.detach(), torch.tensor([[0.7, 0.0], [0.3, 1.0]]))
    coefs[:, 0].sum().backward(retain_graph=True)
    assert d.grad.tolist() == [0.0, 0.0]            # mass is conserved
    d.grad = None
    coefs[1].sum().backward()
    assert d.grad.tolist() == [1.0, 1.0]            # d(upper tap)/dd = +1


# --------------------------------------------------------------------------- rounded
def test_rounded_kernel_one_hot_and_straight_through():
    d = torch.tensor([2.6, 2.5, 0.0, 24.0, 23.4], requires_grad=True)
    hard = rounded_kernel(d, 25)
    assert hard.argmax(-1).tolist() == [3, 2, 0, 24, 23]
    assert torch.equal(hard.sum(-1), torch.ones(5))
    st_taps = rounded_taps(d, 25, straight_through=True)
    st_dense = taps_to_dense(st_taps, 25)
    assert torch.equal(st_dense, hard.detach())        # exact forward values
    # Straight-through gradient = the triangle's gradient.
    g = torch.randn(5, 25)
    (gd,) = torch.autograd.grad((st_dense * g).sum(), d)
    (gt,) = torch.autograd.grad((triangle_kernel(d, 25) * g).sum(), d)
    torch.testing.assert_close(gd, gt, rtol=0, atol=0)
    assert rounded_taps(d, 25).lags.shape == (1, 5)
    one = rounded_taps(torch.tensor([0.0], requires_grad=True), 1, straight_through=True)
    assert taps_to_dense(one, 1).tolist() == [[1.0]]


def test_taps_to_dense_sums_shared_lags_and_checks_range():
    taps = Taps(torch.tensor([[1], [1]]), torch.tensor([[0.25], [0.5]]))
    assert taps_to_dense(taps, 3).tolist() == [[0.0, 0.75, 0.0]]
    with pytest.raises(ValueError, match="lags must lie"):
        taps_to_dense(Taps(torch.tensor([[3]]), torch.tensor([[1.0]])), 3)
