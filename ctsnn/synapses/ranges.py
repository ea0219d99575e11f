"""The range of a delay: validation of ``max_delay``, the projection, and the forward check.

Delays are causal and bounded: every delay lies in ``[0, max_delay]`` (seconds; grid kernels
count them in steps, ``[0, max_delay_steps]``). Optimiser steps can leave that range, so
training applies a documented projection after each step — :func:`ctsnn.clamp_delays_` (every
synapse's ``clamp_delays_()``, which calls :func:`clamp_delay_`); the paper recipes' ``step()``
does it. Nothing clamps silently in the forward: every synapse's forward (and every gradient
path that reads ``synapse_delay()``) calls :func:`check_delay_range`, which refuses a delay
outside the range or not finite with a message naming the parameter, the value and where it
is. It costs one min/max reduction (and one host sync) per forward.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

#: What to do about a delay that left its range (appended to every error message).
FIX = "call ctsnn.clamp_delays_(net) after each optimiser step"


def check_max_delay(owner: str, max_delay: Any, *, learn_delay: bool) -> float | None:
    """``max_delay`` (seconds) as a float, or ``None``; raise unless finite and ``>= 0``.

    ``max_delay = 0`` with learnable delays is an error (every step would project them back
    to 0: nothing can be learned).
    """
    if max_delay is None:
        return None
    if isinstance(max_delay, Tensor):
        if max_delay.numel() != 1:
            raise ValueError(f"{owner}: max_delay must be a number (seconds), got a tensor of "
                             f"shape {list(max_delay.shape)}")
        max_delay = max_delay.item()
    if isinstance(max_delay, bool) or not isinstance(max_delay, (int, float)):
        raise TypeError(f"{owner}: max_delay must be a number (seconds), got "
                        f"{type(max_delay).__name__}")
    value = float(max_delay)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: max_delay must be finite and non-negative (seconds), got "
                         f"{value!r}")
    if value == 0 and learn_delay:
        raise ValueError(f"{owner}: max_delay = 0 with learn_delay=True leaves the delays "
                         "nothing to learn (clamp_delays_ projects them onto 0): give a "
                         "positive max_delay or learn_delay=False")
    return value


def _where(mask: Tensor) -> list[int]:
    return [int(i) for i in mask.nonzero()[0].tolist()]


def check_delay_range(name: str, delay: Tensor, high: float | None, *, unit: str = "s") -> None:
    """Raise ``ValueError`` unless every element of ``delay`` is finite and in ``[0, high]``.

    Args:
        name: the parameter, as ``"Class.attribute"`` (e.g. ``"Dense.delay"``).
        delay: the delays (any shape; seconds, or steps for grid kernels).
        high: the upper bound in the same unit (``None``: unbounded above).
        unit: ``"s"`` or ``"steps"``, for the message.

    One ``aminmax`` reduction; the offending element is located only when raising. The upper
    bound is compared in ``delay``'s dtype, so a delay clamped to ``high`` passes.
    """
    if delay.numel() == 0:
        return
    d = delay.detach()
    lo, hi = torch.aminmax(d)
    lo_v, hi_v = torch.stack((lo, hi)).tolist()
    if not (math.isfinite(lo_v) and math.isfinite(hi_v)):
        at = _where(~torch.isfinite(d))
        raise ValueError(f"{name}: {d[tuple(at)].item()!r} {unit} at {at} is non-finite (a "
                         f"diverged update?); fix the training step, then {FIX}")
    if lo_v < 0:
        at = _where(d < 0)
        raise ValueError(f"{name}: {d[tuple(at)].item()!r} {unit} at {at} is negative (a spike "
                         f"would arrive before it is sent); {FIX}")
    if high is not None and hi_v > torch.tensor(high, dtype=d.dtype).item():
        at = _where(d > high)
        raise ValueError(f"{name}: {d[tuple(at)].item()!r} {unit} at {at} is above max_delay "
                         f"({high!r} {unit}); {FIX}")


@torch.no_grad()
def clamp_delay_(name: str, delay: Tensor, high: float | None) -> None:
    """The projection: clamp ``delay`` in place into ``[0, high]`` (``high=None``: ``>= 0``).

    A non-finite delay has no projection (a diverged update): ``ValueError`` naming it, and
    ``delay`` is left unchanged. ``high`` must be finite (see :func:`check_max_delay`).
    """
    if high is not None and not (isinstance(high, (int, float)) and math.isfinite(high)
                                 and high >= 0):
        raise ValueError(f"{name}: max_delay must be finite and >= 0, got {high!r}")
    finite = torch.isfinite(delay)
    if not bool(finite.all()):
        at = _where(~finite)
        raise ValueError(f"{name}: {delay[tuple(at)].item()!r} at {at} is non-finite (a "
                         "diverged update) and cannot be projected into [0, max_delay]")
    delay.clamp_(min=0.0, max=high)


__all__ = ["FIX", "check_max_delay", "check_delay_range", "clamp_delay_"]
