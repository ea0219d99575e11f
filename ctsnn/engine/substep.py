"""Recurrent arrivals inside the step that emitted them (sub-step and zero delays).

A recurrent synapse whose delays can be shorter than the grid step (``substep``) lets a spike
at ``t`` act at ``t + d`` within the same step. The step is settled pass by pass: a pass
integrates with the in-step arrivals of the spikes confirmed so far; among the spikes not yet
confirmed, let ``T`` be the earliest in-step arrival they cause; everything up to ``T`` is then
right (all arrivals before ``T`` were applied), so the spikes at times ``<= T`` are confirmed
(only those before ``T`` when a depth-0 arrival lands at ``T``: summed in, it may change the
spikes at ``T``), their arrivals added, and the next pass continues from ``T``: each element
from the start of its piece of the last pass that contains ``T`` (its state and time there,
recorded in ``run.trace``), with the jumps after ``T`` and the new ones; so it is split exactly
where a pass from the step's start would split it (Runge-Kutta steps included) and the results
and autograd graph are those of integrating the whole step again, at the cost of the remainder
only. The step is integrated again from its start instead with refractoriness, an integrand or
saved times, and when a new depth-0 jump lands exactly on ``T``. It ends when no unconfirmed
spike causes an arrival inside the step; each pass confirms at least one spike. An in-step
arrival with a positive delay lands at ``t + d`` (the spike's time in seconds, located in the
grid) exactly as an arrival in a later step does, so its time, and its ties with other
arrivals, do not depend on ``dt`` (``offset + d`` from the local time can differ in the last
bit); a zero-delay arrival lands on its spike's local time bit for bit, after it.

Simultaneous events (one semantics for every path, see docs/recurrent_substep_adjoint.md): at
an instant ``t`` each neuron takes

1. a threshold crossing of its flow at ``t`` (spike, reset);
2. the jumps arriving at ``t`` whose causes are not at ``t`` (inputs, recurrent arrivals with
   a positive delay), *summed* into one jump; the threshold is tested once after it
   (depth 0);
3. wave ``k`` (``k >= 1``): the zero-delay arrivals of the spikes at ``t`` of depth ``k - 1``
   (a crossing counts as depth 0, a spike fired by the depth-``j`` jump has depth ``j``),
   summed, then the threshold tested once.

A neuron fires at most once per instant (an arrival at the instant of its own spike moves its
state but cannot make it fire again), so zero-delay loops end. The order of the presynaptic
indices, and ``dt``, do not change anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ..synapses.arrivals import ranks, row_order
from .setup import Population

#: In-step arrivals per element, ``(offset, value, depth)`` each ``[K, B, N]`` (not merged).
Rows = tuple[Tensor, Tensor, Tensor]


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


def _rows(extra: list[tuple[Tensor, ...]], batch: int, n: int, dt: float) -> Rows | None:
    """The flat in-step arrivals ``(batch, target, offset, value, depth)`` as per-element rows
    (padding: zero jumps at ``dt``, depth 0)."""
    if not extra:
        return None
    b, target, offset, value, depth = (torch.cat(x) for x in zip(*extra, strict=True))
    order = row_order((b, target), (batch, n), torch.arange(b.numel(), device=b.device))
    b, target, offset, value, depth = (x[order] for x in (b, target, offset, value, depth))
    rank = ranks((b, target), torch.arange(b.numel(), device=b.device))
    shape = (int(rank.max()) + 1, batch, n)
    index = (rank, b, target)
    when = offset.new_full(shape, dt).index_put(index, offset)
    jump = value.new_zeros(shape).index_put(index, value)
    return when, jump, torch.zeros(shape, dtype=torch.long, device=b.device).index_put(index,
                                                                                       depth)


class Start(NamedTuple):
    """Where a pass of a settled step starts: each element's state ``state`` at its local
    time ``tau [B, N]`` (the start of its piece of the previous pass that contains ``time``,
    so each element is split only where a pass from the step's start would split it), and
    the elements that spiked at ``time`` (``fired``: they cannot fire again at that instant).
    The jumps at or before ``time`` were applied already."""

    state: tuple
    tau: Tensor
    time: float
    fired: Tensor


def _rewind(trace: list[tuple[tuple, Tensor]], time: float) -> tuple[tuple, Tensor]:
    """Every element's ``(state, local time)`` at the start of its piece that contains
    ``time`` in the recorded pieces of a pass."""
    shape = trace[0][0][0].shape
    taus = torch.stack([t.detach().expand(shape) for _, t in trace])
    which = ((taus <= time).sum(0) - 1).clamp_min(0)[None]
    tau = torch.stack([t.expand(shape) for _, t in trace]).gather(0, which)[0]
    y = type(trace[0][0])(*(torch.stack([s[i] for s, _ in trace]).gather(0, which)[0]
                            for i in range(len(trace[0][0]))))
    return y, tau


def settle_step(run: Population, n: int, logged: int,
                step: Callable[[Rows | None, Start | None], Tensor | None],
                resume: bool = False) -> Tensor | None:
    """Run ``step(extra_arrivals, start)`` (step ``n`` of ``run``, logging spikes after the
    first ``logged`` entries of ``run.log``; returns the refractory ends) until the in-step
    recurrent arrivals are consistent with the spikes (module docstring). With ``resume``
    (the step records its pieces in ``run.trace``; not with refractoriness, an integrand or
    saved times) a pass continues from the earliest new arrival: each element from the start
    of its piece there; otherwise it integrates the step again from its start."""
    recurrent = run.recurrent
    state, integral = run.state, run.integral
    confirmed: set[tuple[int, int, int]] = set()
    extra: list[tuple[Tensor, ...]] = []
    rows, start = None, None
    while True:
        run.trace = [] if resume else None
        hold = step(rows, start)
        times, batch, units = run.log.since(logged)
        local, depth = run.log.local_since(logged), run.log.depth_since(logged)
        keys = _keys(times, batch, units)
        new = [i for i, key in enumerate(keys) if key not in confirmed]
        if not new:
            break
        idx = torch.tensor(new, dtype=torch.long, device=times.device)
        first = recurrent.first_in_step(local[idx], times[idx], units[idx], n)
        if not bool(torch.isfinite(first).any()):
            break
        # the source of the earliest arrival always (its arrival may round an ulp below it)
        horizon = max(float(first.min()), float(local[idx[first.argmin()]].detach()))
        t = float(first.min())
        loc = local[idx].detach()
        now = (loc <= horizon).nonzero(as_tuple=True)[0]
        arrivals = recurrent.in_step_arrivals(local[idx[now]], times[idx[now]],
                                              units[idx[now]], n)
        if arrivals is not None and bool(((arrivals[2].detach() == t) & ~arrivals[4]).any()):
            # a depth-0 arrival lands at t: the spikes at t may change once it is summed in
            # (or vanish), so only the earlier ones (its senders) are confirmed
            early = loc[now] < t
            if bool(early.any()):
                now = now[early]
                arrivals = recurrent.in_step_arrivals(local[idx[now]], times[idx[now]],
                                              units[idx[now]], n)
        for j in now.tolist():
            confirmed.add(keys[new[j]])
        take = idx[now]
        fresh = None
        if arrivals is not None:
            src, target, offset, value, zero = arrivals
            # a zero-delay arrival joins the wave after its sender's; others are depth 0
            wave = torch.where(zero, depth[take][src] + 1, torch.zeros_like(src))
            fresh = (batch[take][src], target, offset, value, wave)
        # continue from t unless a new depth-0 jump lands exactly at t (it must be summed
        # with the depth-0 jumps the pass already applied there)
        redo = not resume or fresh is None or bool(
            ((fresh[2].detach() == t) & (fresh[4] == 0)).any())
        if redo:
            extra += [] if fresh is None else [fresh]
            rows, start = _rows(extra, run.batch_size, run.model.n, run.dt), None
            run.state, run.integral = state, integral
            run.log.truncate(logged)
            continue
        at, tau = _rewind(run.trace, t)
        run.log.keep_until(logged, t)
        _, b_now, u_now = run.log.since(logged)
        fired = torch.zeros(run.shape, dtype=torch.bool, device=b_now.device)
        fired[b_now[run.log.local_since(logged).detach() == t],
              u_now[run.log.local_since(logged).detach() == t]] = True
        # pending: the arrivals after t (those at t or before were applied), and the new ones
        pending = [tuple(x[e[2].detach() > t] for x in e) for e in extra] + [fresh]
        extra.append(fresh)
        rows, start = _rows(pending, run.batch_size, run.model.n, run.dt), Start(at, tau, t, fired)
    run.trace = None
    return hold

__all__ = ["Rows", "Start", "settle_step"]
