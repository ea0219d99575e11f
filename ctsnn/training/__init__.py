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

What will live here: a trainer (epochs, evaluation with rounded delays, metrics, progress
bars, seeds), checkpoints that survive interruption, a CLI with config files, and data
parallelism through ``torch.distributed``.
"""

from .optimisers import WeightDelayOptimiser, WeightDelayRecipe
from .parameters import count_parameters, weight_groups
from .schedules import DCLSSigmaSchedule, DelRecSigmaSchedule, EaseInSchedule, ease_in

__all__ = [
    "DCLSSigmaSchedule", "DelRecSigmaSchedule", "EaseInSchedule", "WeightDelayOptimiser",
    "WeightDelayRecipe", "count_parameters", "ease_in", "weight_groups",
]
