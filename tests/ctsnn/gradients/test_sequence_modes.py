"""Sequence detection (SEEDS D5) solved by delay learning alone in both time modes with both
gradient methods (``examples/sequence_detection.py``; weights fixed at 1)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sequence_detection.py"


@pytest.fixture(scope="module")
def example():
    return runpy.run_path(str(EXAMPLE))


# autodiff through the continuous event-driven engine takes tens of seconds on a loaded machine
SLOW = pytest.mark.slow


@pytest.mark.parametrize(("time", "gradient", "max_shown"), [
    pytest.param("continuous", "adjoint", 6, marks=SLOW),  # exact maximum: the paper's 6
    pytest.param("continuous", "surrogate", 24, marks=SLOW),  # avg_exp (no autodiff maximum)
    ("discrete", "adjoint", 24),       # mlGeNN's grid EventProp, avg_exp readout
    ("discrete", "surrogate", 6),      # Rounded kernel, maximum over grid points
])
def test_delays_alone_solve_the_task(example, time, gradient, max_shown):
    shown, layer = example["train"](time=time, gradient=gradient, max_epochs=max_shown // 2)
    assert shown is not None and shown <= max_shown, (time, gradient, shown)
    weight = layer.synapse.weight
    assert not weight.requires_grad and torch.equal(weight, torch.ones_like(weight))
    assert example["accuracy"](layer, example["READOUTS"][(time, gradient)]) == 1.0


@pytest.mark.parametrize(("time", "gradient"), [pytest.param("continuous", "surrogate",
                                                             marks=SLOW),
                                                ("discrete", "adjoint"),
                                                ("discrete", "surrogate")])
def test_flipped_delay_gradient_does_not_learn(example, time, gradient):
    shown, _ = example["train"](time=time, gradient=gradient, sign=-1.0, max_epochs=12)
    assert shown is None


def test_bad_combination_is_refused(example):
    with pytest.raises(ValueError, match="time must be"):
        example["make_layer"](time="discret")
