"""W5 sim-continuous (``ctsnn bench w5``): the event-driven reference against ctsnn, and the
plumbing of ``main``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctsnn.bench import sim_continuous
from ctsnn.bench.sim_continuous_inputs import make_w5_inputs


def _small_inputs(batch: int = 1) -> dict[str, np.ndarray]:
    """A scaled-down W5 (20 inputs, 50 neurons, 0.2 s) strong enough to make spikes."""
    return make_w5_inputs(
        seed=3, n_in=20, n_out=50, duration=0.2, rate=50.0, w_max=0.5, batch=batch
    )


@pytest.mark.parametrize(("dt", "batch"), [(1e-3, 2), (5e-4, 1)])
def test_continuous_float64_matches_event_driven_reference(dt: float, batch: int) -> None:
    inputs = _small_inputs(batch=batch)
    ref = sim_continuous.reference_spikes(inputs)
    assert ref[0].size > 100  # the check below is not vacuous
    ours = sim_continuous.run_ours(inputs, "continuous", dt, torch.float64)
    cmp = sim_continuous.compare_spikes(ours, ref, n_units=50)
    assert cmp["n_ours"] == cmp["n_ref"] == cmp["n_matched"]
    assert cmp["n_units_count_mismatch"] == 0
    assert cmp["max_abs_dt_s"] <= 1e-9


def test_reference_single_neuron_by_hand() -> None:
    # Two inputs; neuron 0 gets 0.6 at 1 ms and 0.6 at 2 ms (fires only if little decay).
    times = np.array([0.0005, 0.0015, 0.0100])
    indices = np.array([0, 1, 0])
    weights = np.array([[0.6, 0.6]])
    delays = np.array([[0.0005, 0.0005]])
    t, u = sim_continuous.event_driven_reference(times, indices, weights, delays, tau=0.01,
                                                 duration=0.02)
    v_at_2ms = 0.6 * np.exp(-0.001 / 0.01) + 0.6
    assert v_at_2ms >= 1.0
    np.testing.assert_array_equal(u, [0])
    np.testing.assert_allclose(t, [0.0015 + 0.0005], rtol=0, atol=0)
    # Simultaneous arrivals are summed before the threshold test; late ones are dropped.
    t, _ = sim_continuous.event_driven_reference(
        np.array([0.001, 0.001]),
        np.array([0, 1]),
        np.array([[0.5, 0.5]]),
        np.array([[0.0, 0.0]]),
        tau=0.01,
        duration=0.02,
    )
    np.testing.assert_array_equal(t, [0.001])
    t, _ = sim_continuous.event_driven_reference(
        np.array([0.019]),
        np.array([0]),
        np.array([[1.5]]),
        np.array([[0.002]]),
        tau=0.01,
        duration=0.02,
    )
    assert t.size == 0


def test_compare_spikes_pairs_by_neuron_and_rank() -> None:
    ref = (np.array([0.1, 0.2, 0.3]), np.array([0, 0, 1]), np.array([0, 0, 0]))
    ours = (np.array([0.3 + 1e-12, 0.1, 0.2, 0.4]), np.array([1, 0, 0, 1]), np.zeros(4, int))
    cmp = sim_continuous.compare_spikes(ours, ref, n_units=2)
    assert cmp["n_ours"] == 4 and cmp["n_ref"] == 3 and cmp["n_matched"] == 3
    assert cmp["n_units_count_mismatch"] == 1
    assert cmp["max_abs_dt_s"] == pytest.approx(1e-12, abs=1e-15)


def _tiny_main(**kwargs: object) -> int:
    """W5 on a tiny network, one timed repeat, in this process, no reference."""
    return sim_continuous.main(quick=True, reference=False, n_in=10, n_out=20, duration=0.05,
                               repeats=1, warmup=1, isolate=False, **kwargs)


def test_main_smoke_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    status = _tiny_main(batches=(1, 2), configs=(("continuous", 1e-3), ("discrete", 1e-3)),
                        memory=False)
    assert status == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    # accuracy line + 2 configs x 2 batches + summary
    assert len(records) == 6
    assert all(r["workload"] == sim_continuous.WORKLOAD for r in records)
    assert records[0]["config"]["dtype"] == "float64"
    assert records[0]["ours"]["within_tolerance"] is True
    timed = records[1:-1]
    assert {(r["config"]["mode"], r["config"]["batch"]) for r in timed} == {
        ("continuous", 1),
        ("discrete", 1),
        ("continuous", 2),
        ("discrete", 2),
    }
    for r in timed:
        assert r["reference"] is None and r["ratio"] == {}
        assert r["ours"]["median_s"] > 0 and r["ours"]["n_output_spikes"] >= 0
    summary = records[-1]
    assert summary["config"]["summary"] is True
    assert summary["ours"]["exact_float64_ok"] is True
    assert summary["ours"]["discrete_target_met"] is None


def test_main_reports_a_configuration_whose_memory_process_died(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def died(*args: object, **kwargs: object) -> float:
        raise RuntimeError("memory measurement failed in the child process:\nchild process died")

    monkeypatch.setattr(sim_continuous, "peak_rss_increase", died)
    status = _tiny_main(configs=(("discrete", 1e-3),))
    assert status == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    line = records[1]
    assert line["config"]["mode"] == "discrete"
    assert "not timed" in line["ours"]["error"] and "median_s" not in line["ours"]
    assert records[-1]["ours"]["discrete_target_met"] is None


def test_timing_in_a_fresh_process_gives_the_in_process_spikes() -> None:
    inputs = _small_inputs()
    kwargs = {"mode": "continuous", "dt": 1e-3, "repeats": 1, "warmup": 0, "budget_s": None}
    stats, out = sim_continuous._time_in_fresh_process(inputs, kwargs, timeout=120)
    assert stats["repeats"] == 1 and stats["median_s"] > 0
    _, here = sim_continuous._time_ours(inputs, **kwargs)
    assert out[0].size > 0
    for a, b in zip(out, here, strict=True):
        np.testing.assert_array_equal(a, b)
