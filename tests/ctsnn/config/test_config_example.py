"""examples/config_experiment.py runs end to end."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config_experiment.py"


def test_config_example_runs(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", [EXAMPLE.name, "--epochs", "2", "--out",
                                      str(tmp_path / "run")])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "eventprop_sequence" in out and "trained 2 epochs" in out and "ctsnn eval" in out
    assert (tmp_path / "run" / "best.pt").is_file()
