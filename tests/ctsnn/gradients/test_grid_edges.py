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

pytestmark = pytest.mark.usefixtures("float64_one_thread")

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


# ----------------------------------------------------------------------------------------------
# Property-based: everything on the grid, on each other and at t = 0
# ----------------------------------------------------------------------------------------------
#
# Finite-difference guard. Central differences of step h are a valid reference only where the
# loss is differentiable. An example (or one delay of it) is skipped when
#   * the number of output spikes changes under the +-h perturbation (a spike appears or
#     vanishes: the loss jumps), or
#   * the left and right difference quotients disagree (|D+ - D-| > KINK (1 + |D|)): the loss
#     has a kink or jump there, e.g. a spike within h of a threshold tangency, an arrival
#     exactly at a refractory end (dropped just before it, received at it), or simultaneous
#     arrivals into a nonlinear model. Grid points themselves are NOT guarded: the loss is smooth
#     across them, and that is what these tests check.
# A delay of exactly 0 cannot be decreased: its derivative is compared with the one-sided
# second-order difference (-3 f(0) + 4 f(h) - f(2h)) / 2h.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

H = 1e-7
KINK = 1e-3
N_STEPS = 12


def _on_grid(max_k):
    return st.integers(0, max_k).map(lambda k: k * DT)


@st.composite
def _network(draw, weight_range, min_delay_steps=0):
    n_in = draw(st.integers(1, 3))
    n_out = draw(st.integers(1, 2))
    n_ev = draw(st.integers(2, 6))
    times = draw(st.lists(_on_grid(5), min_size=n_ev, max_size=n_ev))  # repeats: ties
    units = draw(st.lists(st.integers(0, n_in - 1), min_size=n_ev, max_size=n_ev))
    delay = draw(st.lists(_on_grid(4).filter(lambda d: d >= min_delay_steps * DT),
                          min_size=n_in * n_out, max_size=n_in * n_out))
    low, high = weight_range
    # mostly excitatory weights, so that most examples spike; a few inhibitory ones
    weight = draw(st.lists(st.one_of(st.floats(high / 4, high), st.floats(low, 0.0)),
                           min_size=n_in * n_out, max_size=n_in * n_out))
    return (torch.tensor(times), torch.tensor(units), n_in,
            torch.tensor(weight).reshape(n_out, n_in), torch.tensor(delay).reshape(n_out, n_in))


def _grad(loss, delay):
    """``dloss/ddelay`` (zeros when the loss does not depend on the delays, e.g. no spike)."""
    if not loss.requires_grad:
        return torch.zeros_like(delay)
    (grad,) = torch.autograd.grad(loss, delay, allow_unused=True)
    return torch.zeros_like(delay) if grad is None else grad


def _fd_check(loss_fn, delay, grad):
    """Compare ``grad`` with finite differences of ``loss_fn(delay) -> (loss, n_spikes)``,
    under the guard above; returns the number of delays compared."""
    f0, n0 = loss_fn(delay)
    compared = 0
    for idx in [tuple(i) for i in torch.cartesian_prod(
            *(torch.arange(s) for s in delay.shape)).reshape(-1, delay.dim()).tolist()]:
        def at(step, idx=idx):
            d = delay.clone()
            d[idx] += step
            return loss_fn(d)

        if delay[idx] == 0:  # one-sided: a delay cannot be negative
            (f1, n1), (f2, n2) = at(H), at(2 * H)
            if n1 != n0 or n2 != n0:
                continue
            right, right2 = (f1 - f0) / H, (f2 - f1) / H
            if abs(right - right2) > KINK * (1 + abs(right)):
                continue
            ref = (-3 * f0 + 4 * f1 - f2) / (2 * H)
        else:
            (fp, n_p), (fm, n_m) = at(H), at(-H)
            if n_p != n0 or n_m != n0:
                continue
            right, left = (fp - f0) / H, (f0 - fm) / H
            if abs(right - left) > KINK * (1 + abs(right)):
                continue
            ref = (fp - fm) / (2 * H)
        assert abs(grad[idx].item() - ref) <= 1e-5 + 1e-4 * abs(ref), (idx, grad, ref)
        compared += 1
    return compared


def _cuba_loss(net, gradient, delay, *, tau_mem):
    times, units, n_in, weight, _ = net
    model = ctsnn.CubaLIF(weight.shape[0], tau_mem=tau_mem, tau_syn=0.005)
    layer = ctsnn.Layer(model, weight, delay=delay, learn_delay=True, time="continuous",
                        gradient=gradient)
    spikes = ctsnn.Spikes.from_events(times, units, dt=DT, n_steps=N_STEPS, n_units=n_in)
    res = ctsnn.simulate(layer, spikes, readout="first_spike")
    return res.output.sum(), len(res.spikes), layer.synapse.delay


@pytest.mark.parametrize("gradient", ["surrogate", "adjoint"])
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(net=_network((-3.0, 12.0)), tau_mem=st.sampled_from([0.01, 0.02]))
def test_delay_gradients_on_grid_points(gradient, net, tau_mem):
    """CubaLIF, first-spike-time loss: input spikes and delays are multiples of dt (arrivals on
    grid points, on each other, at t = 0), both gradient methods against finite differences."""
    loss, _, delay = _cuba_loss(net, gradient, net[4], tau_mem=tau_mem)
    grad = _grad(loss, delay)

    def loss_fn(d):
        with torch.no_grad():
            value, n, _ = _cuba_loss(net, "surrogate", d, tau_mem=tau_mem)
        return value.item(), n

    _fd_check(loss_fn, net[4], grad)


def _lif_loss(net, delay, *, refractory, v0):
    times, units, n_in, weight, _ = net
    n_out = weight.shape[0]
    model = ctsnn.LIF(n_out, tau_mem=0.01, v_leak=0.6, refractory=refractory)
    layer = ctsnn.Layer(model, weight, delay=delay, learn_delay=True, time="continuous")
    spikes = ctsnn.Spikes.from_events(times, units, dt=DT, n_steps=N_STEPS, n_units=n_in)
    state = model.State(v=torch.full((1, n_out), v0))
    res = ctsnn.simulate(layer, spikes, readout="sum", state=state)
    # spike times (on grid points: input spikes make v jump) and the integrated voltage, which
    # depends on when each refractory period (also ending on a grid point) releases v
    loss = res.spikes.times.sum() + 1e-3 * res.output.sum()
    return loss, len(res.spikes), layer.synapse.delay


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(net=_network((-0.3, 1.2), min_delay_steps=1),
       refractory=st.sampled_from([DT, 2 * DT, 3 * DT]), v0=st.sampled_from([0.0, 0.6, 1.0]))
def test_refractory_ends_on_grid_points(net, refractory, v0):
    """LIF with v jumps and a refractory period of whole steps (surrogate path): spikes happen at
    arrivals (grid points) or at t = 0 (``v0 = 1``), so refractory ends are grid points too.

    Delays are at least one step here, so that every delay gets the two-sided kink guard:
    simultaneous arrivals that each suffice to fire make a kink (the earlier one fires), which a
    one-sided difference at a zero delay could not detect. Arrivals at t = 0 are covered above.
    """
    loss, _, delay = _lif_loss(net, net[4], refractory=refractory, v0=v0)
    grad = _grad(loss, delay)

    def loss_fn(d):
        with torch.no_grad():
            value, n, _ = _lif_loss(net, d, refractory=refractory, v0=v0)
        return value.item(), n

    _fd_check(loss_fn, net[4], grad)


def _two_layer_loss(delay, gradient):
    """LIF neurons fire at their (grid-point) arrivals, on the same instant when their delays
    are equal; their spikes reach a CubaLIF layer without delays (zero-delay arrivals)."""
    hidden = ctsnn.Layer(ctsnn.LIF(2, tau_mem=0.01), torch.tensor([[1.5], [1.2]]), delay=delay,
                         learn_delay=True, time="continuous", gradient=gradient)
    out = ctsnn.Layer(ctsnn.CubaLIF(1, tau_mem=0.01, tau_syn=0.005),
                      torch.tensor([[4.0, 2.5]]), time="continuous", gradient=gradient)
    spikes = ctsnn.Spikes.from_events(torch.tensor([1e-3, 3e-3]), torch.tensor([0, 0]), dt=DT,
                                      n_steps=N_STEPS, n_units=1)
    res = ctsnn.simulate([hidden, out], spikes, readout="first_spike")
    return res.output.sum(), len(res.spikes), hidden.synapse.delay


@pytest.mark.parametrize("gradient", ["surrogate", "adjoint"])
@pytest.mark.parametrize("delay", [[[1e-3], [1e-3]], [[0.0], [0.0]], [[2e-3], [1e-3]]])
def test_simultaneous_upstream_spikes(gradient, delay):
    """Hidden spikes on grid points and on each other: each keeps its own time derivative
    through the merged jump downstream (not the whole jump's derivative each)."""
    delay = torch.tensor(delay)
    loss, _, d = _two_layer_loss(delay, gradient)
    grad = _grad(loss, d)

    def loss_fn(dd):
        with torch.no_grad():
            value, n, _ = _two_layer_loss(dd, "surrogate")
        return value.item(), n

    assert _fd_check(loss_fn, delay, grad) == 2
