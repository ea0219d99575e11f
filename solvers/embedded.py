"""Embedded Runge-Kutta pairs with per-element step-size control, as one-step maps.

:func:`integrate` advances every element of a batched state over its own interval ``h`` to a
tolerance, each element with its own adaptive step size. It has the signature of the fixed
steppers of :mod:`solvers.steppers` (``f, t, y, h -> y(t + h)``), so the engine uses it as the
dense output of a grid step exactly like RK4: threshold crossings are located by root finding
on it, resets applied at the event, delayed arrivals are step boundaries. Every call is a
deterministic function of ``(t, y, h)`` (the first step size is chosen from ``y`` and ``f``,
never remembered between calls), so the backward's replay of a step reproduces the forward.

Gradients: autograd runs through the accepted steps; step sizes are chosen without gradient,
except the last step of each element, which ends exactly at ``t + h``: so ``d/dh`` is the
derivative of that step, ``f(y(t + h))`` to the tolerance.

Methods (:data:`TABLEAUS`): ``"dopri5"`` (Dormand-Prince 5(4), FSAL) and ``"bosh3"``
(Bogacki-Shampine 3(2), FSAL). Pass a method name or an :class:`Adaptive` with tolerances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .steppers import RHS, retype

__all__ = ["TABLEAUS", "Adaptive", "Tableau", "integrate"]


@dataclass(frozen=True)
class Tableau:
    """Butcher tableau of an explicit embedded pair with the first-same-as-last property.

    ``a[i]`` holds the coefficients of stage ``i + 1``; the last stage is evaluated at the new
    state (its row equals ``b``), so it is the next step's first stage. ``e = b - b_hat``
    weights the error estimate; ``order`` is the lower order of the pair.
    """

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    order: int


_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_BS_B = (2 / 9, 1 / 3, 4 / 9, 0.0)
_BS_B_HAT = (7 / 24, 1 / 4, 1 / 3, 1 / 8)

#: The embedded pairs by name.
TABLEAUS: dict[str, Tableau] = {
    "dopri5": Tableau(
        c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        a=((1 / 5,),
           (3 / 40, 9 / 40),
           (44 / 45, -56 / 15, 32 / 9),
           (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
           (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
           _DP_B[:6]),
        b=_DP_B, e=tuple(p - q for p, q in zip(_DP_B, _DP_B_HAT, strict=True)), order=4),
    "bosh3": Tableau(
        c=(0.0, 1 / 2, 3 / 4, 1.0),
        a=((1 / 2,), (0.0, 3 / 4), _BS_B[:3]),
        b=_BS_B, e=tuple(p - q for p, q in zip(_BS_B, _BS_B_HAT, strict=True)), order=2),
}


@dataclass(frozen=True)
class Adaptive:
    """An embedded Runge-Kutta method with its tolerances: ``method=Adaptive("dopri5", rtol=1e-9)``.

    The error of a step, per element, is the RMS over the state variables of
    ``err / (atol + rtol * max(|y_old|, |y_new|))``; a step is accepted when it is <= 1.

    Args:
        name: a key of :data:`TABLEAUS`.
        rtol, atol: relative and absolute tolerances (units of the state variables).
        max_steps: cap on step attempts in one call (a diverging model raises instead of
            looping forever).
    """

    name: str = "dopri5"
    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 100_000

    def __post_init__(self) -> None:
        if self.name not in TABLEAUS:
            raise ValueError(f"Adaptive: unknown method {self.name!r}; known: "
                             f"{', '.join(TABLEAUS)}")
        for field in ("rtol", "atol"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and v > 0):
                raise ValueError(f"Adaptive.{field} must be a positive finite number, got {v!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or \
                self.max_steps < 1:
            raise ValueError(f"Adaptive.max_steps must be a positive integer, got "
                             f"{self.max_steps!r}")

    def __call__(self, f: RHS, t: Tensor, y: tuple, h: Tensor) -> tuple:
        """Stepper interface: :func:`integrate` with these settings."""
        return integrate(f, t, y, h, self)


def _rms(parts: tuple, scale: tuple) -> Tensor:
    """Per-element RMS over the state variables of ``parts / scale``."""
    total = sum((p / s) ** 2 for p, s in zip(parts, scale, strict=True))
    return torch.sqrt(total / len(parts))


def _combine(weights: tuple[float, ...], ks: list, i: int) -> Tensor:
    """``sum_j weights[j] ks[j][i]`` over the non-zero weights (component ``i``)."""
    return sum(w * k[i] for w, k in zip(weights, ks, strict=True) if w != 0.0)


def _finite(y: tuple) -> Tensor:
    """Per element: every state variable finite."""
    out = torch.isfinite(y[0])
    for v in y[1:]:
        out = out & torch.isfinite(v)
    return out


def _first_step(f: RHS, t: Tensor, y: tuple, k1: tuple, spec: Adaptive, order: int) -> Tensor:
    """Hairer-Norsett-Wanner's starting step, per element (no gradient)."""
    scale = tuple(spec.atol + spec.rtol * v.abs() for v in y)
    d0, d1 = _rms(y, scale), _rms(k1, scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    y1 = retype(y, (v + h0 * k for v, k in zip(y, k1, strict=True)))
    k2 = f(t + h0, y1)
    d2 = _rms(tuple(b - a for a, b in zip(k1, k2, strict=True)), scale) / h0
    big = torch.maximum(d1, d2)
    h1 = torch.where(big <= 1e-15, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                     (0.01 / big.clamp_min(1e-300)) ** (1.0 / (order + 1)))
    return torch.minimum(100 * h0, h1)


def _rk_step(f: RHS, tab: Tableau, t0: Tensor, y: tuple, k1: tuple, step: Tensor) -> tuple:
    """One step of the pair: ``(y_new, stages)``; the last stage is ``f`` at ``y_new``."""
    ks = [k1]
    for c, row in zip(tab.c[1:], tab.a, strict=True):
        stage = retype(y, (v + step * _combine(row, ks, i) for i, v in enumerate(y)))
        ks.append(f(t0 + c * step, stage))
    return stage, ks                                        # row of the last stage = b


def _search(f: RHS, tab: Tableau, spec: Adaptive, t: Tensor, y: tuple, k1: tuple, h: Tensor,
            finished: Tensor) -> tuple[tuple, list[tuple[Tensor, Tensor, Tensor]]]:
    """Step-size search without gradient: the final state and, per attempt that accepted
    something, ``(size, accept, last)`` per element."""
    done = torch.zeros_like(h)                                # accepted time per element
    h_try = _first_step(f, t, y, k1, spec, tab.order)
    taken = []
    for _ in range(spec.max_steps):
        left = (h - done).clamp_min(0)
        last = ~finished & (h_try >= left)
        size = torch.where(finished, torch.zeros_like(left), torch.minimum(h_try, left))
        new, ks = _rk_step(f, tab, t + done, y, k1, size)
        err = tuple(size * _combine(tab.e, ks, i) for i in range(len(y)))
        scale = tuple(spec.atol + spec.rtol * torch.maximum(a.abs(), b.abs())
                      for a, b in zip(y, new, strict=True))
        ratio = _rms(err, scale)
        ratio = torch.where(torch.isfinite(ratio), ratio, torch.full_like(ratio, math.inf))
        accept = ~finished & (ratio <= 1.0)
        # A solution that blows up in finite time (AdEx past its spike) drives the step size to
        # zero: below 1e-9 of the interval the step is taken as it is, and an element whose
        # state went non-finite stops at its last finite state.
        accept = accept | (~finished & ~accept & (size <= 1e-9 * h))
        blown = accept & ~_finite(new)
        accept = accept & ~blown
        if bool(accept.any()):
            taken.append((size, accept, accept & last))
        factor = torch.where(ratio == 0, torch.full_like(ratio, 10.0),
                             0.9 * ratio.clamp_min(1e-300) ** (-1.0 / (tab.order + 1)))
        y = retype(y, (torch.where(accept, b, a) for a, b in zip(y, new, strict=True)))
        k1 = tuple(torch.where(accept, b, a) for a, b in zip(k1, ks[-1], strict=True))
        done = torch.where(accept & last, h, torch.where(accept, done + size, done))
        finished = finished | (accept & last) | blown
        h_try = torch.where(finished, h_try, size.clamp_min(1e-300) * factor.clamp(0.2, 10.0))
        if bool(finished.all()):
            return y, taken
    raise RuntimeError(f"{spec.name}: more than {spec.max_steps} step attempts in one interval "
                       f"(rtol={spec.rtol}, atol={spec.atol}); the model may be diverging")


def integrate(f: RHS, t: Tensor, y: tuple, h: Tensor | float, spec: Adaptive | str) -> tuple:
    """Advance every element from ``t`` over ``h`` (>= 0, per element) to the tolerance.

    Under autograd the step sizes are searched first without gradient, then only the accepted
    steps are replayed with it: rejected trial steps (which may overflow, e.g. AdEx's
    exponential) never enter the graph.

    Args:
        f: right-hand side ``f(t, y) -> dy/dt``; ``t`` broadcasts against the components.
        t: start time per element (broadcastable to the element shape).
        y: state (tuple of tensors of the element shape; a ``NamedTuple`` keeps its type).
        h: interval length per element, broadcastable.
        spec: an :class:`Adaptive` or a method name (default tolerances).

    Returns:
        the state at ``t + h`` of the type of ``y``.
    """
    spec = Adaptive(spec) if isinstance(spec, str) else spec
    tab = TABLEAUS[spec.name]
    like = y[0]
    h = torch.as_tensor(h, dtype=like.dtype, device=like.device).expand(like.shape)
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device).expand(like.shape)
    finished = h.detach() <= 0
    k1 = f(t, y)
    if bool(finished.any()):
        # Zero-length intervals: y + h f(t, y) is y itself with the derivative f in h.
        y = retype(y, (torch.where(finished, v + h * k, v) for v, k in zip(y, k1, strict=True)))
        if bool(finished.all()):
            return y
    with torch.no_grad():
        end, taken = _search(f, tab, spec, t.detach(), retype(y, (v.detach() for v in y)),
                             tuple(k.detach() for k in k1), h.detach(), finished)
    if not torch.is_grad_enabled():
        return end
    done = torch.zeros_like(h).detach()
    for size, accept, last in taken:
        # The last step ends exactly at t + h: its size keeps the gradient of h; elements
        # that took no step here take a zero step (the identity, finite derivatives).
        step = torch.where(last, h - done, torch.where(accept, size, torch.zeros_like(size)))
        new, ks = _rk_step(f, tab, t + done, y, k1, step)
        y = retype(y, (torch.where(accept, b, a) for a, b in zip(y, new, strict=True)))
        k1 = tuple(torch.where(accept, b, a) for a, b in zip(k1, ks[-1], strict=True))
        done = torch.where(accept, done + size, done)
    return y
