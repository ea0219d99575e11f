"""Brian2 reference of benchmark W5 ``sim-continuous``.

Runs INSIDE the Brian2 environment made by ``ctsnn/bench/brian2_env.sh`` (Brian2
2.9 needs numpy < 2): pure numpy + Brian2, no torch and no ctsnn import. It
reads the ``.npz`` written by ``ctsnn.bench.sim_continuous_inputs.save_npz``, builds the W5
network with Brian2's public API and prints ONE JSON line on stdout (everything
else, including compiler output, goes to stderr).

Network: ``NeuronGroup`` with ``dv/dt = -v/tau`` (exact integration),
threshold ``v > v_threshold``, reset ``v = v_reset``, no refractory period;
``SpikeGeneratorGroup`` fed the input spike times as they are; ``Synapses``
with ``on_pre='v += w'`` and per-synapse delays, all-to-all.

Brian2 works on a time grid: it puts an input spike at ``t`` into step
``int((t + 1e-3 dt) / dt)`` and rounds each delay to the nearest multiple of
``dt``. It also refuses two spikes of one generator neuron in one step; such
spikes (rare: an exact Poisson process can put two spikes < dt apart) are given
to extra generator neurons wired with the same weights and delays as their
input, so every input spike is delivered, as ``v += w`` each, exactly as if
Brian2 accepted them (see :func:`split_same_step`).

Brian2's schedule within a step is: state update (decay), threshold, synaptic
delivery (``v += w``), reset. Output spike times are multiples of ``dt``.

Timing: wall time (``time.perf_counter``) of ``Network.run(duration)`` only
(network construction excluded; Brian2's per-run code generation and, for
``cython``, loading of the compiled extensions are included, as for a user).
The network is rebuilt (with fixed object names, so the cython cache is hit)
before every run. The first run is reported separately as ``first_run_s``
(it includes the cython compilation when the cache is cold) and is the first
of the ``--warmup`` runs; the statistics are over the ``--repeats`` runs
after the warm-ups. Brian2 has no batch dimension: samples are simulated one
after the other and the times summed.

Memory: peak RSS increase over the RSS just before ``Network.run``, from
``/proc/self/status`` (VmRSS before, VmHWM after, the high-water mark being
reset through ``/proc/self/clear_refs`` just before the run), for the first
run of this fresh process (``peak_rss_increase_mib``) and for the last timed
run (``peak_rss_increase_warm_mib``). ``zero_duration_run_s`` is the median
wall time of ``run(0 s)``: Brian2's fixed cost per ``run()`` call.

Usage::

    .venv-brian2/bin/python ctsnn/bench/sim_continuous_brian2.py inputs.npz \
        [--dt-ms 0.1] [--target cython|numpy] [--repeats 5] [--warmup 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 (also used by compiler subprocesses) to stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _status_kib(key: str) -> int | None:
    """Read one ``kB`` field of ``/proc/self/status`` (None when unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def split_same_step(
    times: np.ndarray, indices: np.ndarray, n_in: int, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Re-index spikes so that no generator neuron spikes twice in one Brian2 step.

    The step is computed as Brian2's ``SpikeGeneratorGroup`` does. The first
    spike of each (input, step) pair keeps its input's index; the ``k``-th
    (``k >= 1``) goes to an extra generator neuron that stands for the same
    input (same weights and delays). This keeps every spike, exactly, in a
    single generator group and a single ``Synapses`` object (an extra pair of
    objects would add a per-step cost to every step).

    Returns:
        ``(generator_indices, sources)``: the generator neuron of each spike and,
        for each generator neuron, the input it stands for.
    """
    steps = np.asarray((times + 1e-3 * dt) / dt, dtype=np.int64)
    order = np.lexsort((times, steps, indices))
    idx_s, step_s = indices[order], steps[order]
    rank = np.zeros(len(order), dtype=np.int64)
    for k in range(1, len(order)):
        if idx_s[k] == idx_s[k - 1] and step_s[k] == step_s[k - 1]:
            rank[k] = rank[k - 1] + 1
    gen = indices[order].astype(np.int64)
    sources = list(range(n_in))
    extra: dict[tuple[int, int], int] = {}  # (input, rank) -> generator neuron
    for pos in np.nonzero(rank)[0]:
        key = (int(idx_s[pos]), int(rank[pos]))
        if key not in extra:
            extra[key] = len(sources)
            sources.append(key[0])
        gen[pos] = extra[key]
    out = np.empty_like(gen)
    out[order] = gen
    return out, np.asarray(sources, dtype=np.int64)


def build(
    b2: Any,
    times: np.ndarray,
    indices: np.ndarray,
    data: dict[str, np.ndarray],
    dt: float,
) -> tuple[Any, Any]:
    """Build the W5 network for one sample; return ``(network, spike_monitor)``."""
    second = b2.second
    n_in, n_out = int(data["n_in"]), int(data["n_out"])
    weights = data["weights"].astype(np.float64)
    delays = data["delays"].astype(np.float64)
    neurons = b2.NeuronGroup(
        n_out,
        "dv/dt = -v / tau : 1",
        threshold="v > v_threshold",
        reset="v = v_reset",
        method="exact",
        namespace={
            "tau": float(data["tau"]) * second,
            "v_threshold": float(data["v_threshold"]),
            "v_reset": float(data["v_reset"]),
        },
        name="lif",
    )
    gen_indices, sources = split_same_step(times, indices, n_in, dt)
    generator = b2.SpikeGeneratorGroup(len(sources), gen_indices, times * second, name="inputs")
    synapses = b2.Synapses(generator, neurons, "w : 1", on_pre="v += w", name="synapses")
    synapses.connect()
    pre = sources[np.asarray(synapses.i[:])]
    post = np.asarray(synapses.j[:])
    synapses.w = weights[post, pre]
    synapses.delay = delays[post, pre] * second
    monitor = b2.SpikeMonitor(neurons, name="output_spikes")
    return b2.Network(neurons, generator, synapses, monitor), monitor


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz", help="inputs written by ctsnn.bench.sim_continuous_inputs.save_npz")
    parser.add_argument("--dt-ms", type=float, default=0.1, help="time step in ms")
    parser.add_argument("--target", choices=("cython", "numpy"), default="cython")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs, >= 1")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 1:
        parser.error("--repeats and --warmup must be >= 1")

    with stdout_to_stderr():
        result = run(args.npz, args.dt_ms * 1e-3, args.target, args.repeats, args.warmup)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _import_brian2(target: str, dt: float) -> tuple[Any, bool | None]:
    """Import Brian2 (only here: this module is imported without it by the tests), set the
    code generation target and the clock; return ``(brian2, cython cache was warm)``."""
    import brian2 as b2

    b2.prefs.codegen.target = target
    b2.defaultclock.dt = dt * b2.second
    cache_warm = None
    if target == "cython":
        from brian2.codegen.runtime.cython_rt.extension_manager import get_cython_cache_dir

        cache_dir = get_cython_cache_dir()
        cache_warm = bool(cache_dir and os.path.isdir(cache_dir) and os.listdir(cache_dir))
    return b2, cache_warm


def _load(path: str) -> tuple[dict[str, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """The arrays of the ``.npz`` and the ``(times, indices)`` of every sample."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    samples = []
    for b in range(int(data["batch"])):
        mask = data["sample"] == b
        samples.append((data["times"][mask], data["indices"][mask]))
    return data, samples


def _timed_runs(
    b2: Any,
    samples: list[tuple[np.ndarray, np.ndarray]],
    data: dict[str, np.ndarray],
    dt: float,
    n_runs: int,
) -> dict[str, Any]:
    """``n_runs`` runs over all samples, each network rebuilt; per run: wall and CPU seconds
    summed over the samples, output spike count; the peak RSS increase (max over samples) of
    the first and last runs; the spike monitors of the last run."""
    duration = float(data["duration"])
    walls: list[float] = []
    cpus: list[float] = []
    counts: list[int] = []
    rss_mib: dict[int, float] = {}  # run number -> peak RSS increase (max over samples)
    monitors: list[Any] = []
    for r in range(n_runs):
        wall = cpu = 0.0
        monitors = []
        for t_in, i_in in samples:
            net, mon = build(b2, t_in, i_in, data, dt)
            measure = r in (0, n_runs - 1) and _reset_hwm()
            rss0 = _status_kib("VmRSS") if measure else None
            c0, w0 = time.process_time(), time.perf_counter()
            net.run(duration * b2.second)
            w1, c1 = time.perf_counter(), time.process_time()
            hwm = _status_kib("VmHWM") if measure else None
            if rss0 is not None and hwm is not None:
                rss_mib[r] = max(rss_mib.get(r, 0.0), (hwm - rss0) / 1024.0)
            wall += w1 - w0
            cpu += c1 - c0
            monitors.append(mon)
        walls.append(wall)
        cpus.append(cpu)
        counts.append(sum(int(m.num_spikes) for m in monitors))
    return {"walls": walls, "cpus": cpus, "counts": counts, "rss_mib": rss_mib,
            "monitors": monitors}


def _zero_duration_run_s(b2: Any, sample: tuple[np.ndarray, np.ndarray],
                         data: dict[str, np.ndarray], dt: float) -> float:
    """Brian2's fixed cost per ``run()`` (code generation, launching): median of 3 runs of 0 s."""
    zero_walls = []
    for _ in range(3):
        net, _mon = build(b2, sample[0], sample[1], data, dt)
        w0 = time.perf_counter()
        net.run(0 * b2.second)
        zero_walls.append(time.perf_counter() - w0)
    return statistics.median(zero_walls)


def _output_events(monitors: list[Any]) -> tuple[list[float], list[int], list[int]]:
    """Output spike times (rounded to 1e-10 s), neurons and samples of the monitors."""
    out_t: list[float] = []
    out_i: list[int] = []
    out_b: list[int] = []
    for b, mon in enumerate(monitors):
        out_t += np.round(np.asarray(mon.t_[:]), 10).tolist()
        out_i += np.asarray(mon.i[:]).astype(int).tolist()
        out_b += [b] * int(mon.num_spikes)
    return out_t, out_i, out_b


def run(path: str, dt: float, target: str, repeats: int, warmup: int) -> dict[str, Any]:
    """Run the benchmark and return the JSON-able result dict."""
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    b2, cache_warm = _import_brian2(target, dt)
    data, samples = _load(path)
    duration = float(data["duration"])
    n_in = int(data["n_in"])
    n_extra = [len(split_same_step(t, i, n_in, dt)[1]) - n_in for t, i in samples]
    n_dup = sum(
        int(np.count_nonzero(split_same_step(t, i, n_in, dt)[0] >= n_in)) for t, i in samples
    )
    n_runs = warmup + repeats
    runs = _timed_runs(b2, samples, data, dt, n_runs)
    walls, cpus = runs["walls"][warmup:], runs["cpus"][warmup:]
    zero_run = _zero_duration_run_s(b2, samples[0], data, dt)
    out_t, out_i, out_b = _output_events(runs["monitors"])
    med = statistics.median(walls)
    return {
        "simulator": "brian2",
        "brian2_version": b2.__version__,
        "numpy_version": np.__version__,
        "target": target,
        "dt": dt,
        "duration": duration,
        "batch": int(data["batch"]),
        "repeats": repeats,
        "warmup": warmup,
        "median_s": med,
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_per_wall": sum(cpus) / sum(walls),
        "s_per_sim_s_median": med / duration,
        "s_per_sim_s_min": min(walls) / duration,
        "s_per_sim_s_max": max(walls) / duration,
        "first_run_s": runs["walls"][0],
        "cython_cache_was_warm": cache_warm,
        "peak_rss_increase_mib": runs["rss_mib"].get(0),
        "peak_rss_increase_warm_mib": runs["rss_mib"].get(n_runs - 1),
        "n_input_spikes": int(sum(len(t) for t, _ in samples)),
        "n_output_spikes": runs["counts"][-1],
        "n_output_spikes_per_run": runs["counts"],
        "n_same_step_input_duplicates": n_dup,
        "n_extra_generator_neurons": max(n_extra),
        "zero_duration_run_s": zero_run,
        "load_avg_1m_at_start": load_start,
        "grid_note": (
            "Brian2 rounds to the dt grid: an input spike at t is delivered in step "
            "int((t + 1e-3*dt)/dt), delays are rounded to the nearest multiple of dt; "
            "output times are multiples of dt. A second spike of one input in one "
            "step comes from an extra generator neuron with that input's synapses."
        ),
        "output_times": out_t,
        "output_indices": out_i,
        "output_sample": out_b,
    }


if __name__ == "__main__":
    sys.exit(main())
