"""Spike data of a batch: an exact event list plus the metadata of a simulation grid.

Time convention
---------------
All times are in **seconds**.  A simulation grid has a step ``dt`` (seconds) and
``n_steps`` = T steps, so it covers the interval ``[0, T*dt]``.

* Step ``n`` (``0 <= n < T``) covers the half-open interval ``(n*dt, (n+1)*dt]``.
* An event at time ``t`` belongs to step ``n = ceil(t/dt) - 1``, with the single exception
  ``t == 0``, which belongs to step 0.
* Its within-step offset is ``o = t - n*dt``, which lies in ``(0, dt]``; ``o == 0`` only for
  ``t == 0``.
* A raster entry at step ``n`` given *without* explicit offsets means the time ``(n+1)*dt``
  (the end of the step, offset ``dt``).  This is what a discrete-time simulation produces:
  its output index ``n`` is the state after step ``n``.
* Events with ``t < 0`` or ``t > T*dt`` are errors.

Grid points ``k*dt`` are always computed as the float64 product ``k * dt`` rounded to the
dtype of the times, and step membership is decided against these grid points rather than by
the (inexact) quotient ``t/dt``.  In particular an event at exactly ``k*dt`` lands in step
``k-1`` with offset exactly ``dt``, and ``step*dt + offset`` reproduces ``time`` up to rounding.

Tensor shapes use ``E`` (number of events), ``T`` (steps), ``B`` (batch size), ``N`` (units)
and ``M`` (maximum number of events of one sample, for padded arrays).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ._checks import (
    as_dt,
    as_float_1d,
    as_index_1d,
    as_int,
    check_finite,
    check_positive,
    check_tensor,
    first_bad,
)

__all__ = ["Spikes", "locate"]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _grid(n: Tensor, dt: float, dtype: torch.dtype) -> Tensor:
    """Grid points ``n*dt`` (seconds): float64 product, rounded to ``dtype``.  Shape of ``n``."""
    return (n.to(torch.float64) * dt).to(dtype)


def locate(times: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """Step index (int64) and within-step offset (seconds) of every time, see module docs.

    ``times`` must be finite and non-negative.  The offset is differentiable w.r.t. ``times``
    (derivative 1); the step is not.
    """
    t = times.detach()
    with torch.no_grad():
        n = (torch.ceil(t.to(torch.float64) / dt) - 1).clamp_min(0).to(torch.int64)
        # ceil(t/dt) may be off by one near grid points: fix against the grid itself.
        for _ in range(8):
            lo = _grid(n, dt, t.dtype)
            hi = _grid(n + 1, dt, t.dtype)
            down = (t <= lo) & (n > 0)
            up = t > hi
            if not bool((down | up).any()):
                break
            n = n - down.to(torch.int64) + up.to(torch.int64)
        lo = _grid(n, dt, t.dtype)
        hi = _grid(n + 1, dt, t.dtype)
        dt_t = torch.full_like(t, dt)
        off = torch.where(t >= hi, dt_t, torch.minimum(t - lo, dt_t))
    if times.requires_grad:
        off = off + (times - t)  # same value, gradient 1 w.r.t. times
    return n, off


def _compose(n: Tensor, offset: Tensor, dt: float, dtype: torch.dtype) -> Tensor:
    """Times [E] in ``dtype`` from steps ``n`` [E] and offsets [E] (seconds, in ``(0, dt]``,
    0 only at step 0).  The result is clamped so that each time stays in its own step despite
    rounding of ``n*dt + offset``; differentiable w.r.t. ``offset``."""
    lo = _grid(n, dt, dtype)
    hi = _grid(n + 1, dt, dtype)
    o = offset.to(dtype)
    times = lo + o
    # Clamp the value only: torch.minimum/maximum halve the gradient at a tie (offset dt).
    inside = torch.maximum(torch.minimum(times, hi),
                           torch.nextafter(lo, torch.full_like(lo, math.inf)))
    times = times + (inside - times).detach()
    return torch.where(o.detach() == 0, o - o.detach(), times)  # t = 0 keeps its gradient


# ----------------------------------------------------------------------------------------------
# Spikes
# ----------------------------------------------------------------------------------------------


class Spikes:
    """Spike events of a batch of samples, with the metadata of a time grid.

    Attributes (treat as read-only; methods return new objects):
        times: float tensor [E], absolute event times in seconds.
        batch: int64 tensor [E], sample index in ``[0, batch_size)``.
        units: int64 tensor [E], neuron index in ``[0, n_units)``.
        values: float tensor [E] (dtype of ``times``), amplitude of each event: 1 for a plain
            spike; counts or graded values are allowed.
        dt: grid step in seconds.
        n_steps: number of grid steps T; every event time lies in ``[0, n_steps*dt]``.
        batch_size: number of samples B.
        n_units: number of neurons N.

    Events are always stored sorted by (batch, time, unit), stably.  The constructor validates
    everything; the ``from_*`` classmethods are the convenient way to build instances.
    """

    dt: float
    n_steps: int
    batch_size: int
    n_units: int

    def __init__(
        self,
        times: Any,
        units: Any,
        batch: Any,
        values: Any = None,
        *,
        dt: float,
        n_steps: int,
        batch_size: int,
        n_units: int,
    ) -> None:
        """Validate and store the events.

        Args:
            times: [E] event times in seconds (finite, in ``[0, n_steps*dt]``).
            units: [E] integer neuron indices in ``[0, n_units)``.
            batch: [E] integer sample indices in ``[0, batch_size)``.
            values: [E] event amplitudes (default: ones), converted to the dtype of ``times``.
            dt: grid step in seconds (> 0).
            n_steps: number of grid steps (>= 1).
            batch_size: number of samples (>= 0).
            n_units: number of neurons (>= 0).
        """
        dt = as_dt("dt", dt)
        n_steps = as_int("n_steps", n_steps, minimum=1)
        batch_size = as_int("batch_size", batch_size, minimum=0)
        n_units = as_int("n_units", n_units, minimum=0)

        times = as_float_1d("times", times)
        device = times.device
        n_ev = times.shape[0]
        units = as_index_1d("units", units, device)
        batch = as_index_1d("batch", batch, device)
        if values is None:
            values = torch.ones(n_ev, dtype=times.dtype, device=device)
        else:
            values = as_float_1d("values", values, times.dtype).to(device)
        for name, x in (("units", units), ("batch", batch), ("values", values)):
            if x.shape[0] != n_ev:
                raise ValueError(
                    f"{name} must have the same length as times ({n_ev}), got {x.shape[0]}"
                )

        check_finite("times", times.detach())
        check_finite("values", values.detach())
        t = times.detach()
        if n_ev and bool((t < 0).any()):
            i = first_bad(t < 0)
            raise ValueError(
                f"times contains a negative value ({t[i].item()!r}) at index {i}; event times "
                "must be >= 0 seconds"
            )
        t_end = _grid(torch.tensor(n_steps), dt, t.dtype).to(device)
        if n_ev and bool((t > t_end).any()):
            i = first_bad(t > t_end)
            raise ValueError(
                f"times contains a value ({t[i].item()!r}) at index {i} beyond the end of the "
                f"grid n_steps*dt = {n_steps}*{dt} = {t_end.item()!r} s"
            )
        for name, x, size, size_name in (
            ("units", units, n_units, "n_units"),
            ("batch", batch, batch_size, "batch_size"),
        ):
            bad = (x < 0) | (x >= size)
            if n_ev and bool(bad.any()):
                i = first_bad(bad)
                raise ValueError(
                    f"{name} contains {x[i].item()} at index {i}; must lie in "
                    f"[0, {size_name}) = [0, {size})"
                )

        # sort by (batch, time, unit), stably
        order = torch.sort(units, stable=True).indices
        order = order[torch.sort(t[order], stable=True).indices]
        order = order[torch.sort(batch[order], stable=True).indices]

        # (the step of each event, the fifth field, is located on first use: see ``step``)
        self._events: tuple[Tensor | None, ...] | None = (
            times[order], units[order], batch[order], values[order], None
        )
        self._dense: Tensor | None = None
        self._build: Callable[[], Spikes] | None = None
        self.dt = dt
        self.n_steps = n_steps
        self.batch_size = batch_size
        self.n_units = n_units

    # ------------------------------------------------------------------------------------------
    # event fields (filled on first access for spikes that come from a dense raster)
    # ------------------------------------------------------------------------------------------

    def _fields(self) -> tuple[Tensor | None, ...]:
        """``(times, units, batch, values, step or None)`` (built from the raster on first
        use; ``step`` is filled by the ``step`` property)."""
        if self._events is None:
            assert self._build is not None
            self._events = self._build()._fields()
            self._build = None
        return self._events

    @property
    def times(self) -> Tensor:
        """float [E]: absolute event times in seconds."""
        return self._fields()[0]

    @property
    def units(self) -> Tensor:
        """int64 [E]: neuron index of each event."""
        return self._fields()[1]

    @property
    def batch(self) -> Tensor:
        """int64 [E]: sample index of each event."""
        return self._fields()[2]

    @property
    def values(self) -> Tensor:
        """float [E]: amplitude of each event."""
        return self._fields()[3]

    # ------------------------------------------------------------------------------------------
    # constructors
    # ------------------------------------------------------------------------------------------

    @classmethod
    def from_events(
        cls,
        times: Any,
        units: Any,
        batch: Any = None,
        *,
        dt: float,
        n_steps: int | None = None,
        batch_size: int | None = None,
        n_units: int | None = None,
        values: Any = None,
    ) -> Spikes:
        """Build from flat event lists.

        Args:
            times: [E] event times in seconds (integers are converted to the default float dtype).
            units: [E] integer neuron indices.
            batch: [E] integer sample indices, or ``None`` to put every event in sample 0.
            dt: grid step in seconds.
            n_steps: number of steps; default: step of the last event + 1 (at least 1).
            batch_size: default ``max(batch) + 1`` (1 if ``batch`` is ``None``, 0 if empty).
            n_units: default ``max(units) + 1`` (0 if there are no events).
            values: [E] amplitudes, default ones.
        """
        dt = as_dt("dt", dt)
        times = as_float_1d("times", times)
        units = as_index_1d("units", units, times.device)
        if batch is None:
            batch = torch.zeros(times.shape[0], dtype=torch.int64, device=times.device)
            if batch_size is None:
                batch_size = 1
        else:
            batch = as_index_1d("batch", batch, times.device)
        if batch_size is None:
            batch_size = int(batch.max()) + 1 if batch.numel() else 0
        if n_units is None:
            n_units = int(units.max()) + 1 if units.numel() else 0
        if n_steps is None:
            n_steps = 1
            if times.numel():
                t = times.detach()
                check_finite("times", t)
                if bool((t < 0).any()):
                    i = first_bad(t < 0)
                    raise ValueError(
                        f"times contains a negative value ({t[i].item()!r}) at index {i}; event "
                        "times must be >= 0 seconds"
                    )
                step, _ = locate(t.max().reshape(1), dt)
                n_steps = int(step[0]) + 1
        return cls(
            times,
            units,
            batch,
            values,
            dt=dt,
            n_steps=n_steps,
            batch_size=batch_size,
            n_units=n_units,
        )

    @classmethod
    def from_padded(
        cls,
        times: Tensor,
        units: Tensor,
        *,
        dt: float,
        n_steps: int | None = None,
        n_units: int | None = None,
        values: Tensor | None = None,
    ) -> Spikes:
        """Build from padded per-sample arrays (like NIR ``EventData``).

        Args:
            times: [B, M] float event times in seconds, padded with ``+inf``.
            units: [B, M] integer neuron indices, padded with ``-1``.  Padding positions of
                ``times`` and ``units`` must coincide.
            dt: grid step in seconds.
            n_steps: number of steps, default as in :meth:`from_events`.
            n_units: number of neurons, default ``max(units) + 1``.
            values: [B, M] amplitudes (entries at padding positions are ignored), default ones.
        """
        times = torch.as_tensor(times)
        if not times.is_floating_point():
            raise TypeError(f"times must be a floating-point tensor, got dtype {times.dtype}")
        check_tensor("times", times, ndim=2)
        units = torch.as_tensor(units, device=times.device)
        if units.is_floating_point() or units.is_complex() or units.dtype == torch.bool:
            raise TypeError(f"units must have an integer dtype, got {units.dtype}")
        check_tensor("units", units, shape=list(times.shape))
        if values is not None:
            values = torch.as_tensor(values, device=times.device)
            check_tensor("values", values, shape=list(times.shape))
        pad_t = torch.isposinf(times.detach())
        pad_u = units == -1
        if bool((pad_t != pad_u).any()):
            b, m = (int(i) for i in (pad_t != pad_u).nonzero()[0])
            raise ValueError(
                f"padding of times (+inf) and units (-1) disagree at index ({b}, {m}): "
                f"times={times[b, m].item()!r}, units={units[b, m].item()}"
            )
        keep = ~pad_t
        n_batch = times.shape[0]
        rows = torch.arange(n_batch, device=times.device).unsqueeze(1).expand_as(units)
        return cls.from_events(
            times[keep],
            units[keep],
            rows[keep],
            dt=dt,
            n_steps=n_steps,
            batch_size=n_batch,
            n_units=n_units,
            values=None if values is None else values[keep],
        )

    @classmethod
    def from_raster(
        cls,
        raster: Tensor,
        dt: float,
        offsets: Tensor | None = None,
        *,
        batch_first: bool = False,
    ) -> Spikes:
        """Build from a dense raster: every non-zero entry becomes one event.

        Args:
            raster: [T, B, N] (or [B, T, N] if ``batch_first``) tensor; the value of each
                non-zero entry becomes the event's value (so count rasters keep their counts).
            dt: grid step in seconds.
            offsets: optional float tensor of the same shape as ``raster``: within-step offset
                in seconds of each event, in ``(0, dt]`` (``0`` is also allowed at step 0,
                meaning ``t = 0``).  Entries where ``raster`` is zero are ignored (may be NaN).
                Without offsets an entry at step ``n`` means the time ``(n+1)*dt``.
            batch_first: whether the batch dimension comes first.

        The event dtype is that of ``raster`` if floating, else that of ``offsets`` if given,
        else the default float dtype.
        """
        dt = as_dt("dt", dt)
        check_tensor("raster", raster, ndim=3)
        if raster.is_complex():
            raise TypeError(f"raster must hold real numbers, got dtype {raster.dtype}")
        if offsets is not None:
            check_tensor("offsets", offsets, shape=list(raster.shape), floating=True)
        if batch_first:
            raster = raster.transpose(0, 1)
            offsets = None if offsets is None else offsets.transpose(0, 1)
        if raster.is_floating_point():
            dtype = raster.dtype
            check_finite("raster", raster.detach())
        elif offsets is not None:
            dtype = offsets.dtype
        else:
            dtype = torch.get_default_dtype()
        n_steps, batch_size, n_units = raster.shape
        idx = raster.detach().nonzero()
        n, b, i = idx.unbind(1)
        values = raster[n, b, i].to(dtype)
        if offsets is None:
            times = _grid(n + 1, dt, dtype)
        else:
            o = offsets[n, b, i].to(device=raster.device, dtype=dtype)
            od = o.detach()
            bad = ~torch.isfinite(od) | (od > dt) | (od < 0) | ((od == 0) & (n > 0))
            if bool(bad.any()):
                k = first_bad(bad)
                where = tuple(int(v) for v in idx[k])
                if batch_first:
                    where = (where[1], where[0], where[2])
                raise ValueError(
                    f"offsets must lie in (0, dt] = (0, {dt}] where raster is non-zero "
                    f"(0 allowed only at step 0), got {od[k].item()!r} at index {where}"
                )
            times = _compose(n, o, dt, dtype)
        return cls(
            times,
            i,
            b,
            values,
            dt=dt,
            n_steps=n_steps,
            batch_size=batch_size,
            n_units=n_units,
        )

    @classmethod
    def from_dense(
        cls,
        raster: Tensor,
        dt: float,
        *,
        events: Callable[[], Spikes] | None = None,
    ) -> Spikes:
        """Spikes backed by a dense ``[T, B, N]`` raster (e.g. a surrogate layer's output).

        :meth:`raster` returns ``raster`` itself, so gradients that flow through it (surrogate
        derivatives, also where no spike happened) reach the layer that produced it. The event
        fields are built from the raster on first access (an entry of step ``n`` is an event at
        ``(n + 1) dt``), or by ``events()`` when given (e.g. to add spikes at ``t = 0``, which
        a raster cannot hold).
        """
        dt = as_dt("dt", dt)
        check_tensor("raster", raster, ndim=3, floating=True)
        obj = cls.__new__(cls)
        obj._events, obj._dense = None, raster
        obj._build = events if events is not None else (lambda: cls.from_raster(raster, dt))
        obj.dt = dt
        obj.n_steps, obj.batch_size, obj.n_units = (int(x) for x in raster.shape)
        return obj

    @classmethod
    def from_sorted_events(cls, times: Tensor, units: Tensor, batch: Tensor, *, dt: float,
                           n_steps: int, batch_size: int, n_units: int,
                           values: Tensor | None = None) -> Spikes:
        """Trusted constructor for engines that emit events already valid and in this class's
        order (by ``batch``, then ``times``, then ``units``; times in ``[0, n_steps dt]``
        seconds, indices in range): no checks and no sort; ``values`` [E] in the dtype of
        ``times`` (default: unit amplitudes). Anything else should use :meth:`from_events`,
        which validates and sorts."""
        obj = cls.__new__(cls)
        values = torch.ones_like(times) if values is None else values
        obj._events = (times, units, batch, values, None)  # step: located on first use
        obj._dense, obj._build = None, None
        obj.dt = as_dt("dt", dt)
        obj.n_steps, obj.batch_size, obj.n_units = n_steps, batch_size, n_units
        return obj

    @classmethod
    def empty(
        cls,
        *,
        dt: float,
        n_steps: int,
        batch_size: int,
        n_units: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Spikes:
        """A Spikes object without events on a grid of ``n_steps`` steps of ``dt`` seconds
        (``dtype``: default, the default dtype)."""
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
        times = torch.empty(0, dtype=dtype, device=device)
        idx = torch.empty(0, dtype=torch.int64, device=device)
        return cls(times, idx, idx, dt=dt, n_steps=n_steps, batch_size=batch_size, n_units=n_units)

    @classmethod
    def concat(cls, spikes: Sequence[Spikes]) -> Spikes:
        """Concatenate along the batch dimension.

        All inputs must share ``dt``, ``n_units`` and device.  The result has ``n_steps`` equal
        to the maximum and the promoted float dtype (converted as by :meth:`to`, keeping steps).
        Sample ``b`` of input ``j`` becomes sample ``b + sum(batch_size of inputs before j)``.
        """
        spikes = list(spikes)
        if not spikes:
            raise ValueError("spikes must be a non-empty sequence of Spikes")
        for j, s in enumerate(spikes):
            if not isinstance(s, Spikes):
                raise TypeError(f"spikes[{j}] must be a Spikes object, got {type(s).__name__}")
        first = spikes[0]
        dtype = first.dtype
        for j, s in enumerate(spikes[1:], start=1):
            if s.dt != first.dt:
                raise ValueError(f"dt differs: spikes[0].dt = {first.dt}, spikes[{j}].dt = {s.dt}")
            if s.n_units != first.n_units:
                raise ValueError(
                    f"n_units differs: spikes[0].n_units = {first.n_units}, "
                    f"spikes[{j}].n_units = {s.n_units}"
                )
            if s.device != first.device:
                raise ValueError(
                    f"device differs: spikes[0] is on {first.device}, spikes[{j}] on {s.device}"
                )
            dtype = torch.promote_types(dtype, s.dtype)
        spikes = [s.to(dtype=dtype) for s in spikes]
        shifts = [0]
        for s in spikes[:-1]:
            shifts.append(shifts[-1] + s.batch_size)
        return cls(
            torch.cat([s.times for s in spikes]),
            torch.cat([s.units for s in spikes]),
            torch.cat([s.batch + k for s, k in zip(spikes, shifts, strict=True)]),
            torch.cat([s.values for s in spikes]),
            dt=first.dt,
            n_steps=max(s.n_steps for s in spikes),
            batch_size=sum(s.batch_size for s in spikes),
            n_units=first.n_units,
        )

    # ------------------------------------------------------------------------------------------
    # basic properties
    # ------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Device of the event tensors."""
        return self.times.device if self._dense is None else self._dense.device

    @property
    def dtype(self) -> torch.dtype:
        """Float dtype of ``times`` and ``values``."""
        return self.times.dtype if self._dense is None else self._dense.dtype

    @property
    def duration(self) -> float:
        """Length of the grid, ``n_steps*dt``, in seconds."""
        return self.n_steps * self.dt

    @property
    def step(self) -> Tensor:
        """int64 [E]: grid step of each event (see the module's time convention).

        Located on first use and kept: engines that only pass events on (the compiled
        event-driven and EventProp paths) never pay for it."""
        fields = self._fields()
        if fields[4] is None:
            fields = (*fields[:4], locate(fields[0], self.dt)[0])
            self._events = fields
        return fields[4]

    @property
    def offset(self) -> Tensor:
        """float [E]: within-step offset of each event in seconds, in ``(0, dt]`` (0 iff t=0)."""
        return locate(self.times, self.dt)[1]

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def __repr__(self) -> str:
        return (
            f"Spikes(events={len(self)}, batch_size={self.batch_size}, n_units={self.n_units}, "
            f"n_steps={self.n_steps}, dt={self.dt}, dtype={self.dtype}, device={self.device})"
        )

    def _replace(self, **kw: Any) -> Spikes:
        args: dict[str, Any] = {
            "times": self.times,
            "units": self.units,
            "batch": self.batch,
            "values": self.values,
            "dt": self.dt,
            "n_steps": self.n_steps,
            "batch_size": self.batch_size,
            "n_units": self.n_units,
        }
        args.update(kw)
        return Spikes(**args)

    # ------------------------------------------------------------------------------------------
    # conversions
    # ------------------------------------------------------------------------------------------

    def raster(self, dtype: torch.dtype | None = None, *, batch_first: bool = False) -> Tensor:
        """Dense raster [T, B, N] (or [B, T, N] if ``batch_first``).

        Each cell holds the sum of ``values`` of the events in that (step, sample, unit);
        ``dtype`` defaults to the dtype of ``times``.  Differentiable w.r.t. ``values``.
        """
        dtype = self.dtype if dtype is None else dtype
        if self._dense is not None:
            out = self._dense.to(dtype)
        else:
            out = torch.zeros(
                self.n_steps, self.batch_size, self.n_units, dtype=dtype, device=self.device
            )
            out = out.index_put((self.step, self.batch, self.units), self.values.to(dtype), True)
        return out.transpose(0, 1) if batch_first else out

    def first_offsets(self, fill: float = float("nan")) -> Tensor:
        """[T, B, N]: offset (seconds) of the earliest event of each cell, ``fill`` where none."""
        t_, b_, n_ = self.n_steps, self.batch_size, self.n_units
        out = torch.full((t_ * b_ * n_,), fill, dtype=self.dtype, device=self.device)
        if len(self):
            lin = (self.step * b_ + self.batch) * n_ + self.units
            out = out.scatter_reduce(0, lin, self.offset, reduce="amin", include_self=False)
        return out.reshape(t_, b_, n_)

    def first_times(self, fill: float | None = None) -> Tensor:
        """[B, N] time (s) of the first event of each unit and sample; ``fill`` where none.

        ``fill`` defaults to the end of the grid (``n_steps * dt``). Differentiable w.r.t.
        ``times`` (the gradient goes to the earliest event), e.g. for first-spike losses.
        """
        end = self.n_steps * self.dt if fill is None else fill
        out = torch.full((self.batch_size * self.n_units,), end, dtype=self.times.dtype,
                         device=self.device)
        index = self.batch * self.n_units + self.units
        # include_self=False: the fill only stands where a unit has no event (a NaN or early
        # fill must not win the minimum, and a spike at the grid's end keeps its gradient).
        out = out.scatter_reduce(0, index, self.times, reduce="amin", include_self=False)
        return out.reshape(self.batch_size, self.n_units)

    def count(self) -> Tensor:
        """int64 [B, N]: number of events per sample and unit (ignoring ``values``)."""
        out = torch.zeros(self.batch_size, self.n_units, dtype=torch.int64, device=self.device)
        ones = torch.ones_like(self.units)
        return out.index_put_((self.batch, self.units), ones, accumulate=True)

    def _sample_starts(self) -> tuple[Tensor, Tensor]:
        counts = torch.bincount(self.batch, minlength=self.batch_size)
        starts = torch.cumsum(counts, 0) - counts
        return counts, starts

    def to_padded(self, *, return_values: bool = False) -> tuple[Tensor, ...]:
        """Padded per-sample arrays, sorted by time within each sample.

        Returns:
            ``(times, units)``: times [B, M] in seconds padded with ``+inf`` and units [B, M]
            int64 padded with ``-1``, where M is the largest number of events of one sample
            (possibly 0).  With ``return_values=True`` also values [B, M] padded with 0.
        """
        counts, starts = self._sample_starts()
        m = int(counts.max()) if self.batch_size else 0
        shape = (self.batch_size, m)
        pos = torch.arange(len(self), device=self.device) - starts[self.batch]
        index = (self.batch, pos)
        times = torch.full(shape, math.inf, dtype=self.dtype, device=self.device)
        times = times.index_put(index, self.times)
        units = torch.full(shape, -1, dtype=torch.int64, device=self.device)
        units = units.index_put(index, self.units)
        if not return_values:
            return times, units
        values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return times, units, values.index_put(index, self.values)

    def to(
        self, device: torch.device | str | torch.dtype | None = None,
        dtype: torch.dtype | None = None
    ) -> Spikes:
        """Move to ``device`` and/or convert ``times`` and ``values`` to float ``dtype``.

        As with tensors, a dtype may come first: ``spikes.to(torch.float64)``. A dtype change
        keeps every event in its step (times are rebuilt as grid point plus offset in the new
        dtype), so ``raster()`` is unchanged up to the cast of ``values``.
        """
        if isinstance(device, torch.dtype):
            if dtype is not None:
                raise TypeError(f"Spikes.to: two dtypes given ({device} and dtype={dtype})")
            device, dtype = None, device
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
        if ((dtype is None or dtype == self.dtype)
                and (device is None or torch.device(device) == self.device)):
            return self  # nothing changes (Spikes are immutable): no copy, no re-validation
        times = self.times
        if dtype is not None and dtype != self.dtype:
            # rebuild from (step, offset): grid points of one dtype are not grid points of
            # another, and a plain cast could move events at step ends into the next step
            times = _compose(self.step, self.offset, self.dt, dtype)
        return self._replace(
            times=times.to(device=device),
            units=self.units.to(device=device),
            batch=self.batch.to(device=device),
            values=self.values.to(device=device, dtype=dtype),
        )

    # ------------------------------------------------------------------------------------------
    # transformations
    # ------------------------------------------------------------------------------------------

    def rebin(self, dt: float, n_steps: int | None = None) -> Spikes:
        """The same events on a grid of step ``dt`` seconds.

        ``n_steps`` defaults to the smallest number of new steps covering the old grid
        ``[0, old n_steps*old dt]``; an explicit ``n_steps`` must still contain every event.
        """
        dt = as_dt("dt", dt)
        if n_steps is None:
            end = _grid(torch.tensor([self.n_steps]), self.dt, self.dtype)
            n_steps = int(locate(end, dt)[0][0]) + 1
        return self._replace(dt=dt, n_steps=n_steps)

    def select(self, batch_indices: Sequence[int] | Tensor) -> Spikes:
        """The samples ``batch_indices`` (in that order, repeats allowed), renumbered 0..k-1.

        ``batch_indices`` is a sequence / 1-D integer tensor of sample indices, or a boolean
        mask of length ``batch_size``.
        """
        idx = torch.as_tensor(batch_indices, device=self.device)
        if idx.dtype == torch.bool:
            check_tensor("batch_indices", idx, shape=[self.batch_size])
            idx = idx.nonzero().squeeze(1)
        idx = as_index_1d("batch_indices", idx, self.device)
        bad = (idx < 0) | (idx >= self.batch_size)
        if bool(bad.any()):
            k = first_bad(bad)
            raise ValueError(
                f"batch_indices contains {idx[k].item()} at position {k}; must lie in "
                f"[0, batch_size) = [0, {self.batch_size})"
            )
        counts, starts = self._sample_starts()
        lengths = counts[idx]
        new_batch = torch.repeat_interleave(torch.arange(idx.shape[0], device=self.device), lengths)
        seg_start = torch.cumsum(lengths, 0) - lengths
        within = torch.arange(new_batch.shape[0], device=self.device) - seg_start[new_batch]
        ev = starts[idx][new_batch] + within
        return self._replace(
            times=self.times[ev],
            units=self.units[ev],
            batch=new_batch,
            values=self.values[ev],
            batch_size=int(idx.shape[0]),
        )

    def shift(self, delay: float | Tensor, *, extend: bool = False) -> Spikes:
        """Events delayed by ``delay`` seconds; no event is dropped.

        Args:
            delay: non-negative scalar, or float tensor [N] with one delay per unit (may require
                grad; the new ``times`` are differentiable w.r.t. it).
            extend: if the delayed events go beyond ``n_steps*dt``, grow ``n_steps`` to fit
                them instead of raising ``ValueError``.
        """
        if isinstance(delay, Tensor):
            if delay.ndim == 0:
                d = delay.to(device=self.device, dtype=self.dtype)
            else:
                check_tensor("delay", delay, shape=[self.n_units])
                d = delay.to(device=self.device, dtype=self.dtype)[self.units]
            check_positive("delay", delay.detach(), allow_zero=True)
        else:
            if isinstance(delay, numbers.Real) and not isinstance(delay, bool):
                delay = float(delay)
            check_positive("delay", delay, allow_zero=True)
            d = torch.tensor(delay, dtype=self.dtype, device=self.device)
        times = self.times + d
        n_steps = self.n_steps
        if len(self):
            t_max = times.detach().max().reshape(1)
            last = int(locate(t_max, self.dt)[0][0])
            end = _grid(torch.tensor(self.n_steps), self.dt, self.dtype).item()
            if t_max.item() > end:
                if not extend:
                    raise ValueError(
                        f"delay moves an event to {t_max.item()!r} s, beyond n_steps*dt = "
                        f"{end!r} s; pass extend=True to grow n_steps"
                    )
                n_steps = max(n_steps, last + 1)
        return self._replace(times=times, n_steps=n_steps)
