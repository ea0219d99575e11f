"""numba's JIT runtime starts when CPU modules are built (ctsnn.compiled.prepare_kernel_runtime)."""

import pytest
import torch

import ctsnn.compiled as compiled
from ctsnn.compiled import numba_available, prepare_kernel_runtime, use_kernels
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
    assert not compiled._state["runtime"]
    with use_kernels(False):
        Dense(4, 3)
        assert prepare_kernel_runtime() is False
    assert not compiled._state["runtime"]
    assert prepare_kernel_runtime("meta") is False
    assert prepare_kernel_runtime("cpu") is True
    assert compiled._state["runtime"]


def test_bad_device_is_an_error():
    with pytest.raises((RuntimeError, ValueError)):
        prepare_kernel_runtime("not-a-device")
