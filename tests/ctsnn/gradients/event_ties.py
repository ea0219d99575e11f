"""Shared helpers for the tests of events sharing an instant (zero and sub-step recurrent delays,
simultaneous arrivals): a recurrent layer's loss, its gradients by each path, and central finite
differences (one-sided second order at a zero delay, which can only grow)."""

from __future__ import annotations

import torch

import ctsnn
from ctsnn.synapses import RecurrentDense

PARAMS = ("w_in", "t_in", "w_rec", "d_rec")


def forward(make, params, u_in, dt, gradient, *, grad=True, t_end=0.01, kernels=None):
    """``(loss, spikes, layer, input times)``; loss = sum_k t_k (1 + unit_k)."""
    w_in, t_in, w_rec, d_rec = params
    n = w_rec.shape[0]
    rec = RecurrentDense(weight=w_rec.detach().clone(), delay=d_rec.detach().clone(),
                         learn_delay=True)
    layer = ctsnn.Layer(make(n), w_in.detach().clone(), recurrent=rec, gradient=gradient)
    t = t_in.detach().clone().requires_grad_(grad)
    spikes = ctsnn.Spikes.from_events(t, u_in, dt=dt, n_steps=int(round(t_end / dt)),
                                      n_units=w_in.shape[1])
    res = ctsnn.simulate(layer, spikes, dt=dt, time="continuous")
    times = res.spikes.times
    loss = (times * (1 + res.spikes.units.to(times.dtype))).sum()
    return loss, res.spikes, layer, t


def grads(make, params, u_in, dt, gradient, t_end=0.01):
    """``(loss, spike count, [dL/dw_in, dL/dt_in, dL/dw_rec, dL/dd_rec])`` (zeros where the
    loss does not depend on a parameter)."""
    loss, spikes, layer, t = forward(make, params, u_in, dt, gradient, t_end=t_end)
    rec = layer.recurrent
    wrt = [layer.synapse.weight, t, rec.weight, rec.delay]
    if loss.requires_grad:
        loss.backward()
    return float(loss.detach()), len(spikes), [
        torch.zeros_like(x) if x.grad is None else x.grad for x in wrt]


def finite_difference(make, params, u_in, dt, which, idx, count, h=1e-7, t_end=0.01):
    """Central difference of the loss w.r.t. ``params[which][idx]`` (one-sided second-order
    at a zero delay); the perturbation must not change the spike count."""
    def at(shift):
        p = [x.clone() for x in params]
        p[which][idx] += shift
        with torch.no_grad():
            loss, spikes, _, _ = forward(make, p, u_in, dt, "surrogate", grad=False,
                                         t_end=t_end)
        assert len(spikes) == count, "the perturbation changed the spike count"
        return float(loss)

    if which == 3 and float(params[3][idx]) == 0.0:
        return (-3 * at(0.0) + 4 * at(h) - at(2 * h)) / (2 * h)
    return (at(h) - at(-h)) / (2 * h)


def one_sided(make, params, u_in, dt, which, idx, count, h=1e-8, t_end=0.01):
    """``(left, right)`` first-order differences of the loss w.r.t. ``params[which][idx]``
    (``left`` is ``None`` where the parameter cannot decrease: a zero delay, an input at
    ``t = 0``), or ``None`` if a perturbation changes the spike count. Where they differ
    (beyond ``O(h)``) the loss has a kink there (e.g. two events crossing each other's
    order) and no derivative to compare with."""
    def at(shift):
        p = [x.clone() for x in params]
        p[which][idx] += shift
        with torch.no_grad():
            loss, spikes, _, _ = forward(make, p, u_in, dt, "surrogate", grad=False,
                                         t_end=t_end)
        return float(loss), len(spikes)

    (l0, c0), (lp, cp) = at(0.0), at(h)
    if c0 != count or cp != count:
        return None
    if which in (1, 3) and float(params[which][idx]) == 0.0:
        return None, (lp - l0) / h
    lm, cm = at(-h)
    return (None if cm != count else (l0 - lm) / h), (lp - l0) / h


def sorted_events(spikes) -> list[tuple[int, int, float]]:
    """``(sample, unit, time)`` of every spike, sorted."""
    return sorted(zip(spikes.batch.tolist(), spikes.units.tolist(), spikes.times.tolist(),
                      strict=True))
