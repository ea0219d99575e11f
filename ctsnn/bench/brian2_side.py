"""The Brian2 side of W5 ``sim-continuous``: run Brian2 in its own environment, read its JSON.

Brian2 2.9 needs numpy < 2, so it lives in the venv ``<repo>/.venv-brian2`` made
by ``ctsnn/bench/brian2_env.sh`` (or the interpreter named by the environment
variable ``CTSNN_BRIAN2_PYTHON``). :func:`run_brian2` writes the inputs to a
temporary ``.npz``, runs ``ctsnn/bench/sim_continuous_brian2.py`` there (by path: that
script imports neither torch nor ctsnn) in a subprocess with
``OMP_WAIT_POLICY=PASSIVE`` and returns the parsed JSON line;
:func:`brian2_reference` turns the runs of both code generation targets into the
``reference`` object of W5's JSON lines.

Command line (prints the result without the spike lists)::

    OMP_WAIT_POLICY=PASSIVE python -m ctsnn.bench.brian2_side --target cython --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .harness import repo_root, stderr_log
from .sim_continuous_inputs import make_w5_inputs, save_npz

__all__ = ["BRIAN2_DT", "SCRIPT", "brian2_python", "brian2_reference", "run_brian2",
           "take_samples"]

ENV_VAR = "CTSNN_BRIAN2_PYTHON"
NOT_FOUND = "Brian2 environment not found: run bash ctsnn/bench/brian2_env.sh"
#: The script run inside the Brian2 environment (numpy + Brian2 only).
SCRIPT = Path(__file__).with_name("sim_continuous_brian2.py")
#: Brian2's time step in W5 (the doc's reference measurement), seconds.
BRIAN2_DT = 1e-4

_log = stderr_log("w5")


def brian2_python() -> Path | None:
    """The Brian2 environment's interpreter, or None if it does not exist."""
    override = os.environ.get(ENV_VAR)
    path = Path(override) if override else repo_root() / ".venv-brian2" / "bin" / "python"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def run_brian2(
    inputs: dict[str, Any],
    *,
    dt: float = 1e-4,
    target: str = "cython",
    repeats: int = 5,
    warmup: int = 2,
    timeout: float | None = None,
) -> dict[str, Any] | None:
    """Run W5 in Brian2 on ``inputs`` (from
    :func:`~ctsnn.bench.sim_continuous_inputs.make_w5_inputs`).

    Args:
        inputs: The W5 arrays.
        dt: Brian2's time step in seconds.
        target: Brian2 code generation target, ``"cython"`` or ``"numpy"``.
        repeats: Timed runs (median/min/max are over these).
        warmup: Untimed runs before them (the first one includes the cython
            compilation when Brian2's cache is cold; reported as ``first_run_s``).
        timeout: Seconds before the subprocess is abandoned, None for no limit.

    Returns:
        The dict printed by :data:`SCRIPT` (timings in seconds,
        spike counts, output spike lists), or None, with a message on stderr,
        when the Brian2 environment is absent.

    Raises:
        RuntimeError: The Brian2 script failed (its stderr went to ours).
    """
    if target not in ("cython", "numpy"):
        raise ValueError(f"target must be 'cython' or 'numpy', got {target!r}")
    python = brian2_python()
    script = SCRIPT
    if python is None:
        print(NOT_FOUND, file=sys.stderr)
        return None
    if not script.is_file():
        print(f"Brian2 benchmark script not found at {script}", file=sys.stderr)
        return None
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    for var in ("PYTHONPATH", "PYTHONHOME"):  # keep the main environment's numpy out
        env.pop(var, None)
    with tempfile.TemporaryDirectory(prefix="ctsnn-w5-") as tmp:
        npz = Path(tmp) / "w5_inputs.npz"
        save_npz(npz, inputs)
        cmd = [
            str(python),
            str(script),
            str(npz),
            "--dt-ms",
            repr(dt * 1e3),
            "--target",
            target,
            "--repeats",
            str(repeats),
            "--warmup",
            str(warmup),
        ]
        proc = subprocess.run(
            cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} exited with code {proc.returncode} (stderr above)")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{script.name} printed no JSON line")
    return json.loads(lines[-1])


def take_samples(inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """``inputs`` restricted to samples ``0 .. n-1`` (same arrays as ``batch=n`` would draw)."""
    mask = inputs["sample"] < n
    out = dict(inputs)
    for key in ("times", "indices", "sample"):
        out[key] = inputs[key][mask]
    out["batch"] = np.asarray(n, dtype=np.int64)
    return out


def _cython_fields(res: dict[str, Any], *, samples: int, batch: int) -> dict[str, Any]:
    """The ``reference`` fields of the cython run (times scaled to the whole batch) and its
    output events under ``"_events"`` (times, units, sample)."""
    scale = batch / samples
    ref = {
        "simulator": "brian2",
        "brian2_version": res["brian2_version"],
        "target": "cython",
        "dt": res["dt"],
        "median_s": res["median_s"] * scale,
        "min_s": res["min_s"] * scale,
        "max_s": res["max_s"] * scale,
        "cpu_per_wall": res["cpu_per_wall"],
        "s_per_sim_s": res["median_s"] * scale / float(res["duration"]),
        "protocol": {"repeats": res["repeats"], "warmup": res["warmup"]},
        "first_run_s": res["first_run_s"] * scale,
        "cython_cache_was_warm": res["cython_cache_was_warm"],
        "zero_duration_run_s": res["zero_duration_run_s"],
        "peak_rss_mib": res["peak_rss_increase_mib"],
        "peak_rss_warm_mib": res["peak_rss_increase_warm_mib"],
        "n_same_step_input_duplicates": res["n_same_step_input_duplicates"],
        "samples_run": samples,
        "time_scale": scale,
    }
    key = "n_output_spikes" if samples == batch else "n_output_spikes_subset"
    ref[key] = res["n_output_spikes"]
    ref["_events"] = (
        np.asarray(res["output_times"], dtype=np.float64),
        np.asarray(res["output_indices"], dtype=np.int64),
        np.asarray(res["output_sample"], dtype=np.int64),
    )
    return ref


def _numpy_fields(res: dict[str, Any], *, samples: int, batch: int) -> dict[str, Any]:
    """The ``numpy_*`` fields of the numpy-target run (times scaled to the whole batch)."""
    scale = batch / samples
    return {
        "numpy_median_s": res["median_s"] * scale,
        "numpy_min_s": res["min_s"] * scale,
        "numpy_max_s": res["max_s"] * scale,
        "numpy_s_per_sim_s": res["median_s"] * scale / float(res["duration"]),
        "numpy_peak_rss_mib": res["peak_rss_increase_mib"],
    }


def brian2_reference(
    inputs: dict[str, np.ndarray], *, samples: int, repeats: int, warmup: int
) -> dict[str, Any] | None:
    """Brian2 cython (and numpy) at :data:`BRIAN2_DT` on the first ``samples`` samples.

    Times are scaled by ``batch / samples`` when only a subset is run (Brian2
    runs the samples one after the other, so its time is linear in them).

    Returns:
        The ``reference`` dict of W5's JSON lines, with the cython run's output events under
        ``"_events"`` (to be popped before printing), or None if the environment is absent
        or the cython run failed.
    """
    batch = int(inputs["batch"])
    subset = take_samples(inputs, samples)
    ref: dict[str, Any] = {}
    for target in ("cython", "numpy"):
        _log(f"Brian2 {target}, batch {batch} ({samples} sample(s) run)...")
        try:
            res = run_brian2(subset, dt=BRIAN2_DT, target=target, repeats=repeats, warmup=warmup)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            _log(f"Brian2 {target} failed, skipped: {exc}")
            res = None
        if res is None:
            if target == "cython":
                return None
            continue
        fields = _cython_fields if target == "cython" else _numpy_fields
        ref.update(fields(res, samples=samples, batch=batch))
    if samples != batch:
        ref["timing_note"] = (
            f"Brian2 has no batch dimension: {samples} of the {batch} samples were run one "
            f"after the other and the times scaled by {batch / samples:g}; spike counts are of "
            f"those {samples} samples (n_output_spikes_subset)"
        )
    elif batch > 1:
        ref["timing_note"] = "Brian2 has no batch dimension: samples run one after the other"
    return ref


def main(argv: list[str] | None = None) -> int:
    """Command line: run the Brian2 side for one seed/target and print a summary line."""
    parser = argparse.ArgumentParser(description="Brian2 reference of benchmark W5")
    parser.add_argument("--target", choices=("cython", "numpy"), default="cython")
    parser.add_argument("--dt-ms", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    inputs = make_w5_inputs(seed=args.seed, batch=args.batch)
    result = run_brian2(
        inputs,
        dt=args.dt_ms * 1e-3,
        target=args.target,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    if result is None:
        return 1
    summary = {k: v for k, v in result.items() if not k.startswith("output_")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
