"""The weight/delay recipe: separate optimisers, per-epoch schedulers, clamping, width schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ctsnn.training import DelRecSigmaSchedule, WeightDelayOptimiser, WeightDelayRecipe


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)
        self.delay = nn.Parameter(torch.tensor([0.5, 2.5]))
        self.width = 0.0

    def forward(self, x):
        return self.norm(self.linear(x)) * self.delay

    def clamp(self) -> None:
        with torch.no_grad():
            self.delay.clamp_(0.0, 2.0)

    def set_width(self, value: float) -> None:
        self.width = value


def build(sigma_update: str = "epoch_end", **changes) -> tuple[Toy, WeightDelayOptimiser]:
    model = Toy()
    recipe = WeightDelayRecipe(**({"lr": 1e-3, "lr_delay": 0.1, "weight_decay": 1e-5,
                                  "max_lr": 5e-3, "sigma_update": sigma_update} | changes))
    opt = recipe.build(model, 4, delays=[model.delay], clamp=model.clamp,
                       sigma=DelRecSigmaSchedule(4), set_sigma=model.set_width)
    return model, opt


def train_one_epoch(model: Toy, opt: WeightDelayOptimiser) -> None:
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    opt.step()
    opt.end_epoch()


def test_groups_optimisers_and_schedulers():
    model, opt = build()
    groups = opt.weights.param_groups
    assert [g["weight_decay"] for g in groups] == [1e-5, 0.0]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.linear.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.norm.parameters()}
    (dg,) = opt.delays.param_groups
    assert dg["params"] == [model.delay] and dg["weight_decay"] == 0.0 and dg["lr"] == 0.1
    assert math.isclose(groups[0]["lr"], 5e-3 / 25)  # OneCycle starts at max_lr / 25
    assert isinstance(opt.delay_scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    _, onecycle = build(delay_scheduler="onecycle", optimiser="adamw")
    assert isinstance(onecycle.delay_scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert isinstance(onecycle.weights, torch.optim.AdamW)


def test_step_clamps_and_width_follows_the_schedule():
    model, opt = build("epoch_end")
    assert model.width == 0.0  # build does not apply the width: the caller decides
    assert opt.start_epoch(0) == 10.0 and model.width == 10.0
    train_one_epoch(model, opt)
    assert float(model.delay.detach().max()) <= 2.0  # clamped after the step
    assert opt.epoch == 1 and model.width == DelRecSigmaSchedule(4).sigma(1)  # at epoch end
    assert opt.delays.param_groups[0]["lr"] < 0.1  # cosine annealing per epoch


def test_epoch_start_width_update():
    model, opt = build("epoch_start")
    opt.start_epoch(0)
    train_one_epoch(model, opt)
    assert opt.epoch == 1 and model.width == 10.0  # unchanged until the next start_epoch
    assert opt.start_epoch(1) == model.width == DelRecSigmaSchedule(4).sigma(1)


def test_errors():
    with pytest.raises(ValueError, match="optimiser"):
        WeightDelayRecipe(lr=1.0, lr_delay=1.0, optimiser="sgd")
    with pytest.raises(ValueError, match="sigma_update"):
        WeightDelayRecipe(lr=1.0, lr_delay=1.0, sigma_update="never")
    recipe = WeightDelayRecipe(lr=1.0, lr_delay=1.0)
    with pytest.raises(ValueError, match="epochs"):
        recipe.build(Toy(), 0)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no learnable weights"):
        recipe.build(frozen, 3)
    with pytest.raises(ValueError, match="together"):
        recipe.build(Toy(), 3, sigma=DelRecSigmaSchedule(3))
    model = Toy()
    opt = recipe.build(model, 3)  # no delays: one optimiser, nothing to clamp
    assert opt.delays is None and opt.delay_scheduler is None and opt.start_epoch(0) is None
