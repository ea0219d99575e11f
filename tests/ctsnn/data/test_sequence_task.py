"""The parametric sequence-detection task: reduces to SEEDS D5, templates, jitter,
distractors, determinism by seed."""

from __future__ import annotations

import math

import pytest
import torch

from ctsnn.data import sequence_detection, sequence_detection_task, sequence_templates


def test_reduces_to_the_basic_task():
    s, y = sequence_detection_task(4, n_channels=2, seq_len=2, n_classes=2,
                                   templates=[[0, 1], [1, 0]], labels=[0, 1, 0, 1])
    b, yb = sequence_detection()
    assert torch.equal(y, yb) and (s.n_steps, s.dt, s.n_units) == (b.n_steps, b.dt, b.n_units)
    assert torch.equal(s.times, b.times) and torch.equal(s.units, b.units)
    assert torch.equal(s.batch, b.batch)


def test_templates_distinct_and_same_channels():
    t = sequence_templates(6, n_channels=5, seq_len=3, template_seed=2)
    assert t.shape == (6, 3) and len({tuple(r) for r in t.tolist()}) == 6
    assert all(sorted(r) == sorted(t[0].tolist()) for r in t.tolist())  # one channel set
    assert all(len(set(r)) == 3 for r in t.tolist())
    assert torch.equal(t, sequence_templates(6, 5, 3, template_seed=2))
    u = sequence_templates(8, n_channels=5, seq_len=2, same_channels=False)
    assert len({tuple(r) for r in u.tolist()}) == 8
    with pytest.raises(ValueError, match="distinct templates"):
        sequence_templates(7, n_channels=3, seq_len=3)  # only 3! = 6 orderings
    with pytest.raises(ValueError, match="seq_len"):
        sequence_templates(2, n_channels=2, seq_len=3)


def test_samples_follow_templates_with_jitter():
    n, gap, jit = 3000, 0.008, 0.001
    s, y = sequence_detection_task(n, n_channels=6, seq_len=4, n_classes=5, gap=gap,
                                   onset=0.005, jitter=jit, seed=1)
    duration = 0.005 + 3 * gap + 0.015
    assert (s.batch_size, s.n_units, s.n_steps) == (n, 6, math.ceil(duration / 1e-3 - 1e-9))
    assert y.shape == (n,) and set(y.tolist()) == set(range(5))
    tpl = sequence_templates(5, 6, 4)
    first = s.first_times()  # [B, N]: one spike per template channel
    assert int(s.count().sum()) == 4 * n
    for c in range(5):
        rows = first[y == c][:, tpl[c]]  # [n_c, seq_len] in template order
        assert torch.allclose(rows.mean(0), 0.005 + gap * torch.arange(4.0).double(), atol=3e-4)
        assert rows.std(0).max().item() == pytest.approx(jit, rel=0.15)


def test_distractors_and_determinism():
    kw = dict(n_channels=8, seq_len=5, n_classes=3, jitter=0.002, n_distractors=7)
    a, ya = sequence_detection_task(16, seed=5, **kw)
    b, yb = sequence_detection_task(16, seed=5, **kw)
    c, _ = sequence_detection_task(16, seed=6, **kw)
    assert torch.equal(a.times, b.times) and torch.equal(a.units, b.units) and torch.equal(ya, yb)
    assert not torch.equal(a.times, c.times)
    assert torch.equal(a.count().sum(1), torch.full((16,), 12))  # 5 + 7 spikes per trial
    assert float(a.times.min()) >= 0 and float(a.times.max()) <= a.n_steps * a.dt
    g = torch.Generator().manual_seed(5)
    d, _ = sequence_detection_task(16, seed=None, generator=g, **kw)
    assert torch.equal(a.times, d.times)
    with pytest.raises(ValueError, match="labels"):
        sequence_detection_task(2, n_classes=2, n_channels=2, seq_len=2, labels=[0, 2])


def test_spikes_dataset_round_trips_through_a_dataloader():
    from torch.utils.data import DataLoader

    from ctsnn.data import SpikesDataset

    s, y = sequence_detection_task(10, n_distractors=2, jitter=1e-3, seed=2)
    ds = SpikesDataset(s, y)
    assert len(ds) == 10 and ds[3][0].shape == (6,)  # 4 template + 2 distractor spikes
    batches = list(DataLoader(ds, batch_size=4, collate_fn=ds.collate))
    assert [b[0].batch_size for b in batches] == [4, 4, 2]
    first, labels = batches[0]
    ref = s.select([0, 1, 2, 3])
    assert torch.equal(first.times, ref.times) and torch.equal(first.units, ref.units)
    assert (first.n_steps, first.dt, first.n_units) == (s.n_steps, s.dt, s.n_units)
    assert torch.equal(labels, y[:4])
    with pytest.raises(ValueError, match="labels"):
        SpikesDataset(s, y[:3])
