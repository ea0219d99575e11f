"""Test-wide setup: environment set before torch is imported by any test module."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype (parameters are built in float64 too)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def float64_one_thread(float64):
    """float64 and one intra-op thread: tiny tensors, where OpenMP/MKL synchronisation costs
    would dominate (and vary wildly) on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _default_dtype_is_restored(request):
    """A test that changes torch's default dtype must restore it (later tests rely on it)."""
    before = torch.get_default_dtype()
    yield
    after = torch.get_default_dtype()
    if after != before:
        torch.set_default_dtype(before)
        pytest.fail(f"{request.node.nodeid} left torch's default dtype at {after} "
                    f"(was {before}); use the float64 fixture", pytrace=False)
