"""examples/compare_time_modes.py: train briefly, compare the modes, write the figures."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "compare_time_modes.py"


@pytest.mark.slow
def test_example_compares_a_trained_network(tmp_path, capsys):
    old = torch.get_default_dtype()
    try:
        main = runpy.run_path(str(EXAMPLE))["main"]
        cmp = main(steps=1, out_dir=str(tmp_path), n_test=16)
    finally:
        torch.set_default_dtype(old)
    assert {r.time for r in cmp.runs} == {"continuous", "discrete"}
    assert all(r.accuracy is not None for r in cmp.runs)
    assert math.isnan(cmp.order("continuous"))  # closed-form CubaLIF: exact at every dt
    for name in ("compare_delays.png", "compare_rasters.png", "compare_convergence.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert "accuracy" in capsys.readouterr().out
