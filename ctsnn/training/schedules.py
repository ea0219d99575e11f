"""Width schedules of the interpolation kernels during training (values in steps).

* :class:`DCLSSigmaSchedule` — DCLS (ICLR 2024): the non-learned ``SIG`` shared by all synapses
  decays geometrically from ``sig_init`` to ``sig_end = 0.23`` over the first ``E_f`` epochs
  and then stays there; the Gaussian's effective width is ``sigma_eff = SIG + 0.27`` (so it ends
  at 0.5 step, the paper's "minimum sigma 0.5"):

      ``SIG_e = sig_init * (sig_end / sig_init) ** (min(e, E_f) / E_f)``

  i.e. a constant multiplier ``(sig_end / sig_init) ** (1 / E_f)`` per epoch (SHD: 12 -> 0.23
  over ``E_f = 37`` epochs, multiplier 0.89863). ``e`` is the 0-based index of the epoch that
  *uses* the value (DCLS multiplies once at the end of every epoch ``e < E_f``). Published
  setting: ``sig_init = K // 2``, ``E_f = epochs // 4``. ``E_f = 0`` means "constant sigma":
  ``SIG_e = sig_end`` for every epoch (the paper's constant-sigma ablation).
* :class:`DelRecSigmaSchedule` — DelRec: ``sigma_e = sigma_init * decay ** (100 e / E)``
  (``sigma_init = 10``, ``decay = 0.95``, ``E`` = total epochs), applied at the *start* of
  epoch ``e``; it never reaches 0 (≈ 0.061 at the last of 150 epochs). The triangle spread
  then has half-width ``1 + sigma``.
* :class:`EaseInSchedule` / :func:`ease_in` — EventProp (mlGeNN) learning-rate ease-in: the
  rate starts at ``factor * lr`` and is multiplied by ``multiplier`` every batch until it
  reaches ``lr``; a ``torch.optim.lr_scheduler.LambdaLR``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_positive
from ..synapses.kernels import DCLS_SIGMA_OFFSET


def _check_epoch(epoch: int) -> None:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")


@dataclass(frozen=True)
class DCLSSigmaSchedule:
    """DCLS Gaussian width per epoch (steps); see the module docstring.

    Args:
        sig_init: ``SIG`` at epoch 0 (DCLS: ``K // 2``, i.e. 12 for SHD, 15 for SSC/GSC).
        decay_epochs: ``E_f``, epochs over which ``SIG`` decays (DCLS: ``epochs // 4``).
        sig_end: floor of ``SIG`` (0.23).
        offset: added to ``SIG`` to get ``sigma_eff`` (the DCLS library's 0.27).
    """

    sig_init: float
    decay_epochs: int
    sig_end: float = 0.23
    offset: float = DCLS_SIGMA_OFFSET

    def __post_init__(self) -> None:
        check_positive("sig_init", self.sig_init)
        check_positive("sig_end", self.sig_end)
        check_positive("offset", self.offset, allow_zero=True)
        if (not isinstance(self.decay_epochs, int) or isinstance(self.decay_epochs, bool)
                or self.decay_epochs < 0):
            raise ValueError(f"decay_epochs must be a non-negative int, got {self.decay_epochs!r}")

    @classmethod
    def for_run(cls, kernel_taps: int, epochs: int) -> DCLSSigmaSchedule:
        """The published setting for a ``K``-tap kernel and ``epochs`` epochs."""
        return cls(sig_init=float(kernel_taps // 2), decay_epochs=epochs // 4)

    @property
    def multiplier(self) -> float:
        """Per-epoch factor ``(sig_end / sig_init) ** (1 / E_f)`` (1 when ``E_f = 0``)."""
        if self.decay_epochs == 0:
            return 1.0
        return (self.sig_end / self.sig_init) ** (1.0 / self.decay_epochs)

    def sig(self, epoch: int) -> float:
        """``SIG`` used during epoch ``epoch`` (0-based), in steps."""
        _check_epoch(epoch)
        if self.decay_epochs == 0 or epoch >= self.decay_epochs:
            return self.sig_end
        return self.sig_init * (self.sig_end / self.sig_init) ** (epoch / self.decay_epochs)

    def sigma_eff(self, epoch: int) -> float:
        """Effective Gaussian width ``SIG + 0.27`` used during epoch ``epoch``, in steps."""
        return self.sig(epoch) + self.offset

    __call__ = sigma_eff


@dataclass(frozen=True)
class DelRecSigmaSchedule:
    """DelRec triangle-spread sigma per epoch: ``sigma_init * decay ** (100 e / epochs)`` (steps).

    Args:
        epochs: total number of epochs ``E``.
        sigma_init: sigma at epoch 0 (DelRec: 10).
        decay: base of the decay (DelRec: 0.95).
    """

    epochs: int
    sigma_init: float = 10.0
    decay: float = 0.95

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {self.epochs!r}")
        check_positive("sigma_init", self.sigma_init, allow_zero=True)
        check_positive("decay", self.decay)
        if self.decay > 1:
            raise ValueError(f"decay must be in (0, 1], got {self.decay!r}")

    def sigma(self, epoch: int) -> float:
        """Sigma used during epoch ``epoch`` (0-based), in steps."""
        _check_epoch(epoch)
        return self.sigma_init * self.decay ** (100.0 * epoch / self.epochs)

    def half_width(self, epoch: int) -> float:
        """Half-width ``s = 1 + sigma`` of the triangle spread during epoch ``epoch``."""
        return 1.0 + self.sigma(epoch)

    __call__ = sigma



# ----------------------------------------------------------------------------------------------
# learning-rate ease-in (EventProp with delays, SEEDS C2 / F3.27)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EaseInSchedule:
    """Learning-rate *factor* per batch: ``min(1, factor * multiplier ** batch)``.

    mlGeNN's EventProp experiments (SEEDS C2) ease the weight learning rate in: it starts at
    ``factor * lr`` and is multiplied by ``multiplier`` after every batch until it reaches
    ``lr`` (the mlGeNN example: ``1e-6 * 1.05 ** batch`` up to ``1e-3``, i.e. ``factor = 1e-3``;
    the paper's SHD/SSC runs start from ``0.01 * lr``). Use it as the ``lr_lambda`` of a
    :class:`torch.optim.lr_scheduler.LambdaLR` (see :func:`ease_in`) stepped once per batch.

    Args:
        factor: initial fraction of the learning rate, in ``(0, 1]``.
        multiplier: per-batch growth factor, ``> 1`` (``>= 1`` if ``factor == 1``).
    """

    factor: float = 1e-3
    multiplier: float = 1.05

    def __post_init__(self) -> None:
        check_positive("factor", self.factor)
        check_positive("multiplier", self.multiplier)
        if self.factor > 1:
            raise ValueError(f"factor must be in (0, 1], got {self.factor!r}")
        if self.multiplier < 1 or (self.multiplier == 1 and self.factor < 1):
            raise ValueError(f"multiplier must be > 1 to reach the full rate, got "
                             f"{self.multiplier!r}")

    @property
    def batches_to_full(self) -> int:
        """First batch index (0-based) at which the factor is 1."""
        b = 0
        if self.factor < 1:
            b = max(0, math.floor(-math.log(self.factor) / math.log(self.multiplier)) - 1)
            while self(b) < 1.0:
                b += 1
        return b

    def __call__(self, batch: int) -> float:
        """Factor for batch ``batch`` (0-based; ``LambdaLR`` passes its step count)."""
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 0:
            raise ValueError(f"batch must be a non-negative int, got {batch!r}")
        if batch * math.log(self.multiplier) >= -math.log(self.factor):
            return 1.0  # also avoids overflowing multiplier ** batch
        return min(1.0, self.factor * self.multiplier ** batch)


def ease_in(optimizer: torch.optim.Optimizer, factor: float = 1e-3, multiplier: float = 1.05,
            last_epoch: int = -1) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` easing every parameter group's rate in (:class:`EaseInSchedule`).

    Call ``scheduler.step()`` after every batch's ``optimizer.step()``. The optimiser's
    ``lr`` is the final rate; the first batch uses ``factor * lr``.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, EaseInSchedule(factor, multiplier),
                                             last_epoch=last_epoch)


__all__ = ["DCLSSigmaSchedule", "DelRecSigmaSchedule", "EaseInSchedule", "ease_in"]
