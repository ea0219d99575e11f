"""Exact continuous-time arrival schedules: when jumps reach the postsynaptic neurons.

A schedule is a callable ``n -> StepArrivals | None`` giving the jumps that arrive during grid
step ``n`` (local times in ``(0, dt]``, seconds, and sizes), in time order per element:

* :class:`Arrivals`: zero-delay synapses (or one-to-one input);
* :class:`DelayedArrivals`: per-synapse delays, a spike at ``t`` arrives at ``t + d`` exactly;
* :func:`merge_arrivals`: two schedules of one step as one.

The helpers (:func:`row_order`, :func:`ranks`, :func:`element_arrivals`, :func:`snap_to_grid`)
are shared with the recurrent synapses, which schedule arrivals as their spikes happen.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..spikes import Spikes, locate


class StepArrivals(NamedTuple):
    """Jumps arriving during one step, in time order along the first axis.

    ``offset [K, B, N]``: local arrival times in ``(0, dt]`` (``dt`` with a zero value for padding);
    ``value [K, B, N]``: jump sizes.
    """

    offset: Tensor
    value: Tensor


def row_order(rows: tuple[Tensor, ...], sizes: tuple[int, ...], offset: Tensor) -> Tensor:
    """Permutation sorting events by their row ``rows`` (lexicographic), then by ``offset``.

    The integer row keys are fused into one int64 key (``sizes`` are their ranges), so two
    stable sorts do the work of one per key.
    """
    key = torch.zeros_like(rows[0])
    for r, size in zip(rows, sizes, strict=True):
        key = key * size + r
    order = torch.argsort(offset, stable=True)
    return order[torch.argsort(key[order], stable=True)]


def ranks(row_keys: tuple[Tensor, ...], offset: Tensor) -> Tensor:
    """Rank of each (sorted) event among the distinct arrival times of its row.

    Rows are consecutive runs of equal ``row_keys``; events at the same time share a rank so
    that simultaneous arrivals are summed into one jump (as on a discrete grid).
    """
    e = offset.numel()
    new_row = torch.ones(e, dtype=torch.bool, device=offset.device)
    if e > 1:
        changed = torch.zeros(e - 1, dtype=torch.bool, device=offset.device)
        for key in row_keys:
            changed |= key[1:] != key[:-1]
        new_row[1:] = changed
    new_group = new_row.clone()
    if e > 1:
        new_group[1:] |= offset[1:] != offset[:-1]
    group = torch.cumsum(new_group.long(), 0) - 1
    row = torch.cumsum(new_row.long(), 0) - 1
    return group - group[new_row][row] if e else group


def snap_to_grid(t: Tensor, dt: float, ulps: int = 8) -> Tensor:
    """Move times within a few ulps of a grid point ``k dt`` onto it.

    ``t_spike + delay`` with a delay of a whole number of steps can round one ulp past the
    grid point and so fall into the next step; snapping keeps integer delays exact.
    """
    k = torch.round(t.double() / dt)
    grid = (k * dt).to(t.dtype)
    close = (t - grid).abs() <= ulps * torch.finfo(t.dtype).eps * torch.clamp(grid.abs(), min=dt)
    # Move the value only: the gradient w.r.t. spike times and delays passes through.
    return torch.where(close, t + (grid - t).detach(), t)


class _StepIndex:
    """Per-step slices of events sorted by step, and the number of arrival ranks per step."""

    def __init__(self, step: Tensor, rank: Tensor, n_steps: int) -> None:
        bounds = torch.searchsorted(step, torch.arange(n_steps + 1, device=step.device))
        k = torch.zeros(n_steps, dtype=torch.long, device=step.device)
        if step.numel():
            k.scatter_reduce_(0, step, rank + 1, reduce="amax")
        self.bounds = bounds.tolist()
        self.k = k.tolist()

    def slice(self, n: int) -> tuple[int, int, int]:
        return self.bounds[n], self.bounds[n + 1], self.k[n]


class Arrivals:
    """Exact arrival schedule of weighted spikes through zero-delay synapses, per grid step.

    Spikes that reach a sample at the same instant are merged into one jump (their weighted
    sum), so grid-aligned input costs one jump per step.

    Args:
        spikes: presynaptic events (``n_units`` = N_in).
        weight: ``[N_out, N_in]`` or ``None`` for one-to-one input (N_out = N_in).
    """

    def __init__(self, spikes: Spikes, weight: Tensor | None) -> None:
        self.dt = spikes.dt
        self.batch_size = spikes.batch_size
        self.spikes = spikes  # the input itself (read by the compiled event-driven engine)
        self.weight = weight
        self.n_in = spikes.n_units
        self.n_out = spikes.n_units if weight is None else weight.shape[0]
        step, off, b = spikes.step, spikes.offset, spikes.batch
        order = row_order((step, b), (spikes.n_steps, self.batch_size), off)
        step, off, b = step[order], off[order], b[order]
        self._rank = ranks((step, b), off)
        self._index = _StepIndex(step, self._rank, spikes.n_steps)
        self._batch, self._offset = b, off
        self._units, self._values = spikes.units[order], spikes.values[order]

    def __call__(self, n: int) -> StepArrivals | None:
        """Arrivals during step ``n``, or ``None`` if nothing arrives."""
        e0, e1, k = self._index.slice(n)
        if e0 == e1:
            return None
        rank, b = self._rank[e0:e1], self._batch[e0:e1]
        vals = self._values[e0:e1]
        amp = vals.new_zeros(k, self.batch_size, self.n_in)
        units, off = self._units[e0:e1], self._offset[e0:e1]
        amp.index_put_((rank, b, units), vals, accumulate=True)
        offset = vals.new_full((k, self.batch_size), self.dt)
        offset[rank, b] = off.detach()
        value = amp if self.weight is None else amp @ self.weight.t()
        offset = offset.unsqueeze(-1).expand(k, self.batch_size, self.n_out)
        if off.requires_grad:  # each event's own time derivative, also where events coincide
            tangent = off - off.detach()
            moved = vals.new_zeros(k, self.batch_size, self.n_in)
            moved.index_put_((rank, b, units), vals * tangent, accumulate=True)
            if self.weight is not None:
                moved = moved @ self.weight.t()
            # events per arrival time and sample, and their summed tangents, for every target
            count = vals.new_zeros(k, self.batch_size).index_put_(
                (rank, b), torch.ones_like(vals), accumulate=True)
            shift = vals.new_zeros(k, self.batch_size).index_put_((rank, b), tangent,
                                                                   accumulate=True)
            offset = offset + tie_tangent(moved, value, count.unsqueeze(-1).expand_as(value),
                                          shift.unsqueeze(-1).expand_as(value))
        return StepArrivals(offset, value)


class DelayedArrivals:
    """Exact arrival schedule through synapses with per-synapse (or per-axon) delays.

    A spike of input ``j`` at time ``t`` reaches neuron ``i`` at ``t + delay[i, j]`` exactly,
    with jump ``weight[i, j] * value``; arrivals after the last step are dropped. Every
    (spike, target) pair is an event, so the schedule is built lazily in windows of steps
    holding about ``max_pairs`` pairs each (memory stays bounded for long inputs).

    Args:
        spikes: presynaptic events.
        weight: ``[N_out, N_in]``.
        delay: ``[N_out, N_in]`` seconds, non-negative.
        max_pairs: pairs materialised per window.
    """

    def __init__(self, spikes: Spikes, weight: Tensor, delay: Tensor, *,
                 max_pairs: int = 4_000_000) -> None:
        self.dt, self.n_steps, self.batch_size = spikes.dt, spikes.n_steps, spikes.batch_size
        self.weight, self.delay = weight, delay
        self.spikes = spikes  # the input itself (read by the compiled event-driven engine)
        self.n_out = weight.shape[0]
        self._times: Tensor | None = None  # events by time, longest delay: first window
        rate = max(len(spikes), 1) / self.n_steps  # input events per step
        self._window = max(1, int(max_pairs / max(rate * self.n_out, 1.0)))
        self._start = -1  # first step of the cached window

    def _build(self, n0: int) -> None:
        if self._times is None:  # (the compiled engine reads self.spikes: it never sorts)
            spikes = self.spikes
            order = torch.argsort(spikes.times, stable=True)
            self._times = spikes.times[order]
            self._batch, self._units = spikes.batch[order], spikes.units[order]
            self._values = spikes.values[order]
            self._max_delay = float(self.delay.detach().max()) if self.delay.numel() else 0.0
        n1 = min(n0 + self._window, self.n_steps)
        dt = self.dt
        lo = torch.searchsorted(self._times, torch.tensor(n0 * dt - self._max_delay - dt,
                                                         dtype=self._times.dtype))
        hi = torch.searchsorted(self._times, torch.tensor(n1 * dt, dtype=self._times.dtype),
                                right=True)
        t, b, u, v = (x[lo:hi] for x in (self._times, self._batch, self._units, self._values))
        n_ev = t.numel()
        target = torch.arange(self.n_out, device=t.device).repeat(n_ev)
        src = torch.repeat_interleave(torch.arange(n_ev, device=t.device), self.n_out)
        arrival = snap_to_grid(t[src] + self.delay[target, u[src]], dt)
        # Keep only arrivals whose step falls in [n0, n1): grid points as float64 products.
        end = torch.tensor(n1 * dt, dtype=arrival.dtype)
        begin = torch.tensor(n0 * dt, dtype=arrival.dtype)
        keep = (arrival <= end) & ((arrival > begin) | ((n0 == 0) & (arrival == 0)))
        src, target, arrival = src[keep], target[keep], arrival[keep]
        step, offset = locate(arrival, dt)
        value = v[src] * self.weight[target, u[src]]
        batch = b[src]
        order = row_order((step, batch, target), (self.n_steps, self.batch_size, self.n_out),
                           offset)
        step, batch, target, offset, value = (
            x[order] for x in (step, batch, target, offset, value)
        )
        self._rank = ranks((step, batch, target), offset)
        self._w_index = _StepIndex(step - n0, self._rank, n1 - n0)
        self._w = (batch, target, offset, value)
        self._start, self._stop = n0, n1

    def __call__(self, n: int) -> StepArrivals | None:
        """Arrivals during step ``n`` (``[K, B, N_out]`` each), or ``None``."""
        if not (self._start <= n < getattr(self, "_stop", -1)):
            self._build(n)
        e0, e1, k = self._w_index.slice(n - self._start)
        if e0 == e1:
            return None
        batch, target, offset, value = (x[e0:e1] for x in self._w)
        return element_arrivals(self._rank[e0:e1], batch, target, offset, value, k,
                                 self.batch_size, self.n_out, self.dt)


def element_arrivals(rank: Tensor, batch: Tensor, target: Tensor, offset: Tensor,
                      value: Tensor, k: int, batch_size: int, n_out: int, dt: float
                      ) -> StepArrivals:
    """Per-element arrival lists ``[k, B, N]`` from ranked (batch, target, offset, value)."""
    shape = (k, batch_size, n_out)
    index = (rank, batch, target)
    jump = value.new_zeros(shape)
    jump.index_put_(index, value, accumulate=True)
    when = value.new_full(shape, dt)
    when[index] = offset.detach()
    if offset.requires_grad:  # each event's own time derivative, also where events coincide
        tangent = offset - offset.detach()
        moved = value.new_zeros(shape).index_put_(index, value * tangent, accumulate=True)
        count = value.new_zeros(shape).index_put_(index, torch.ones_like(value), accumulate=True)
        shift = value.new_zeros(shape).index_put_(index, tangent, accumulate=True)
        when = when + tie_tangent(moved, jump, count, shift)
    return StepArrivals(when, jump)


def tie_tangent(moved: Tensor, jump: Tensor, count: Tensor, shift: Tensor) -> Tensor:
    """Zero-valued time derivative of merged jumps (``[K, B, N]`` each).

    Events arriving at the same instant are merged into one jump ``J = sum_i x_i``; moving
    event ``i`` alone by ``δ`` moves a jump of size ``x_i``, so the merged jump time carries
    ``sum_i x_i δ_i / J`` (``moved = sum_i x_i δ_i``, zero valued): exact for dynamics affine in
    the jump target (the linear LIF family, as in the adjoint), and the right derivative of a
    common shift in general. A single event carries its own ``δ`` (``shift``), as do merged
    jumps that cancel exactly (``J == 0``: their mean ``shift / count``).
    """
    single = count <= 1
    safe = torch.where(single | (jump == 0), torch.ones_like(jump), jump)
    mean = shift / count.clamp_min(1)
    return torch.where(single | (jump == 0), mean, moved / safe)


def coalesce(offset: Tensor, value: Tensor, depth: Tensor | None = None
             ) -> tuple[Tensor, Tensor, Tensor]:
    """Jumps of one step (``[K, B, N]`` each, any order) as one jump per instant and depth.

    The jumps of an element that arrive at the same instant with the same causal depth
    (``depth [K, B, N]`` long, default 0; see :mod:`ctsnn.engine.substep`) are summed into one,
    so the threshold is tested once per group whatever the order of the inputs. Returns
    ``(offset, value, depth)`` ``[K', B, N]`` sorted by (offset, depth) per element; an
    element with fewer groups is padded with zero jumps at its last group's instant and depth.
    The merged time carries the value-weighted time derivative of :func:`tie_tangent`.
    """
    when = offset.detach()
    key = torch.zeros_like(when, dtype=torch.long) if depth is None else depth.expand(when.shape)
    first = torch.argsort(key, dim=0, stable=True)
    order = first.gather(0, torch.argsort(when.gather(0, first), dim=0, stable=True))
    when, key = when.gather(0, order), key.gather(0, order)
    value = value.expand(when.shape).gather(0, order)
    new = torch.ones_like(when, dtype=torch.bool)
    new[1:] = (when[1:] != when[:-1]) | (key[1:] != key[:-1])
    rank = torch.cumsum(new.long(), 0) - 1
    k = int(rank.max()) + 1 if rank.numel() else 0
    shape = (k, *when.shape[1:])
    out_when = when[-1:].expand(shape).clone().scatter_(0, rank, when)
    out_key = key[-1:].expand(shape).clone().scatter_(0, rank, key)
    jump = value.new_zeros(shape).scatter_add(0, rank, value)
    if offset.requires_grad:
        tangent = offset.expand(order.shape).gather(0, order)
        tangent = tangent - tangent.detach()
        moved = value.new_zeros(shape).scatter_add(0, rank, value * tangent)
        count = value.new_zeros(shape).scatter_add(0, rank, torch.ones_like(value))
        shift = value.new_zeros(shape).scatter_add(0, rank, tangent)
        out_when = out_when + tie_tangent(moved, jump, count, shift)
    return out_when, jump, out_key


def merge_arrivals(a: StepArrivals | None, b: StepArrivals | None) -> StepArrivals | None:
    """Both schedules of one step as one, in time order per element (stable)."""
    if a is None or b is None:
        return a if b is None else b
    offset = torch.cat([a.offset, b.offset.expand(-1, *a.offset.shape[1:])])
    value = torch.cat([a.value, b.value])
    order = torch.argsort(offset.detach(), dim=0, stable=True)
    return StepArrivals(offset.gather(0, order), value.gather(0, order))


__all__ = ["StepArrivals", "Arrivals", "DelayedArrivals", "merge_arrivals", "coalesce",
           "element_arrivals",
           "row_order", "ranks", "snap_to_grid", "tie_tangent"]
