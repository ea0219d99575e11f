"""Measurement harness shared by the benchmark workloads.

Protocol (the project's benchmark doc): CPU, float32, ``torch.set_num_threads(2)``
and ``OMP_WAIT_POLICY=PASSIVE`` in the environment (see :func:`bench_env`);
time is the median of 5 calls after 2 warm-ups, with min, max and CPU time per
wall time (:func:`time_call`); memory is the peak RSS increase over the RSS just
before the first step, in a fresh process per configuration
(:func:`peak_rss_increase`); each workload/configuration is reported as one
JSON line with ``ours``, ``reference`` and ``ratio`` objects (:func:`json_line`), the last
one of a workload being its summary (:func:`summary_line`).

Also the pieces every workload's ``main`` shares: the default protocol counts
(:func:`protocol_counts`), timing with a wall-time budget (:func:`timed`,
:func:`time_summary`), a memory measurement that reports failure as None
(:func:`peak_rss_or_none`), a progress logger (:func:`stderr_log`), the checkout's state
(:func:`git_state`) and an operator profile (:func:`profile_top`); :class:`Protocol` bundles
the settings of one run.
"""

from __future__ import annotations

import gc
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Protocol",
    "bench_env",
    "call_in_child",
    "git_state",
    "json_line",
    "mem_available_mib",
    "peak_rss_increase",
    "peak_rss_or_none",
    "rss_increases",
    "rss_or_none",
    "profile_top",
    "protocol_counts",
    "repo_root",
    "stderr_log",
    "summary_line",
    "time_call",
    "time_summary",
    "timed",
]

StepFn = Callable[[], object]


def time_call(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    Wall time is :func:`time.perf_counter`; CPU time is :func:`time.process_time`
    (all threads of this process, so ``cpu_per_wall`` near 2 means both cores
    were busy, near 1 means one).

    Returns:
        ``median_s``, ``min_s``, ``max_s`` (wall seconds per call), ``cpu_per_wall``
        (total CPU over total wall time of the timed calls), ``times_s`` (each
        timed call), ``repeats`` and ``warmup``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    walls: list[float] = []
    cpu_total = 0.0
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        w1, c1 = time.perf_counter(), time.process_time()
        walls.append(w1 - w0)
        cpu_total += c1 - c0
    wall_total = sum(walls)
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_per_wall": cpu_total / wall_total if wall_total > 0 else math.nan,
        "times_s": walls,
        "repeats": repeats,
        "warmup": warmup,
    }


def protocol_counts(quick: bool, repeats: int | None = None, warmup: int | None = None, *,
                    quick_counts: tuple[int, int] = (3, 1)) -> tuple[int, int]:
    """``(repeats, warmup)``: the given ones, else the protocol's 5 and 2 (``quick``:
    ``quick_counts``)."""
    repeats = repeats or (quick_counts[0] if quick else 5)
    warmup = warmup if warmup is not None else (quick_counts[1] if quick else 2)
    return repeats, warmup


def timed(
    fn: Callable[[], object], *, repeats: int, warmup: int, budget_s: float | None
) -> dict[str, Any]:
    """:func:`time_call`, with fewer calls when one call is very slow.

    The first warm-up call is timed on its own; if ``repeats`` calls of that length would exceed
    ``budget_s`` (seconds), only the calls that fit are made (at least 1, after that one
    warm-up) and the result says so (``reduced``). Keys: those of ``time_call`` plus ``reduced``
    and ``first_call_s``.
    """
    if warmup < 1 or budget_s is None:
        stats = time_call(fn, repeats=repeats, warmup=warmup)
        stats["reduced"] = False
        return stats
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    fit = max(1, int(budget_s // max(first, 1e-9)))
    if fit >= repeats:
        stats = time_call(fn, repeats=repeats, warmup=warmup - 1)
        stats.update(warmup=warmup, reduced=False)
    else:
        stats = time_call(fn, repeats=fit, warmup=0)
        stats.update(warmup=1, reduced=True)
    stats["first_call_s"] = first
    return stats


def time_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """The timing fields of a JSON line: ``median_s``, ``min_s``, ``max_s``, ``cpu_per_wall``
    and ``protocol`` (repeats, warm-ups, reduced) from a :func:`timed` result."""
    out = {k: stats[k] for k in ("median_s", "min_s", "max_s", "cpu_per_wall")}
    out["protocol"] = {"repeats": stats["repeats"], "warmup": stats["warmup"],
                       "reduced": stats.get("reduced", False)}
    return out


def profile_top(fn: Callable[[], object], k: int = 6) -> list[dict[str, Any]]:
    """The ``k`` operators with the largest self CPU time in one profiled call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count}
            for e in events[:k]]


# --------------------------------------------------------------------------- memory


def _status_kib(key: str) -> int | None:
    """One ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/self/status``; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_kib() -> int:
    """``ru_maxrss`` in KiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r


def _rss_child(setup: Callable[[], StepFn], steps: int, conn: Any) -> None:
    """Body of the fresh process of :func:`peak_rss_increase`; sends a dict or an error."""
    try:
        bench_env(warn=False)
        start = _status_kib("VmRSS")
        step = setup()
        gc.collect()
        exact = _reset_hwm()
        before = _status_kib("VmRSS")
        hwm_before = _status_kib("VmHWM")
        max_before = _maxrss_kib()
        if before is None:  # no /proc: ru_maxrss is all there is (upper bound)
            before, hwm_before = max_before, max_before
        for _ in range(steps):
            step()
        hwm = _status_kib("VmHWM")
        if hwm is None:
            hwm = _maxrss_kib()
        # Without the reset, VmHWM may still hold a peak from before the first
        # step; the value is then exact only if the steps raised the mark.
        exact = exact or (hwm_before is not None and hwm > hwm_before)
        conn.send({"ok": True, "mib": (hwm - before) / 1024.0, "exact": exact,
                   "build_mib": None if start is None else (before - start) / 1024.0})
    except BaseException:  # report anything to the parent rather than die silently
        conn.send({"ok": False, "error": traceback.format_exc()})
    finally:
        conn.close()


def call_in_child(target: Callable[..., None], args: tuple, *, timeout: float | None,
                  what: str, timeout_error: type[Exception] = RuntimeError) -> dict[str, Any]:
    """Run ``target(*args, conn)`` in a fresh ``spawn`` process and return the one message it
    sends on ``conn`` (a dict with ``"ok"``); a child that dies without sending one gives
    ``{"ok": False, "error": ...}`` with its exit code. Raises ``timeout_error`` after
    ``timeout`` seconds; the child is always reaped (killed if still alive)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise timeout_error(f"{what} did not finish within {timeout} s")
        msg = parent.recv()
    except EOFError:
        proc.join(5.0)
        msg = {"ok": False, "error": f"child process died (exit code {proc.exitcode})"}
    finally:
        parent.close()
        proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return msg


def rss_increases(
    setup: Callable[[], StepFn], *, steps: int = 1, timeout: float | None = None
) -> dict[str, float | None]:
    """Peak RSS increase of running a step function, and the RSS its setup added, in a fresh
    process (MiB).

    A ``spawn`` child process calls :func:`bench_env`, then ``step = setup()``
    (build everything: model, inputs), then reads VmRSS (the current resident
    set) and calls ``step()`` ``steps`` times; ``step_mib`` is the peak RSS
    during those calls minus that VmRSS (the protocol's figure), ``build_mib`` that VmRSS
    minus the one before ``setup()`` (what building took: for ctsnn it includes numba's
    runtime start, see :func:`ctsnn.compiled.prepare_kernel_runtime`; None without
    ``/proc``). The peak is VmHWM from
    ``/proc/self/status`` — like ``ru_maxrss`` a high-water mark over the
    process's whole life, so it is first reset to the current RSS by writing
    ``5`` to ``/proc/self/clear_refs``. Where that reset is impossible and the
    steps did not raise the mark, the value is only an upper bound and a warning
    is printed on stderr. Without ``/proc`` (not Linux) ``ru_maxrss`` is used
    for both readings (again an upper bound).

    Args:
        setup: Picklable zero-argument callable (a top-level function or a
            ``functools.partial`` of one) returning the zero-argument step
            function. The calling script must guard its entry point with
            ``if __name__ == "__main__":``, as ``spawn`` re-imports it.
        steps: Number of calls of the step function.
        timeout: Seconds to wait for the child, None for no limit.

    Returns:
        ``{"step_mib": ..., "build_mib": ...}`` (the step's may be slightly negative if memory
        was freed).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    result = call_in_child(_rss_child, (setup, steps), timeout=timeout,
                           what="memory measurement", timeout_error=TimeoutError)
    if not result["ok"]:
        raise RuntimeError(f"memory measurement failed in the child process:\n{result['error']}")
    if not result["exact"]:
        print(
            "warning: could not reset the RSS high-water mark; peak RSS increase is an upper bound",
            file=sys.stderr,
        )
    return {"step_mib": float(result["mib"]), "build_mib": result["build_mib"]}


def peak_rss_increase(
    setup: Callable[[], StepFn], *, steps: int = 1, timeout: float | None = None
) -> float:
    """The protocol's memory figure: ``step_mib`` of :func:`rss_increases` (MiB)."""
    return rss_increases(setup, steps=steps, timeout=timeout)["step_mib"]


def peak_rss_or_none(setup: Callable[[], StepFn], *, timeout: float | None,
                     log: Callable[[str], None]) -> float | None:
    """:func:`peak_rss_increase` of one step (MiB), or None, logged, when the measurement
    fails or times out (a configuration of a workload is then reported without memory)."""
    result = rss_or_none(setup, timeout=timeout, log=log)
    return None if result is None else result["step_mib"]


def rss_or_none(setup: Callable[[], StepFn], *, timeout: float | None,
                log: Callable[[str], None]) -> dict[str, float | None] | None:
    """:func:`rss_increases` of one step, or None, logged, when the measurement fails or
    times out."""
    try:
        return rss_increases(setup, timeout=timeout)
    except (RuntimeError, TimeoutError) as exc:
        log(f"memory measurement failed: {exc}")
        return None


def mem_available_mib() -> float | None:
    """``MemAvailable`` of ``/proc/meminfo`` in MiB (None off Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- environment


def bench_env(threads: int = 2, *, warn: bool = True) -> dict[str, Any]:
    """Apply the benchmark protocol's settings to this process and describe them.

    Sets ``torch.set_num_threads(threads)``. ``OMP_WAIT_POLICY`` is read by the
    OpenMP runtime when it starts, so it cannot be fixed from here: if it is not
    ``PASSIVE`` a warning goes to stderr (set it in the shell that starts Python).

    Returns:
        A JSON-able description: versions, thread count, ``OMP_WAIT_POLICY``,
        cores and the 1-minute load average.
    """
    import torch

    torch.set_num_threads(threads)
    policy = os.environ.get("OMP_WAIT_POLICY")
    if warn and (policy or "").upper() != "PASSIVE":
        print(
            f"warning: OMP_WAIT_POLICY is {policy!r}, the benchmark protocol wants "
            "PASSIVE (export OMP_WAIT_POLICY=PASSIVE before starting Python)",
            file=sys.stderr,
        )
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": policy,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        # Other work on the machine skews timings: cpu_per_wall and this tell.
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def repo_root() -> Path:
    """The repository root (this file is ``<root>/ctsnn/bench/harness.py``)."""
    return Path(__file__).resolve().parents[2]


def git_state() -> dict[str, Any]:
    """Short commit hash of the checkout and its uncommitted files under ``ctsnn/`` and
    ``solvers/`` (a benchmark of a dirty work tree says so)."""
    root = repo_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ctsnn", "solvers"],
                               cwd=root, capture_output=True, text=True,
                               check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted": None}
    return {"commit": commit, "uncommitted": sorted({ln[3:] for ln in dirty if ln.strip()})}


def stderr_log(tag: str) -> Callable[[str], None]:
    """A progress logger: ``log(msg)`` prints ``[tag] msg`` on stderr (stdout is for JSON)."""

    def log(msg: str) -> None:
        print(f"[{tag}] {msg}", file=sys.stderr, flush=True)

    return log


# --------------------------------------------------------------------------- reporting


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _jsonable(x: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def json_line(
    workload: str,
    config: Mapping[str, Any],
    ours: Mapping[str, Any],
    reference: Mapping[str, Any] | None,
) -> str:
    """Print and return one JSON line for a workload/configuration.

    ``ratio[k] = ours[k] / reference[k]`` for every key whose two values are
    numbers (not bools), finite, with a non-zero reference; other keys are
    left out. ``reference`` may be None (reference not available): it is then
    written as ``null`` and ``ratio`` is empty. Non-finite floats become ``null``.
    """
    ratio: dict[str, float] = {}
    for key, a in ours.items():
        b = (reference or {}).get(key)
        if _is_number(a) and _is_number(b) and b != 0 and math.isfinite(a) and math.isfinite(b):
            ratio[key] = a / b
    record = {
        "workload": workload,
        "config": dict(config),
        "ours": dict(ours),
        "reference": None if reference is None else dict(reference),
        "ratio": ratio,
    }
    line = json.dumps(_jsonable(record), allow_nan=False)
    print(line, flush=True)
    return line


def summary_line(workload: str, summary: Mapping[str, Any], *, git: Mapping[str, Any],
                 env: Mapping[str, Any]) -> str:
    """Print and return the last JSON line of a workload: its ``summary`` (targets) as
    ``ours``, with the checkout's state and the environment in ``config``."""
    config = {"summary": True, "git": dict(git), "env": dict(env),
              "omp_wait_policy_env": os.environ.get("OMP_WAIT_POLICY")}
    return json_line(workload, config, summary, None)


@dataclass(frozen=True)
class Protocol:
    """How one run of a workload measures: the settings its measurements share.

    Attributes:
        repeats, warmup: Timed and untimed calls per configuration.
        budget_s: Seconds the timed calls of one configuration may take before fewer are made
            (:func:`timed`); None: always the full protocol.
        memory: Whether peak RSS increases are measured (a fresh process each).
        log: Progress logger (:func:`stderr_log`).
    """

    repeats: int
    warmup: int
    budget_s: float | None
    memory: bool
    log: Callable[[str], None]

    def time(self, step: Callable[[], object]) -> dict[str, Any]:
        """:func:`time_summary` of :func:`timed` ``step`` under this protocol."""
        return time_summary(timed(step, repeats=self.repeats, warmup=self.warmup,
                                  budget_s=self.budget_s))

    def peak_rss(self, setup: Callable[[], StepFn], *, timeout: float | None) -> float | None:
        """:func:`peak_rss_or_none` of one step, or None when memory is not measured."""
        return peak_rss_or_none(setup, timeout=timeout, log=self.log) if self.memory else None

    def rss(self, setup: Callable[[], StepFn], *,
            timeout: float | None) -> dict[str, float | None] | None:
        """:func:`rss_or_none` of one step (the step's peak and the build's RSS), or None when
        memory is not measured."""
        return rss_or_none(setup, timeout=timeout, log=self.log) if self.memory else None
