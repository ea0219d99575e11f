"""Default initialisers of synaptic weights, delays and fixed fan-in masks.

Weights: :func:`kaiming_uniform` (``U(-b, b)``, ``b = sqrt(2) sqrt(3 / fan_in)``, ReLU gain,
over the *connected* fan-in) and ``"orthogonal"`` (gain 1, DelRec's recurrent weights), by name
in :func:`initial_weight`.
Delays (seconds): :func:`uniform_delays`, :func:`half_normal_delays`, :func:`constant_delays`,
each a callable ``shape -> Tensor`` (float64) accepted as ``delay_init=`` by every synapse, next
to the strings ``"uniform"`` (``U(0, max_delay)``), ``"half_normal"`` (``|N(0, std²)|`` clipped
to ``max_delay``, ``std = max_delay / 2`` by default), a number (constant) or a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._checks import check_positive

DelayInit = str | float | Tensor | Callable[[tuple[int, ...]], Tensor]
WeightInit = str | Tensor | Callable[[Tensor], object]

#: Names accepted as ``weight_init``.
WEIGHT_INITS = ("kaiming_uniform", "orthogonal")


def fixed_fan_in_mask(n_out: int, n_in: int, fan_in: int,
                      generator: torch.Generator | None = None) -> Tensor:
    """Boolean mask ``[n_out, n_in]`` with exactly ``fan_in`` randomly chosen inputs per row."""
    if not isinstance(fan_in, int) or isinstance(fan_in, bool) or not 1 <= fan_in <= n_in:
        raise ValueError(f"fan_in must be an int in [1, n_in = {n_in}], got {fan_in!r}")
    order = torch.rand(n_out, n_in, generator=generator).argsort(dim=1)[:, :fan_in]
    mask = torch.zeros(n_out, n_in, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask


def kaiming_uniform(shape: tuple[int, int], fan_in: int,
                    generator: torch.Generator | None = None) -> Tensor:
    """``U(-b, b)`` weights (float64), ``b = sqrt(2) sqrt(3 / fan_in)`` (Kaiming, ReLU gain)."""
    bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def initial_weight(init: WeightInit, shape: tuple[int, int], *, fan_in: int,
                   dtype: torch.dtype, generator: torch.Generator | None = None) -> Tensor:
    """Weights ``shape`` from ``init``: a name of :data:`WEIGHT_INITS`, a tensor, or a callable
    filling a tensor in place (e.g. ``torch.nn.init.zeros_``)."""
    if isinstance(init, str):
        if init == "kaiming_uniform":
            return kaiming_uniform(shape, fan_in, generator).to(dtype)
        if init == "orthogonal":
            w = torch.empty(shape, dtype=dtype)
            nn.init.orthogonal_(w, gain=1.0, generator=generator)
            return w
        raise ValueError(f"unknown weight_init {init!r}; expected one of {WEIGHT_INITS}, a "
                         "tensor or a callable")
    if isinstance(init, Tensor):
        if tuple(init.shape) != tuple(shape):
            raise ValueError(f"weight_init must have shape {list(shape)}, got "
                             f"{list(init.shape)}")
        return init.detach().to(dtype).clone(memory_format=torch.contiguous_format)
    if callable(init):
        w = torch.empty(shape, dtype=dtype)
        with torch.no_grad():
            init(w)
        return w
    raise TypeError(f"weight_init must be one of {WEIGHT_INITS}, a tensor or a callable, got "
                    f"{type(init).__name__}")


def uniform_delays(low: float, high: float, *, generator: torch.Generator | None = None
                   ) -> Callable[[tuple[int, ...]], Tensor]:
    """Delay initialiser ``U(low, high)`` in seconds (DelRec SHD: ``U(10, 30)`` steps)."""
    check_positive("low", low, allow_zero=True)
    check_positive("high", high, allow_zero=True)
    if high < low:
        raise ValueError(f"uniform_delays: high ({high}) must be >= low ({low})")
    return lambda shape: low + (high - low) * torch.rand(shape, dtype=torch.float64,
                                                         generator=generator)


def half_normal_delays(std: float, *, generator: torch.Generator | None = None
                       ) -> Callable[[tuple[int, ...]], Tensor]:
    """Delay initialiser ``|N(0, std²)|`` in seconds (DelRec SSC/PS-MNIST: std 12 steps)."""
    check_positive("std", std, allow_zero=True)
    return lambda shape: (std * torch.randn(shape, dtype=torch.float64,
                                            generator=generator)).abs()


def constant_delays(value: float) -> Callable[[tuple[int, ...]], Tensor]:
    """Delay initialiser: every delay ``value`` seconds."""
    check_positive("value", value, allow_zero=True)
    return lambda shape: torch.full(shape, float(value), dtype=torch.float64)


def initial_delay(init: DelayInit, shape: tuple[int, ...], *, max_delay: float | None,
                  std: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Delays in seconds (float64, ``shape``) from ``init`` (see the module docstring).

    A tensor of the per-axon shape ``[n_in]`` broadcasts to a per-synapse ``shape``; a 0-d
    tensor or a number fills ``shape``. Values are checked by the synapse.
    """
    if isinstance(init, bool):
        raise TypeError("delay_init must be a string, a number (s), a tensor (s) or a "
                        "callable, got bool")
    if isinstance(init, str):
        if init not in ("uniform", "half_normal"):
            raise ValueError(f"unknown delay_init {init!r}; expected 'uniform', 'half_normal', "
                             "a number (s), a tensor (s) or a callable shape -> seconds")
        if max_delay is None:
            raise ValueError(f"delay_init={init!r} draws delays up to max_delay: give "
                             "max_delay= (seconds) or explicit delays")
        if init == "uniform":
            return torch.rand(shape, generator=generator, dtype=torch.float64) * max_delay
        if std is None:
            std = max_delay / 2
        check_positive("delay_std", std)
        d = torch.randn(shape, generator=generator, dtype=torch.float64).abs() * std
        return d.clamp(max=max_delay)
    if isinstance(init, (int, float)):
        return torch.full(shape, float(init), dtype=torch.float64)
    if isinstance(init, Tensor):
        seconds = init.detach().to(torch.float64).cpu()
        if seconds.ndim == 0:
            return seconds.expand(shape).clone()
        if len(shape) == 2 and tuple(seconds.shape) == (shape[1],):
            return seconds.expand(shape).clone()
        return seconds
    if callable(init):
        seconds = init(shape)
        if not isinstance(seconds, Tensor):
            raise TypeError(f"delay_init(shape) must return a tensor, got "
                            f"{type(seconds).__name__}")
        return seconds.detach().to(torch.float64).cpu()
    raise TypeError(f"delay_init must be a string, a number (s), a tensor (s) or a callable, got "
                    f"{type(init).__name__}")


__all__ = [
    "WEIGHT_INITS", "fixed_fan_in_mask", "kaiming_uniform", "initial_weight",
    "uniform_delays", "half_normal_delays", "constant_delays", "initial_delay",
]
