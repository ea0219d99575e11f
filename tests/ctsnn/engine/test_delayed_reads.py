"""Neuron models that read their own delayed state: x(t - lag) through History buffers."""

from __future__ import annotations

import math

import pytest
import sympy
import torch

import ctsnn

pytestmark = pytest.mark.usefixtures("float64")


class DelayedDecay(ctsnn.NeuronModel):
    """The textbook DDE ``y' = -y(t - lag)`` with ``y = 1`` for ``t <= 0``."""

    state_names = ("y",)
    delayed_reads = {"y_lag": ("y", "lag")}
    initial_values = {"y": 1.0}

    def __init__(self, n: int, lag: float | torch.Tensor = 1.0) -> None:
        super().__init__(n)
        self.add_parameter("lag", lag, positive=True)

    def dynamics(self, t, state, input, delayed):
        return (-delayed["y_lag"],)


def exact_solution(t_end: float) -> float:
    """Method of steps with sympy: y on [k, k+1] from y on [k-1, k]."""
    t = sympy.Symbol("t")
    piece, value = sympy.Integer(1), sympy.Integer(1)  # y on [-1, 0]; y(0)
    k = 0
    while True:
        nxt = value - sympy.integrate(piece.subs(t, t - 1), (t, k, t))
        if t_end <= k + 1:
            return float(nxt.subs(t, t_end))
        piece, value, k = nxt, nxt.subs(t, k + 1), k + 1


@pytest.mark.parametrize("time", ["continuous", "discrete"])
def test_textbook_dde_converges_at_fourth_order(time):
    # On [0, 3] the solution is piecewise cubic: RK4 with Hermite history is exact there.
    res = ctsnn.simulate(DelayedDecay(1), n_steps=30, batch_size=1, dt=0.1, time=time,
                         method="rk4", record=["y"])
    exact = torch.tensor([exact_solution(0.1 * (k + 1)) for k in range(30)])
    assert torch.allclose(res.states["y"][:, 0, 0], exact, atol=1e-13, rtol=0)
    # On [0, 5] the degree is higher: fourth-order convergence.
    errors = []
    for dt in (0.1, 0.05):
        n = int(round(5.0 / dt))
        res = ctsnn.simulate(DelayedDecay(1), n_steps=n, batch_size=1, dt=dt, time=time,
                             method="rk4", record=["y"])
        errors.append(abs(res.states["y"][-1, 0, 0].item() - exact_solution(5.0)))
    order = math.log2(errors[0] / errors[1])
    assert errors[1] < 1e-7
    assert 3.8 < order < 4.2, order


def test_per_neuron_lags_and_gradient_wrt_the_lag():
    # Lags off the (half-)grid: a read point exactly on the history's kink at t = 0 makes the
    # discrete map non-differentiable there (central differences average the two sides).
    lag = torch.tensor([0.9913, 0.6071, 0.3487])
    model = DelayedDecay(3, lag=lag)
    model.lag.requires_grad_()
    res = ctsnn.simulate(model, n_steps=80, batch_size=2, dt=0.025, method="rk4", record=["y"])
    y_end = res.states["y"][-1, 0]
    assert torch.equal(res.states["y"][-1, 0], res.states["y"][-1, 1])  # samples agree
    (g,) = torch.autograd.grad(y_end.sum(), model.lag)
    for i in range(3):
        vals = []
        for sign in (1, -1):
            m = DelayedDecay(3, lag=model.lag.detach() + sign * 1e-6 * torch.eye(3)[i])
            r = ctsnn.simulate(m, n_steps=80, batch_size=1, dt=0.025, method="rk4",
                               record=["y"])
            vals.append(r.states["y"][-1, 0, i].item())
        fd = (vals[0] - vals[1]) / 2e-6
        assert math.isclose(g[i].item(), fd, rel_tol=1e-6, abs_tol=1e-9)


def test_bad_lags_and_methods():
    with pytest.raises(ValueError, match="at least one grid step"):
        ctsnn.simulate(DelayedDecay(1, lag=0.01), n_steps=5, batch_size=1, dt=0.1, method="rk4")
    with pytest.raises(ValueError, match="needs a closed-form flow"):
        ctsnn.simulate(DelayedDecay(1), n_steps=5, batch_size=1, dt=0.1, method="exact")
