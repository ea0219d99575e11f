"""Collecting the spikes of a simulation as they happen."""

from __future__ import annotations

import torch
from torch import Tensor

from ..spikes import Spikes


class SpikeLog:
    """Collects (time, sample, unit) of spikes as they happen, without per-spike Python work."""

    def __init__(self) -> None:
        self.times: list[Tensor] = []
        self.index: list[Tensor] = []
        # the same spikes' local times within their step (the in-step recurrent arrivals are
        # scheduled from these: n dt + offset - n dt need not give the offset back bit for bit)
        self.local: list[Tensor] = []
        # causal depth of each spike at its instant (0: a crossing or fired by the jumps from
        # elsewhere; k: fired by the k-th wave of zero-delay arrivals, see .substep)
        self.depth: list[Tensor] = []

    def add(self, mask: Tensor, offset: Tensor, n: int, dt: float,
            depth: Tensor | None = None) -> None:
        """Log the elements in ``mask`` as spiking at local ``offset`` within step ``n``
        (``depth``: the causal depth of the jumps that fired them, default 0)."""
        idx = mask.nonzero()
        if idx.numel():
            t = offset if offset.shape == mask.shape else offset.expand(mask.shape)
            # n dt + offset may round past the step's end point: keep it inside its step, moving
            # the value only (torch.minimum would halve the gradient of a spike exactly at the
            # end of the step, e.g. one caused by an arrival on a grid point).
            end = torch.tensor((n + 1) * dt, dtype=t.dtype, device=t.device)
            times = t[mask] + n * dt
            self.times.append(times - (times - end).clamp_min(0).detach())
            self.index.append(idx)
            self.local.append(t[mask])
            self.depth.append(torch.zeros(int(idx.shape[0]), dtype=torch.long,
                                          device=mask.device) if depth is None
                              else depth.expand(mask.shape)[mask])

    def since(self, start: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(times, batch, units)`` of the spikes logged after the first ``start`` entries."""
        if len(self.times) == start:
            empty = torch.zeros(0, dtype=torch.long)
            return torch.zeros(0), empty, empty
        idx = torch.cat(self.index[start:])
        return torch.cat(self.times[start:]), idx[:, 0], idx[:, 1]

    def local_since(self, start: int) -> Tensor:
        """Local times (within their step, seconds) of the spikes of :meth:`since`."""
        if len(self.local) == start:
            return torch.zeros(0)
        return torch.cat(self.local[start:])

    def depth_since(self, start: int) -> Tensor:
        """Causal depths (long) of the spikes of :meth:`since`."""
        if len(self.depth) == start:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat(self.depth[start:])

    def truncate(self, start: int) -> None:
        """Forget every entry after the first ``start``."""
        del self.times[start:], self.index[start:], self.local[start:], self.depth[start:]

    def keep_until(self, start: int, limit: float) -> None:
        """Drop the spikes after the first ``start`` entries whose local time exceeds
        ``limit`` (seconds within their step)."""
        for j in range(start, len(self.times)):
            keep = self.local[j].detach() <= limit
            if not bool(keep.all()):
                self.times[j], self.index[j] = self.times[j][keep], self.index[j][keep]
                self.local[j], self.depth[j] = self.local[j][keep], self.depth[j][keep]

    def spikes(self, *, dt: float, n_steps: int, shape: tuple[int, int], like: Tensor) -> Spikes:
        if self.times:
            times = torch.cat(self.times)
            idx = torch.cat(self.index)
            batch, units = idx[:, 0], idx[:, 1]
        else:
            times = like.new_zeros(0)
            batch = units = torch.zeros(0, dtype=torch.long, device=like.device)
        return Spikes.from_events(
            times, units, batch, dt=dt, n_steps=n_steps, batch_size=shape[0], n_units=shape[1]
        )


def raster_spikes(raster: Tensor, dt: float, log: SpikeLog | None, n_steps: int,
                  shape: tuple[int, int], like: Tensor) -> Spikes:
    """Discrete-mode spikes backed by the (possibly differentiable) raster ``[T, B, N]``.

    The event list is built when first asked for, merging the spikes at ``t = 0`` that ``log``
    holds (a raster has no slot for them); the events' values carry the raster's gradient.
    """

    def build() -> Spikes:
        spikes = Spikes.from_raster(raster, dt)
        if log is None:
            return spikes
        first = log.spikes(dt=dt, n_steps=n_steps, shape=shape, like=like)
        return Spikes.from_events(
            torch.cat([first.times, spikes.times]), torch.cat([first.units, spikes.units]),
            torch.cat([first.batch, spikes.batch]), dt=dt, n_steps=n_steps,
            batch_size=shape[0], n_units=shape[1],
            values=torch.cat([first.values.to(spikes.values.dtype), spikes.values]),
        )

    return Spikes.from_dense(raster, dt, events=build)
