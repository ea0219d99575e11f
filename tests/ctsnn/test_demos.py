"""The demo behind `ctsnn demo` runs and learns (short settings)."""

from __future__ import annotations

import torch

from ctsnn.cli import main
from ctsnn.demos import delay_learning


def test_delay_learning_improves_held_out_loss():
    out = delay_learning.run(steps=12, batch=16)
    assert torch.get_default_dtype() == torch.float32  # the demo restores it
    (loss0, acc0), (loss1, acc1) = out["before"], out["after"]
    assert loss1 < 0.5 * loss0
    assert acc1 >= acc0 and acc1 > 0.9


def test_cli_demo_runs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d.png"), "--duration", "0.05",
                 "--steps", "2"]) == 0
    assert (tmp_path / "d.png").stat().st_size > 10_000
    assert "Learning delays" in capsys.readouterr().out
