"""examples/train_yinyang.py runs end to end through the trainer (a tiny run) and resumes."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "train_yinyang.py"


def test_train_yinyang_example_tiny_run(tmp_path, capsys):
    main = runpy.run_path(str(EXAMPLE))["main"]
    args = ["--out", str(tmp_path / "run"), "--epochs", "1", "--hidden", "4", "--train-size",
            "16", "--val-size", "8", "--test-size", "8", "--batch-size", "8"]
    final = main(args)
    assert final["epochs_run"] == 1 and final["test"]["samples"] == 8
    assert "spikes/hidden" in final["test"] and "test_accuracy" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="finished"):
        main(args)
    baseline = main(["--no-delays", *args[:1], str(tmp_path / "baseline"), *args[2:]])
    assert "lr_delay" not in baseline["last"]
