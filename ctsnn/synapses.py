"""Synaptic connections: how presynaptic spikes become postsynaptic jumps.

A connection turns a :class:`~ctsnn.spikes.Spikes` object into, per grid step,

* for discrete time: the summed jump ``[B, N_out]`` applied at the end of the step;
* for continuous time: an :class:`Arrivals` schedule, the exact within-step times at
  which jumps reach each postsynaptic neuron and their sizes.

Delays (issue "Delays") plug in here: they change arrival times, nothing downstream.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._checks import check_finite, check_tensor
from .spikes import Spikes, _locate


class StepArrivals(NamedTuple):
    """Jumps arriving during one step, in time order along the first axis.

    ``offset [K, B, N]``: local arrival times in ``(0, dt]`` (``dt`` with a zero value for padding);
    ``value [K, B, N]``: jump sizes.
    """

    offset: Tensor
    value: Tensor


def _row_order(rows: tuple[Tensor, ...], sizes: tuple[int, ...], offset: Tensor) -> Tensor:
    """Permutation sorting events by their row ``rows`` (lexicographic), then by ``offset``.

    The integer row keys are fused into one int64 key (``sizes`` are their ranges), so two
    stable sorts do the work of one per key.
    """
    key = torch.zeros_like(rows[0])
    for r, size in zip(rows, sizes, strict=True):
        key = key * size + r
    order = torch.argsort(offset, stable=True)
    return order[torch.argsort(key[order], stable=True)]


def _ranks(row_keys: tuple[Tensor, ...], offset: Tensor) -> Tensor:
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


def _snap_to_grid(t: Tensor, dt: float, ulps: int = 8) -> Tensor:
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
        self.weight = weight
        self.n_in = spikes.n_units
        self.n_out = spikes.n_units if weight is None else weight.shape[0]
        step, off, b = spikes.step, spikes.offset, spikes.batch
        order = _row_order((step, b), (spikes.n_steps, self.batch_size), off)
        step, off, b = step[order], off[order], b[order]
        self._rank = _ranks((step, b), off)
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
        amp.index_put_((rank, b, self._units[e0:e1]), vals, accumulate=True)
        offset = vals.new_full((k, self.batch_size), self.dt)
        offset[rank, b] = self._offset[e0:e1]
        value = amp if self.weight is None else amp @ self.weight.t()
        return StepArrivals(offset.unsqueeze(-1).expand(k, self.batch_size, self.n_out), value)


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
        self.n_out = weight.shape[0]
        order = torch.argsort(spikes.times, stable=True)
        self._times = spikes.times[order]
        self._batch, self._units = spikes.batch[order], spikes.units[order]
        self._values = spikes.values[order]
        self._max_delay = float(delay.detach().max()) if delay.numel() else 0.0
        rate = max(len(spikes), 1) / self.n_steps  # input events per step
        self._window = max(1, int(max_pairs / max(rate * self.n_out, 1.0)))
        self._start = -1  # first step of the cached window

    def _build(self, n0: int) -> None:
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
        arrival = _snap_to_grid(t[src] + self.delay[target, u[src]], dt)
        # Keep only arrivals whose step falls in [n0, n1): grid points as float64 products.
        end = torch.tensor(n1 * dt, dtype=arrival.dtype)
        begin = torch.tensor(n0 * dt, dtype=arrival.dtype)
        keep = (arrival <= end) & ((arrival > begin) | ((n0 == 0) & (arrival == 0)))
        src, target, arrival = src[keep], target[keep], arrival[keep]
        step, offset = _locate(arrival, dt)
        value = v[src] * self.weight[target, u[src]]
        batch = b[src]
        order = _row_order((step, batch, target), (self.n_steps, self.batch_size, self.n_out),
                           offset)
        step, batch, target, offset, value = (
            x[order] for x in (step, batch, target, offset, value)
        )
        self._rank = _ranks((step, batch, target), offset)
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
        return _element_arrivals(self._rank[e0:e1], batch, target, offset, value, k,
                                 self.batch_size, self.n_out, self.dt)


def _element_arrivals(rank: Tensor, batch: Tensor, target: Tensor, offset: Tensor,
                      value: Tensor, k: int, batch_size: int, n_out: int, dt: float
                      ) -> StepArrivals:
    """Per-element arrival lists ``[k, B, N]`` from ranked (batch, target, offset, value)."""
    shape = (k, batch_size, n_out)
    jump = value.new_zeros(shape)
    jump.index_put_((rank, batch, target), value, accumulate=True)
    when = value.new_full(shape, dt)
    when[rank, batch, target] = offset
    return StepArrivals(when, jump)


def merge_arrivals(a: StepArrivals | None, b: StepArrivals | None) -> StepArrivals | None:
    """Both schedules of one step as one, in time order per element (stable)."""
    if a is None or b is None:
        return a if b is None else b
    offset = torch.cat([a.offset, b.offset.expand(-1, *a.offset.shape[1:])])
    value = torch.cat([a.value, b.value])
    order = torch.argsort(offset.detach(), dim=0, stable=True)
    return StepArrivals(offset.gather(0, order), value.gather(0, order))


class Dense(nn.Module):
    """All-to-all synapses: weight ``[N_out, N_in]`` and an optional fixed delay.

    ``delay`` (seconds, non-negative) is per synapse ``[N_out, N_in]`` or per presynaptic axon
    ``[N_in]``; ``learn_delay=True`` makes it a parameter (exact gradients in continuous time;
    clamp with :meth:`clamp_delays_` after optimiser steps). In continuous time a spike at
    ``t`` arrives at ``t + delay`` exactly; in discrete time the delay is rounded to the
    nearest whole number of steps (ties to even, like ``torch.round``; never truncated) and a
    spike in step ``n`` arrives at the end of step ``n + round(delay / dt)``.

    ``jumps(spikes)`` gives the per-step summed input ``[T, B, N_out]`` (discrete time);
    ``arrivals(spikes)`` gives the exact arrival schedule (continuous time).
    """

    def __init__(
        self,
        weight: Tensor,
        *,
        delay: Tensor | None = None,
        max_delay: float | None = None,
        learnable: bool = True,
        learn_delay: bool = False,
    ) -> None:
        super().__init__()
        check_tensor("weight", weight, ndim=2, floating=True)
        check_finite("weight", weight)
        if learnable:
            self.weight = nn.Parameter(weight.detach().clone())
        else:
            self.register_buffer("weight", weight.detach().clone())
        if delay is None:
            self.delay = None
        else:
            delay = torch.as_tensor(delay, dtype=weight.dtype, device=weight.device)
            if delay.shape == (weight.shape[1],):
                delay = delay.expand_as(weight)
            if delay.shape != weight.shape:
                raise ValueError(
                    f"delay must have shape [N_out, N_in] = {list(weight.shape)} (per synapse) "
                    f"or [N_in] = [{weight.shape[1]}] (per axon), got {list(delay.shape)}"
                )
            check_finite("delay", delay)
            if (delay < 0).any():
                raise ValueError(f"delay must be non-negative, got minimum {delay.min().item()!r}")
            if max_delay is not None and (delay > max_delay).any():
                raise ValueError(
                    f"delay must not exceed max_delay = {max_delay}, got {delay.max().item()!r}"
                )
            self.max_delay = max_delay
            if learn_delay:
                self.delay = nn.Parameter(delay.detach().clone())
            else:
                self.register_buffer("delay", delay.detach().clone())

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    def clamp_delays_(self) -> None:
        """Clamp learnable delays into ``[0, max_delay]`` in place (call after optimiser steps).

        Clamping is explicit: the forward pass never clamps or wraps silently.
        """
        if self.delay is None:
            return
        with torch.no_grad():
            self.delay.clamp_(min=0.0, max=self.max_delay)

    def check_input(self, spikes: Spikes) -> None:
        """Raise if ``spikes`` do not fit the synapse's input size."""
        if spikes.n_units != self.n_in:
            raise ValueError(
                f"input spikes have {spikes.n_units} units but the weight expects "
                f"N_in = {self.n_in} (weight shape {list(self.weight.shape)})"
            )

    def jumps(self, spikes: Spikes | Tensor) -> Tensor:
        """Summed weighted input per step, ``[T, B, N_out]`` (delays rounded to steps).

        ``spikes`` may be a :class:`Spikes` or a dense (possibly differentiable) raster
        ``[T, B, N_in]``, whose grid spikes sit at the end of their steps.
        """
        if isinstance(spikes, Tensor):
            raster = spikes
            if raster.ndim != 3 or raster.shape[2] != self.n_in:
                raise ValueError(
                    f"raster must have shape [T, B, {self.n_in}], got {list(raster.shape)}"
                )
            dt = None
        else:
            self.check_input(spikes)
            raster = spikes.raster(dtype=self.weight.dtype)
            dt = spikes.dt
        if self.delay is None:
            return raster @ self.weight.t()
        if dt is None:
            raise ValueError("a delayed connection needs Spikes (with their dt), not a raster")
        # Event-driven: every (spike, target) pair adds its weight delay-steps later.
        steps = torch.round(self.delay / dt).long()
        n, b, j = raster.nonzero(as_tuple=True)
        amp = raster[n, b, j]
        n_ev = n.numel()
        i = torch.arange(self.n_out, device=n.device).repeat(n_ev)
        src = torch.repeat_interleave(torch.arange(n_ev, device=n.device), self.n_out)
        arrive = n[src] + steps[i, j[src]]
        n_steps, batch_size = raster.shape[0], raster.shape[1]
        keep = arrive < n_steps
        out = raster.new_zeros(n_steps, batch_size, self.n_out)
        src, i, arrive = src[keep], i[keep], arrive[keep]
        out.index_put_((arrive, b[src], i), amp[src] * self.weight[i, j[src]], accumulate=True)
        return out

    def arrivals(self, spikes: Spikes) -> Arrivals | DelayedArrivals:
        """Exact within-step arrival schedule."""
        self.check_input(spikes)
        spikes = spikes.to(dtype=self.weight.dtype)
        if self.delay is None:
            return Arrivals(spikes, self.weight)
        return DelayedArrivals(spikes, self.weight, self.delay)

    def extra_repr(self) -> str:
        delay = "" if self.delay is None else ", delay=per-synapse"
        return f"n_in={self.n_in}, n_out={self.n_out}{delay}"


class RecurrentDense(nn.Module):
    """A population's own all-to-all recurrent synapses with delays, in both time modes.

    Args:
        weight: ``[N, N]`` (post, pre).
        delay: seconds, per synapse ``[N, N]`` or per presynaptic axon ``[N]``; at least one
            grid step (checked when a simulation starts), so a spike never acts within the
            step that emitted it.
        learn_weight, learn_delay: make them parameters.
        max_delay: optional upper bound (seconds) for checks and :meth:`clamp_delays_`.

    Continuous time: a spike at ``t`` reaches neuron ``i`` at exactly ``t + delay[i, j]``
    (arrivals are scheduled as the spikes happen and differentiable w.r.t. spike times,
    weights and delays). Discrete time: delays are rounded to whole steps (ties to even) and a
    spike of step ``n`` arrives at the end of step ``n + round(delay / dt)``, like
    :class:`Dense`. For DelRec's learnable spread-out recurrent delays see
    :class:`ctsnn.delays.recurrent.DelayedRecurrent`.
    """

    def __init__(self, weight: Tensor, delay: Tensor, *, learn_weight: bool = True,
                 learn_delay: bool = False, max_delay: float | None = None) -> None:
        super().__init__()
        check_tensor("weight", weight, ndim=2, floating=True)
        if weight.shape[0] != weight.shape[1]:
            raise ValueError(f"recurrent weight must be square [N, N], got {list(weight.shape)}")
        check_finite("weight", weight)
        self.inner = Dense(weight, delay=delay, max_delay=max_delay, learnable=learn_weight,
                           learn_delay=learn_delay)
        if self.inner.delay is None:
            raise ValueError("delay is required for a recurrent connection (at least one step)")

    @property
    def weight(self) -> Tensor:
        return self.inner.weight

    @property
    def delay(self) -> Tensor:
        return self.inner.delay

    def clamp_delays_(self) -> None:
        """Clamp delays into ``[0, max_delay]`` in place (after optimiser steps)."""
        self.inner.clamp_delays_()

    # ------------------------------------------------------------------ shared
    def start(self, batch_size: int, *, dtype: torch.dtype, device: torch.device,
              dt: float, time: str = "discrete") -> None:
        """Begin a simulation: nothing from a previous one is kept."""
        low = float(self.delay.detach().min())
        if low < dt * (1 - 1e-9):
            raise ValueError(
                f"recurrent delays must be at least one grid step (dt = {dt} s), got a minimum of "
                f"{low} s: a spike cannot act within the step that emitted it"
            )
        self._dt, self._batch = dt, batch_size
        if time == "discrete":
            lags = torch.round(self.delay.detach() / dt).long()
            self._lags = [int(k) for k in torch.unique(lags).tolist()]
            # One masked weight per distinct lag, built once per sequence (saved once).
            self._masked = {k: self.weight * (lags == k).to(self.weight.dtype) for k in self._lags}
            self._history: list[Tensor] = []
        else:
            # step -> chunks of (batch, target, offset, value) arriving during that step
            self._pending: dict[int, list[tuple[Tensor, ...]]] = {}

    # ------------------------------------------------------------------ discrete
    def read(self, n: int) -> Tensor:
        """Summed jumps ``[B, N]`` arriving at the end of step ``n``."""
        out = None
        for k in self._lags:
            if n - k >= 0:
                term = self._history[n - k] @ self._masked[k].t()
                out = term if out is None else out + term
        if out is None:
            return self.weight.new_zeros(self._batch, self.weight.shape[0])
        return out

    def write(self, n: int, spikes: Tensor) -> None:
        """The spikes ``[B, N]`` of step ``n``."""
        self._history.append(spikes)

    # ------------------------------------------------------------------ continuous
    def emit(self, n: int, times: Tensor, batch: Tensor, units: Tensor) -> None:
        """Schedule the arrivals of the spikes emitted during step ``n`` (times in seconds)."""
        if times.numel() == 0:
            return
        n_out = self.weight.shape[0]
        target = torch.arange(n_out, device=times.device).repeat(times.numel())
        src = torch.repeat_interleave(torch.arange(times.numel(), device=times.device), n_out)
        arrival = _snap_to_grid(times[src] + self.delay[target, units[src]], self._dt)
        step, offset = _locate(arrival, self._dt)
        value = self.weight[target, units[src]]
        # Bucket by arrival step once, so each step takes its own arrivals without touching
        # (or adding autograd nodes for) everything still in flight.
        order = torch.argsort(step, stable=True)
        steps, counts = torch.unique_consecutive(step[order], return_counts=True)
        sizes = counts.tolist()
        parts = [torch.split(x[order], sizes) for x in (batch[src], target, offset, value)]
        for i, k in enumerate(steps.tolist()):
            self._pending.setdefault(k, []).append(tuple(p[i] for p in parts))

    def arrivals(self, n: int) -> StepArrivals | None:
        """Arrivals during step ``n`` of the spikes emitted so far."""
        chunks = self._pending.pop(n, None)
        if not chunks:
            return None
        if len(chunks) == 1:
            batch, target, offset, value = chunks[0]
        else:
            batch, target, offset, value = (torch.cat(x) for x in zip(*chunks, strict=True))
        n_out = self.weight.shape[0]
        order = _row_order((batch, target), (self._batch, n_out), offset.detach())
        batch, target, offset, value = batch[order], target[order], offset[order], value[order]
        rank = _ranks((batch, target), offset.detach())
        k = int(rank.max()) + 1
        return _element_arrivals(rank, batch, target, offset, value, k, self._batch, n_out,
                                 self._dt)
