"""Embedded Runge-Kutta pairs with per-element step-size control, as one-step maps.

:func:`integrate` advances every element of a batched state over its own interval ``h`` to a
tolerance, each element with its own adaptive step size. It has the signature of the fixed
steppers of :mod:`solvers.steppers` (``f, t, y, h -> y(t + h)``). :func:`solve` runs the same
step-size search once and returns the accepted steps (:class:`Steps`): the end state, a
continuous extension evaluated anywhere inside without re-integrating (dopri5's fourth-order
dense output, bosh3's cubic Hermite) and a differentiable replay. The engine integrates each
piece once with it, locates threshold crossings on the extension and refines them on the
integrated solution (:func:`solvers.events.advance_with_events`, ``dense=``); a watched element
stops at the step that brackets its crossing. Every call is a deterministic function of
``(t, y, h)`` (the first step size is chosen from ``y`` and ``f``, never remembered between
calls), so the backward's replay of a step reproduces the forward.

Gradients: autograd runs through the accepted steps; step sizes are chosen without gradient,
except the last step of each element, which ends exactly at ``t + h``: so ``d/dh`` is the
derivative of that step, ``f(y(t + h))`` to the tolerance.

Methods (:data:`TABLEAUS`): ``"dopri5"`` (Dormand-Prince 5(4), FSAL) and ``"bosh3"``
(Bogacki-Shampine 3(2), FSAL). Pass a method name or an :class:`Adaptive` with tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .steppers import RHS, retype

__all__ = ["TABLEAUS", "Adaptive", "Steps", "Tableau", "integrate", "solve"]


@dataclass(frozen=True)
class Tableau:
    """Butcher tableau of an explicit embedded pair with the first-same-as-last property.

    ``a[i]`` holds the coefficients of stage ``i + 1``; the last stage is evaluated at the new
    state (its row equals ``b``), so it is the next step's first stage. ``e = b - b_hat``
    weights the error estimate; ``order`` is the lower order of the pair. ``d`` weights the
    quartic term of the continuous extension (see :class:`Steps`); empty for cubic Hermite.
    """

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    order: int
    d: tuple[float, ...] = ()


_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
# Dormand-Prince's fourth-order continuous extension (Hairer, Norsett & Wanner, Solving ODEs I,
# sec. II.6): the weights of the stage derivatives in the quartic term (they sum to zero).
_DP_D = (-12715105075 / 11282082432, 0.0, 87487479700 / 32700410799,
         -10690763975 / 1880347072, 701980252875 / 199316789632, -1453857185 / 822651844,
         69997945 / 29380423)
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
        b=_DP_B, e=tuple(p - q for p, q in zip(_DP_B, _DP_B_HAT, strict=True)), order=4,
        d=_DP_D),
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




class _Attempt(NamedTuple):
    """One attempt of the search that accepted a step for some elements (all detached)."""

    start: Tensor      # offset of the step's start from ``t``, per element
    size: Tensor       # step size per element
    accept: Tensor     # elements that accepted this step
    last: Tensor       # accepted and ending the interval (its size keeps ``h``'s gradient)
    y: tuple           # state at the step's start
    new: tuple         # state at the step's end
    ks: list           # stage derivatives (the last one is ``f`` at ``new``)


def _search(f: RHS, tab: Tableau, spec: Adaptive, t: Tensor, y: tuple, k1: tuple, h: Tensor,
            finished: Tensor, event: Callable[[tuple], Tensor] | None = None,
            watch: Tensor | None = None) -> tuple[tuple, Tensor, list[_Attempt]]:
    """Step-size search without gradient: the final state, the time reached per element and
    the attempts that accepted something (per element, at most one accepted step per attempt,
    in time order). Elements of ``watch`` stop after their first accepted step that ends with
    ``event >= 0`` (or non-finite)."""
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
        stops = accept & ~_finite(new)
        accept = accept & ~stops
        if watch is not None:   # this step brackets the crossing: stop at its end
            stops = stops | (accept & watch & ~(event(new) < 0))
        if bool(accept.any()):
            taken.append(_Attempt(done, size, accept, accept & last, y, new, ks))
        factor = torch.where(ratio == 0, torch.full_like(ratio, 10.0),
                             0.9 * ratio.clamp_min(1e-300) ** (-1.0 / (tab.order + 1)))
        y = retype(y, (torch.where(accept, b, a) for a, b in zip(y, new, strict=True)))
        k1 = tuple(torch.where(accept, b, a) for a, b in zip(k1, ks[-1], strict=True))
        done = torch.where(accept & last, h, torch.where(accept, done + size, done))
        finished = finished | (accept & last) | stops
        h_try = torch.where(finished, h_try, size.clamp_min(1e-300) * factor.clamp(0.2, 10.0))
        if bool(finished.all()):
            return y, done, taken
    raise RuntimeError(f"{spec.name}: more than {spec.max_steps} step attempts in one interval "
                       f"(rtol={spec.rtol}, atol={spec.atol}); the model may be diverging")


class Steps:
    """The accepted steps of one interval: its end state, continuous extension and replay.

    Built by :func:`solve` (the step-size search, without gradient). ``steps(x)`` is the state
    at ``t + x`` for ``0 <= x <= h`` per element, from the accepted step that contains it:
    ``y(θ) = r1 + θ (r2 + (1 - θ) (r3 + θ (r4 + (1 - θ) r5)))`` with ``θ`` the fraction of the
    step, ``r1 = y0``, ``r2 = y1 - y0``, ``r3 = s k1 - r2``, ``r4 = r2 - s k_end - r3`` (``s`` the
    step size, ``k1``/``k_end`` the derivatives at its ends) and ``r5 = s sum_i d_i k_i``
    (:attr:`Tableau.d`; zero for bosh3, which leaves the cubic Hermite interpolant). It
    matches the step's end values and derivatives, is of order 4 (dopri5) or 3 (bosh3) and
    costs no evaluation of ``f``. :meth:`replay` re-runs the accepted steps with gradient.
    """

    def __init__(self, f: RHS, tab: Tableau, t: Tensor, y: tuple, h: Tensor, end: tuple,
                 reached: Tensor, taken: list[_Attempt]) -> None:
        self.f, self.tab, self.t, self.y, self.h = f, tab, t, y, h
        # the state at t + reached, detached: reached == h except where the search stopped
        # early (a non-finite state, or a watched event)
        self.end, self.reached, self.taken = end, reached, taken
        self._table: tuple | None = None

    def _coefficients(self) -> tuple:
        """Stacked per attempt: starts, sizes, accept masks, ``[K, 5, ...]`` per component."""
        if self._table is None:
            taken, d = self.taken, self.tab.d
            comps = []
            for i in range(len(self.y)):
                rows = []
                for a in taken:
                    r1, r2 = a.y[i], a.new[i] - a.y[i]
                    r3 = a.size * a.ks[0][i] - r2
                    r4 = r2 - a.size * a.ks[-1][i] - r3
                    r5 = a.size * _combine(d, a.ks, i) if d else torch.zeros_like(r1)
                    rows.append(torch.stack(torch.broadcast_tensors(r1, r2, r3, r4, r5)))
                comps.append(torch.stack(rows))
            self._table = (torch.stack([a.start for a in taken]),
                           torch.stack([a.size for a in taken]),
                           torch.stack([a.accept for a in taken]), comps)
        return self._table

    def __call__(self, x: Tensor) -> tuple:
        """The state at ``t + x`` (``x`` per element, clamped to the accepted steps), detached."""
        y0 = retype(self.y, (v.detach() for v in self.y))
        if not self.taken:
            return y0
        starts, sizes, accept, comps = self._coefficients()
        x = torch.as_tensor(x, dtype=starts.dtype, device=starts.device).detach()
        x = x.expand(starts.shape[1:])
        order = torch.arange(len(self.taken), device=x.device).view(-1, *([1] * x.dim()))
        # the last accepted step starting at or before x (accepted steps are in time order)
        idx = torch.where(accept & (starts <= x), order, -1).amax(0)
        none = idx < 0
        idx = idx.clamp_min(0).unsqueeze(0)
        start, size = starts.gather(0, idx)[0], sizes.gather(0, idx)[0]
        theta = ((x - start) / torch.where(size > 0, size, 1.0)).clamp(0.0, 1.0)
        rest = 1.0 - theta
        out = []
        for v, c in zip(y0, comps, strict=True):
            r1, r2, r3, r4, r5 = c.gather(0, idx.unsqueeze(1).expand(1, *c.shape[1:]))[0]
            val = r1 + theta * (r2 + rest * (r3 + theta * (r4 + rest * r5)))
            out.append(torch.where(none, v, val))
        return retype(self.y, out)

    def replay(self, keep: Tensor | None = None) -> tuple:
        """The end state with gradient: the accepted steps re-run (step sizes fixed, except
        the last one of each element, which ends exactly at ``t + h`` and so carries ``h``'s
        gradient). Elements outside ``keep`` take no step (their start state)."""
        f, t, y, h = self.f, self.t, self.y, self.h
        k1 = f(t, y)
        finished = h.detach() <= 0
        if bool(finished.any()):
            # Zero-length intervals: y + h f(t, y) is y itself with the derivative f in h.
            y = retype(y, (torch.where(finished, v + h * k, v)
                           for v, k in zip(y, k1, strict=True)))
        done = torch.zeros_like(h).detach()
        for a in self.taken:
            accept, last = (a.accept, a.last) if keep is None else (a.accept & keep,
                                                                   a.last & keep)
            if not bool(accept.any()):
                continue
            # elements that took no step here take a zero step (the identity, finite
            # derivatives)
            step = torch.where(last, h - done, torch.where(accept, a.size,
                                                           torch.zeros_like(a.size)))
            new, ks = _rk_step(f, self.tab, t + done, y, k1, step)
            y = retype(y, (torch.where(accept, b, v) for v, b in zip(y, new, strict=True)))
            k1 = tuple(torch.where(accept, b, v) for v, b in zip(k1, ks[-1], strict=True))
            done = torch.where(accept, done + a.size, done)
        return y


def solve(f: RHS, t: Tensor, y: tuple, h: Tensor | float, spec: Adaptive | str,
          event: Callable[[tuple], Tensor] | None = None, watch: Tensor | None = None) -> Steps:
    """Search the step sizes from ``t`` over ``h`` (>= 0, per element) without gradient.

    Arguments as :func:`integrate`; with ``event`` (``g(y)``, per element) and ``watch`` (a
    boolean mask), a watched element stops at the end of its first accepted step where
    ``g >= 0``: that step brackets the crossing, and nothing past it is integrated (e.g. the
    finite-time blow-up of AdEx after its threshold). Returns the :class:`Steps`: ``.end``
    (the state at ``t + .reached``, detached; ``.reached == h`` unless stopped early), the
    continuous extension ``steps(x)`` and ``steps.replay()`` (the end state with gradient
    w.r.t. ``y``, ``t``, ``h`` and whatever ``f`` depends on). Every call is a deterministic
    function of its inputs.
    """
    if (event is None) != (watch is None):
        raise ValueError("solve: pass both event and watch, or neither")
    spec = Adaptive(spec) if isinstance(spec, str) else spec
    tab = TABLEAUS[spec.name]
    like = y[0]
    h = torch.as_tensor(h, dtype=like.dtype, device=like.device).expand(like.shape)
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device).expand(like.shape)
    finished = h.detach() <= 0
    with torch.no_grad():
        y0 = retype(y, (v.detach() for v in y))
        if bool(finished.all()):
            return Steps(f, tab, t, y, h, y0, torch.zeros_like(h), [])
        end, reached, taken = _search(f, tab, spec, t.detach(), y0, f(t.detach(), y0),
                                      h.detach(), finished, event, watch)
    return Steps(f, tab, t, y, h, end, reached, taken)


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
    steps = solve(f, t, y, h, spec)
    return steps.replay() if torch.is_grad_enabled() else steps.end
