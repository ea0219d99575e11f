"""Exact flows of linear equations (``ctsnn.models.equations.linear``)."""

from __future__ import annotations

import pytest
import sympy as sp
import torch

import ctsnn
from ctsnn.models.equations.linear import analyse_linear, is_affine_in, linear_flow

pytestmark = pytest.mark.usefixtures("float64")


def test_lif_flow_singular_and_scalar_h():
    m = ctsnn.from_equations("dv/dt = k*v + I/c", parameters={"k": torch.tensor([0.0, -2.0, 3.0]),
                                                         "c": 2.0}, n=3)
    v = torch.tensor([[1.0, 1.0, 1.0]])
    x = torch.tensor([[4.0, 4.0, 4.0]])
    out = m.flow(m.State(v), x, 0.5).v
    k = torch.tensor([0.0, -2.0, 3.0])
    expected = torch.where(k == 0, v + 2.0 * 0.5, v * torch.exp(0.5 * k)
                           + 2.0 * torch.expm1(0.5 * k) / torch.where(k == 0, 1.0, k))
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)


def test_linear_flow_matches_the_matrix_exponential():
    """Two variables, per-element coefficients and steps, input broadcast over the batch."""
    gen = torch.Generator().manual_seed(5)
    a = [torch.randn(4, generator=gen) for _ in range(4)]
    b = [torch.randn(4, generator=gen) for _ in range(2)]
    state = (torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen))
    h = 0.3 * torch.rand(3, 4, generator=gen)
    got = linear_flow(state, a, b, h, torch.zeros(4))
    for bi in range(3):
        for n in range(4):
            m = torch.zeros(3, 3)
            m[0, :2] = torch.stack([a[0][n], a[1][n]])
            m[1, :2] = torch.stack([a[2][n], a[3][n]])
            m[:2, 2] = torch.stack([b[0][n], b[1][n]])
            x = torch.stack([state[0][bi, n], state[1][bi, n], torch.tensor(1.0)])
            ref = torch.linalg.matrix_exp(m * h[bi, n]) @ x
            for k in range(2):
                torch.testing.assert_close(got[k][bi, n], ref[k], rtol=1e-13, atol=1e-13)


def test_analyse_linear_and_affinity():
    v, w, t, k = sp.symbols("v w t k", real=True)
    a_rows, b = analyse_linear([-k * v + w + 3, v * k], [v, w], t)
    assert a_rows == ((-k, 1), (k, 0)) and b == (3, 0)
    assert analyse_linear([v * w], [v, w], t) is None
    assert analyse_linear([v + t], [v, w], t) is None
    assert is_affine_in(3 * v - k, v) and not is_affine_in(v**2, v)
