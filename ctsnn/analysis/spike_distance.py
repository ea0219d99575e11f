"""The van Rossum distance between spike trains, in closed form.

Each spike train is filtered with a causal exponential kernel ``h(t) = exp(-t / tau)`` for
``t >= 0``; the distance is the L2 norm of the difference of the filtered trains, normalised so
that one spike alone (far from any other) contributes 1 to the squared distance::

    D^2 = (2 / tau) * integral_0^inf (f(t) - g(t))^2 dt
        = sum_ij e^{-|x_i - x_j| / tau} + sum_ij e^{-|y_i - y_j| / tau}
          - 2 sum_ij e^{-|x_i - y_j| / tau}

(``f = sum_i h(t - x_i)``, ``g = sum_j h(t - y_j)``). Two single spikes ``delta`` seconds apart
are at ``D^2 = 2 (1 - e^{-|delta| / tau})`` (about ``2 |delta| / tau`` for a small shift); a
missing or extra spike adds about 1. For a population, the squared distances of the neurons add
up (independent neurons).

The sums are evaluated by one pass over the merged, sorted trains (a numba kernel when
:func:`ctsnn.compiled.kernels_enabled`), with a pure-PyTorch pairwise reference beside it.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from .._checks import check_positive
from ..compiled import kernels_enabled
from ..spikes import Spikes


def van_rossum_pair(times: Tensor, reference: Tensor, tau: float) -> float:
    """Van Rossum distance between two single spike trains ``times [E]`` and
    ``reference [R]`` (seconds), with time constant ``tau`` (s). 0 for two empty trains."""
    check_positive("tau", tau)
    x = times.detach().to(torch.float64).reshape(-1)
    y = reference.detach().to(torch.float64).reshape(-1)
    t = torch.cat([x, y])
    s = torch.cat([torch.ones_like(x), -torch.ones_like(y)])
    sq = (s[:, None] * s[None, :] * torch.exp(-(t[:, None] - t[None, :]).abs() / tau)).sum()
    return math.sqrt(max(float(sq), 0.0))


def van_rossum_distance(spikes: Spikes, reference: Spikes, tau: float) -> Tensor:
    """Population van Rossum distance per sample: ``sqrt(sum over neurons of D^2)``.

    Args:
        spikes, reference: two runs of the same neurons (same batch size and number of
            units); times in seconds.
        tau: kernel time constant (s); a spike shifted by much less than ``tau`` costs about
            ``2 |shift| / tau``, a missing or extra spike about 1 (squared distance).

    Returns:
        ``[B]`` float64 tensor (CPU), one distance per sample.
    """
    check_positive("tau", tau)
    if (spikes.batch_size, spikes.n_units) != (reference.batch_size, reference.n_units):
        raise ValueError(f"van_rossum_distance: spikes of {spikes.batch_size} samples x "
                         f"{spikes.n_units} neurons cannot be compared with a reference of "
                         f"{reference.batch_size} x {reference.n_units}")
    n_units = spikes.n_units
    keys = torch.cat([spikes.batch * n_units + spikes.units,
                      reference.batch * n_units + reference.units]).cpu().to(torch.int64)
    times = torch.cat([spikes.times.detach().cpu().to(torch.float64),
                       reference.times.detach().cpu().to(torch.float64)])
    signs = torch.cat([torch.ones(len(spikes), dtype=torch.float64),
                       -torch.ones(len(reference), dtype=torch.float64)])
    # sort by (key, time): time first, then a stable sort by key
    order = torch.argsort(times, stable=True)
    order = order[torch.argsort(keys[order], stable=True)]
    keys, times, signs = keys[order], times[order], signs[order]
    if kernels_enabled(times):
        per_key = torch.from_numpy(_squared_by_key_kernel(keys.numpy(), times.numpy(),
                                                          signs.numpy(), float(tau)))
    else:
        per_key = _squared_by_key_reference(keys, times, signs, tau)
    per_sample = torch.zeros(spikes.batch_size, dtype=torch.float64)
    per_sample.index_add_(0, keys // n_units, per_key)
    return per_sample.clamp_min(0.0).sqrt()


def _squared_by_key_reference(keys: Tensor, times: Tensor, signs: Tensor, tau: float) -> Tensor:
    """Per event: its share of ``D^2`` of its (sample, neuron) group (pairwise, PyTorch, one
    group at a time). Event ``j`` gets ``s_j^2 + 2 s_j sum_{i < j, same key} s_i
    e^{-(t_j - t_i)/tau}``; ``keys`` sorted, ``times`` ascending within a key."""
    out = signs * signs
    _, counts = torch.unique_consecutive(keys, return_counts=True)
    start = 0
    for n in counts.tolist():
        t, s = times[start:start + n], signs[start:start + n]
        decay = torch.exp(-(t[:, None] - t[None, :]).clamp_min(0.0) / tau).tril(-1)
        out[start:start + n] += 2.0 * s * (decay * s[None, :]).sum(dim=1)
        start += n
    return out


@numba.njit(cache=True)
def _squared_by_key_kernel(keys: np.ndarray, times: np.ndarray, signs: np.ndarray,
                           tau: float) -> np.ndarray:  # pragma: no cover - compiled
    """Numba form of :func:`_squared_by_key_reference`: one pass with the running sum
    ``a_j = e^{-(t_j - t_{j-1})/tau} (a_{j-1} + s_{j-1})`` (reset at each new key)."""
    out = np.empty(len(times))
    acc = 0.0
    for j in range(len(times)):
        if j == 0 or keys[j] != keys[j - 1]:
            acc = 0.0
        else:
            acc = math.exp(-(times[j] - times[j - 1]) / tau) * (acc + signs[j - 1])
        out[j] = signs[j] * signs[j] + 2.0 * signs[j] * acc
    return out


__all__ = ["van_rossum_distance", "van_rossum_pair"]
