"""Per-step overhead of the continuous engine on a generic model (issue 10, item 5).

AdEx has no closed-form flow: the continuous engine integrates it with a Runge-Kutta step used
as dense output and locates every threshold crossing by root finding on that step, so a run is
thousands of small tensor operators issued from Python. This measures one such network and
reports what does not depend on the machine's load — the number of torch calls per run —
next to wall and CPU time (one thread: the tensors are small, a second thread only adds
synchronisation), so that before/after comparisons of the stepping functions
(:mod:`solvers.steppers`, :mod:`solvers.roots`, :mod:`ctsnn.engine.stepping`) can be read on a
shared machine.

Network: ``n_in`` Poisson inputs at 30 Hz -> ``n`` AdEx (the regular-spiking defaults of
:class:`ctsnn.AdEx`, mV and nA), weights ``U[0, 6)`` mV jumps, delays ``U[0, 10 ms)``, batch
``batch``, ``duration`` s at dt 1 ms, method ``rk4`` (the default without a closed form).

Sides, one after the other in one process: ``eager`` (the reference engine, kernels off),
``compiled_steps`` (:func:`ctsnn.compiled.use_compiled_steps`, kernels off) and
``generic_loop`` (the compiled loop of :mod:`ctsnn.engine.compiled.generic_loop`, kernels on);
each reports its first call (compilation) apart and its spike agreement with ``eager``.

Run: ``OMP_WAIT_POLICY=PASSIVE python -m ctsnn.bench.adex_overhead [--quick]`` (one JSON line).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

import ctsnn
from ctsnn.compiled import use_compiled_steps, use_kernels

from .harness import bench_env, git_state, json_line

__all__ = ["build", "main", "torch_call_count"]

WORKLOAD = "AdEx generic-model overhead"


def build(*, seed: int = 0, batch: int = 8, n_in: int = 50, n: int = 100,
          duration: float = 0.1, dt: float = 1e-3, float64: bool = False
          ) -> Callable[[], ctsnn.SimulationResult]:
    """The AdEx network and its input (float32, or float64 with ``float64``); returns the
    call that simulates it (no autograd)."""
    g = torch.Generator().manual_seed(seed)
    steps = max(1, round(duration / dt))
    times, units, samples = [], [], []
    for b in range(batch):
        k = int(torch.poisson(torch.tensor(n_in * 30.0 * duration), generator=g))
        times.append(torch.rand(k, generator=g) * duration)
        units.append(torch.randint(0, n_in, (k,), generator=g))
        samples.append(torch.full((k,), b))
    spikes = ctsnn.Spikes.from_events(torch.cat(times), torch.cat(units), torch.cat(samples),
                                      dt=dt, n_steps=steps, batch_size=batch, n_units=n_in)
    layer = ctsnn.Layer(ctsnn.AdEx(n), torch.rand(n, n_in, generator=g) * 6.0,
                        delay=torch.rand(n, n_in, generator=g) * 0.01, time="continuous")
    if float64:
        layer, spikes = layer.double(), spikes.to(dtype=torch.float64)

    def call() -> ctsnn.SimulationResult:
        with torch.no_grad():  # no autograd: the compiled generic loop applies when enabled
            return ctsnn.simulate(layer, spikes)

    return call


class _Count(TorchFunctionMode):
    """Counts the torch functions, tensor methods and operators called from Python."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.n += 1
        return func(*args, **(kwargs or {}))


def torch_call_count(call: Callable[[], object]) -> int:
    """Number of torch functions, tensor methods and operators one ``call()`` issues from Python
    (a ``TorchFunctionMode`` counter: no per-event record, so memory stays flat)."""
    with _Count() as mode:
        call()
    return mode.n


def _timed(call: Callable[[], ctsnn.SimulationResult], repeats: int) -> dict[str, Any]:
    c0, w0 = time.process_time(), time.perf_counter()
    res = call()  # the first call pays torch.compile's compilation when compiled
    first = {"first_call_wall_s": time.perf_counter() - w0,
             "first_call_cpu_s": time.process_time() - c0}
    walls, cpus = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        call()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"min_wall_s": min(walls), "min_cpu_s": min(cpus), "walls_s": walls, "cpus_s": cpus,
            "torch_calls": torch_call_count(call), "n_spikes": len(res.spikes), **first,
            "result": res}


_SIDES = {  # name -> (compiled kernels, compiled steps)
    "eager": (False, False),
    "compiled_steps": (False, True),
    "generic_loop": (True, False),
}


def _agreement(ref: ctsnn.SimulationResult, other: ctsnn.SimulationResult) -> dict[str, Any]:
    same = ref.spikes.units.shape == other.spikes.units.shape and bool(
        (ref.spikes.units == other.spikes.units).all()) and bool(
        (ref.spikes.batch == other.spikes.batch).all())
    return {"same_spiking_units": same,
            "max_spike_time_diff_s": float((ref.spikes.times - other.spikes.times).abs().max())
            if same and len(ref.spikes) else None}


def main(quick: bool = False, reference: bool = True, *, repeats: int | None = None,
         **sizes: Any) -> int:
    """Time the AdEx network eagerly, with :func:`ctsnn.compiled.use_compiled_steps` and with
    the compiled generic loop (:mod:`ctsnn.engine.compiled.generic_loop`) in one run
    (``quick``: batch 2, 20 ms) and print one JSON line; each side's first call (which pays
    the compilation) is reported apart.

    ``reference`` is accepted for the common signature (there is no peer). ``sizes`` go to
    :func:`build`. Returns 0.
    """
    del reference
    env = bench_env(1)
    if quick:
        sizes = {"batch": 2, "duration": 0.02, **sizes}
    call = build(**sizes)
    repeats = repeats or (2 if quick else 3)
    runs = {}
    for name, (kernels, steps) in _SIDES.items():
        with use_kernels(kernels), use_compiled_steps(steps):
            runs[name] = _timed(call, repeats)
    results = {name: run.pop("result") for name, run in runs.items()}
    eager_cpu = runs["eager"]["min_cpu_s"]
    ours = {**runs,
            "cpu_ratio_compiled_over_eager": runs["compiled_steps"]["min_cpu_s"] / eager_cpu,
            "cpu_ratio_loop_over_eager": runs["generic_loop"]["min_cpu_s"] / eager_cpu,
            "compiled_steps_vs_eager": _agreement(results["eager"], results["compiled_steps"]),
            "generic_loop_vs_eager": _agreement(results["eager"], results["generic_loop"]),
            "load_avg_1m": env["load_avg_1m"], "git": git_state()}
    json_line(WORKLOAD, {"threads": 1, "method": "rk4", **sizes}, ours, None)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--float64", action="store_true", help="float64 network and input")
    cli = p.parse_args()
    sys.exit(main(quick=cli.quick, float64=cli.float64))
