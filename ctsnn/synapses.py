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
from .spikes import Spikes


class StepArrivals(NamedTuple):
    """Jumps arriving during one step, in time order along the first axis.

    ``offset [K, B, N]``: local arrival times in ``(0, dt]`` (``dt`` with a zero value for padding);
    ``value [K, B, N]``: jump sizes.
    """

    offset: Tensor
    value: Tensor


class Arrivals:
    """Exact arrival schedule of weighted spikes, grouped per grid step.

    Spikes that reach a sample at the same instant are merged into one jump (their weighted
    sum), so grid-aligned input costs one jump per step.

    Args:
        spikes: presynaptic events (``n_units`` = N_in).
        weight: ``[N_out, N_in]`` or ``None`` for one-to-one input (N_out = N_in).
    """

    def __init__(self, spikes: Spikes, weight: Tensor | None) -> None:
        self.dt = spikes.dt
        self.n_steps = spikes.n_steps
        self.batch_size = spikes.batch_size
        self.weight = weight
        self.n_in = spikes.n_units
        self.n_out = spikes.n_units if weight is None else weight.shape[0]
        step, off, b = spikes.step, spikes.offset, spikes.batch
        # Group by (step, sample, exact time); rank k = index of the group within (step, sample).
        order = torch.argsort(off, stable=True)
        order = order[torch.argsort(b[order], stable=True)]
        order = order[torch.argsort(step[order], stable=True)]
        step, off, b = step[order], off[order], b[order]
        units, values = spikes.units[order], spikes.values[order]
        e = step.numel()
        new_nb = torch.ones(e, dtype=torch.bool, device=step.device)
        new_group = new_nb.clone()
        if e > 1:
            new_nb[1:] = (step[1:] != step[:-1]) | (b[1:] != b[:-1])
            new_group[1:] = new_nb[1:] | (off[1:] != off[:-1])
        group = torch.cumsum(new_group.long(), 0) - 1
        nb = torch.cumsum(new_nb.long(), 0) - 1
        first_group = group[new_nb]
        rank = group - first_group[nb] if e else group
        bounds = torch.searchsorted(step, torch.arange(self.n_steps + 1, device=step.device))
        n_groups = torch.zeros(self.n_steps, dtype=torch.long, device=step.device)
        if e:
            n_groups.scatter_reduce_(0, step, rank + 1, reduce="amax")
        self._bounds = bounds.tolist()
        self._k = n_groups.tolist()
        self._rank, self._batch, self._units, self._values, self._offset = rank, b, units, values, off

    def __call__(self, n: int) -> StepArrivals | None:
        """Arrivals during step ``n``, or ``None`` if nothing arrives."""
        e0, e1 = self._bounds[n], self._bounds[n + 1]
        if e0 == e1:
            return None
        k = self._k[n]
        rank, b = self._rank[e0:e1], self._batch[e0:e1]
        vals = self._values[e0:e1]
        amp = vals.new_zeros(k, self.batch_size, self.n_in)
        amp.index_put_((rank, b, self._units[e0:e1]), vals, accumulate=True)
        offset = vals.new_full((k, self.batch_size), self.dt)
        offset[rank, b] = self._offset[e0:e1]
        value = amp if self.weight is None else amp @ self.weight.t()
        return StepArrivals(offset.unsqueeze(-1).expand(k, self.batch_size, self.n_out), value)


class Dense(nn.Module):
    """All-to-all synapses with weight ``[N_out, N_in]`` and no delay.

    ``jumps(spikes)`` gives the per-step summed input ``[T, B, N_out]`` (discrete time);
    ``arrivals(spikes)`` gives the exact :class:`Arrivals` schedule (continuous time).
    """

    def __init__(self, weight: Tensor, *, learnable: bool = True) -> None:
        super().__init__()
        check_tensor("weight", weight, ndim=2, floating=True)
        check_finite("weight", weight)
        if learnable:
            self.weight = nn.Parameter(weight.detach().clone())
        else:
            self.register_buffer("weight", weight.detach().clone())

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    def _check(self, spikes: Spikes) -> None:
        if spikes.n_units != self.n_in:
            raise ValueError(
                f"input spikes have {spikes.n_units} units but the weight expects "
                f"N_in = {self.n_in} (weight shape {list(self.weight.shape)})"
            )

    def jumps(self, spikes: Spikes) -> Tensor:
        """Summed weighted input per step, ``[T, B, N_out]``."""
        self._check(spikes)
        return spikes.raster(dtype=self.weight.dtype) @ self.weight.t()

    def arrivals(self, spikes: Spikes) -> Arrivals:
        """Exact within-step arrival schedule."""
        self._check(spikes)
        return Arrivals(spikes.to(dtype=self.weight.dtype), self.weight)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}"
