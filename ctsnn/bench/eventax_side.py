"""The eventax side of W7 ``event-small``: run eventax in its own environment, read its JSON.

eventax 0.1.0 needs JAX, which does not belong in the main environment, so it lives in the venv
``<repo>/.venv-eventax`` made by ``ctsnn/bench/eventax_env.sh`` (or the interpreter named by
the environment variable ``CTSNN_EVENTAX_PYTHON``). :func:`run_eventax` writes the inputs to a
temporary ``.npz`` (:func:`~ctsnn.bench.event_small_inputs.save_npz`), runs
``ctsnn/bench/event_small_eventax.py`` there by path (that script imports neither torch nor
ctsnn) and returns its parsed JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .event_small_inputs import save_npz
from .harness import repo_root

__all__ = ["NOT_FOUND", "SCRIPT", "STRATEGIES", "TASKS", "eventax_python", "run_eventax"]

ENV_VAR = "CTSNN_EVENTAX_PYTHON"
NOT_FOUND = "eventax environment not found: run bash ctsnn/bench/eventax_env.sh"
#: The script run inside the eventax environment (numpy + JAX + eventax only).
SCRIPT = Path(__file__).with_name("event_small_eventax.py")
#: How eventax runs a batch: one ``jax.vmap`` or a Python loop over samples.
STRATEGIES = ("vmap", "loop")
#: What it runs: the hidden layer's spikes, or a training step (loss and gradients).
TASKS = ("forward", "train")


def eventax_python() -> Path | None:
    """The eventax environment's interpreter, or None if it does not exist."""
    override = os.environ.get(ENV_VAR)
    path = Path(override) if override else repo_root() / ".venv-eventax" / "bin" / "python"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def run_eventax(inputs: dict[str, Any], *, task: str, strategy: str, repeats: int = 5,
                warmup: int = 2, budget_s: float = 300.0, max_spikes: int = 4000,
                timeout: float | None = None) -> dict[str, Any] | None:
    """Run W7 in eventax on ``inputs`` (from
    :func:`~ctsnn.bench.event_small_inputs.make_w7_inputs`) in a subprocess.

    Args:
        inputs: The W7 arrays (every sample of ``inputs["in_times"]`` is run).
        task: ``"forward"`` (hidden spikes) or ``"train"`` (loss and gradients of weights and
            delays).
        strategy: ``"vmap"`` or ``"loop"``.
        repeats, warmup: timed and untimed calls after the first (compiling) call; fewer timed
            calls when ``repeats`` of them would exceed ``budget_s`` seconds.
        max_spikes: capacity of eventax's spike record per sample (forward); the result says
            ``truncated`` when it is reached.
        timeout: seconds before the subprocess is abandoned, None for no limit.

    Returns:
        The dict printed by :data:`SCRIPT` (seconds; ``first_call_s`` includes JAX's
        compilation), or None, with a message on stderr, when the environment is absent.

    Raises:
        ValueError: unknown ``task`` or ``strategy``.
        RuntimeError: the script failed (its stderr went to ours) or printed no JSON.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    python = eventax_python()
    if python is None:
        print(NOT_FOUND, file=sys.stderr)
        return None
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    for var in ("PYTHONPATH", "PYTHONHOME"):  # keep the main environment out
        env.pop(var, None)
    with tempfile.TemporaryDirectory(prefix="ctsnn-w7-") as tmp:
        npz = Path(tmp) / "w7_inputs.npz"
        save_npz(npz, inputs)
        cmd = [str(python), str(SCRIPT), str(npz), "--task", task, "--strategy", strategy,
               "--repeats", str(repeats), "--warmup", str(warmup), "--budget-s", repr(budget_s),
               "--max-spikes", str(max_spikes)]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True,
                              timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} exited with code {proc.returncode} (stderr above)")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{SCRIPT.name} printed no JSON line")
    return json.loads(lines[-1])
