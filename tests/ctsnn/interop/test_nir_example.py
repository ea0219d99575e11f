"""examples/nir_roundtrip.py runs and reports exact round trips."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "nir_roundtrip.py"


def test_nir_example_round_trips(capsys, monkeypatch, tmp_path):
    out = tmp_path / "net.nir"
    monkeypatch.setattr(sys, "argv", [EXAMPLE.name, "--steps", "80", "--out", str(out)])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    text = capsys.readouterr().out
    assert out.exists()
    assert "parameters identical after the round trip: True" in text
    assert text.count("identical after the round trip: True") == 3
    assert "l0_linear_1" in text and "no jump-scale nodes: True" in text
