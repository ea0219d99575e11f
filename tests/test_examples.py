"""The fast examples run end to end (the slow ones are covered by their own module tests)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _restore_default_dtype():
    """Examples are scripts: some set float64 for the whole run; give later tests float32 back."""
    old = torch.get_default_dtype()
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("name", ["spikes_and_delays.py", "custom_neuron.py",
                                  "event_driven_kernel.py", "adaptive_gradients.py",
                                  "wide_gaussian_scatter.py", "dropout_rows.py",
                                  "fused_batchnorm_lif.py", "gaussian_taps.py"])
def test_example_runs(name, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_mixed_gradients_example_trains_one_step(capsys, monkeypatch):
    name = "mixed_gradients.py"
    monkeypatch.setattr(sys, "argv", [name, "--steps", "1", "--batch", "4"])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    assert "gradient=adjoint" in out and "gradient=surrogate" in out and "step  0" in out


def test_yinyang_eventprop_example_trains_and_times(capsys, monkeypatch):
    name = "yinyang_eventprop.py"
    monkeypatch.setattr(sys, "argv", [name, "--batches", "1", "--batch", "4"])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    assert "kernels=on batch=4" in out and "epoch (5000 samples)" in out


def test_recurrent_event_kernel_example_times_the_kernel_alone(capsys, monkeypatch):
    name = "recurrent_event_kernel.py"
    monkeypatch.setattr(sys, "argv", [name, "--hidden", "16", "--duration", "0.02",
                                      "--batch", "1", "--no-reference"])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert "forward (kernel)" in capsys.readouterr().out
