"""Tests of W5's input draw and its npz files (pure numpy, shared with the Brian2 side)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ctsnn.bench.sim_continuous_inputs import load_npz, make_w5_inputs, sample_spikes, save_npz


def test_w5_inputs_shapes_dtypes_and_ranges() -> None:
    d = make_w5_inputs(seed=0)
    n = d["times"].shape[0]
    assert d["times"].dtype == np.float64 and d["indices"].shape == (n,)
    assert d["sample"].shape == (n,) and (d["sample"] == 0).all()
    assert d["weights"].shape == (1000, 140) and d["weights"].dtype == np.float32
    assert d["delays"].shape == (1000, 140) and d["delays"].dtype == np.float64
    assert 0 <= d["weights"].min() and d["weights"].max() < 0.1
    assert 0 <= d["delays"].min() and d["delays"].max() <= 0.025
    assert 0 <= d["times"].min() and d["times"].max() < 1.0
    assert 0 <= d["indices"].min() and d["indices"].max() < 140
    assert (np.diff(d["times"]) >= 0).all()
    # about 140 * 20 * 1 = 2800 spikes (sd ~53)
    assert abs(n - 2800) < 5 * math.sqrt(2800)
    assert int(d["n_in"]) == 140 and float(d["tau"]) == 0.01


def test_w5_inputs_statistics() -> None:
    d = make_w5_inputs(seed=3, n_in=500, n_out=200, rate=40.0, duration=2.0, batch=2)
    expected = 500 * 40.0 * 2.0 * 2
    assert abs(len(d["times"]) - expected) < 5 * math.sqrt(expected)
    per_input = np.bincount(d["indices"], minlength=500) / (2.0 * 2)
    assert abs(per_input.mean() - 40.0) < 1.0
    assert abs(d["times"].mean() - 1.0) < 0.02  # uniform on [0, 2)
    assert abs(d["weights"].mean() - 0.05) < 0.002
    assert abs(d["delays"].mean() - 0.0125) < 0.0005
    # continuous times: (almost) none on the 0.1 ms grid
    on_grid = np.isclose(d["times"] / 1e-4, np.round(d["times"] / 1e-4), rtol=0, atol=1e-6)
    assert on_grid.mean() < 1e-3
    # sorted by sample, then time
    assert (np.diff(d["sample"]) >= 0).all()
    for b in range(2):
        t, i = sample_spikes(d, b)
        assert (np.diff(t) >= 0).all() and len(t) == len(i)


def test_w5_inputs_deterministic_by_seed_and_batch_independent() -> None:
    a, b = make_w5_inputs(seed=7), make_w5_inputs(seed=7)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = make_w5_inputs(seed=8)
    assert not np.array_equal(a["weights"], c["weights"])
    assert len(a["times"]) != len(c["times"]) or not np.array_equal(a["times"], c["times"])
    batched = make_w5_inputs(seed=7, batch=3)
    np.testing.assert_array_equal(batched["weights"], a["weights"])
    np.testing.assert_array_equal(batched["delays"], a["delays"])
    t0, i0 = sample_spikes(batched, 0)
    np.testing.assert_array_equal(t0, a["times"])
    np.testing.assert_array_equal(i0, a["indices"])
    assert not np.array_equal(sample_spikes(batched, 1)[0][:10], t0[:10])


def test_w5_inputs_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_w5_inputs(rate=0.0)
    with pytest.raises(ValueError):
        make_w5_inputs(batch=0)
    with pytest.raises(ValueError):
        make_w5_inputs(d_max=-1.0)


def test_npz_round_trip(tmp_path: Path) -> None:
    d = make_w5_inputs(seed=1, n_in=20, n_out=30, batch=2)
    path = tmp_path / "w5.npz"
    save_npz(path, d)
    back = load_npz(path)
    assert set(back) == set(d)
    for k in d:
        assert back[k].dtype == d[k].dtype and back[k].shape == d[k].shape
        np.testing.assert_array_equal(back[k], d[k])
    with pytest.raises(KeyError):
        save_npz(path, {"times": d["times"]})
