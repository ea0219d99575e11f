"""Fixed-step one-step integrators on batched tensors.

A state is a tuple of tensors (a ``NamedTuple`` is kept as its own type); every
element of the batch may take its own step size: ``h`` is a tensor that broadcasts
against the state components. A right-hand side is ``f(t, y) -> dy/dt`` with ``t``
a tensor that broadcasts the same way, so time-dependent dynamics see the right
time for every element.

These are the building blocks of both time modes: discrete time applies one step of
size ``dt``; continuous time uses the same map with a per-element step as the dense
output of a grid step (see :mod:`solvers.events`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import Tensor

State = TypeVar("State", bound=tuple)
RHS = Callable[[Tensor, tuple], tuple]


def retype(like: tuple, parts: Iterable[Tensor]) -> tuple:
    """``parts`` as a tuple of the type of ``like`` (a ``NamedTuple`` keeps its type)."""
    parts = tuple(parts)
    return like._make(parts) if hasattr(like, "_make") else parts


def axpy(y: State, h: Tensor | float, k: tuple) -> State:
    """Return ``y + h * k`` component-wise, keeping the tuple type of ``y``."""
    if isinstance(h, float):  # one fused operator per component
        return retype(y, (torch.add(a, b, alpha=h) for a, b in zip(y, k, strict=True)))
    return retype(y, (a + h * b for a, b in zip(y, k, strict=True)))


def euler(f: RHS, t: Tensor, y: State, h: Tensor) -> State:
    """Forward Euler: first order."""
    return axpy(y, h, f(t, y))


def heun(f: RHS, t: Tensor, y: State, h: Tensor) -> State:
    """Heun's method (explicit trapezoid): second order."""
    k1 = f(t, y)
    k2 = f(t + h, axpy(y, h, k1))
    return retype(y, (a + 0.5 * h * (b + c) for a, b, c in zip(y, k1, k2, strict=True)))


def midpoint(f: RHS, t: Tensor, y: State, h: Tensor) -> State:
    """Explicit midpoint rule: second order."""
    k1 = f(t, y)
    return axpy(y, h, f(t + 0.5 * h, axpy(y, 0.5 * h, k1)))


def rk4(f: RHS, t: Tensor, y: State, h: Tensor) -> State:
    """Classic fourth-order Runge-Kutta."""
    half = 0.5 * h
    k1 = f(t, y)
    k2 = f(t + half, axpy(y, half, k1))
    k3 = f(t + half, axpy(y, half, k2))
    k4 = f(t + h, axpy(y, h, k3))
    sixth = h / 6.0
    # b + 2c + 2d + e with the doubling fused into the additions (``alpha=2`` is exact, so
    # the sums are bit for bit those of ``b + 2.0 * c + 2.0 * d + e``, in two fewer operators)
    return retype(
        y,
        (
            a + sixth * (torch.add(torch.add(b, c, alpha=2.0), d, alpha=2.0) + e)
            for a, b, c, d, e in zip(y, k1, k2, k3, k4, strict=True)
        ),
    )


STEPPERS: dict[str, Callable[[RHS, Tensor, tuple, Tensor], tuple]] = {
    "euler": euler,
    "midpoint": midpoint,
    "heun": heun,
    "rk4": rk4,
}
"""Name -> stepper. The order of accuracy of each is in :data:`ORDER`."""

ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
