"""Size limits of a run, checked before anything is allocated.

A grid is ``n_steps`` steps of ``dt`` seconds; one input spike far in the future (say at
``t = 1e5 s`` with ``dt = 1 ms``) makes a 1e8-step grid. Rather than dying in the middle of the
run with a bare ``MemoryError``, :func:`ctsnn.simulate` and :func:`ctsnn.engine.run_population`
estimate its size first and refuse it with a message naming the cause when either

* ``n_steps`` exceeds :data:`MAX_STEPS` (50 million; raise it with
  ``ctsnn.engine.limits.MAX_STEPS = ...`` for a run you know fits), or
* the estimate ``n_steps * (STEP_OVERHEAD_BYTES + B * width * itemsize)`` of its memory (per
  step: the per-step tensors and bookkeeping of both engines, ``width`` values per sample)
  exceeds the machine's physical memory.
"""

from __future__ import annotations

import os

#: Largest number of grid steps a run may have (a documented, adjustable limit).
MAX_STEPS = 50_000_000
#: Estimated bytes of bookkeeping per step (tensor views, recordings, autograd nodes; about
#: 2.5 kB (continuous) to 5.5 kB (discrete) measured for a one-neuron LIF layer).
STEP_OVERHEAD_BYTES = 4096


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or ``None`` if unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def grid_problem(n_steps: int, batch_size: int, width: int, itemsize: int) -> str | None:
    """Why a run of ``n_steps`` steps, ``batch_size`` samples and ``width`` values per sample
    and step (of ``itemsize`` bytes) cannot be done, or ``None`` if it fits."""
    if n_steps > MAX_STEPS:
        return (f"{n_steps} steps exceed the limit ctsnn.engine.limits.MAX_STEPS = {MAX_STEPS}")
    need = n_steps * (STEP_OVERHEAD_BYTES + batch_size * width * itemsize)
    memory = physical_memory()
    if memory is not None and need > memory:
        return (f"{n_steps} steps x {batch_size} samples need about {need / 2**30:.1f} GiB "
                f"(estimated), more than the {memory / 2**30:.1f} GiB of memory")
    return None


def check_grid(n_steps: int, batch_size: int, width: int, itemsize: int, *, cause: str) -> None:
    """Raise ``ValueError`` ``"<cause>: <problem>"`` if the run does not fit (see the module
    docstring); ``cause`` says what made the grid this long (e.g. the input spike)."""
    problem = grid_problem(n_steps, batch_size, width, itemsize)
    if problem is not None:
        raise ValueError(f"{cause}: {problem}; shorten the input (drop or clip late events), "
                         "use a coarser dt, or split the run")


__all__ = ["MAX_STEPS", "STEP_OVERHEAD_BYTES", "physical_memory", "grid_problem", "check_grid"]
