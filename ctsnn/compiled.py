"""Compiled CPU kernels: when they run, and the one switch that turns them off.

Hot loops whose cost in PyTorch is per-operation overhead (event-driven simulation, EventProp's
backward, spike-sparse delayed synapses, fused multi-step LIF) have numba kernels beside their
pure-PyTorch reference. Each call site asks :func:`kernels_enabled` with the tensors it would
pass: kernels run only on the CPU, with numba importable and the switch on; otherwise the
PyTorch path runs (CUDA, or a platform numba does not serve), so the code stays
device-agnostic. The reference path is what the tests compare every kernel against.

Turn kernels off for a block with ``with ctsnn.compiled.use_kernels(False): ...`` or for a
process with the environment variable ``CTSNN_KERNELS=0``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator

import torch

__all__ = ["kernel_threads", "kernels_enabled", "numba_available", "numba_threads", "use_kernels"]

_state = {"on": os.environ.get("CTSNN_KERNELS", "1").strip().lower() not in ("0", "false", "no")}


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


@contextlib.contextmanager
def use_kernels(enabled: bool) -> Iterator[None]:
    """Turn compiled kernels on or off inside a ``with`` block (restored on exit)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"use_kernels(enabled) takes a bool, got {type(enabled).__name__}")
    before = _state["on"]
    _state["on"] = enabled
    try:
        yield
    finally:
        _state["on"] = before



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
    try:
        pool = numba.config.NUMBA_NUM_THREADS
        numba.get_num_threads()  # starts the threading layer; raises if none can load
    except (ValueError, RuntimeError, ImportError, OSError):
        return 1
    return max(1, min(torch.get_num_threads(), pool))


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
