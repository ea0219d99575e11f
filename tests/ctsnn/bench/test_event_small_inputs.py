"""W7's shared inputs: drawn once, written to one file both sides read, read back unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctsnn.bench.event_small_inputs import events_of, load_npz, make_w7_inputs, save_npz


def test_inputs_round_trip_through_the_file(tmp_path: Path) -> None:
    inputs = make_w7_inputs(seed=3, batch=3, n_in=4, n_hidden=5, n_out=2)
    save_npz(tmp_path / "w7.npz", inputs)
    back = load_npz(tmp_path / "w7.npz")
    assert set(back) == set(inputs)
    for key, value in inputs.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key].dtype == np.asarray(value).dtype


def test_layout_sizes_and_ranges() -> None:
    x = make_w7_inputs(seed=0, batch=2)
    assert x["in_times"].shape[:2] == (2, 20)
    assert x["w_in"].shape == x["d_in"].shape == (100, 20) and x["w_in"].dtype == np.float32
    assert x["w_out"].shape == x["d_out"].shape == (3, 100)
    assert 0 <= x["w_in"].min() and x["w_in"].max() <= 0.8
    assert 0.01 <= x["w_out"].min() and x["w_out"].max() <= 0.05
    assert 0 <= x["d_in"].min() and max(x["d_in"].max(), x["d_out"].max()) <= 0.01
    t = x["in_times"]
    finite = t[np.isfinite(t)]
    assert 0 <= finite.min() and finite.max() < 0.1
    # float32-representable, so float32 runs of both sides start from the same numbers
    np.testing.assert_array_equal(finite.astype(np.float32).astype(np.float64), finite)
    # ascending per channel, inf only as padding at the end
    assert np.all(np.diff(np.where(np.isfinite(t), t, 1e9), axis=2) >= 0)


def test_a_sample_does_not_depend_on_the_batch() -> None:
    one = make_w7_inputs(seed=1, batch=1)
    four = make_w7_inputs(seed=1, batch=4)
    k = one["in_times"].shape[2]
    np.testing.assert_array_equal(four["in_times"][0, :, :k], one["in_times"][0])
    assert np.all(np.isinf(four["in_times"][0, :, k:]))
    np.testing.assert_array_equal(four["w_in"], one["w_in"])


def test_events_are_the_finite_entries() -> None:
    x = make_w7_inputs(seed=2, batch=3, n_in=5)
    t, ch, b = events_of(x)
    assert t.size == np.isfinite(x["in_times"]).sum()
    for tt, cc, bb in zip(t, ch, b, strict=True):
        assert tt in x["in_times"][bb, cc]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="batch"):
        make_w7_inputs(batch=0)
    with pytest.raises(ValueError, match="rate"):
        make_w7_inputs(rate=-1.0)
    with pytest.raises(KeyError, match="lack"):
        save_npz("unused.npz", {"in_times": np.zeros(1)})
