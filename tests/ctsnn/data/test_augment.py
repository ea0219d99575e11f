"""DelRec and EventProp augmentations (SEEDS.md B4, C4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shd_files import write_shd

from ctsnn.data import (
    SHD,
    BinaryBins,
    DelRecAugmented,
    EventPropAugmented,
    FirstSpikeFrames,
    delrec_blend,
    delrec_time_shift,
    eventprop_blend,
    eventprop_channel_shift,
)


@pytest.fixture
def shd_file(tmp_path):
    return write_shd(tmp_path / "tiny.h5")


@pytest.fixture
def one_thread():
    """Small tensors: intra-op threads only add overhead on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_delrec_time_shift_per_channel_with_zero_fill():
    x = torch.arange(1, 41, dtype=torch.float32).reshape(8, 5)
    out = delrec_time_shift(x, 3, torch.Generator().manual_seed(0))
    s = torch.randint(-3, 4, (5,), generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for c in range(5):  # out[t] = x[t - s] inside [0, T), zero elsewhere
        want = [float(x[t - s[c], c]) if 0 <= t - s[c] < 8 else 0.0 for t in range(8)]
        assert out[:, c].tolist() == want


def test_delrec_blend_aligns_centres_of_mass():
    a = torch.zeros(6, 2)
    a[4, 0] = 2.0  # centre of mass at bin 4
    b = torch.zeros(3, 2)
    b[1, 1] = 4.0  # centre of mass at bin 1 -> b moves right by 3
    out = delrec_blend(a, b, 1.0, torch.Generator().manual_seed(0))  # p = 1: no thinning
    assert out.shape == (6, 2) and out[4, 0] == 2 and out[4, 1] == 4 and out.sum() == 6
    g = torch.Generator().manual_seed(1)
    thin = delrec_blend(a * 50, b * 50, 0.5, g)
    assert 0 < thin.sum() < 300 and torch.equal(thin, thin.round())


def test_delrec_augmented_triples_and_is_seeded(shd_file, one_thread):
    ds = SHD(shd_file, FirstSpikeFrames(10.0))
    aug = DelRecAugmented(ds, max_shift=100, p=0.5, seed=4)
    n = len(ds)
    assert len(aug) == 3 * n
    assert torch.equal(aug[2][0], ds[2][0])
    for i in range(n, 3 * n):
        assert aug[i][1] == ds[i % n][1]
    assert torch.equal(aug[n + 2][0], aug[n + 2][0])  # same (seed, epoch, item)
    first = aug[n + 5][0].clone()
    assert first.shape == ds[5][0].shape  # time shift keeps the length
    changed = False
    for epoch in range(1, 6):
        aug.set_epoch(epoch)
        changed |= not torch.equal(aug[n + 5][0], first)
    assert changed


def test_eventprop_channel_shift_moves_all_units_together():
    t = np.array([0.1, 0.2, 0.3])
    u = np.array([0, 350, 699])
    t2, u2 = eventprop_channel_shift(t, u, 40, 700, np.random.default_rng(0))
    s = int(np.random.default_rng(0).integers(-40, 41))
    keep = (u + s >= 0) & (u + s < 700)
    np.testing.assert_array_equal(u2, (u + s)[keep])
    np.testing.assert_array_equal(t2, t[keep])


def test_eventprop_blend_meets_in_the_middle():
    a = (np.array([0.1, 0.2]), np.array([100, 110]))
    b = (np.array([0.5, 0.6]), np.array([300, 310]))
    t, u = eventprop_blend(a, b, 1.0, 700, 1.0, np.random.default_rng(0))
    np.testing.assert_allclose(t, [0.3, 0.3, 0.4, 0.4])  # both moved to mean time 0.35
    assert sorted(u.tolist()) == [200, 200, 210, 210]  # mean channels 105, 305 -> 205
    assert np.all(np.diff(t) >= 0)
    t, u = eventprop_blend(a, b, 0.5, 700, 1.0, np.random.default_rng(1))
    assert len(t) <= 4
    # out-of-range after the shift is dropped
    t, u = eventprop_blend((np.array([0.0]), np.array([0])), (np.array([0.9]), np.array([699])),
                           1.0, 700, 0.2, np.random.default_rng(0))
    assert len(t) == 0


def test_eventprop_augmented(shd_file):
    ds = SHD(shd_file)
    aug = EventPropAugmented(ds, recipe=BinaryBins(), max_shift=40, n_blend=4, seed=0)
    assert len(aug) == len(ds) + 4
    x, y = aug[len(ds)]
    assert x.shape == (1000, 700) and x.max() <= 1
    a, b = aug.pairs[0]
    assert ds.labels[a] == ds.labels[b] == y
    exact = EventPropAugmented(ds, max_shift=0, n_blend=0)
    t, u, y = exact[0]
    assert torch.equal(t, ds[0][0]) and torch.equal(u, ds[0][1])
