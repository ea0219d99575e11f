"""The trainer's settings: one frozen dataclass, validated on construction.

Every field has a default, so ``TrainerConfig(epochs=30, lr=5e-3)`` is a complete config;
:meth:`TrainerConfig.to_dict` / :meth:`TrainerConfig.from_dict` round-trip it through plain
JSON-able values (unknown keys are an error naming them). Times are in seconds, rates are
learning rates in the units of the parameters they update (delays: their own units, seconds or
grid steps).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from .._checks import check_choice

OPTIMISER_NAMES = ("adam", "adamw", "sgd")
#: Weight learning-rate schedules; "ease_in" is stepped every batch, the others every epoch.
SCHEDULES = ("none", "one_cycle", "cosine", "ease_in", "exponential")
DELAY_SCHEDULES = ("none", "one_cycle", "cosine", "exponential")
SIGMA_SCHEDULES = ("dcls", "delrec")
VAL_SPLITS = ("auto", "random", "speaker", "given")
LOG_FORMATS = ("csv", "jsonl")
DEVICES = ("auto", "cpu", "cuda")
GRAD_CLIP_MODES = ("norm", "value")
#: Fields that may change when a run is resumed (they do not change the result).
RESUMABLE_CHANGES = ("progress", "device", "checkpoint_every", "num_workers")


def _int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"TrainerConfig.{name} must be an int, got {type(value).__name__} "
                        f"{value!r}")
    if value < minimum:
        raise ValueError(f"TrainerConfig.{name} must be >= {minimum}, got {value}")


def _real(name: str, value: Any, *, positive: bool = False, optional: bool = False,
          upper: float | None = None) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"TrainerConfig.{name} must be a number, got {type(value).__name__} "
                        f"{value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"TrainerConfig.{name} must be finite and {kind}, got {value!r}")
    if upper is not None and value >= upper:
        raise ValueError(f"TrainerConfig.{name} must be < {upper}, got {value!r}")


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of :class:`~ctsnn.training.Trainer` (all have defaults)."""

    epochs: int = 10
    """Number of passes over the training data."""
    batch_size: int = 32
    """Global batch size (summed over processes when distributed)."""
    eval_batch_size: int | None = None
    """Batch size of evaluation passes (default: ``batch_size``)."""
    lr: float = 1e-3
    """Weights' learning rate (the base rate; ``one_cycle`` peaks at ``max_lr``)."""
    lr_delay: float | None = None
    """Delays' learning rate (units of the delay parameters); ``None``: same as ``lr``."""
    max_lr: float | None = None
    """Peak of the weights' one-cycle schedule (default ``lr``)."""
    optimiser: str = "adam"
    """Weights' optimiser: ``"adam"``, ``"adamw"`` or ``"sgd"``."""
    delay_optimiser: str | None = None
    """Delays' optimiser (default: ``optimiser``); delays are never weight-decayed."""
    weight_decay: float = 0.0
    """Weight decay of the weights (not of normalisation layers, not of delays)."""
    norm_weight_decay: float = 0.0
    """Weight decay of normalisation-layer parameters (BatchNorm gamma/beta)."""
    schedule: str = "none"
    """Weights' schedule: ``"none"``, ``"one_cycle"`` / ``"cosine"`` / ``"exponential"`` (per
    epoch, over ``epochs``) or ``"ease_in"`` (per batch, EventProp)."""
    delay_schedule: str = "none"
    """Delays' schedule (per epoch): ``"none"``, ``"one_cycle"``, ``"cosine"``,
    ``"exponential"``."""
    lr_decay: float = 0.9975
    """Per-epoch factor of the ``"exponential"`` schedules (EventProp: 0.9975)."""
    ease_in_factor: float = 1e-3
    """``"ease_in"``: the first batch uses ``ease_in_factor * lr``."""
    ease_in_multiplier: float = 1.05
    """``"ease_in"``: growth of the rate per batch until it reaches ``lr``."""
    sigma_schedule: str | None = None
    """Kernel-width schedule: ``"dcls"`` (Gaussian, decays over the first quarter, set at each
    epoch's end for the next), ``"delrec"`` (triangle, set at each epoch's start) or ``None``."""
    seed: int = 0
    """Seed of the run: global RNGs at the start, data order per epoch, validation split."""
    val_fraction: float = 0.0
    """Fraction of the training data held out for validation (0: none unless ``val_set``)."""
    val_split: str = "auto"
    """How validation is carved: ``"random"``, ``"speaker"`` (no speaker in both parts;
    datasets with ``speakers``), ``"given"`` (the ``val_set`` argument) or ``"auto"`` (``given``
    with a ``val_set``, else ``speaker`` when the data has speakers, else ``random``)."""
    early_stopping: int | None = None
    """Stop after this many epochs without improvement of the monitored accuracy (validation
    accuracy, or training accuracy without validation); ``None``: never."""
    grad_clip: float | None = None
    """Clip gradients (after averaging over processes) at this norm or value; ``None``: no."""
    grad_clip_mode: str = "norm"
    """``"norm"`` (``clip_grad_norm_`` over all parameters) or ``"value"``."""
    spike_reg: float = 0.0
    """Strength ``lambda`` of the spike-count penalty
    :func:`~ctsnn.losses.mean_square_spike_penalty` on every hidden :class:`~ctsnn.Layer`'s
    spikes (0: off)."""
    rounded_eval: bool | None = None
    """Evaluate with delays rounded to whole steps (``True``), unrounded (``False``) or each
    synapse's own ``round_in_eval`` setting (``None``)."""
    log: str = "csv"
    """Per-epoch log format: ``"csv"`` (``log.csv``) or ``"jsonl"`` (``log.jsonl``)."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0 only)."""
    device: str = "auto"
    """``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``."""
    checkpoint_every: int = 0
    """Also write ``last.pt`` every this many batches (0: only at the end of each epoch)."""
    num_workers: int = 0
    """DataLoader worker processes."""

    def __post_init__(self) -> None:
        _int("epochs", self.epochs, 1)
        _int("batch_size", self.batch_size, 1)
        if self.eval_batch_size is not None:
            _int("eval_batch_size", self.eval_batch_size, 1)
        _real("lr", self.lr, positive=True)
        _real("lr_delay", self.lr_delay, optional=True)
        _real("max_lr", self.max_lr, positive=True, optional=True)
        check_choice("TrainerConfig.optimiser", self.optimiser, OPTIMISER_NAMES)
        if self.delay_optimiser is not None:
            check_choice("TrainerConfig.delay_optimiser", self.delay_optimiser, OPTIMISER_NAMES)
        _real("weight_decay", self.weight_decay)
        _real("norm_weight_decay", self.norm_weight_decay)
        check_choice("TrainerConfig.schedule", self.schedule, SCHEDULES)
        check_choice("TrainerConfig.delay_schedule", self.delay_schedule, DELAY_SCHEDULES)
        _real("lr_decay", self.lr_decay, positive=True)
        if self.lr_decay > 1:
            raise ValueError(f"TrainerConfig.lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.max_lr is not None and self.schedule != "one_cycle":
            raise ValueError("TrainerConfig.max_lr is the peak of the one-cycle schedule: set "
                             f"schedule='one_cycle' or leave max_lr None (schedule is "
                             f"{self.schedule!r})")
        uses = {"lr_decay": "exponential" in (self.schedule, self.delay_schedule),
                "ease_in_factor": self.schedule == "ease_in",
                "ease_in_multiplier": self.schedule == "ease_in"}
        for name, used in uses.items():
            default = next(f.default for f in fields(self) if f.name == name)
            if not used and getattr(self, name) != default:
                raise ValueError(f"TrainerConfig.{name} is set but not used by schedule="
                                 f"{self.schedule!r} / delay_schedule={self.delay_schedule!r}")
        if self.sigma_schedule is not None:
            check_choice("TrainerConfig.sigma_schedule", self.sigma_schedule, SIGMA_SCHEDULES)
        _int("seed", self.seed, 0)
        _real("val_fraction", self.val_fraction, upper=1.0)
        check_choice("TrainerConfig.val_split", self.val_split, VAL_SPLITS)
        if self.val_split == "given" and self.val_fraction:
            raise ValueError("TrainerConfig.val_split='given' takes the val_set argument: "
                             f"val_fraction must be 0, got {self.val_fraction}")
        if self.val_split in ("random", "speaker") and not self.val_fraction:
            raise ValueError(f"TrainerConfig.val_split={self.val_split!r} needs val_fraction "
                             "> 0")
        if self.early_stopping is not None:
            _int("early_stopping", self.early_stopping, 1)
        _real("grad_clip", self.grad_clip, positive=True, optional=True)
        check_choice("TrainerConfig.grad_clip_mode", self.grad_clip_mode, GRAD_CLIP_MODES)
        _real("spike_reg", self.spike_reg)
        if self.rounded_eval is not None and not isinstance(self.rounded_eval, bool):
            raise TypeError(f"TrainerConfig.rounded_eval must be a bool or None, got "
                            f"{self.rounded_eval!r}")
        check_choice("TrainerConfig.log", self.log, LOG_FORMATS)
        if not isinstance(self.progress, bool):
            raise TypeError(f"TrainerConfig.progress must be a bool, got {self.progress!r}")
        check_choice("TrainerConfig.device", self.device, DEVICES)
        _int("checkpoint_every", self.checkpoint_every, 0)
        _int("num_workers", self.num_workers, 0)

    @property
    def delay_lr(self) -> float:
        """The delays' learning rate (``lr_delay``, or ``lr`` when unset)."""
        return self.lr if self.lr_delay is None else self.lr_delay

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` (JSON-able)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainerConfig:
        """Build from ``{field: value}``; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainerConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def differences(self, other: TrainerConfig, *,
                    ignore: tuple[str, ...] = RESUMABLE_CHANGES) -> dict[str, tuple[Any, Any]]:
        """``{field: (self value, other value)}`` for every field that differs."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
                if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)}


#: Fields that configure the optimisers; an ``optimiser_recipe`` replaces them all.
OPTIMISER_FIELDS = ("lr", "lr_delay", "max_lr", "optimiser", "delay_optimiser", "weight_decay",
                    "norm_weight_decay", "schedule", "delay_schedule", "lr_decay",
                    "ease_in_factor", "ease_in_multiplier", "sigma_schedule")


__all__ = ["DELAY_SCHEDULES", "OPTIMISER_FIELDS", "SCHEDULES", "SIGMA_SCHEDULES",
           "TrainerConfig"]
