"""Matching the spikes of two runs: nearest-spike distances, time errors, count differences."""

from __future__ import annotations

import math

import pytest
import torch

from ctsnn import Spikes
from ctsnn.analysis import (
    compare_spikes,
    mean_nearest_distance,
    nearest_spike_distances,
    spike_time_error,
)


def spikes(times, units, batch=None, batch_size=2, n_units=3):
    return Spikes.from_events(torch.tensor(times, dtype=torch.float64), units, batch, dt=1e-3,
                              n_steps=20, batch_size=batch_size, n_units=n_units)


def test_nearest_distances():
    a = torch.tensor([0.001, 0.005, 0.009], dtype=torch.float64)
    b = torch.tensor([0.0012, 0.0085], dtype=torch.float64)
    d = nearest_spike_distances(a, b)
    assert d.tolist() == pytest.approx([0.0002, 0.0035, 0.0005])
    assert mean_nearest_distance(a, b) == pytest.approx(0.0042 / 3)
    assert nearest_spike_distances(a, b[:0]).shape == (0,)
    assert math.isnan(mean_nearest_distance(a[:0], b))


def test_spike_time_error_matches_per_sample_and_neuron():
    ref = spikes([0.002, 0.004, 0.010], [0, 1, 0], [0, 0, 1])
    # same neuron and sample only: the 0.0045 spike of unit 0 in sample 1 is far from sample
    # 0's 0.004 spike of unit 1
    run = spikes([0.0025, 0.0041, 0.0045, 0.011], [0, 1, 0, 0], [0, 0, 1, 1])
    # (sample 0, unit 0): 0.5 ms; (0, 1): 0.1 ms; (1, 0): mean(5.5, 1.0) ms
    expected = (0.0005 + 0.0001 + (0.0055 + 0.001) / 2) / 3
    assert spike_time_error(run, ref) == pytest.approx(expected)
    assert spike_time_error(ref, ref) == 0.0
    assert math.isnan(spike_time_error(spikes([0.001], [2]), ref))


def test_compare_spikes_counts():
    ref = spikes([0.002, 0.004, 0.010], [0, 1, 0], [0, 0, 1])
    run = spikes([0.0025, 0.006, 0.011, 0.012], [0, 2, 0, 0], [0, 0, 1, 1])
    c = compare_spikes(run, ref)
    assert (c.n_spikes, c.n_reference, c.count_difference) == (4, 3, 1)
    assert c.abs_count_difference == 3  # unit 1 lost one, unit 2 gained one, (1, 0) one more
    with pytest.raises(ValueError, match="compare"):
        compare_spikes(run, spikes([0.001], [0], n_units=4))
