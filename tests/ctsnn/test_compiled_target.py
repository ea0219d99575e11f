"""ctsnn.compiled initialises numba's CPU target at the first kernel use without importing
SciPy's linalg (numba's registries import it only to probe BLAS; ~15 MiB resident), and numba
code in the same process still gets BLAS where it asks for it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")
pytest.importorskip("scipy")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, check=True, timeout=600)
    return out.stdout.strip()


def test_first_kernel_use_does_not_import_scipy_linalg():
    out = _run("""
        import sys
        import torch
        import ctsnn
        from ctsnn.compiled import kernels_enabled, use_kernels
        with use_kernels(False):  # kernels off: numba's target is left alone
            assert not kernels_enabled(torch.zeros(2))
        assert "numba.np.arraymath" not in sys.modules
        assert "scipy.linalg" not in sys.modules
        assert kernels_enabled(torch.zeros(2))
        import numba
        from numba.core.registry import cpu_target
        assert cpu_target.target_context._registries  # initialised by kernels_enabled
        from numba.np import arraymath
        before = "scipy.linalg" in sys.modules
        # a ctsnn kernel runs (the fused LIF: loads or compiles its cached code)
        lif = ctsnn.LIF(3, tau_mem=0.01)
        layer = ctsnn.Layer(lif, torch.ones(3, 2), time="discrete")
        ctsnn.simulate(layer, torch.ones(5, 1, 2), dt=1e-3)
        after = "scipy.linalg" in sys.modules
        import numpy as np
        @numba.njit
        def dot(a, b):
            return np.dot(a, b)
        print(before, after, arraymath._HAVE_BLAS, dot(np.ones((2, 2)), np.ones(2)).tolist(),
              "scipy.linalg" in sys.modules, [m for m in sys.meta_path
                                              if type(m).__name__ == "_RefuseImports"])
    """)
    assert out == "False False False [2.0, 2.0] True []"


def test_scipy_linalg_imported_before_is_used():
    out = _run("""
        import scipy.linalg
        import torch
        from ctsnn.compiled import kernels_enabled
        assert kernels_enabled(torch.zeros(2))
        from numba.np import arraymath
        print(arraymath._HAVE_BLAS)
    """)
    assert out == "True"
