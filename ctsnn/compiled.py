"""Compiled CPU kernels: when they run, and the one switch that turns them off.

Hot loops whose cost in PyTorch is per-operation overhead (event-driven simulation, EventProp's
backward, spike-sparse delayed synapses, fused multi-step LIF) have numba kernels beside their
pure-PyTorch reference. Each call site asks :func:`kernels_enabled` with the tensors it would
pass: kernels run only on the CPU, with numba importable and the switch on; otherwise the
PyTorch path runs (CUDA, or a platform numba does not serve), so the code stays
device-agnostic. The reference path is what the tests compare every kernel against.

Turn kernels off for a block with ``with ctsnn.compiled.use_kernels(False): ...`` or for a
process with the environment variable ``CTSNN_KERNELS=0``.

numba's JIT runtime (its LLVM code generator and the thread pool) starts once per process, the
first time any cached kernel is loaded: about 0.6 s and 60 MiB of resident memory, whatever the
network's size. :func:`prepare_kernel_runtime` does that up front; the neuron-model and synapse
modules call it when they are built on the CPU, so the one-off cost is paid with the model's
construction, like the import of a library, and not inside the first forward or training step
(where it would stall the step and count as the step's memory).

Models without a closed-form flow (AdEx, Izhikevich, equation models) are stepped by a
Runge-Kutta map issued from Python, a few dozen small operators per step. Where no autograd
graph is needed, feed-forward layers of equation models, AdEx, AdLIF and QIF run instead in
the compiled generic loop (:mod:`ctsnn.engine.compiled.generic_loop`, the same algorithm in
numba code generated from the equations; selected by the same switch). With
``use_compiled_steps(True)`` (or ``CTSNN_COMPILE_STEPS=1``) that map, the model's dynamics
inlined, goes through ``torch.compile``, which fuses it into one generated kernel per shape.
It is off by default: Inductor needs a C++ compiler on the CPU, the first call of each model
pays seconds of compilation, and the fused arithmetic rounds differently in the last bit
(results agree to rounding, not bit for bit).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

__all__ = ["compiled_steps_enabled", "host_array", "kernel_threads", "kernels_enabled",
           "numba_available", "numba_cache_dir", "numba_threads", "prepare_kernel_runtime",
           "run_serial_or_chunks", "use_compiled_steps", "use_kernels"]

#: numba cache directories of older sources kept besides the current one (see numba_cache_dir)
_KEEP_CACHES = 3

def _env_flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "")


_state = {"on": _env_flag("CTSNN_KERNELS", "1"), "steps": _env_flag("CTSNN_COMPILE_STEPS", "0"),
          "runtime": False}


def numba_available() -> bool:
    """Whether numba can be imported on this platform."""
    return importlib.util.find_spec("numba") is not None


def kernels_enabled(*tensors: torch.Tensor) -> bool:
    """Whether compiled kernels serve a call on ``tensors``.

    True when the switch is on, numba is importable and every tensor is on the CPU.
    """
    if not _state["on"] or not numba_available():
        return False
    return all(t.device.type == "cpu" for t in tensors)


def compiled_steps_enabled() -> bool:
    """Whether fixed Runge-Kutta steps of models without a closed form go through
    ``torch.compile`` (see :func:`use_compiled_steps`)."""
    return _state["steps"]


@contextlib.contextmanager
def _switch(key: str, enabled: bool, name: str) -> Iterator[None]:
    if not isinstance(enabled, bool):
        raise TypeError(f"{name}(enabled) takes a bool, got {type(enabled).__name__}")
    before = _state[key]
    _state[key] = enabled
    try:
        yield
    finally:
        _state[key] = before


def use_kernels(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """Turn compiled kernels on or off inside a ``with`` block (restored on exit)."""
    return _switch("on", enabled, "use_kernels")


def use_compiled_steps(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """Inside a ``with`` block, step models that have no closed-form flow with a
    ``torch.compile``-d Runge-Kutta map (``method`` one of euler/midpoint/heun/rk4, no delayed
    reads of the model's own state); restored on exit. Needs a working ``torch.compile``
    (on the CPU, a C++ compiler)."""
    return _switch("steps", enabled, "use_compiled_steps")


def _numba():  # noqa: ANN202 - the module
    """numba, imported here only (the one lazy import of this module: importing ctsnn must not
    pay for it, and callers first check :func:`numba_available`)."""
    import numba

    return numba


def kernel_threads() -> int:
    """Threads a parallel kernel may use: ``torch.get_num_threads()``, capped by numba's
    thread pool; 1 when numba is missing or has no working threading layer (then kernels run
    their serial form)."""
    if not numba_available():
        return 1
    numba = _numba()
    torch_threads = torch.get_num_threads()
    try:
        pool = numba.config.NUMBA_NUM_THREADS
        numba.get_num_threads()  # starts the threading layer; raises if none can load
    except (ValueError, RuntimeError, ImportError, OSError):
        return 1
    finally:
        # Starting numba's OpenMP layer resets the OpenMP thread count torch reads: without
        # this, a torch.set_num_threads(1) made before the first kernel was silently undone.
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
    return max(1, min(torch_threads, pool))


@contextlib.contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run numba's parallel regions on ``n`` threads inside a ``with`` block (restored on
    exit); ``n`` in ``[1, kernel_threads()]``."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= kernel_threads():
        raise ValueError(f"numba_threads(n) takes an int in [1, {kernel_threads()}], got {n!r}")
    numba = _numba()
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def run_serial_or_chunks(serial: Callable[..., None], chunks: Callable[..., None], n: int,
                         work: int, min_work: int, max_chunks: int, *args: object) -> None:
    """``serial(0, n, *args)`` (items ``0 <= i < n``), or, for a call of at least ``min_work``
    on more than one item with more than one kernel thread, ``chunks(min(max_chunks, n),
    *args)`` on the kernel threads: a kernel whose fixed chunks each compute their items alone
    gives the same results either way."""
    if work >= min_work and n > 1 and kernel_threads() > 1:
        with numba_threads(kernel_threads()):
            chunks(min(max_chunks, n), *args)
    else:
        serial(0, n, *args)


def _runtime_probe(x):  # noqa: ANN001, ANN202 - compiled by prepare_kernel_runtime
    return x + 1


def prepare_kernel_runtime(device: torch.device | str | None = None) -> bool:
    """Start numba's JIT runtime now rather than at the first kernel call (once per process).

    Loads one tiny cached kernel (which initialises numba's code generator) and starts the
    thread pool. :class:`~ctsnn.models.NeuronModel`, :class:`~ctsnn.synapses.Dense` and
    :class:`~ctsnn.synapses.RecurrentDense` call it when they are built, so modules built for
    the CPU pay the one-off cost at construction; call it yourself before timing or
    memory-profiling a step whose modules were built otherwise. Cheap after the first call.

    Args:
        device: where the kernels would run; nothing is started for a device other than the
            CPU. None: torch's default device (``torch.set_default_device``, a ``with
            torch.device(...)`` block).

    Returns:
        Whether the runtime is ready (False when kernels are off, numba is missing or
        ``device`` is not the CPU; nothing is started then).
    """
    if device is None:
        # torch.get_default_device is torch >= 2.3; a new tensor's device is the same thing
        device = torch.empty(0).device
    if not _state["on"] or torch.device(device).type != "cpu":
        return False
    if _state["runtime"]:
        return True
    if not numba_available():
        return False
    numba = _numba()
    probe = numba.njit(cache=True)(_runtime_probe)
    probe(1)  # loads (or once compiles) a cached kernel: the code generator starts here
    kernel_threads()  # starts the threading layer
    _state["runtime"] = True
    return True


# ------------------------------------------------------------------------- numba's disk cache
def host_array(shape: int | tuple[int, ...], dtype: np.dtype | type, *,
               zero: bool = False) -> np.ndarray:
    """A NumPy array (uninitialised, or zeros with ``zero``) whose memory comes from torch's
    CPU allocator: for the large per-call buffers the kernels' Python side allocates.

    Why not ``np.empty``: NumPy advises transparent huge pages (``madvise(MADV_HUGEPAGE)``)
    for every array of 4 MiB or more, and under the common kernel setting (THP ``madvise``,
    defrag ``madvise``) the first touch of each 2 MiB page may stall in direct memory
    compaction. Measured on W5's discrete run at dt 0.1 ms (a 40 MB rows buffer per call):
    0.07-0.27 s of system time per call against 0.02-0.07 s with 4 KiB pages, the whole call
    0.13-0.37 s against 0.11 s.
    """
    torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
    make = torch.zeros if zero else torch.empty
    return make(shape, dtype=torch_dtype).numpy()


def numba_cache_dir(package: Path | None = None, base: Path | None = None) -> Path:
    """Where ctsnn's compiled kernels are cached: ``<base>/numba/<hash of the package's kernel
    modules>`` (those importing numba; ``base``: ``$CTSNN_CACHE_DIR``, else ``~/.cache/ctsnn``).

    Why not numba's default (``__pycache__`` beside each module): numba keys a cached kernel
    on its own file only, so after a change to a function it calls from *another* file
    (a shared closed form, the arrival sort) it would load the stale machine code and
    silently compute with the old version. A directory per version of all sources can't.
    """
    package = package or Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        text = path.read_bytes()
        if b"import numba" not in text and b"from numba" not in text:
            continue  # not a kernel module: numba compiles nothing from it (jitted code calls
            # jitted code only; keep kernels' module-level constants in kernel modules)
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(text)
    base = base or Path(os.environ.get("CTSNN_CACHE_DIR") or Path.home() / ".cache" / "ctsnn")
    return base / "numba" / digest.hexdigest()[:16]


def _pin_numba_cache() -> None:
    """Point numba's cache at :func:`numba_cache_dir` (before any kernel is decorated: every
    kernel module imports this one first) unless the user chose ``NUMBA_CACHE_DIR``; keep the
    caches of the :data:`_KEEP_CACHES` most recent other source versions and any used in the
    last day, drop the rest."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    try:
        where = numba_cache_dir()
        where.mkdir(parents=True, exist_ok=True)
        os.utime(where)  # most recently used
        others = sorted((p for p in where.parent.iterdir() if p.is_dir() and p != where),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        stale = time.time() - 86400.0  # never one another process may still be using
        for old in others[_KEEP_CACHES:]:
            if old.stat().st_mtime < stale:
                shutil.rmtree(old, ignore_errors=True)
    except OSError:  # no writable home: numba's default location
        return
    os.environ["NUMBA_CACHE_DIR"] = str(where)
    if "numba" in sys.modules:  # imported before ctsnn: its config was read already
        sys.modules["numba"].config.CACHE_DIR = str(where)


_pin_numba_cache()
