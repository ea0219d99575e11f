"""examples/compiled_kernels.py runs and finds the kernels equal to the reference path."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "compiled_kernels.py"


def test_compiled_kernels_example(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [EXAMPLE.name, "--batch", "2", "--steps", "20"])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "identical: True" in out
    diff = float(out.split("difference (float32): ")[1].split()[0])
    assert diff < 1e-4
