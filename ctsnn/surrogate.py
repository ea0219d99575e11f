"""Surrogate derivatives of the spike (Heaviside) function.

A surrogate is a small object: calling it on the threshold value ``x`` (``g(state)``,
zero at threshold) returns exact 0/1 spikes in the forward pass and uses a smooth
pseudo-derivative in the backward pass::

    spikes = ctsnn.surrogate.atan(alpha=2.0)(x)

All surrogates are normalised to integrate to 1 over ``x``, except where their source
defines them otherwise (noted per function).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_positive


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, derivative: Callable[[Tensor], Tensor]) -> Tensor:
        ctx.save_for_backward(x)
        ctx.derivative = derivative
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.derivative(x), None


@dataclass(frozen=True)
class Surrogate:
    """Heaviside forward, ``derivative(x)`` backward. Build with the factory functions.

    ``family`` and ``parameter`` name a built-in surrogate and its parameter (compiled kernels
    evaluate those themselves; ``None`` for a user surrogate, whose ``derivative`` is called).
    """

    name: str
    derivative: Callable[[Tensor], Tensor]
    family: str | None = None
    parameter: float | None = None

    def __call__(self, x: Tensor) -> Tensor:
        return _Heaviside.apply(x, self.derivative)


def atan(alpha: float = 2.0) -> Surrogate:
    """Arctan (SpikingJelly ``ATan``): ``(alpha/2) / (1 + (pi alpha x / 2)^2)``."""
    check_positive("alpha", alpha)
    return Surrogate(f"atan(alpha={alpha})",
                     lambda x: (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2),
                     "atan", float(alpha))


def fast_sigmoid(slope: float = 25.0) -> Surrogate:
    """Fast sigmoid as in snnTorch: ``1 / (slope |x| + 1)^2`` (integrates to ``2 / slope``)."""
    check_positive("slope", slope)
    return Surrogate(f"fast_sigmoid(slope={slope})", lambda x: 1.0 / (slope * x.abs() + 1.0) ** 2,
                     "fast_sigmoid", float(slope))


def superspike(beta: float = 100.0) -> Surrogate:
    """SuperSpike (Zenke & Ganguli 2018): ``1 / (beta |x| + 1)^2``, normalised by ``beta``."""
    check_positive("beta", beta)
    return Surrogate(f"superspike(beta={beta})",
                     lambda x: beta / (beta * x.abs() + 1.0) ** 2 / 2.0, "superspike", float(beta))


def triangle(width: float = 1.0) -> Surrogate:
    """Triangle (DelRec SSC): ``max(0, width - |x|) / width^2``."""
    check_positive("width", width)
    return Surrogate(f"triangle(width={width})",
                     lambda x: torch.clamp(width - x.abs(), min=0.0) / width**2, "triangle",
                     float(width))


def sigmoid(alpha: float = 4.0) -> Surrogate:
    """Derivative of ``sigmoid(alpha x)``."""
    check_positive("alpha", alpha)

    def d(x: Tensor) -> Tensor:
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1 - s)

    return Surrogate(f"sigmoid(alpha={alpha})", d, "sigmoid", float(alpha))


__all__ = ["Surrogate", "atan", "fast_sigmoid", "superspike", "triangle", "sigmoid"]
