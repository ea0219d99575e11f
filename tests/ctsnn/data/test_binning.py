"""D1 binning recipes against hand computations written from SEEDS.md D1's text, on a tiny
SHD-layout file (float16 times as in SHD)."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from shd_files import SAMPLES, write_shd

from ctsnn.data import RECIPES, SHD, BinaryBins, DigitizedBins, FirstSpikeFrames, pool_channels


@pytest.fixture
def shd_file(tmp_path):
    return write_shd(tmp_path / "tiny.h5")


def file_samples(path):
    with h5py.File(path, "r") as f:
        return [(np.asarray(t), np.asarray(u)) for t, u in zip(f["spikes/times"],
                                                               f["spikes/units"], strict=True)]


def ref_first_spike_frames(times, units, d_ms, pool):
    """D1.1/D1.2: ms in the file's float16 (numpy's 1000*times), first spike at 0,
    #bins = ceil(t_last/D), bin = floor(t/D); the last frame takes what lies beyond."""
    if len(times) == 0:
        return np.zeros((0, 700 // pool), dtype=np.int64)
    h = np.float16
    ms = [h(h(t) * h(1000)) for t in times]
    first = min(ms)
    rel = [h(m - first) for m in ms]
    n = max(1, math.ceil(float(h(max(rel) / h(d_ms)))))
    out = np.zeros((n, 700 // pool), dtype=np.int64)
    for r, u in zip(rel, units, strict=True):
        out[min(math.floor(float(r) / d_ms), n - 1), int(u) // pool] += 1
    return out


def ref_digitized(times, units, pool):
    """D1.3: index = number of edges linspace(0, 1.4, 250) <= t; t >= 1.4 dropped; counts."""
    edges = np.linspace(0, 1.4, 250)
    out = np.zeros((250, 700 // pool), dtype=np.int64)
    for t, u in zip(times, units, strict=True):
        b = sum(1 for e in edges if e <= float(t))
        if b < 250:
            out[b, int(u) // pool] += 1
    return out


def ref_binary(times, units):
    """D1.4: integer microseconds (truncated), t >= 1 s dropped, 1 ms bins, >= 1 event -> 1."""
    out = np.zeros((1000, 700), dtype=np.int64)
    for t, u in zip(times, units, strict=True):
        us = int(float(t) * 1e6)
        if us < 1_000_000:
            out[us // 1000, int(u)] = 1
    return out


@pytest.mark.parametrize("d_ms,pool", [(10.0, 1), (10.0, 5), (1.0, 1), (25.0, 5)])
def test_first_spike_frames_match_hand_computation(shd_file, d_ms, pool):
    ds = SHD(shd_file, FirstSpikeFrames(duration_ms=d_ms, pool=pool))
    for i, (t, u) in enumerate(file_samples(shd_file)):
        x, label = ds[i]
        assert label == SAMPLES[i][2]
        assert x.dtype == torch.float32 and x.shape[1] == 700 // pool
        np.testing.assert_array_equal(x.numpy().astype(np.int64),
                                      ref_first_spike_frames(t, u, d_ms, pool))


def test_first_spike_frames_edge_cases(shd_file):
    ds = SHD(shd_file, FirstSpikeFrames(duration_ms=10.0))
    x0 = ds[0][0]  # 2.1 .. 22.1 ms: t_last - t_first == 20 ms exactly in float16 -> 2 frames
    assert x0.shape == (2, 700) and x0.sum() == 6 and x0[1, 10] == 2  # clipped to last frame
    assert ds[3][0].shape == (1, 700) and ds[3][0].sum() == 1  # one spike: one frame
    assert ds[4][0].shape == (0, 700)  # no spike: no frame


@pytest.mark.parametrize("pool", [1, 5])
def test_digitized_bins_match_hand_computation(shd_file, pool):
    ds = SHD(shd_file, DigitizedBins(t_max=1.4, n_edges=250, pool=pool))
    for i, (t, u) in enumerate(file_samples(shd_file)):
        x = ds[i][0]
        assert x.shape == (250, 700 // pool) and x[0].sum() == 0  # bin 0 unused
        np.testing.assert_array_equal(x.numpy().astype(np.int64), ref_digitized(t, u, pool))
    assert ds[2][0].sum() == 5  # the spike at 1.45 s is dropped


def test_binary_bins_match_hand_computation(shd_file):
    ds = SHD(shd_file, BinaryBins(dt_ms=1.0, t_max=1.0))
    for i, (t, u) in enumerate(file_samples(shd_file)):
        x = ds[i][0]
        assert x.shape == (1000, 700)
        np.testing.assert_array_equal(x.numpy().astype(np.int64), ref_binary(t, u))
    assert ds[2][0].sum() == 2  # 0.3 and 0.3004 share a cell; 1.02, 1.39, 1.45 dropped
    assert ds[0][0].max() == 1  # binary although two events share a cell


def test_presets_and_pooling():
    assert RECIPES["dcls"] == FirstSpikeFrames(10.0, pool=5) == RECIPES["delrec_shd"]
    assert RECIPES["delrec_ssc"] == DigitizedBins(pool=5, t_max=1.4, n_edges=250)
    assert RECIPES["eventprop"] == BinaryBins(dt_ms=1.0, t_max=1.0)
    r = np.arange(2 * 700).reshape(2, 700)
    p = pool_channels(r, 5)
    assert p.shape == (2, 140) and p[1, 3] == sum(r[1, 15:20])
    with pytest.raises(ValueError, match="pool"):
        FirstSpikeFrames(pool=0)
    with pytest.raises(ValueError, match="multiple"):
        pool_channels(np.zeros((1, 7)), 5)


def test_recipe_params_differ_when_recipe_changes():
    assert FirstSpikeFrames(10).params() != FirstSpikeFrames(20).params()
    assert FirstSpikeFrames(10).params() != FirstSpikeFrames(10, pool=5).params()
    assert BinaryBins().params()["recipe"] == "binary_bins"
