"""Optimiser recipes for networks with learnable delays.

The papers that learn delays by gradient descent (DCLS, DelRec, EventProp with delays) share one
recipe, which :class:`WeightDelayRecipe` configures and :class:`WeightDelayOptimiser` runs:

* weights and delays are trained by **separate optimisers** with their own learning rate and
  learning-rate schedule (delays are in steps or seconds, not in weight units, and are never
  weight-decayed); normalisation parameters get their own weight decay;
* both schedulers are stepped **once per epoch**; the weights follow ``OneCycleLR`` with the
  recipe's peak rate, the delays ``CosineAnnealingLR`` or ``OneCycleLR``;
* after **every optimiser step** the delays are clamped to their window (and fan-in masks
  re-applied), by a callable the model provides;
* the width of the delay kernel (DCLS Gaussian, DelRec triangle) follows a per-epoch
  **width schedule** (:mod:`ctsnn.training.schedules`), applied either at the end of each epoch
  for the next one (DCLS) or at the start of each epoch (DelRec).

Usage::

    opt = recipe.build(model, delays=..., epochs=E, clamp=..., sigma=..., set_sigma=...)
    for epoch in range(E):
        opt.start_epoch(epoch)             # width for this epoch (optional with "epoch_end")
        for x, y in batches:
            opt.zero_grad(); loss(model(x), y).backward(); opt.step()   # step also clamps
        opt.end_epoch()                    # schedulers (and next width with "epoch_end")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._checks import check_choice
from .parameters import weight_groups

OPTIMISERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
}
DELAY_SCHEDULERS = ("cosine", "onecycle")
SIGMA_UPDATES = ("epoch_end", "epoch_start")

LRScheduler = torch.optim.lr_scheduler.LRScheduler


@dataclass
class WeightDelayOptimiser:
    """Separate weight and delay optimisers bound to a model (see the module docstring).

    Attributes:
        weights: optimiser over the weights (and normalisation parameters), ``None`` when only
            delays are learned (weights fixed).
        delays: optimiser over the delays (and learnable widths), ``None`` if none are learned.
        weight_scheduler, delay_scheduler: per-epoch learning-rate schedulers (or ``None``).
        clamp: called after every optimiser step (clamp delays, re-apply masks), or ``None``.
        sigma: width schedule, epoch (0-based) -> kernel width in steps, or ``None``.
        set_sigma: applies a width to the model (e.g. ``model.set_sigma``).
        sigma_update: ``"epoch_end"``: :meth:`end_epoch` sets the next epoch's width (DCLS);
            ``"epoch_start"``: only :meth:`start_epoch` sets it (DelRec).
        epoch: the current epoch (0-based).
    """

    weights: torch.optim.Optimizer | None
    delays: torch.optim.Optimizer | None
    weight_scheduler: LRScheduler | None
    delay_scheduler: LRScheduler | None
    clamp: Callable[[], object] | None = None
    sigma: Callable[[int], float] | None = None
    set_sigma: Callable[[float], object] | None = None
    sigma_update: str = "epoch_end"
    epoch: int = 0

    def __post_init__(self) -> None:
        check_choice("sigma_update", self.sigma_update, SIGMA_UPDATES)
        if self.weights is None and self.delays is None:
            raise ValueError("WeightDelayOptimiser needs a weight or a delay optimiser")
        if (self.sigma is None) != (self.set_sigma is None):
            raise ValueError("sigma (a width schedule) and set_sigma (how to apply it) go "
                             "together: give both or neither")

    def apply_sigma(self) -> float | None:
        """Set the model's kernel width to the schedule's value for :attr:`epoch`; returns it
        (``None`` without a width schedule)."""
        if self.sigma is None or self.set_sigma is None:
            return None
        value = self.sigma(self.epoch)
        self.set_sigma(value)
        return value

    def start_epoch(self, epoch: int | None = None) -> float | None:
        """Start epoch ``epoch`` (default: the current one): apply its width; returns it."""
        if epoch is not None:
            self.epoch = epoch
        return self.apply_sigma()

    def zero_grad(self) -> None:
        if self.weights is not None:
            self.weights.zero_grad(set_to_none=True)
        if self.delays is not None:
            self.delays.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Both optimiser steps, then :attr:`clamp` (every batch)."""
        if self.weights is not None:
            self.weights.step()
        if self.delays is not None:
            self.delays.step()
        if self.clamp is not None:
            self.clamp()

    def end_epoch(self) -> None:
        """Step both schedulers and advance :attr:`epoch` (and set its width, ``"epoch_end"``)."""
        if self.weight_scheduler is not None:
            self.weight_scheduler.step()
        if self.delay_scheduler is not None:
            self.delay_scheduler.step()
        self.epoch += 1
        if self.sigma_update == "epoch_end":
            self.apply_sigma()


@dataclass(frozen=True)
class WeightDelayRecipe:
    """Hyper-parameters of the weight/delay recipe (see the module docstring).

    Attributes:
        optimiser: weights' optimiser, ``"adam"`` or ``"adamw"``.
        lr: weights' base learning rate (``OneCycleLR`` overrides it with ``max_lr / 25`` at
            the start, as in PyTorch).
        weight_decay: weight decay of the weights; norm_weight_decay: of normalisation layers.
        max_lr: peak of the weights' ``OneCycleLR`` (default ``lr``).
        delay_optimiser: delays' optimiser, ``"adam"`` or ``"adamw"`` (never weight-decayed).
        lr_delay: delays' learning rate (units of the delay parameters: steps or seconds).
        delay_scheduler: ``"cosine"`` (``CosineAnnealingLR(T_max=epochs)``) or ``"onecycle"``
            (``OneCycleLR(max_lr=lr_delay)``).
        sigma_update: when the width schedule is applied (:class:`WeightDelayOptimiser`).
    """

    lr: float
    lr_delay: float
    optimiser: str = "adam"
    weight_decay: float = 0.0
    norm_weight_decay: float = 0.0
    max_lr: float | None = None
    delay_optimiser: str = "adam"
    delay_scheduler: str = "cosine"
    sigma_update: str = "epoch_end"

    def __post_init__(self) -> None:
        check_choice("optimiser", self.optimiser, tuple(OPTIMISERS))
        check_choice("delay_optimiser", self.delay_optimiser, tuple(OPTIMISERS))
        check_choice("delay_scheduler", self.delay_scheduler, DELAY_SCHEDULERS)
        check_choice("sigma_update", self.sigma_update, SIGMA_UPDATES)

    def build(
        self,
        model: nn.Module,
        epochs: int,
        *,
        delays: Iterable[Tensor] = (),
        clamp: Callable[[], object] | None = None,
        sigma: Callable[[int], float] | None = None,
        set_sigma: Callable[[float], object] | None = None,
    ) -> WeightDelayOptimiser:
        """Bind the recipe to ``model`` for a run of ``epochs`` epochs.

        Args:
            model: every learnable parameter not in ``delays`` is a weight
                (:func:`~ctsnn.training.parameters.weight_groups`).
            epochs: run length; the per-epoch schedules span it.
            delays: the delay parameters (and learnable widths) for the delay optimiser.
            clamp, sigma, set_sigma: see :class:`WeightDelayOptimiser`. The width schedule is
                not applied here (the caller decides whether epoch 0 needs it).
        """
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        delays = [p for p in delays if p.requires_grad]
        groups = weight_groups(model, delays, weight_decay=self.weight_decay,
                               norm_weight_decay=self.norm_weight_decay)
        if not groups:
            raise ValueError("the model has no learnable weights (nor normalisation parameters): "
                             "the weight/delay recipe needs at least one")
        weights = OPTIMISERS[self.optimiser](groups, lr=self.lr)
        max_lr = self.lr if self.max_lr is None else self.max_lr
        w_sched = torch.optim.lr_scheduler.OneCycleLR(weights, max_lr=max_lr, total_steps=epochs)
        d_opt = d_sched = None
        if delays:
            d_opt = OPTIMISERS[self.delay_optimiser](delays, lr=self.lr_delay, weight_decay=0.0)
            if self.delay_scheduler == "cosine":
                d_sched = torch.optim.lr_scheduler.CosineAnnealingLR(d_opt, T_max=epochs)
            else:
                d_sched = torch.optim.lr_scheduler.OneCycleLR(d_opt, max_lr=self.lr_delay,
                                                              total_steps=epochs)
        return WeightDelayOptimiser(weights, d_opt, w_sched, d_sched, clamp=clamp, sigma=sigma,
                                    set_sigma=set_sigma, sigma_update=self.sigma_update)


__all__ = ["OPTIMISERS", "WeightDelayOptimiser", "WeightDelayRecipe"]
