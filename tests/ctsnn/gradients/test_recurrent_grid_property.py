"""Property: recurrent layers with events on grid points, on each other and at t = 0.

Inputs on grid points (``t = 0`` included), recurrent delays of zero, half a step and whole
steps (so recurrent arrivals land on spikes, on grid points and on each other), refractory
periods of whole steps. Both gradient paths of a recurrent layer (``"surrogate"``: autograd
with implicit-function spike times; ``"adjoint"``: the generic adjoint, which refuses
refractory periods) are compared with finite differences in float64 wherever the loss is
differentiable (its left and right differences agree; one-sided at a zero delay or an input at
``t = 0``, which cannot decrease), and the spikes with those at ``dt / 2``. CubaLIF: jumps into
the current (see docs/recurrent_substep_adjoint.md for ties of jumps into the voltage).
"""

from __future__ import annotations

import pytest
import torch
from event_ties import finite_difference, forward, grads, one_sided, sorted_events
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ctsnn

pytestmark = pytest.mark.usefixtures("float64")

DT = 1e-3
T_END = 0.006


def _maker(refractory):
    def make(n):
        return ctsnn.CubaLIF(n, tau_mem=0.01, tau_syn=0.005, refractory=refractory)
    return make


@st.composite
def _networks(draw, n_max=3):
    n = draw(st.integers(2, n_max))
    n_in = 2
    k = draw(st.integers(1, 4))
    steps = draw(st.lists(st.integers(0, 5), min_size=k, max_size=k))  # t = 0 allowed
    t_in = torch.tensor(steps, dtype=torch.float64) * DT
    u_in = torch.tensor(draw(st.lists(st.integers(0, n_in - 1), min_size=k, max_size=k)))
    w = st.floats(2.0, 9.0)
    w_in = torch.tensor(draw(st.lists(w, min_size=n * n_in, max_size=n * n_in))).reshape(n, n_in)
    w_rec = torch.tensor(draw(st.lists(st.floats(-3.0, 3.0), min_size=n * n,
                                       max_size=n * n))).reshape(n, n)
    choice = st.sampled_from([0.0, 0.5 * DT, DT, 2 * DT])
    d_rec = torch.tensor(draw(st.lists(choice, min_size=n * n, max_size=n * n))).reshape(n, n)
    refractory = draw(st.sampled_from([0.0, DT, 2 * DT]))
    return (w_in, t_in, w_rec, d_rec), u_in, refractory


def _check(net, n_fd):
    params, u_in, refractory = net
    make = _maker(refractory)
    loss_s, count, g_sur = grads(make, params, u_in, DT, "surrogate", t_end=T_END)
    assume(count > 0)
    g_adj = None
    if refractory == 0:  # the generic adjoint refuses refractory periods
        loss_a, count_a, g_adj = grads(make, params, u_in, DT, "adjoint", t_end=T_END)
        assert count_a == count and loss_s == pytest.approx(loss_a, rel=1e-12)
    # the same spikes at half the step (every grid point stays one)
    with torch.no_grad():
        a = sorted_events(forward(make, params, u_in, DT, "surrogate", grad=False,
                                  t_end=T_END)[1])
        b = sorted_events(forward(make, params, u_in, DT / 2, "surrogate", grad=False,
                                  t_end=T_END)[1])
    assert [x[:2] for x in a] == [x[:2] for x in b]
    assert all(abs(x[2] - y[2]) < 1e-12 for x, y in zip(a, b, strict=True))
    gen = torch.Generator().manual_seed(count)
    checked = 0
    for which in (0, 2, 3, 1):
        for _ in range(n_fd):
            idx = tuple(int(torch.randint(s, (1,), generator=gen)) for s in params[which].shape)
            sides = one_sided(make, params, u_in, DT, which, idx, count, t_end=T_END)
            if sides is None:
                continue  # the perturbation changes the spike count
            left, right = sides
            if left is not None and abs(left - right) > 1e-5 * max(1.0, abs(right)):
                continue  # a kink (events crossing each other's order): no derivative
            fd = finite_difference(make, params, u_in, DT, which, idx, count, h=1e-7,
                                   t_end=T_END) if left is not None else right
            tol = (1e-5 if left is not None else 1e-3) * max(1.0, abs(fd))
            assert abs(float(g_sur[which][idx]) - fd) <= tol, ("surrogate", which, idx, fd)
            if g_adj is not None:
                assert abs(float(g_adj[which][idx]) - fd) <= tol, ("adjoint", which, idx, fd)
            checked += 1
    return checked


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=_networks(n_max=2))
def test_recurrent_grid_events_all_gradient_paths(net):
    _check(net, n_fd=1)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(net=_networks(n_max=3))
def test_recurrent_grid_events_all_gradient_paths_many(net):
    _check(net, n_fd=3)
