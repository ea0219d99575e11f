"""Run the Brian2 reference of W5 in its own environment and collect its JSON.

Brian2 2.9 needs numpy < 2, so it lives in the venv ``<repo>/.venv-brian2`` made
by ``benchmarks/brian2_env.sh`` (or the interpreter named by the environment
variable ``CTSNN_BRIAN2_PYTHON``). :func:`run_brian2` writes the inputs to a
temporary ``.npz``, runs ``benchmarks/w5_brian2.py`` there in a subprocess with
``OMP_WAIT_POLICY=PASSIVE`` and returns the parsed JSON line.

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

from ctsnn.bench.w5_inputs import make_w5_inputs, save_npz

__all__ = ["brian2_python", "repo_root", "run_brian2"]

ENV_VAR = "CTSNN_BRIAN2_PYTHON"
NOT_FOUND = "Brian2 environment not found: run benchmarks/brian2_env.sh"


def repo_root() -> Path:
    """The repository root (this file is ``<root>/ctsnn/bench/brian2_side.py``)."""
    return Path(__file__).resolve().parents[2]


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
    """Run W5 in Brian2 on ``inputs`` (from :func:`~ctsnn.bench.w5_inputs.make_w5_inputs`).

    Args:
        inputs: The W5 arrays.
        dt: Brian2's time step in seconds.
        target: Brian2 code generation target, ``"cython"`` or ``"numpy"``.
        repeats: Timed runs (median/min/max are over these).
        warmup: Untimed runs before them (the first one includes the cython
            compilation when Brian2's cache is cold; reported as ``first_run_s``).
        timeout: Seconds before the subprocess is abandoned, None for no limit.

    Returns:
        The dict printed by ``benchmarks/w5_brian2.py`` (timings in seconds,
        spike counts, output spike lists), or None, with a message on stderr,
        when the Brian2 environment is absent.

    Raises:
        RuntimeError: The Brian2 script failed (its stderr went to ours).
    """
    if target not in ("cython", "numpy"):
        raise ValueError(f"target must be 'cython' or 'numpy', got {target!r}")
    python = brian2_python()
    script = repo_root() / "benchmarks" / "w5_brian2.py"
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
