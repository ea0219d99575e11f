"""The Brian2 side of W5 without Brian2: locating its environment, shaping its results."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ctsnn.bench import brian2_side
from ctsnn.bench.sim_continuous_inputs import make_w5_inputs


def test_script_is_next_to_the_module() -> None:
    assert brian2_side.SCRIPT.is_file()
    assert brian2_side.SCRIPT.parent.joinpath("brian2_env.sh").is_file()


def test_take_samples_keeps_the_first_samples() -> None:
    inputs = make_w5_inputs(seed=0, n_in=5, n_out=3, duration=0.2, batch=4)
    sub = brian2_side.take_samples(inputs, 2)
    assert int(sub["batch"]) == 2 and set(np.unique(sub["sample"])) <= {0, 1}
    two = make_w5_inputs(seed=0, n_in=5, n_out=3, duration=0.2, batch=2)
    for key in ("times", "indices", "sample"):
        np.testing.assert_array_equal(sub[key], two[key])


def test_missing_environment_gives_no_reference(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Any) -> None:
    monkeypatch.setenv(brian2_side.ENV_VAR, str(tmp_path / "no-python"))
    assert brian2_side.brian2_python() is None
    inputs = make_w5_inputs(seed=0, n_in=5, n_out=3, duration=0.1)
    assert brian2_side.brian2_reference(inputs, samples=1, repeats=1, warmup=1) is None


def _fake_result(target: str, **kw: Any) -> dict[str, Any]:
    """What the Brian2 script prints, for 2 samples of 0.5 s."""
    return {"brian2_version": "2.9.0", "target": target, "dt": 1e-4, "duration": 0.5,
            "median_s": 1.0, "min_s": 0.5, "max_s": 2.0, "cpu_per_wall": 1.0, "repeats": 3,
            "warmup": 1, "first_run_s": 4.0, "cython_cache_was_warm": True,
            "zero_duration_run_s": 0.01, "peak_rss_increase_mib": 10.0,
            "peak_rss_increase_warm_mib": 5.0, "n_same_step_input_duplicates": 0,
            "n_output_spikes": 3, "output_times": [0.1, 0.2, 0.3], "output_indices": [0, 1, 0],
            "output_sample": [0, 0, 1]}


def test_reference_scales_a_subset_to_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brian2_side, "run_brian2", lambda inputs, *, target, **kw:
                        _fake_result(target))
    inputs = make_w5_inputs(seed=0, n_in=5, n_out=3, duration=0.5, batch=8)
    ref = brian2_side.brian2_reference(inputs, samples=2, repeats=3, warmup=1)
    assert ref is not None
    assert ref["median_s"] == 4.0 and ref["time_scale"] == 4.0 and ref["samples_run"] == 2
    assert ref["s_per_sim_s"] == 8.0 and ref["numpy_median_s"] == 4.0
    assert ref["n_output_spikes_subset"] == 3 and "n_output_spikes" not in ref
    assert "scaled by 4" in ref["timing_note"]
    times, units, sample = ref.pop("_events")
    np.testing.assert_array_equal(sample, [0, 0, 1])
