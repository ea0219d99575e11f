"""Fixed-step explicit Runge-Kutta solver for delay-differential equations with constant lags.

Solves ``y'(t) = f(t, y(t), (y(t - d_1), ..., y(t - d_m)))`` on ``[t0, t1]`` with
``y(t) = phi(t)`` for ``t < t0``, for a batched state ``y`` (one tensor of shape ``E``)
and constant lags ``d_i`` (seconds; each a number or a tensor broadcasting against ``E``,
so every element may have its own lag; gradients flow to them).

Each step is one step of a :mod:`solvers.steppers` method. The delayed values at the
stage times ``t_n + c dt`` come from a :class:`~solvers.history.History` holding the
grid solution and its derivative ``f`` (Hermite: cubic Hermite interpolation, so
``rk4`` keeps order 4; linear interpolation limits every method to order 2).

Lags shorter than the step (``d < dt``, including ``d = 0``) read the step being
computed. The solver then uses the step's own dense output (the interpolant of the same
kind through ``(y_n, f_n)`` and ``(y_{n+1}, f_{n+1})``) and iterates the step to a fixed
point, starting from an Euler predictor; this costs ``method`` stages + 1 per iteration
and converges when ``dt`` times the Lipschitz constant of ``f`` in its delayed arguments
is small. With every ``d >= dt`` the step is explicit (no iteration). The derivative
``f_{n+1}`` computed at the end of each step is reused as the first stage of the next.

Breaking points: a DDE solution is only piecewise smooth (``y'`` jumps at ``t0`` when
``phi'(t0-) != f(t0, ...)``, and the kink propagates to ``t0 + k d``). The full order is
observed when the grid contains these points (``d`` a multiple of ``dt``); otherwise the
error is limited by the kinks (typically order 1-2 per kink, shrinking with each
propagation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .history import INTERPOLATIONS, History, PreHistory, check_delay, hermite, linear
from .steppers import STEPPERS

DelayedRHS = Callable[[Tensor, Tensor, tuple[Tensor, ...]], Tensor]
"""``f(t, y, y_delayed) -> dy/dt``: ``t`` a 0-dim tensor (seconds), ``y`` the state
``E``, ``y_delayed[i] = y(t - d_i)`` of shape ``broadcast(d_i.shape, E)``."""


class DDESolution(NamedTuple):
    """Grid solution of :func:`solve_dde`."""

    t: Tensor
    """Grid times ``[T + 1]`` in seconds, ``t0 + n dt``."""
    y: Tensor
    """States ``[T + 1, *E]`` (``y[0]`` is the initial value)."""
    dy: Tensor
    """Derivatives ``f`` at the grid points ``[T + 1, *E]`` (for Hermite dense output)."""
    iterations: int
    """Largest number of fixed-point passes of a step (1 when every ``d >= dt``)."""
    mean_iterations: float
    """Mean number of passes per step (each costs the method's stages + 1 evaluations of f)."""


def solve_dde(
    f: DelayedRHS,
    history: PreHistory,
    t_span: tuple[float, float],
    dt: float,
    *,
    delays: Tensor | float | Sequence[Tensor | float],
    method: str = "rk4",
    interp: str = "hermite",
    y0: Tensor | None = None,
    max_delay: float | None = None,
    max_iter: int = 30,
    rtol: float | None = None,
) -> DDESolution:
    """Integrate a DDE with constant lags on a fixed grid.

    Args:
        f: right-hand side (:data:`DelayedRHS`); ``y_delayed`` has one entry per delay.
        history: pre-history ``phi`` for ``t < t0``: a tensor of the state shape ``E``
            (constant), a number, or a callable ``phi(t)`` of a time tensor (see
            :data:`solvers.history.PreHistory`).
        t_span: ``(t0, t1)`` in seconds, ``t1 > t0``, ``t1 - t0`` a multiple of ``dt``.
        dt: step in seconds.
        delays: a delay (number or tensor broadcasting against ``E``), or a sequence of them;
            seconds, in ``[0, max_delay]``; gradients flow to tensors that require them.
        method: ``"euler"``, ``"midpoint"``, ``"heun"`` or ``"rk4"``.
        interp: ``"hermite"`` or ``"linear"`` interpolation of the past.
        y0: state at ``t0`` (shape ``E``); default ``phi(t0)`` (a callable ``phi`` is then
            called on a 0-dim tensor of the default dtype). A value different from
            ``phi(t0)`` is an initial jump: ``y'`` then jumps at every ``t0 + d_i``, and the
            step ending there reads ``y(t0)`` (the right limit), so it is only first-order
            accurate; continuous initial data keeps the full order.
        max_delay: bound on the delays (s), checked; default the largest delay.
        max_iter: cap on fixed-point iterations per step when some ``d < dt``.
        rtol: relative tolerance of those iterations (default ``100 eps`` of the dtype).

    Returns:
        :class:`DDESolution` with the grid times, states and derivatives.
    """
    _check_options(f, method, interp)
    t0, t1, n_steps = _grid(t_span, dt)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    y0 = _initial_value(history, y0, t0)
    shape, dtype, device = y0.shape, y0.dtype, y0.device
    ds, bound = _delay_tensors(delays, max_delay, shape, dtype, device)
    # (At least dt: with every lag 0 the buffer still serves the start of the step.)
    hist = History(shape, max(bound, dt), dt, initial=history, t0=t0, interp=interp,
                   dtype=dtype, device=device)
    tol = (100.0 * torch.finfo(dtype).eps) if rtol is None else float(rtol)
    march = _March(f, hist, ds, dt, STEPPERS[method], interp, y0)
    ys, fs = march.run(t0, n_steps, max_iter, tol)
    if march.unconverged:
        warnings.warn(
            f"solve_dde: the fixed-point iteration for lags shorter than dt did not reach "
            f"rtol={tol:g} within max_iter={max_iter} in {march.unconverged} of {n_steps} "
            "steps; reduce dt",
            RuntimeWarning,
            stacklevel=2,
        )
    t = t0 + dt * torch.arange(n_steps + 1, dtype=dtype, device=device)
    mean_iter = march.total_iter / n_steps if march.small else 1.0
    return DDESolution(t, torch.stack(ys), torch.stack(fs), march.worst_iter, mean_iter)


def _check_options(f: DelayedRHS, method: str, interp: str) -> None:
    if method not in STEPPERS:
        raise ValueError(f"unknown method {method!r}; expected one of "
                         f"{', '.join(map(repr, STEPPERS))}")
    if interp not in INTERPOLATIONS:
        raise ValueError(f"unknown interp {interp!r}; expected one of "
                         f"{', '.join(map(repr, INTERPOLATIONS))}")
    if not callable(f):
        raise TypeError(f"f must be callable f(t, y, y_delayed), got {type(f).__name__}")


def _initial_value(history: PreHistory, y0: Tensor | None, t0: float) -> Tensor:
    """The state at ``t0`` (``y0``, else ``phi(t0)``): it sets the state shape and dtype."""
    if isinstance(history, bool) or not (
        isinstance(history, (Tensor, int, float)) or callable(history)
    ):
        raise TypeError("history must be a tensor, a number or a callable phi(t), got "
                        f"{type(history).__name__}")
    if y0 is None:
        if callable(history):
            y0 = history(torch.tensor(t0, dtype=torch.get_default_dtype()))
        elif isinstance(history, Tensor):
            y0 = history
        else:
            raise ValueError("y0 is required when history is a number (it sets the state shape)")
        if not isinstance(y0, Tensor):
            raise TypeError(f"history(t0) must return a tensor, got {type(y0).__name__}")
    elif not isinstance(y0, Tensor):
        raise TypeError(f"y0 must be a torch.Tensor, got {type(y0).__name__}")
    if not y0.is_floating_point():
        raise TypeError(f"the state must be floating point, got dtype {y0.dtype}")
    return y0


def _delay_tensors(delays: Tensor | float | Sequence[Tensor | float], max_delay: float | None,
                   shape: torch.Size, dtype: torch.dtype,
                   device: torch.device) -> tuple[tuple[Tensor, ...], float]:
    """The lags as checked tensors (constant: validated once, read unchecked in the loop) and
    the history's bound in seconds (``max_delay``, default the longest lag)."""
    if isinstance(delays, (Tensor, int, float)) and not isinstance(delays, bool):
        delays = (delays,)
    elif isinstance(delays, (str, bytes)) or not isinstance(delays, Sequence):
        raise TypeError(f"delays must be a number, a tensor or a sequence of them, got "
                        f"{type(delays).__name__}")
    delays = tuple(delays)
    if not delays:
        raise ValueError("delays must hold at least one delay")
    bound = math.inf if max_delay is None else _positive_seconds("max_delay", max_delay)
    ds = tuple(
        check_delay(d, max_delay=bound, shape=shape, dtype=dtype, device=device,
                    name=f"delays[{i}]")
        for i, d in enumerate(delays)
    )
    if max_delay is None:
        bound = max(float(d.detach().max()) for d in ds)
    return ds, bound


class _March:
    """The grid steps of :func:`solve_dde`: stepper stages whose delayed values come from the
    history, or from the step's own dense output for lags shorter than ``dt``."""

    def __init__(self, f: DelayedRHS, hist: History, ds: tuple[Tensor, ...], dt: float,
                 step, interp: str, y0: Tensor) -> None:
        self.f, self.hist, self.ds, self.dt, self.step, self.interp = f, hist, ds, dt, step, interp
        self.y0 = y0
        self.dtype, self.device = y0.dtype, y0.device
        self.h = torch.tensor(dt, dtype=self.dtype, device=self.device)
        self.small = any(bool((d.detach() < self.h).any()) for d in ds)  # some d < dt
        self.worst_iter, self.total_iter, self.unconverged = 1, 0, 0

    def delayed(self, offset: Tensor | float, dense) -> tuple[Tensor, ...]:
        return tuple(self.hist.read(d, offset, dense) for d in self.ds)

    def interpolant(self, y_a: Tensor, f_a: Tensor, y_b: Tensor, f_b: Tensor):
        """Dense output of the step from ``(y_a, f_a)`` to ``(y_b, f_b)``."""
        dt, interp = self.dt, self.interp

        def dense(s: Tensor) -> Tensor:
            theta = s / dt
            if interp == "linear":
                return linear(y_a, y_b, theta)
            return hermite(y_a, f_a, y_b, f_b, theta, dt)

        return dense

    def advance(self, t_n: float, y_n: Tensor, f_n: Tensor, dense) -> Tensor:
        """One stepper step from ``(t_n, y_n)``, reading past ``t_n`` through ``dense``."""
        start = torch.zeros((), dtype=self.dtype, device=self.device)

        def rhs(s: Tensor, state: tuple) -> tuple:
            if s is start:  # the first stage of every stepper: f_n, known already
                return (f_n,)
            return (self.f(t_n + s, state[0], self.delayed(s, dense)),)

        return self.step(rhs, start, (y_n,), self.h)[0]

    def first_derivative(self, t0: float) -> Tensor:
        """``f`` at ``t0`` (checked: the state's shape and dtype)."""
        y0, shape, dtype = self.y0, self.y0.shape, self.dtype
        f_y = self.f(torch.tensor(t0, dtype=dtype, device=self.device), y0,
                     self.delayed(0.0, lambda s: y0))
        if not isinstance(f_y, Tensor) or f_y.shape != shape or f_y.dtype != dtype:
            got = (f"shape {list(f_y.shape)}, dtype {f_y.dtype}" if isinstance(f_y, Tensor)
                   else type(f_y).__name__)
            raise ValueError(f"f must return dy/dt with the state's shape {list(shape)} and "
                             f"dtype {dtype}, got {got}")
        return f_y

    def run(self, t0: float, n_steps: int, max_iter: int,
            tol: float) -> tuple[list[Tensor], list[Tensor]]:
        """States and derivatives at the ``n_steps + 1`` grid points."""
        y, f_y = self.y0, self.first_derivative(t0)
        self.hist.push(y, f_y)
        ys, fs = [y], [f_y]
        for n in range(n_steps):
            t_n = t0 + n * self.dt
            t_end = torch.tensor(t0 + (n + 1) * self.dt, dtype=self.dtype, device=self.device)
            if not self.small:
                y = self.advance(t_n, y, f_y, None)
                f_y = self.f(t_end, y, self.delayed(self.h, None))
            else:
                y, f_y = self.implicit_step(t_n, t_end, ys, fs, max_iter, tol)
            self.hist.push(y, f_y)
            ys.append(y)
            fs.append(f_y)
        return ys, fs

    def implicit_step(self, t_n: float, t_end: Tensor, ys: list[Tensor], fs: list[Tensor],
                      max_iter: int, tol: float) -> tuple[Tensor, Tensor]:
        """A step that reads itself (some ``d < dt``): fixed-point iteration of the step on
        its own dense output, from a predictor of its end point."""
        y, f_y, h = ys[-1], fs[-1], self.h
        if len(ys) == 1:  # Euler predictor of the step's end point
            y_new, f_new = y + h * f_y, f_y
        else:  # extrapolate the previous step's cubic Hermite to theta = 2: O(dt^4)
            y_prev, f_prev = ys[-2], fs[-2]
            y_new = 5.0 * y_prev - 4.0 * y + h * (2.0 * f_prev + 4.0 * f_y)
            f_new = 12.0 * (y_prev - y) / h + 5.0 * f_prev + 8.0 * f_y
        for it in range(max_iter):
            y_next = self.advance(t_n, y, f_y, self.interpolant(y, f_y, y_new, f_new))
            f_new = self.f(t_end, y_next, self.delayed(h, self.interpolant(y, f_y, y_next, f_new)))
            change = (y_next - y_new).detach().abs().max()
            scale = 1.0 + y_next.detach().abs().max()
            y_new = y_next
            if it > 0 and bool(change <= tol * scale):
                break
        else:
            self.unconverged += 1
        self.worst_iter = max(self.worst_iter, it + 1)
        self.total_iter += it + 1
        return y_new, f_new


def _grid(t_span: tuple[float, float], dt: float) -> tuple[float, float, int]:
    if not isinstance(t_span, (tuple, list)) or len(t_span) != 2:
        raise TypeError(f"t_span must be a pair (t0, t1) of seconds, got {t_span!r}")
    t0, t1 = (float(v) for v in t_span)
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
        raise ValueError(f"t_span must be finite with t1 > t0, got {tuple(t_span)!r}")
    _positive_seconds("dt", dt)
    steps = (t1 - t0) / dt
    n = round(steps)
    if n < 1 or abs(steps - n) > 1e-9 * max(1.0, steps):
        raise ValueError(f"dt={dt!r} s must divide the span t1 - t0 = {t1 - t0!r} s into a "
                         "whole number of steps")
    return t0, t1, n


def _positive_seconds(name: str, value: float) -> float:
    """``value`` (seconds) as a float, checked to be a positive, finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r} s")
    return float(value)
