"""Synthetic delay tasks: the spike-template task of the demo, sequence detection (SEEDS D5)."""

from __future__ import annotations

import pytest
import torch

from ctsnn.data import sequence_detection, spike_template_task


def test_template_task_shapes_and_one_spike_per_channel():
    spikes, labels = spike_template_task(6, n_in=5, seed=0)
    assert (spikes.batch_size, spikes.n_units, spikes.n_steps, spikes.dt) == (6, 5, 45, 1e-3)
    assert labels.shape == (6,) and labels.dtype == torch.int64
    assert torch.equal(spikes.count(), torch.ones(6, 5, dtype=torch.int64))
    assert float(spikes.times.min()) >= 0.0005


def test_template_task_samples_jitter_around_fixed_templates():
    spikes, labels = spike_template_task(2000, n_in=4, jitter=0.001, seed=1)
    first = spikes.first_times()  # [B, N]: the single spike of each channel
    for c in (0, 1):
        chosen = first[labels == c]
        assert chosen.std(0).max().item() == pytest.approx(0.001, rel=0.1)  # jitter sd
    means = torch.stack([first[labels == c].mean(0) for c in (0, 1)])
    other, _ = spike_template_task(2000, n_in=4, jitter=0.001, seed=2)
    assert (other.first_times().mean(0) - first.mean(0)).abs().max() < 1e-3  # same templates
    assert (means[0] - means[1]).abs().max() > 2e-3  # the classes differ
    assert abs(labels.double().mean().item() - 0.5) < 5 * 0.5 / 2000 ** 0.5  # balanced


def test_template_task_determinism_by_seed():
    a, la = spike_template_task(8, seed=3)
    b, lb = spike_template_task(8, seed=3)
    c, lc = spike_template_task(8, seed=4)
    assert torch.equal(a.times, b.times) and torch.equal(la, lb)
    assert not torch.equal(a.times, c.times)
    d, ld = spike_template_task(8, seed=None, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.times, d.times) and torch.equal(la, ld)


def test_sequence_detection_trials():
    spikes, labels = sequence_detection()
    assert labels.tolist() == [0, 1, 0, 1]
    assert (spikes.batch_size, spikes.n_units, spikes.n_steps, spikes.dt) == (4, 2, 25, 1e-3)
    first = spikes.first_times()
    assert first[0].tolist() == pytest.approx([0.0, 0.010])  # class 0: input 0 then input 1
    assert first[1].tolist() == pytest.approx([0.010, 0.0])  # class 1: reversed
    one, _ = sequence_detection([1], gap=0.004)
    assert one.batch_size == 1 and one.first_times()[0].tolist() == pytest.approx([0.004, 0.0])
    with pytest.raises(ValueError, match="0/1"):
        sequence_detection([2])
    with pytest.raises(ValueError, match="gap"):
        sequence_detection([0], gap=1.0)
