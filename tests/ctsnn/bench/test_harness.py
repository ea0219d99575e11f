"""Tests of the benchmark harness: JSON lines, timing, peak RSS, the workload helpers."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from ctsnn.bench.harness import (
    json_line,
    peak_rss_increase,
    peak_rss_or_none,
    protocol_counts,
    rss_increases,
    summary_line,
    time_call,
    timed,
)

# ----------------------------------------------------------------------------- json_line


def test_json_line_ratios_for_matching_numeric_keys(capsys: pytest.CaptureFixture[str]) -> None:
    ours = {"median_s": 0.2, "min_s": 0.1, "n": 4, "only_ours": 1.0, "flag": True, "name": "x"}
    ref = {"median_s": 0.4, "min_s": 0.0, "n": 2, "flag": True, "name": "y", "only_ref": 3}
    line = json_line("W5", {"dt": 1e-4}, ours, ref)
    assert capsys.readouterr().out == line + "\n"
    assert "\n" not in line
    record = json.loads(line)
    assert record["workload"] == "W5"
    assert record["config"] == {"dt": 1e-4}
    assert record["ours"] == ours and record["reference"] == ref
    # min_s: zero reference; flag: bool; name: not a number; others: one side only
    assert record["ratio"] == {"median_s": 0.5, "n": 2.0}


def test_json_line_without_reference_and_nonfinite() -> None:
    record = json.loads(json_line("W5", {}, {"median_s": math.nan, "x": math.inf}, None))
    assert record["reference"] is None
    assert record["ratio"] == {}
    assert record["ours"] == {"median_s": None, "x": None}


# ----------------------------------------------------------------------------- timing


def test_time_call_counts_calls_and_orders_stats() -> None:
    calls = []
    stats = time_call(lambda: calls.append(sum(range(1000))), repeats=3, warmup=2)
    assert len(calls) == 5
    assert len(stats["times_s"]) == 3
    assert 0 <= stats["min_s"] <= stats["median_s"] <= stats["max_s"]
    assert stats["cpu_per_wall"] >= 0
    with pytest.raises(ValueError):
        time_call(lambda: None, repeats=0)


def _alloc_step(mib: int) -> Callable[[], object]:
    """Step function that touches ``mib`` MiB (and keeps nothing)."""
    return lambda: np.ones(mib * 1024 * 1024 // 8).sum()


def test_peak_rss_increase_sees_a_large_allocation() -> None:
    inc = peak_rss_increase(functools.partial(_alloc_step, 64))
    assert 56 < inc < 200


_KEPT: list[np.ndarray] = []


def _build_then_alloc(build_mib: int, step_mib: int) -> Callable[[], object]:
    """Setup that keeps ``build_mib`` MiB (like a model) and returns a step touching
    ``step_mib`` MiB."""
    _KEPT.append(np.ones(build_mib * 1024 * 1024 // 8))
    return _alloc_step(step_mib)


def test_rss_increases_separates_the_build_from_the_step() -> None:
    rss = rss_increases(functools.partial(_build_then_alloc, 96, 32))
    assert 88 < rss["build_mib"] < 200
    assert 24 < rss["step_mib"] < 90  # the build's memory is not counted in the step


def test_timed_cuts_repeats_over_budget() -> None:
    calls = []
    stats = timed(lambda: calls.append(1), repeats=5, warmup=2, budget_s=None)
    assert len(calls) == 7 and not stats["reduced"]
    calls.clear()
    stats = timed(lambda: (calls.append(1), np.ones((200, 200)) @ np.ones((200, 200))),
                  repeats=1000, warmup=2, budget_s=1e-9)
    assert stats["reduced"] and stats["repeats"] == 1 and len(calls) == 2


def test_protocol_counts_defaults_and_overrides() -> None:
    assert protocol_counts(False) == (5, 2)
    assert protocol_counts(True) == (3, 1)
    assert protocol_counts(True, quick_counts=(2, 1)) == (2, 1)
    assert protocol_counts(False, 7, 0) == (7, 0)


def _failing_setup() -> Callable[[], object]:
    raise RuntimeError("no memory here")


def test_peak_rss_or_none_logs_a_failure() -> None:
    logged: list[str] = []
    assert peak_rss_or_none(_failing_setup, timeout=60, log=logged.append) is None
    assert len(logged) == 1 and "no memory here" in logged[0]


def test_summary_line_carries_git_and_env(capsys: pytest.CaptureFixture[str]) -> None:
    record = json.loads(summary_line("W0 test", {"target_met": True}, git={"commit": "abc"},
                                     env={"torch_threads": 2}))
    assert capsys.readouterr().out.startswith("{")
    assert record["config"]["summary"] is True and record["config"]["git"] == {"commit": "abc"}
    assert record["ours"] == {"target_met": True} and record["reference"] is None
