"""Benchmark workload W7 ``event-small``: exact continuous time against eventax.

W7 (the project's benchmark doc): 20 Poisson inputs at 50 Hz -> 100 CubaLIF (tau_mem 20 ms,
tau_syn 5 ms, threshold 1, reset 0), dense input weights ``U[0, 0.8]``, per-synapse delays
``U[0, 10 ms]``, 100 ms simulated, float32; the training variant adds 3 spiking CubaLIF outputs
(weights ``U[0.01, 0.05]``, delays ``U[0, 10 ms]``) with a cross-entropy on their first-spike
times (logits ``-t_first / 10 ms``, a silent output counts as 100 ms), gradients for weights and
delays. Target: >= 100x faster than eventax's best strategy (vmap or loop) at batch 32, with
spike times within 1e-6 s of an exact reference in float32 (1e-9 s in float64).

What :func:`main` measures (``ctsnn bench w7 [--quick] [--no-reference]``):

* **ours** — continuous time, closed-form flow, grid step ``dt`` (25 ms by default; the spike
  times do not depend on it), float32: the hidden layer's forward (:func:`ctsnn.simulate` without
  autograd) at batch 1, 4 and 32 and the training step (forward, loss, backward with
  ``gradient="adjoint"``, i.e. EventProp; no optimiser update) at batch 4. Time: median of the
  harness protocol; ``first_call_s`` is the first call of each configuration on freshly built
  layers (the first configuration also pays imports and kernel compilation).
* **reference** — eventax 0.1.0 (its defaults: Euler, step 1 ms; per-synapse delays) in its
  own environment (:mod:`ctsnn.bench.eventax_side`), on the same input spikes and parameters
  (one ``.npz`` both sides read), both as ``jax.jit(jax.vmap(...))`` over the batch and as a
  jitted per-sample function in a Python loop; ``first_call_s`` includes JAX's compilation.
  ``ratio.median_s`` is ours over eventax's best strategy; ``ours.speedup_vs_*`` the inverse.
* **accuracy** — hidden spike times of both sides against an exact reference: ctsnn's
  continuous engine in float64 at dt 1 ms with ``xtol=0`` (root refined to the last bit),
  matched per (sample, neuron) in time order (:func:`~ctsnn.bench.sim_continuous.compare_spikes`);
  plus ctsnn float64 at ``dt`` against that reference (the 1e-9 s target).

Output: one JSON line per configuration (:func:`~ctsnn.bench.harness.json_line`) and a summary
line. ``--quick``: batches 1 and 4, 3 timed calls after 1 warm-up on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import ctsnn

from .event_small_inputs import TAU_CE, events_of, make_w7_inputs
from .eventax_side import NOT_FOUND, STRATEGIES, eventax_python, run_eventax
from .harness import (
    bench_env,
    git_state,
    json_line,
    protocol_counts,
    stderr_log,
    summary_line,
    time_summary,
    timed,
)
from .sim_continuous import compare_spikes

__all__ = ["DT", "REF_DT", "add_speedups", "eventax_events", "forward_call", "main",
           "make_layers", "make_spikes", "reference_events", "reference_record", "run_forward",
           "spike_accuracy", "train_call"]

WORKLOAD = "W7 event-small"
#: Our grid step (s): continuous time, the spike times do not depend on it.
DT = 0.025
#: Grid step of the exact float64 reference (s); its roots are refined with ``xtol=0``.
REF_DT = 1e-3
#: Target factor over eventax's best strategy at batch 32.
TARGET_SPEEDUP = 100.0

Events = tuple[np.ndarray, np.ndarray, np.ndarray]  # (times, units, batch)

_log = stderr_log("w7")


def make_spikes(inputs: dict[str, Any], dt: float, dtype: torch.dtype) -> ctsnn.Spikes:
    """All samples' input spikes as :class:`~ctsnn.Spikes` on a ``dt`` grid (exact times)."""
    t, ch, b = events_of(inputs)
    duration = float(inputs["duration"])
    return ctsnn.Spikes.from_events(
        torch.as_tensor(t, dtype=dtype), torch.as_tensor(ch), torch.as_tensor(b), dt=dt,
        n_steps=max(1, round(duration / dt)), batch_size=int(inputs["batch"]),
        n_units=int(inputs["n_in"]))


def make_layers(inputs: dict[str, Any], dtype: torch.dtype, *, train: bool) -> list[ctsnn.Layer]:
    """The W7 network in continuous time: the hidden layer, plus the outputs when ``train``
    (both ``gradient="adjoint"``; weights and delays learnable)."""

    def layer(n: int, w: np.ndarray, d: np.ndarray) -> ctsnn.Layer:
        model = ctsnn.CubaLIF(n, tau_mem=float(inputs["tau_mem"]),
                              tau_syn=float(inputs["tau_syn"]),
                              v_threshold=float(inputs["v_threshold"]),
                              v_reset=float(inputs["v_reset"]))
        return ctsnn.Layer(model, torch.as_tensor(w), delay=torch.as_tensor(d),
                           learn_delay=train, time="continuous",
                           gradient="adjoint").to(dtype)

    layers = [layer(int(inputs["n_hidden"]), inputs["w_in"], inputs["d_in"])]
    if train:
        layers.append(layer(int(inputs["n_out"]), inputs["w_out"], inputs["d_out"]))
    return layers


def forward_call(layers: list[ctsnn.Layer], spikes: ctsnn.Spikes, *,
                 xtol: float | None = None) -> Callable[[], ctsnn.Spikes]:
    """The timed forward: the hidden layer's spikes, without autograd."""

    def call() -> ctsnn.Spikes:
        with torch.no_grad():
            return ctsnn.simulate(layers[0], spikes, xtol=xtol).spikes

    return call


def train_call(layers: list[ctsnn.Layer], spikes: ctsnn.Spikes, labels: torch.Tensor,
               tau_ce: float = TAU_CE) -> Callable[[], float]:
    """The timed training step: forward, first-spike cross-entropy, backward (no update).
    Returns the loss."""
    params = [p for layer in layers for p in layer.parameters()]

    def call() -> float:
        for p in params:
            p.grad = None
        first = ctsnn.simulate(layers, spikes, readout="first_spike").output  # [B, n_out]
        loss = F.cross_entropy(-first / tau_ce, labels)
        loss.backward()
        return float(loss.detach())

    return call


def _events(spikes: ctsnn.Spikes) -> Events:
    return (spikes.times.detach().double().cpu().numpy(),
            spikes.units.cpu().numpy().astype(np.int64),
            spikes.batch.cpu().numpy().astype(np.int64))


def run_forward(inputs: dict[str, Any], dtype: torch.dtype, dt: float,
                xtol: float | None = None) -> Events:
    """Our hidden-layer spikes on ``inputs`` (one untimed run)."""
    layers = make_layers(inputs, dtype, train=False)
    return _events(forward_call(layers, make_spikes(inputs, dt, dtype), xtol=xtol)())


def reference_events(inputs: dict[str, Any]) -> Events:
    """The exact reference: ctsnn float64, dt :data:`REF_DT`, ``xtol=0``."""
    return run_forward(inputs, torch.float64, REF_DT, xtol=0.0)


def eventax_events(record: dict[str, Any]) -> Events:
    """The hidden spikes of an eventax forward record as ``(times, units, batch)``."""
    res = record["result"]
    return (np.asarray(res["times"], dtype=np.float64), np.asarray(res["units"], np.int64),
            np.asarray(res["batch"], np.int64))


def spike_accuracy(events: Events, ref: Events, n_units: int) -> dict[str, Any]:
    """Counts and median/max spike-time errors (s) of ``events`` against ``ref``."""
    cmp = compare_spikes(events, ref, n_units)
    keep = ("n_ours", "n_ref", "n_units_count_mismatch", "median_abs_dt_s", "max_abs_dt_s")
    return {k: cmp[k] for k in keep}


def _time_ours(call: Callable[[], object], repeats: int, warmup: int,
               budget_s: float | None) -> dict[str, Any]:
    """Timing fields of ``call`` (freshly built) with its first call's time apart."""
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    out = time_summary(timed(call, repeats=repeats, warmup=warmup, budget_s=budget_s))
    out["first_call_s"] = first
    return out


def _peer(inputs: dict[str, Any], task: str, use: bool, repeats: int,
          budget_s: float) -> dict[str, dict[str, Any]]:
    """eventax's records per strategy (empty when not run). Its first call compiles and is the
    warm-up (reported as ``first_call_s``); a call takes minutes at batch 32, so no more."""
    if not use:
        return {}
    out = {}
    for strategy in STRATEGIES:
        _log(f"eventax {task} batch {int(inputs['batch'])} {strategy}")
        try:
            rec = run_eventax(inputs, task=task, strategy=strategy, repeats=repeats,
                              warmup=0, budget_s=budget_s)
        except (RuntimeError, OSError) as exc:
            _log(f"eventax failed: {exc}")
            rec = {"error": str(exc)}
        if rec is not None:
            out[strategy] = rec
    return out


def reference_record(peer: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The ``reference`` object of a JSON line from eventax's records per strategy: the best
    strategy's median as ``median_s``, each strategy's timings; None when eventax did not run."""
    ok = {s: r for s, r in peer.items() if "median_s" in r}
    if not ok:
        return None if not peer else {"error": {s: r.get("error") for s, r in peer.items()}}
    best = min(ok, key=lambda s: ok[s]["median_s"])
    ref: dict[str, Any] = {"median_s": ok[best]["median_s"], "best_strategy": best}
    for s, r in ok.items():
        ref[s] = {k: r[k] for k in ("median_s", "min_s", "max_s", "first_call_s", "cpu_per_wall",
                                    "protocol")}
    return ref


def add_speedups(ours: dict[str, Any], ref: dict[str, Any] | None) -> None:
    """Add ``speedup_vs_{vmap,loop,best}`` (eventax's time over ours) to ``ours``."""
    if not ref or "median_s" not in ref:
        return
    for s in STRATEGIES:
        if s in ref:
            ours[f"speedup_vs_{s}"] = ref[s]["median_s"] / ours["median_s"]
    ours["speedup_vs_best"] = ref["median_s"] / ours["median_s"]


def main(quick: bool = False, reference: bool = True, *, seed: int = 0,
         batches: Sequence[int] | None = None, train_batch: int = 4, dt: float = DT,
         sizes: dict[str, int] | None = None, repeats: int | None = None,
         warmup: int | None = None, budget_s: float | None = 300.0,
         peer_budget_s: float = 150.0) -> int:
    """Run benchmark W7 and print its JSON lines on stdout (progress on stderr).

    Args:
        quick: batches 1 and 4, 3 timed calls after 1 warm-up (both sides).
        reference: run eventax (when ``.venv-eventax`` exists; else a note says it was
            skipped).
        seed: input seed. batches: forward batch sizes (default 1, 4, 32; empty: none).
        train_batch: batch of the training step (0: skip it).
        dt: our grid step (s).
        sizes: ``n_in``, ``n_hidden``, ``n_out``, ``rate``, ``duration`` overrides of
            :func:`~ctsnn.bench.event_small_inputs.make_w7_inputs` (small ones for tests).
        repeats, warmup: timed and untimed calls (protocol 5 and 2; quick 3 and 1); eventax
            makes ``repeats`` timed calls after its first (compiling) call, no other warm-up.
        budget_s, peer_budget_s: wall-time budgets of the timed calls of one configuration
            (ours, eventax's) before fewer calls are made (the line says ``reduced``).

    Returns:
        0, or 1 when our float64 spike times miss the exact reference by more than 1e-9 s or
        their counts differ (the float32 target, 1e-6 s, is reported in the summary).
    """
    batches = tuple(batches) if batches is not None else ((1, 4) if quick else (1, 4, 32))
    repeats, warmup = protocol_counts(quick, repeats, warmup)
    sizes = dict(sizes or {})
    env = bench_env(2)
    git = git_state()
    use_peer = reference and eventax_python() is not None
    if reference and not use_peer:
        _log(NOT_FOUND)
    base = {"dt": dt, "dtype": "float32", "seed": seed, "threads": env["torch_threads"], **sizes}
    summary: dict[str, Any] = {"target_speedup": TARGET_SPEEDUP, "eventax_run": use_peer}
    ok, f32_ok = True, True

    for batch in batches:
        inputs = make_w7_inputs(seed=seed, batch=batch, **sizes)
        n_hid = int(inputs["n_hidden"])
        ref_ev = reference_events(inputs)
        ours = _time_ours(forward_call(make_layers(inputs, torch.float32, train=False),
                                       make_spikes(inputs, dt, torch.float32)),
                          repeats, warmup, budget_s)
        acc32 = spike_accuracy(run_forward(inputs, torch.float32, dt), ref_ev, n_hid)
        acc64 = spike_accuracy(run_forward(inputs, torch.float64, dt), ref_ev, n_hid)
        ours["accuracy_float32"], ours["accuracy_float64"] = acc32, acc64
        ok &= _exact_enough(acc64, 1e-9)
        f32_ok &= _exact_enough(acc32, 1e-6)
        peer = _peer(inputs, "forward", use_peer, repeats, peer_budget_s)
        ref = reference_record(peer)
        if ref is not None and "median_s" in ref:
            for s in STRATEGIES:
                if s in ref:
                    ref[s]["accuracy"] = spike_accuracy(eventax_events(peer[s]), ref_ev, n_hid)
                    ref[s]["truncated"] = peer[s]["result"]["truncated"]
        add_speedups(ours, ref)
        json_line(WORKLOAD, {**base, "task": "forward", "batch": batch}, ours, ref)
        summary[f"forward_b{batch}_speedup_vs_best"] = ours.get("speedup_vs_best")
        summary[f"forward_b{batch}_float32_max_err_s"] = acc32["max_abs_dt_s"]
        if ref is not None and "vmap" in ref:
            summary[f"forward_b{batch}_eventax_max_err_s"] = ref["vmap"]["accuracy"][
                "max_abs_dt_s"]

    if train_batch:
        inputs = make_w7_inputs(seed=seed, batch=train_batch, **sizes)
        labels = torch.as_tensor(inputs["labels"])
        losses: list[float] = []

        step = train_call(make_layers(inputs, torch.float32, train=True),
                          make_spikes(inputs, dt, torch.float32), labels, float(inputs["tau_ce"]))
        ours = _time_ours(lambda: losses.append(step()), repeats, warmup, budget_s)
        ours["loss"] = losses[-1]
        peer = _peer(inputs, "train", use_peer, repeats, peer_budget_s)
        ref = reference_record(peer)
        if ref is not None and "median_s" in ref:
            for s in STRATEGIES:
                if s in ref:
                    ref[s]["loss"] = peer[s]["result"]["loss"]
        add_speedups(ours, ref)
        json_line(WORKLOAD, {**base, "task": "train", "batch": train_batch}, ours, ref)
        summary[f"train_b{train_batch}_speedup_vs_best"] = ours.get("speedup_vs_best")

    b_max = max(batches, default=None)
    met = summary.get(f"forward_b{b_max}_speedup_vs_best")
    summary["forward_target_met"] = None if met is None else met >= TARGET_SPEEDUP
    summary["float64_within_1e-9_s"] = ok
    summary["float32_within_1e-6_s"] = f32_ok
    summary_line(WORKLOAD, summary, git=git, env=env)
    return 0 if ok else 1


def _exact_enough(acc: dict[str, Any], tol: float) -> bool:
    err = acc["max_abs_dt_s"]
    return (acc["n_units_count_mismatch"] == 0 and acc["n_ours"] == acc["n_ref"]
            and (acc["n_ref"] == 0 or err <= tol))
