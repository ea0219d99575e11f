"""Benchmark workload W5 ``sim-continuous``: ctsnn against Brian2 and an exact reference.

W5 (the project's benchmark doc): 1000 LIF neurons (tau 10 ms, threshold 1, reset
0, no refractory period) driven by 140 Poisson inputs at 20 Hz through dense
140 x 1000 synapses, ``v += w``, ``w ~ U[0, 0.1)``, delays ``~ U[0, 25 ms]``,
1 s simulated. Targets: discrete mode at dt = 0.1 ms no slower than Brian2
(cython target) at dt = 0.1 ms; continuous mode, with exact spike times and
exact real-valued delays (error <= 1e-9 s against an event-driven reference),
at dt = 1 ms faster than Brian2 at dt = 0.1 ms. Batch 64 (independent trials)
is reported too; Brian2 has no batch dimension, it runs the trials one after
the other.

What :func:`main` measures (``ctsnn bench w5 [--quick] [--no-reference]``):

* **ours** — for every configuration {continuous, discrete} x dt {1 ms, 0.1 ms}
  x batch {1, 64} (``quick``: batch 1, fewer repeats), the wall time of the
  :func:`ctsnn.simulate` call only (float32, CPU, 2 threads). Input
  :class:`~ctsnn.Spikes` and the :class:`~ctsnn.Layer` are built before the
  timed region; turning the spikes into the arrival schedule (continuous) or
  the per-step jumps (discrete) happens inside ``simulate`` and is timed.
  Peak memory is the RSS increase of one call in a fresh process; the timing
  runs in another fresh process (a configuration killed for lack of memory on
  a shared machine is reported with an ``error`` and the others go on). When
  one call is so slow that the repeats would exceed ``budget_s`` (900 s), fewer
  are made and the line says ``"reduced": true``.
* **accuracy** — a float64 continuous run against :func:`event_driven_reference`,
  an independent numpy simulation of W5 (maximum spike-time error of matched
  spikes, spike counts); the float32 continuous runs are compared with it too.
* **reference** — Brian2 at dt = 0.1 ms (``cython`` target; ``numpy`` reported
  alongside) through :func:`ctsnn.bench.brian2_side.brian2_reference`, when its
  environment ``.venv-brian2`` exists (made by ``bash ctsnn/bench/brian2_env.sh``).

Output: one JSON line per configuration (:func:`ctsnn.bench.harness.json_line`),
one for the float64 accuracy check, and a summary line with the targets.
"""

from __future__ import annotations

import functools
import math
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

import ctsnn

from .brian2_side import BRIAN2_DT, NOT_FOUND, brian2_python, brian2_reference
from .harness import (
    bench_env,
    call_in_child,
    git_state,
    json_line,
    mem_available_mib,
    peak_rss_increase,
    protocol_counts,
    stderr_log,
    summary_line,
    timed,
)
from .sim_continuous_inputs import make_w5_inputs

__all__ = [
    "CONFIGS",
    "compare_spikes",
    "event_driven_reference",
    "main",
    "make_layer",
    "make_spikes",
    "reference_spikes",
    "run_ours",
]

WORKLOAD = "W5 sim-continuous"

#: (time mode, dt in seconds) of our side, in the order they are run.
CONFIGS: tuple[tuple[str, float], ...] = (
    ("continuous", 1e-3),
    ("continuous", 1e-4),
    ("discrete", 1e-4),
    ("discrete", 1e-3),
)

#: Accuracy target of continuous mode (seconds).
EXACT_TOL_S = 1e-9

Events = tuple[np.ndarray, np.ndarray, np.ndarray]  # (times, units, batch)

_log = stderr_log("w5")


# --------------------------------------------------------------------------- our side


def make_spikes(inputs: dict[str, np.ndarray], dt: float, dtype: torch.dtype) -> ctsnn.Spikes:
    """The input spikes of all samples of ``inputs`` as :class:`~ctsnn.Spikes` on a ``dt`` grid."""
    duration = float(inputs["duration"])
    return ctsnn.Spikes.from_events(
        torch.as_tensor(inputs["times"], dtype=dtype),
        torch.as_tensor(inputs["indices"]),
        torch.as_tensor(inputs["sample"]),
        dt=dt,
        n_steps=int(round(duration / dt)),
        batch_size=int(inputs["batch"]),
        n_units=int(inputs["n_in"]),
    )


def make_layer(inputs: dict[str, np.ndarray], dtype: torch.dtype) -> ctsnn.Layer:
    """The W5 layer: LIF population behind dense synapses with per-synapse delays."""
    model = ctsnn.LIF(
        int(inputs["n_out"]),
        tau_mem=float(inputs["tau"]),
        v_threshold=float(inputs["v_threshold"]),
        v_reset=float(inputs["v_reset"]),
    )
    layer = ctsnn.Layer(
        model,
        torch.as_tensor(inputs["weights"]).to(dtype),
        delay=torch.as_tensor(inputs["delays"]).to(dtype),
    )
    return layer.to(dtype)


def _simulate_fn(
    layer: ctsnn.Layer, spikes: ctsnn.Spikes, mode: str, dt: float
) -> Callable[[], ctsnn.SimulationResult]:
    """The timed call: one :func:`ctsnn.simulate` without autograd."""

    def step() -> ctsnn.SimulationResult:
        with torch.no_grad():
            return ctsnn.simulate(layer, spikes, dt=dt, time=mode)

    return step


def _events(spikes: ctsnn.Spikes) -> Events:
    """``(times float64, units, batch)`` numpy arrays of a :class:`~ctsnn.Spikes`."""
    return (
        spikes.times.detach().double().cpu().numpy(),
        spikes.units.cpu().numpy().astype(np.int64),
        spikes.batch.cpu().numpy().astype(np.int64),
    )


def run_ours(
    inputs: dict[str, np.ndarray], mode: str, dt: float, dtype: torch.dtype = torch.float32
) -> Events:
    """Simulate ``inputs`` with ctsnn once; return the output events."""
    step = _simulate_fn(make_layer(inputs, dtype), make_spikes(inputs, dt, dtype), mode, dt)
    return _events(step().spikes)


def _memory_setup(inputs: dict[str, np.ndarray], mode: str, dt: float) -> Callable[[], object]:
    """Setup of the memory measurement (runs in the fresh process): build, return the call."""
    dtype = torch.float32
    return _simulate_fn(make_layer(inputs, dtype), make_spikes(inputs, dt, dtype), mode, dt)


# --------------------------------------------------------------------------- exact reference


def event_driven_reference(
    times: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    delays: np.ndarray,
    *,
    tau: float,
    duration: float,
    v_threshold: float = 1.0,
    v_reset: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact event-driven simulation of one W5 sample (float64 numpy, independent of ctsnn).

    The neurons receive only jumps (no current) and start at ``v = 0``; between
    arrivals ``v`` decays as ``v * exp(-Δt / tau)`` and never rises, so a neuron
    can only reach the threshold at an arrival: spikes happen exactly at arrival
    times. Per neuron the arrivals ``t_spike + delay`` are sorted; arrivals at the
    same instant are summed into one jump; after a jump ``v >= v_threshold``
    fires and resets to ``v_reset``. Arrivals after ``duration`` are dropped.
    The loop runs over arrival ranks, vectorised across neurons.

    Args:
        times: ``[E]`` input spike times (s).
        indices: ``[E]`` input neuron of each spike.
        weights: ``[N_out, N_in]`` jump sizes.
        delays: ``[N_out, N_in]`` delays (s).
        tau: membrane time constant (s).
        duration: end of the simulation (s).
        v_threshold, v_reset: threshold and reset potentials.

    Returns:
        ``(spike_times, spike_units)``, float64 and int64.
    """
    n_out = weights.shape[0]
    times = np.asarray(times, dtype=np.float64)
    indices = np.asarray(indices, dtype=np.int64)
    if times.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    arrival = times[None, :] + np.asarray(delays, dtype=np.float64)[:, indices]  # [N_out, E]
    jump = np.asarray(weights, dtype=np.float64)[:, indices]
    late = arrival > duration
    arrival[late] = np.inf
    jump[late] = 0.0
    order = np.argsort(arrival, axis=1, kind="stable")
    arrival = np.take_along_axis(arrival, order, axis=1)
    jump = np.take_along_axis(jump, order, axis=1)
    n_cols = int(np.max(np.sum(np.isfinite(arrival), axis=1), initial=0))
    # A column ends a group of simultaneous arrivals if the next arrival is later.
    last = np.ones((n_out, n_cols), dtype=bool)
    if n_cols > 1:
        last[:, :-1] = arrival[:, 1:n_cols] != arrival[:, : n_cols - 1]

    units = np.arange(n_out)
    v = np.zeros(n_out)
    pending = np.zeros(n_out)
    prev = np.zeros(n_out)
    out_t: list[np.ndarray] = []
    out_u: list[np.ndarray] = []
    for k in range(n_cols):
        a, w = arrival[:, k], jump[:, k]
        valid = np.isfinite(a)
        first = valid & (a != prev) if k else valid
        # Decay to the first arrival of a group; gather the group's jumps in `pending`.
        v = np.where(first, v * np.exp(-(np.where(first, a, prev) - prev) / tau), v)
        pending = np.where(first, w, pending + w)
        prev = np.where(valid, a, prev)
        apply = valid & last[:, k]
        v = np.where(apply, v + pending, v)
        fire = apply & (v >= v_threshold)
        if fire.any():
            out_t.append(a[fire])
            out_u.append(units[fire])
            v = np.where(fire, v_reset, v)
    if not out_t:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(out_t), np.concatenate(out_u)


def reference_spikes(inputs: dict[str, np.ndarray], samples: int | None = None) -> Events:
    """:func:`event_driven_reference` for the first ``samples`` samples (default all)."""
    n = int(inputs["batch"]) if samples is None else samples
    ts, us, bs = [], [], []
    for b in range(n):
        mask = inputs["sample"] == b
        t, u = event_driven_reference(
            inputs["times"][mask],
            inputs["indices"][mask],
            inputs["weights"],
            inputs["delays"],
            tau=float(inputs["tau"]),
            duration=float(inputs["duration"]),
            v_threshold=float(inputs["v_threshold"]),
            v_reset=float(inputs["v_reset"]),
        )
        ts.append(t)
        us.append(u)
        bs.append(np.full(t.shape, b, dtype=np.int64))
    return np.concatenate(ts), np.concatenate(us), np.concatenate(bs)


def compare_spikes(ours: Events, ref: Events, n_units: int) -> dict[str, Any]:
    """Match the spikes of two runs neuron by neuron, in time order.

    The ``k``-th spike of a (sample, neuron) in ``ours`` is paired with the
    ``k``-th spike of the same (sample, neuron) in ``ref`` for every ``k`` below
    both counts.

    Returns:
        ``n_ours``, ``n_ref`` (spike counts), ``n_matched`` (pairs),
        ``max_abs_dt_s`` (largest time difference over the pairs, NaN if none),
        ``median_abs_dt_s`` and ``p99_abs_dt_s`` (its median and 99th percentile),
        ``n_abs_dt_over_1us`` (pairs more than 1 us apart) and ``n_units_count_mismatch``
        ((sample, neuron) with unequal counts).
    """
    ranked = []
    for t, u, b in (ours, ref):
        key = b.astype(np.int64) * n_units + u.astype(np.int64)
        order = np.lexsort((t, key))
        t, key = t[order], key[order]
        start = np.searchsorted(key, key, side="left")
        ranked.append((t, key, np.arange(key.size) - start))
    (t1, k1, r1), (t2, k2, r2) = ranked
    size = max(int(k1.max(initial=-1)), int(k2.max(initial=-1))) + 1
    c1 = np.bincount(k1, minlength=size)
    c2 = np.bincount(k2, minlength=size)
    common = np.minimum(c1, c2)
    m1 = r1 < common[k1]
    m2 = r2 < common[k2]
    dt = np.abs(t1[m1] - t2[m2])  # both in (key, rank) order
    return {
        "n_ours": int(t1.size),
        "n_ref": int(t2.size),
        "n_matched": int(dt.size),
        "max_abs_dt_s": float(dt.max()) if dt.size else math.nan,
        "median_abs_dt_s": float(np.median(dt)) if dt.size else math.nan,
        "p99_abs_dt_s": float(np.quantile(dt, 0.99)) if dt.size else math.nan,
        "n_abs_dt_over_1us": int(np.count_nonzero(dt > 1e-6)),
        "n_units_count_mismatch": int(np.count_nonzero(c1 != c2)),
    }


# --------------------------------------------------------------------------- main


def _time_ours(
    inputs: dict[str, np.ndarray],
    mode: str,
    dt: float,
    *,
    repeats: int,
    warmup: int,
    budget_s: float | None,
    dtype: torch.dtype = torch.float32,
) -> tuple[dict[str, Any], Events]:
    """Build one configuration (float32 unless ``dtype``), time its simulate call; return
    (stats of :func:`~ctsnn.bench.harness.timed`, output events of the last call)."""
    last: list[ctsnn.SimulationResult] = []
    step = _simulate_fn(make_layer(inputs, dtype), make_spikes(inputs, dt, dtype), mode, dt)

    def call() -> None:  # keep only the newest result alive
        last[:] = [step()]

    stats = timed(call, repeats=repeats, warmup=warmup, budget_s=budget_s)
    out = _events(last[-1].spikes)
    last.clear()
    return stats, out


def _timing_child(inputs: dict[str, np.ndarray], kwargs: dict[str, Any], conn: Any) -> None:
    """Body of the fresh timing process of :func:`_measure_ours`: sends (stats, events)."""
    try:
        bench_env(2, warn=False)
        conn.send({"ok": True, "result": _time_ours(inputs, **kwargs)})
    except BaseException:  # report anything to the parent rather than die silently
        conn.send({"ok": False, "error": traceback.format_exc()})
    finally:
        conn.close()


def _time_in_fresh_process(
    inputs: dict[str, np.ndarray], kwargs: dict[str, Any], timeout: float | None
) -> tuple[dict[str, Any], Events]:
    """:func:`_time_ours` in a ``spawn`` child (the inputs are sent to it).

    Raises:
        RuntimeError: the child failed or died (e.g. killed for lack of memory).
    """
    msg = call_in_child(_timing_child, (inputs, kwargs), timeout=timeout, what="timing")
    if not msg["ok"]:
        raise RuntimeError(msg["error"])
    return msg["result"]


def _measure_ours(
    inputs: dict[str, np.ndarray],
    mode: str,
    dt: float,
    *,
    repeats: int,
    warmup: int,
    budget_s: float | None,
    memory: bool,
    isolate: bool,
) -> tuple[dict[str, Any], Events | None]:
    """Time (and measure the memory of) one float32 configuration of our side.

    The memory is measured first, in its fresh process; the timing follows, in
    another fresh process when ``isolate`` (so that a process killed for lack of
    memory on a shared machine costs one configuration, not the whole
    benchmark). A failure leaves an ``error`` in the dict and no events.

    Returns the ``ours`` dict of the JSON line and the output events of the last call.
    """
    duration = float(inputs["duration"])
    ours: dict[str, Any] = {}
    available = mem_available_mib()
    where = f"; MemAvailable was {available:.0f} MiB before" if available is not None else ""
    if memory:
        setup = functools.partial(_memory_setup, inputs, mode, dt)
        try:
            ours["peak_rss_mib"] = peak_rss_increase(setup, timeout=7200)
        except (RuntimeError, TimeoutError) as exc:
            reason = str(exc).strip().splitlines()[-1]
            _log(f"memory measurement failed, not timed: {reason}")
            ours.update(
                peak_rss_mib=None,
                error=f"memory measurement failed ({reason}{where}); not timed",
            )
            return ours, None
    kwargs = {"mode": mode, "dt": dt, "repeats": repeats, "warmup": warmup, "budget_s": budget_s}
    try:
        if isolate:
            stats, out = _time_in_fresh_process(inputs, kwargs, timeout=None)
        else:
            stats, out = _time_ours(inputs, **kwargs)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1]
        _log(f"timing failed: {reason}")
        ours["error"] = f"timing failed ({reason}{where})"
        return ours, None
    ours = {
        "median_s": stats["median_s"],
        "min_s": stats["min_s"],
        "max_s": stats["max_s"],
        "cpu_per_wall": stats["cpu_per_wall"],
        "s_per_sim_s": stats["median_s"] / duration,
        "times_s": stats["times_s"],
        "protocol": {k: stats[k] for k in ("repeats", "warmup", "reduced")},
        "n_output_spikes": int(out[0].size),
        **ours,
    }
    if stats["reduced"]:
        ours["protocol"]["note"] = (
            f"one call took {stats['first_call_s']:.1f} s: {stats['repeats']} timed "
            f"call(s) after 1 warm-up instead of {repeats} after {warmup} "
            f"(budget {budget_s:g} s)"
        )
    return ours, out


def _compare_ours(
    out: Events,
    mode: str,
    dt: float,
    inputs: dict[str, np.ndarray],
    ref: dict[str, Any] | None,
    b2_events: Events | None,
    ref_cache: dict[int, Events],
) -> dict[str, Any]:
    """Spike-count and spike-time comparisons of one float32 run (for its ``ours`` dict).

    Continuous runs are compared with the event-driven reference (computed once per
    batch and kept in ``ref_cache``); discrete runs at Brian2's dt with Brian2's spikes.
    """
    batch, n_out = int(inputs["batch"]), int(inputs["n_out"])
    extra: dict[str, Any] = {}
    if ref is not None and "n_output_spikes_subset" in ref:
        extra["n_output_spikes_subset"] = int(np.count_nonzero(out[2] < int(ref["samples_run"])))
    if mode == "continuous":
        if batch not in ref_cache:
            _log(f"event-driven reference, batch {batch}...")
            ref_cache[batch] = reference_spikes(inputs)
        cmp = compare_spikes(out, ref_cache[batch], n_out)
        extra.update(
            max_abs_dt_vs_exact_s=cmp["max_abs_dt_s"],
            p99_abs_dt_vs_exact_s=cmp["p99_abs_dt_s"],
            n_abs_dt_over_1us_vs_exact=cmp["n_abs_dt_over_1us"],
            n_units_count_mismatch_vs_exact=cmp["n_units_count_mismatch"],
            n_output_spikes_exact=cmp["n_ref"],
        )
    elif ref is not None and b2_events is not None and dt == BRIAN2_DT:
        keep = out[2] < int(ref["samples_run"])
        cmp = compare_spikes((out[0][keep], out[1][keep], out[2][keep]), b2_events, n_out)
        extra["n_units_count_mismatch_vs_brian2"] = cmp["n_units_count_mismatch"]
    return extra


def _check_mode(value: str) -> str:
    if value not in ("continuous", "discrete"):
        raise ValueError(f"mode must be 'continuous' or 'discrete', got {value!r}")
    return value


def _brian2_wanted(reference: bool) -> bool:
    """Whether Brian2 runs: asked for and its environment exists (else say why not)."""
    use = reference and brian2_python() is not None
    if not reference:
        _log("reference skipped (--no-reference): Brian2 not run")
    elif not use:
        _log(f"reference skipped: {NOT_FOUND}")
    return use


def _accuracy_check(
    inputs: dict[str, np.ndarray], size: dict[str, Any], timing: dict[str, Any],
    ref_cache: dict[int, Events],
) -> tuple[bool, dict[str, Any]]:
    """The float64 continuous run (dt = 1 ms, batch 1) against the event-driven reference:
    prints its JSON line, keeps the reference spikes in ``ref_cache[1]``.

    Returns:
        Whether it is within :data:`EXACT_TOL_S` with the same spike counts, and its
        summary fields.
    """
    n_out = int(inputs["n_out"])
    _log("event-driven reference, batch 1...")
    ref_cache[1] = reference_spikes(inputs)
    acc_dt = 1e-3
    _log("float64 continuous run (dt = 1 ms) for the accuracy check...")
    t64, events64 = _time_ours(inputs, "continuous", acc_dt, dtype=torch.float64, **timing)
    cmp64 = compare_spikes(events64, ref_cache[1], n_out)
    exact_ok = (
        cmp64["n_units_count_mismatch"] == 0
        and cmp64["n_ours"] == cmp64["n_ref"]
        and math.isfinite(cmp64["max_abs_dt_s"])
        and cmp64["max_abs_dt_s"] <= EXACT_TOL_S
    ) or (cmp64["n_ours"] == cmp64["n_ref"] == 0)
    config = {"check": "exact spike times", "mode": "continuous", "dt": acc_dt, "batch": 1,
              "dtype": "float64", **size}
    ours = {
        "median_s": t64["median_s"],
        "min_s": t64["min_s"],
        "max_s": t64["max_s"],
        "cpu_per_wall": t64["cpu_per_wall"],
        "protocol": {k: t64[k] for k in ("repeats", "warmup", "reduced")},
        "n_output_spikes": cmp64["n_ours"],
        "max_abs_dt_s": cmp64["max_abs_dt_s"],
        "n_matched": cmp64["n_matched"],
        "n_units_count_mismatch": cmp64["n_units_count_mismatch"],
        "tolerance_s": EXACT_TOL_S,
        "within_tolerance": exact_ok,
    }
    reference = {
        "simulator": "event-driven numpy reference "
        "(ctsnn.bench.sim_continuous.event_driven_reference)",
        "n_output_spikes": cmp64["n_ref"],
    }
    json_line(WORKLOAD, config, ours, reference)
    return exact_ok, {"exact_float64_max_abs_dt_s": cmp64["max_abs_dt_s"],
                      "exact_float64_ok": exact_ok}


def _measure_batch(
    inputs: dict[str, np.ndarray], configs: Sequence[tuple[str, float]],
    ref: dict[str, Any] | None, config_base: dict[str, Any], timing: dict[str, Any], *,
    memory: bool, isolate: bool, ref_cache: dict[int, Events],
) -> dict[tuple[str, float], dict[str, Any]]:
    """Our side at every (mode, dt) of one batch size, one JSON line each (against ``ref``,
    Brian2's reference dict or None). Returns the ``ours`` dicts by (mode, dt)."""
    batch = int(inputs["batch"])
    b2_events = None if ref is None else ref.pop("_events", None)
    records: dict[tuple[str, float], dict[str, Any]] = {}
    for mode, dt in configs:
        _log(f"ours: {mode}, dt = {dt * 1e3:g} ms, batch {batch}...")
        ours, out = _measure_ours(inputs, mode, dt, **timing, memory=memory, isolate=isolate)
        if out is not None:
            ours.update(_compare_ours(out, mode, dt, inputs, ref, b2_events, ref_cache))
        config = {"mode": mode, "dt": dt, "batch": batch, **config_base}
        json_line(WORKLOAD, config, ours, ref)
        records[(mode, dt)] = ours
    return records


def _targets(
    records: dict[tuple[str, float, int], dict[str, Any]],
    refs: dict[int, dict[str, Any] | None], configs: Sequence[tuple[str, float]],
    exact_ok: bool,
) -> dict[str, Any]:
    """The summary's targets: our times over Brian2-cython's (batch 1; batch 64 if run)."""

    def ratio(mode: str, dt: float, batch: int, key: str = "median_s") -> float | None:
        rec, ref = records.get((mode, dt, batch)), refs.get(batch)
        if rec is None or "median_s" not in rec or ref is None or not ref.get(key):
            return None
        return rec["median_s"] / ref[key]

    disc = ratio("discrete", 1e-4, 1)
    cont = ratio("continuous", 1e-3, 1)
    out = {
        "discrete_0p1ms_vs_brian2_cython": disc,
        "discrete_target_met": None if disc is None else disc <= 1.0,
        "continuous_1ms_vs_brian2_cython_0p1ms": cont,
        "continuous_1ms_vs_brian2_numpy_0p1ms": ratio("continuous", 1e-3, 1, "numpy_median_s"),
        "continuous_target_met": None if cont is None else (cont < 1.0 and exact_ok),
    }
    if 64 in refs:
        out["batch64_vs_brian2_cython"] = {f"{m}_{d * 1e3:g}ms": ratio(m, d, 64)
                                           for m, d in configs}
    return out


def main(
    quick: bool = False,
    reference: bool = True,
    *,
    seed: int = 0,
    n_in: int = 140,
    n_out: int = 1000,
    duration: float = 1.0,
    batches: Sequence[int] | None = None,
    configs: Sequence[tuple[str, float]] = CONFIGS,
    repeats: int | None = None,
    warmup: int | None = None,
    memory: bool = True,
    brian2_samples: int = 8,
    budget_s: float | None = 900.0,
    isolate: bool = True,
) -> int:
    """Run benchmark W5 and print its JSON lines on stdout (progress on stderr).

    Args:
        quick: Batch 1 only, 3 timed runs after 1 warm-up (Brian2 as well).
        reference: Run Brian2 (if its environment exists; otherwise a note says
            it was skipped).
        seed, n_in, n_out, duration: Passed to
            :func:`~ctsnn.bench.sim_continuous_inputs.make_w5_inputs` (defaults: the W5 size;
            smaller values are for tests).
        batches: Batch sizes; default ``(1,)`` if ``quick`` else ``(1, 64)``.
        configs: (mode, dt) pairs of our side.
        repeats, warmup: Timed and untimed calls per configuration; default 5
            and 2 (the protocol), 3 and 1 when ``quick``.
        memory: Measure the peak RSS increase (a fresh process per configuration).
        brian2_samples: For a batch larger than this, Brian2 runs only this many
            samples and its times are scaled to the full batch.
        budget_s: Wall-time budget of the timed calls of one configuration of
            our side: when a single call is so slow that ``repeats`` of them
            exceed it, fewer are made (at least one after one warm-up) and the
            JSON line says so (``reduced``). None: always the full protocol.
        isolate: Time each configuration of our side in a fresh process (a
            process killed for lack of memory then costs that configuration
            only, reported with an ``error``); False: in this process.

    Returns:
        0, or 1 if the float64 continuous run disagrees with the event-driven
        reference (error above 1e-9 s or different spike counts).
    """
    for mode, _ in configs:
        _check_mode(mode)
    batches = tuple(batches) if batches is not None else ((1,) if quick else (1, 64))
    repeats, warmup = protocol_counts(quick, repeats, warmup)
    timing = {"repeats": repeats, "warmup": warmup, "budget_s": budget_s}
    env = bench_env(2)
    env["mem_available_mib"] = mem_available_mib()
    git = git_state()
    size = {"n_in": n_in, "n_out": n_out, "duration": duration, "seed": seed}
    use_brian2 = _brian2_wanted(reference)

    ref_cache: dict[int, Events] = {}
    acc_inputs = make_w5_inputs(seed=seed, n_in=n_in, n_out=n_out, duration=duration, batch=1)
    exact_ok, summary = _accuracy_check(acc_inputs, size, timing, ref_cache)

    records: dict[tuple[str, float, int], dict[str, Any]] = {}
    refs: dict[int, dict[str, Any] | None] = {}
    config_base = {"dtype": "float32", "threads": env["torch_threads"], **size}
    for batch in batches:
        inputs = make_w5_inputs(seed=seed, n_in=n_in, n_out=n_out, duration=duration, batch=batch)
        refs[batch] = (brian2_reference(inputs, samples=min(batch, brian2_samples),
                                        repeats=repeats, warmup=warmup) if use_brian2 else None)
        done = _measure_batch(inputs, configs, refs[batch], config_base, timing, memory=memory,
                              isolate=isolate, ref_cache=ref_cache)
        records.update({(mode, dt, batch): ours for (mode, dt), ours in done.items()})
    summary.update(_targets(records, refs, configs, exact_ok))
    summary_line(WORKLOAD, summary, git=git, env=env)
    return 0 if exact_ok else 1
