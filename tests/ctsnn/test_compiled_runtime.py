"""numba's JIT runtime starts when CPU modules are built (ctsnn.compiled.prepare_kernel_runtime)."""

import contextlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import ctsnn.compiled as compiled
from ctsnn.compiled import host_array, numba_available, prepare_kernel_runtime, use_kernels
from ctsnn.models import LIF
from ctsnn.synapses import Dense, RecurrentDense

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")


@pytest.fixture
def not_started(monkeypatch):
    """The runtime flag as in a fresh process (restored afterwards)."""
    monkeypatch.setitem(compiled._state, "runtime", False)


@needs_numba
@pytest.mark.parametrize("build", [lambda: LIF(3), lambda: Dense(4, 3),
                                   lambda: RecurrentDense(3, delay=0.001)])
def test_cpu_modules_start_the_runtime(not_started, build):
    build()
    assert compiled._state["runtime"]


@needs_numba
def test_other_default_device_or_kernels_off_start_nothing(not_started):
    with torch.device("meta"):
        Dense(4, 3)
        assert prepare_kernel_runtime() is False  # None: torch's default device, here meta
    assert not compiled._state["runtime"]
    with use_kernels(False):
        Dense(4, 3)
        assert prepare_kernel_runtime() is False
    assert not compiled._state["runtime"]
    assert prepare_kernel_runtime("meta") is False
    assert prepare_kernel_runtime("cpu") is True
    assert compiled._state["runtime"]
    assert prepare_kernel_runtime() is True


def test_bad_device_is_an_error():
    with pytest.raises((RuntimeError, ValueError)):
        prepare_kernel_runtime("not-a-device")


@needs_numba
@pytest.mark.parametrize("start", ["kernel_threads()", "ctsnn.synapses.Dense(4, 3)"])
def test_starting_the_runtime_keeps_torchs_thread_count(start):
    """Starting numba's OpenMP layer (the first kernel call, or building a module) after
    import reset torch's thread count: a ``torch.set_num_threads(1)`` made before was silently
    undone (seen when the threading layer started before any kernel was loaded)."""
    code = ("import torch, ctsnn\n"
            "from ctsnn.compiled import kernel_threads\n"
            "torch.set_num_threads(1)\n"
            "assert torch.get_num_threads() == 1\n"  # (the reset needed torch to have read it)
            f"{start}\n"
            "print(torch.get_num_threads(), kernel_threads(), torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split()[-3:] == ["1", "1", "1"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_host_array_is_a_torch_backed_numpy_array(dtype):
    """``host_array``: NumPy arrays of the asked shape and dtype, zeros with ``zero``, memory
    from torch's allocator (NumPy's own allocator advises huge pages from 4 MiB on)."""
    a = host_array((3, 5), dtype)
    assert isinstance(a, np.ndarray) and a.shape == (3, 5) and a.dtype == np.dtype(dtype)
    assert a.flags.writeable and a.flags.c_contiguous
    assert a.base is not None  # a view of a torch tensor's storage, not NumPy's own buffer
    z = host_array(1 << 21, dtype, zero=True)  # 2 Mi elements: past NumPy's 4 MiB threshold
    assert z.shape == (1 << 21,) and not z.any()
    z[7] = 1
    assert torch.from_numpy(z)[7] == 1


def test_run_serial_or_chunks_picks_the_form(monkeypatch):
    """Serial below ``min_work``, for one item or one kernel thread; else at most
    ``max_chunks`` chunks on the kernel threads."""
    calls = []

    def serial(i0, i1, tag):
        calls.append(("serial", i0, i1, tag))

    def chunks(n_chunks, tag):
        calls.append(("chunks", n_chunks, tag))

    monkeypatch.setattr(compiled, "kernel_threads", lambda: 2)
    monkeypatch.setattr(compiled, "numba_threads", lambda n: contextlib.nullcontext())
    compiled.run_serial_or_chunks(serial, chunks, 5, 99, 100, 16, "a")
    compiled.run_serial_or_chunks(serial, chunks, 1, 500, 100, 16, "b")
    compiled.run_serial_or_chunks(serial, chunks, 5, 500, 100, 16, "c")
    compiled.run_serial_or_chunks(serial, chunks, 40, 500, 100, 16, "d")
    monkeypatch.setattr(compiled, "kernel_threads", lambda: 1)
    compiled.run_serial_or_chunks(serial, chunks, 40, 500, 100, 16, "e")
    assert calls == [("serial", 0, 5, "a"), ("serial", 0, 1, "b"), ("chunks", 5, "c"),
                     ("chunks", 16, "d"), ("serial", 0, 40, "e")]
