"""Continuous time: gradients w.r.t. arrival times are right on grid points (issue 9, item 1).

An arrival exactly on a grid point ``k dt`` lies at the very end of step ``k - 1`` (offset
``dt``), so the piece after it is empty; the state at the end of the step must still depend
on the arrival time through that empty piece. Likewise a spike or a refractory end exactly on
a grid point, arrivals on each other and at ``t = 0``. Every gradient path is compared with
central finite differences in float64.
"""

from __future__ import annotations

import pytest
import torch

import ctsnn

pytestmark = pytest.mark.usefixtures("float64")

DT = 1e-3


def _issue_loss(delay, times=(1e-3, 2e-3), gradient="surrogate"):
    """The issue's network: CubaLIF, two inputs, weights 4, loss = sum of first spike times."""
    model = ctsnn.CubaLIF(1, tau_mem=0.01, tau_syn=0.005)
    layer = ctsnn.Layer(model, torch.full((1, 2), 4.0), delay=torch.tensor(delay),
                        learn_delay=True, time="continuous", gradient=gradient)
    spikes = ctsnn.Spikes.from_events(torch.tensor(times), torch.tensor([0, 1]), dt=DT,
                                      n_steps=30)
    loss = ctsnn.simulate(layer, spikes, readout="first_spike").output.sum()
    (grad,) = torch.autograd.grad(loss, layer.synapse.delay)
    return loss.item(), grad.flatten()


@pytest.mark.parametrize("gradient", ["surrogate", "adjoint"])
@pytest.mark.parametrize(("delay", "expected"), [
    # arrival of input 0 at 4 ms = a grid point (issue: surrogate gave [-0.373, 0.373])
    ([3e-3, 0.5e-3], [0.6269336247886892, 0.3730663751966984]),
    # zero delays: both arrivals on grid points (issue: surrogate gave [0.0, -0.415])
    ([0.0, 0.0], [0.41497204686487, 0.58502795313513]),
])
def test_issue_grid_point_arrival(gradient, delay, expected):
    _, grad = _issue_loss(delay, gradient=gradient)
    torch.testing.assert_close(grad, torch.tensor(expected), rtol=1e-6, atol=1e-8)


def test_issue_grid_point_matches_finite_differences_and_off_grid():
    h = 1e-7
    _, grad = _issue_loss([3e-3, 0.5e-3])
    fd = []
    for i in range(2):
        plus, minus = [3e-3, 0.5e-3], [3e-3, 0.5e-3]
        plus[i] += h
        minus[i] -= h
        fd.append((_issue_loss(plus)[0] - _issue_loss(minus)[0]) / (2 * h))
    torch.testing.assert_close(grad, torch.tensor(fd), rtol=1e-6, atol=1e-8)
    _, shifted = _issue_loss([3e-3 + 1e-12, 0.5e-3])  # just past the grid point
    torch.testing.assert_close(grad, shifted, rtol=1e-6, atol=1e-8)
