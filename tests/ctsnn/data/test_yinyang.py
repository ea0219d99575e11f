"""Yin-Yang by its published rule (SEEDS D4): exact reproduction of the published files,
balance, determinism by seed, latency encoding in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ctsnn.data import YINYANG_SPLITS, YinYang, latency_encode, yinyang_arrays
from ctsnn.data.yinyang import yinyang_class

ROOT = Path(__file__).resolve().parents[3]


def _shared_yinyang() -> Path | None:
    for cand in (ROOT.parent / "shared" / "data" / "yinyang", Path("/work/shared/data/yinyang")):
        if (cand / "train_samples.npy").is_file():
            return cand
    return None


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_reproduces_published_files_exactly(split):
    folder = _shared_yinyang()
    if folder is None:
        pytest.skip("published Yin-Yang files not available")
    n, seed = YINYANG_SPLITS[split]
    samples, labels = yinyang_arrays(n, seed)
    ref_x = np.load(os.path.join(folder, f"{split}_samples.npy"))
    ref_y = np.load(os.path.join(folder, f"{split}_labels.npy"))
    assert samples.dtype == ref_x.dtype == np.float64 and labels.dtype == ref_y.dtype == np.int64
    assert np.array_equal(samples, ref_x) and np.array_equal(labels, ref_y)
    ds = YinYang(split)
    assert torch.equal(ds.samples, torch.from_numpy(ref_x))
    assert torch.equal(ds.labels, torch.from_numpy(ref_y))


def test_shapes_features_balance_and_geometry():
    x, y = yinyang_arrays(600, 7)
    assert x.shape == (600, 4) and y.shape == (600,)
    np.testing.assert_array_equal(x[:, 2:], 1.0 - x[:, :2])
    assert ((x[:, 0] - 0.5) ** 2 + (x[:, 1] - 0.5) ** 2 <= 0.25).all()  # inside the disc
    counts = np.bincount(y, minlength=3)
    assert counts.min() > 150 and set(np.unique(y)) == {0, 1, 2}  # balanced by rejection
    for (px, py), c in zip(x[:50, :2], y[:50], strict=True):
        assert yinyang_class(px, py) == c
    assert yinyang_class(0.25, 0.5) == 2 and yinyang_class(0.75, 0.5) == 2  # the dots


def test_determinism_by_seed():
    a, la = yinyang_arrays(50, 3)
    b, lb = yinyang_arrays(50, 3)
    c, _ = yinyang_arrays(50, 4)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    ds = YinYang("test", size=20, seed=3)
    assert len(ds) == 20 and torch.equal(ds.samples, torch.from_numpy(a[:20]))
    with pytest.raises(ValueError, match="split"):
        YinYang("training")


def test_latency_encoding_times_in_seconds():
    feats = torch.tensor([[0.0, 1.0, 0.5, 0.25]], dtype=torch.float64)
    s = latency_encode(feats)
    assert (s.batch_size, s.n_units, s.dt, s.n_steps) == (1, 4, 1e-3, 20)
    assert s.times.dtype == torch.float64
    expected = [1.5e-3, 20e-3, 1.5e-3 + 0.5 * 18.5e-3, 1.5e-3 + 0.25 * 18.5e-3]
    assert s.first_times()[0].tolist() == pytest.approx(expected, abs=1e-15)
    b = latency_encode(feats, bias_time=0.0, dt=1e-4)
    assert b.n_units == 5 and b.n_steps == 200 and b.first_times()[0, 4].item() == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        latency_encode(torch.tensor([[1.5, 0.0]]))


def test_dataloader_collate_gives_spike_batches():
    ds = YinYang("validation", size=10, seed=41)
    loader = DataLoader(ds, batch_size=4, collate_fn=ds.collate)
    spikes, labels = next(iter(loader))
    assert (spikes.batch_size, spikes.n_units) == (4, 4) and labels.dtype == torch.int64
    assert torch.equal(spikes.count(), torch.ones(4, 4, dtype=torch.int64))  # one spike each
    t = 1.5e-3 + ds.samples[:4] * 18.5e-3
    assert torch.allclose(spikes.first_times(), t, atol=1e-15)
    assert torch.equal(labels, ds.labels[:4])
