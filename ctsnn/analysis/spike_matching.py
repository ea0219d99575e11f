"""Matching the spikes of two runs: spike-time errors and spike-count differences.

Two runs of the same network (two time modes, two grid steps, two solvers) emit spike trains
that should agree; these functions say how well. Every spike of the run under study is matched
to the *nearest* spike of the same neuron and sample in the reference run (no one-to-one
assignment: a missing or extra spike shows up in the count difference, and as a large distance
for the spikes near it). Times are in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ..spikes import Spikes


def nearest_spike_distances(times: Tensor, reference: Tensor) -> Tensor:
    """Distance (s) from each spike time in ``times [E]`` to the nearest one in
    ``reference [R]``; ``[E]``, empty when either input is empty."""
    if len(times) == 0 or len(reference) == 0:
        return times.new_empty(0)
    return (times[:, None] - reference[None, :]).abs().min(dim=1).values


def mean_nearest_distance(times: Tensor, reference: Tensor) -> float:
    """Mean of :func:`nearest_spike_distances` (s); NaN when either train is empty."""
    if len(times) == 0 or len(reference) == 0:
        return float("nan")
    return nearest_spike_distances(times, reference).mean().item()


def spike_time_error(spikes: Spikes, reference: Spikes) -> float:
    """Mean spike-time error (s) of ``spikes`` against ``reference``.

    For every (sample, neuron) that spikes in both runs, the mean distance from each of its
    spikes to the nearest spike of the same neuron and sample in ``reference``; then the mean
    over those neurons (each neuron weighs the same, whatever its rate). NaN when no neuron
    spikes in both runs.
    """
    _check_same_shape(spikes, reference)
    errors = []
    for b in range(spikes.batch_size):
        x_b, r_b = spikes.batch == b, reference.batch == b
        for u in range(spikes.n_units):
            e = mean_nearest_distance(spikes.times[x_b & (spikes.units == u)],
                                      reference.times[r_b & (reference.units == u)])
            if not math.isnan(e):
                errors.append(e)
    return sum(errors) / len(errors) if errors else float("nan")


@dataclass(frozen=True)
class SpikeComparison:
    """How one run's spikes compare with a reference run's.

    Attributes:
        n_spikes: spikes of the run under study. n_reference: spikes of the reference.
        count_difference: ``n_spikes - n_reference``.
        abs_count_difference: sum over (sample, neuron) of ``|count - reference count|``
            (0 only if every neuron fires as often in both runs).
        time_error: :func:`spike_time_error` (s).
    """

    n_spikes: int
    n_reference: int
    count_difference: int
    abs_count_difference: int
    time_error: float


def compare_spikes(spikes: Spikes, reference: Spikes) -> SpikeComparison:
    """Spike counts and spike-time error of ``spikes`` against ``reference`` (same batch size
    and number of neurons)."""
    _check_same_shape(spikes, reference)
    per_neuron = (spikes.count() - reference.count()).abs().sum().item()
    return SpikeComparison(len(spikes), len(reference), len(spikes) - len(reference),
                           int(per_neuron), spike_time_error(spikes, reference))


def _check_same_shape(spikes: Spikes, reference: Spikes) -> None:
    if (spikes.batch_size, spikes.n_units) != (reference.batch_size, reference.n_units):
        raise ValueError(f"cannot compare spikes of {spikes.batch_size} samples x "
                         f"{spikes.n_units} neurons with a reference of "
                         f"{reference.batch_size} x {reference.n_units}")


__all__ = [
    "SpikeComparison", "compare_spikes", "mean_nearest_distance", "nearest_spike_distances",
    "spike_time_error",
]
