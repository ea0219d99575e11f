"""Training: optimiser recipes, schedules and parameter bookkeeping.

What lives here today:

* :mod:`ctsnn.training.schedules` — per-epoch kernel-width schedules (DCLS Gaussian
  :class:`DCLSSigmaSchedule`, DelRec triangle :class:`DelRecSigmaSchedule`) and EventProp's
  per-batch learning-rate ease-in (:class:`EaseInSchedule`, :func:`ease_in`).
* :mod:`ctsnn.training.optimisers` — the weight/delay recipe shared by the delay-learning
  papers: separate optimisers and per-epoch schedulers for weights and delays, clamping after
  every step, a width schedule (:class:`WeightDelayRecipe` -> :class:`WeightDelayOptimiser`).
* :mod:`ctsnn.training.parameters` — :func:`count_parameters` (as the papers count) and
  :func:`weight_groups` (weight-decay groups).

* :mod:`ctsnn.training.trainer` — :class:`Trainer` / :func:`fit` with :class:`TrainerConfig`
  (:mod:`~ctsnn.training.trainer_config`): weight/delay optimisers, schedules, delay projection,
  validation split and model selection, early stopping, spike regularisation, rounded-delay
  evaluation, metrics (:mod:`~ctsnn.training.metrics`), logs (:mod:`~ctsnn.training.logs`),
  atomic checkpoints that resume bit-identically after SIGKILL
  (:mod:`~ctsnn.training.checkpoint`), data parallelism over ``torch.distributed``
  (:mod:`~ctsnn.training.distributed`) and multi-seed sweeps (:mod:`~ctsnn.training.sweep`).
"""

from .optimisers import WeightDelayOptimiser, WeightDelayRecipe
from .parameters import count_parameters, weight_groups
from .schedules import DCLSSigmaSchedule, DelRecSigmaSchedule, EaseInSchedule, ease_in

# isort: split
# the trainer (uses the pieces above)
from .checkpoint import load_checkpoint, restore_model
from .metrics import HEADS, SpikeMonitor
from .sweep import aggregate, format_mean_std, seed_sweep
from .trainer import Trainer, fit
from .trainer_config import TrainerConfig

__all__ = [
    "DCLSSigmaSchedule", "DelRecSigmaSchedule", "EaseInSchedule", "WeightDelayOptimiser",
    "WeightDelayRecipe", "count_parameters", "ease_in", "weight_groups",
    # trainer
    "HEADS", "SpikeMonitor", "Trainer", "TrainerConfig", "aggregate", "fit", "format_mean_std",
    "load_checkpoint", "restore_model", "seed_sweep",
]
