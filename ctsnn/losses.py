"""Losses on network outputs (time-first ``[T, B, N]`` tensors, ``[B, N]`` readouts; seconds).

Readouts (what a network reports, ``simulate(..., readout=...)``) are in :mod:`ctsnn.readouts`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .spikes import Spikes


def time_invariant_mse(first_times: Tensor, labels: Tensor, delta: float) -> Tensor:
    """Time-invariant MSE on first-spike times (SEEDS C1.5, Göltz et al.), batch mean:

    ``L = 1/2 Σ_{i≠c} (t_i - t_c - delta)^2`` with ``c`` the label; times and ``delta`` in s.

    Args:
        first_times: ``[B, N]`` (``Spikes.first_times()`` or ``readout="first_spike"``).
        labels: ``[B]`` class indices.
        delta: target lag of the wrong classes behind the right one (s).
    """
    t_c = first_times.gather(1, labels.reshape(-1, 1))
    diff = first_times - t_c - delta
    mask = torch.ones_like(first_times, dtype=torch.bool)
    mask.scatter_(1, labels.reshape(-1, 1), False)
    return 0.5 * (diff.square() * mask).sum(1).mean()


def spike_count_penalty(spikes: Spikes, strength: float, target: float) -> Tensor:
    """The value ``strength/2 Σ_n (mean count_n - target)^2`` whose (heuristic) gradient the
    layers' ``spike_reg=(strength, target)`` injects; for logging (no gradient)."""
    counts = torch.bincount(spikes.units, minlength=spikes.n_units).to(spikes.times.dtype)
    mean = counts / max(spikes.batch_size, 1)
    return 0.5 * strength * (mean - target).square().sum().detach()
