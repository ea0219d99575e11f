"""Recurrent arrivals inside the step that emitted them (sub-step and zero delays).

A recurrent synapse whose delays can be shorter than the grid step (``substep``) lets a spike
at ``t`` act at ``t + d`` within the same step. The step is settled by repetition: it is
integrated with the in-step arrivals of the spikes confirmed so far; among the spikes not yet
confirmed, let ``T`` be the earliest in-step arrival they cause; everything up to ``T`` is then
right (all arrivals before ``T`` were applied), so the spikes at times ``<= T`` are confirmed,
their arrivals added, and the step is integrated again from its start. It ends when no
unconfirmed spike causes an arrival inside the step; each pass confirms at least one spike, so
a step with ``S`` such spikes takes at most ``S + 1`` passes (only the last one is kept: its
graph is the one the results depend on, so autograd differentiates through the arrivals).

Simultaneous events: a zero-delay arrival caused by a spike at ``t`` is applied just after that
spike (after its reset), and arrivals at the same instant are applied in causal waves (the
step's own arrivals at ``t`` first, then those caused by spikes at ``t``, and so on). A neuron
fires at most once per instant (an arrival at the instant of its own spike moves its state but
cannot make it fire again), so zero-delay loops end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..synapses import StepArrivals, merge_arrivals
from .setup import Population


def _keys(times: Tensor, batch: Tensor, units: Tensor) -> list[tuple[int, int, int]]:
    """``(sample, unit, k)``: the k-th spike of that neuron in the step, in time order."""
    order = torch.argsort(times.detach(), stable=True).tolist()
    b, u = batch.tolist(), units.tolist()
    seen: dict[tuple[int, int], int] = {}
    keys: list[tuple[int, int, int]] = [(0, 0, 0)] * len(order)
    for i in order:
        k = seen.get((b[i], u[i]), 0)
        seen[(b[i], u[i])] = k + 1
        keys[i] = (b[i], u[i], k)
    return keys


def settle_step(run: Population, n: int, logged: int,
                step: Callable[[StepArrivals | None], Tensor | None]) -> Tensor | None:
    """Run ``step(extra_arrivals)`` (step ``n`` of ``run`` from its current state, logging
    spikes after the first ``logged`` entries of ``run.log``; returns the refractory ends)
    until the in-step recurrent arrivals are consistent with the spikes (module docstring)."""
    recurrent = run.recurrent
    state, integral = run.state, run.integral
    confirmed: set[tuple[int, int, int]] = set()
    extra: StepArrivals | None = None
    while True:
        hold = step(extra)
        times, batch, units = run.log.since(logged)
        local = run.log.local_since(logged)
        keys = _keys(times, batch, units)
        new = [i for i, key in enumerate(keys) if key not in confirmed]
        if not new:
            return hold
        idx = torch.tensor(new, dtype=torch.long, device=times.device)
        first = recurrent.first_in_step(local[idx], units[idx])
        if not bool(torch.isfinite(first).any()):
            return hold
        # the source of the earliest arrival always (its arrival may round an ulp below it)
        horizon = max(float(first.min()), float(local[idx[first.argmin()]].detach()))
        now = (local[idx].detach() <= horizon).nonzero(as_tuple=True)[0]
        for j in now.tolist():
            confirmed.add(keys[new[j]])
        take = idx[now]
        # one wave: applied after the earlier waves' arrivals at the same instant
        extra = merge_arrivals(extra, recurrent.in_step_arrivals(local[take], batch[take],
                                                                 units[take]))
        # integrate the step again from its start
        run.state, run.integral = state, integral
        run.log.truncate(logged)

__all__ = ["settle_step"]
