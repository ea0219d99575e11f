"""Tight-tolerance adaptive integration: reference solutions for accuracy tests.

This module is a thin adapter over two adaptive Runge-Kutta libraries; it contains no
adaptive stepping of its own:

* :func:`solve` wraps :func:`torchdiffeq.odeint` (one step size for the whole state);
* :func:`solve_batched` wraps :func:`torchode.solve_ivp` (one step size per sample);
* :func:`solve_events` builds an event-driven reference integrator on
  :func:`torchdiffeq.odeint`: threshold crossings (upward zero crossings of ``event``) are
  detected between *check points*, the earliest one is refined by bracketed root finding
  (:func:`solvers.roots.find_root`), where every evaluation of the event function
  re-integrates from the left check point at the same tolerance, the jump map is applied
  at that instant and integration restarts from there.

Conventions shared by the three entry points:

* a state is a tensor or a tuple of tensors (a ``NamedTuple`` keeps its type);
* the right-hand side is ``f(t, y) -> dy/dt`` with ``t`` a tensor that broadcasts against
  the state components (0-d for :func:`solve`, ``[B, 1, ...]`` for :func:`solve_batched`);
* solutions are time-first: every component gets a leading axis over the output times.

Use float64 states: the default tolerances (``rtol=1e-10``, ``atol=1e-12``) are far below
float32 resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torchdiffeq
import torchode
from torch import Tensor

from .roots import find_root
from .steppers import retype

StateLike = Tensor | tuple
InputLike = Callable[[float], Tensor] | Tensor | None

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
"""torchdiffeq methods :func:`solve_events` accepts: adaptive Runge-Kutta solvers, which support
the ``callback_step``, ``step_t`` and ``first_step`` hooks it relies on."""

_HUGE = 1e150
"""Stand-in for non-finite derivatives of rejected trial stages (see :class:`_Guarded`)."""

__all__ = ["ADAPTIVE_METHODS", "EventSolution", "check_grid", "solve", "solve_batched",
           "solve_events"]


# --------------------------------------------------------------------------- helpers
def _as_time(t: Tensor | Sequence[float] | float, like: Tensor) -> Tensor:
    """Time points as a float64 tensor (at least float64: times need more bits than states)."""
    dtype = torch.promote_types(like.dtype, torch.float64) if like.is_floating_point() else None
    return torch.as_tensor(t, dtype=dtype or torch.float64, device=like.device)


def _first(y: StateLike) -> Tensor:
    return y if isinstance(y, Tensor) else y[0]


# --------------------------------------------------------------------------- plain solves
def solve(
    f: Callable[[Tensor, Any], Any],
    y0: StateLike,
    t: Tensor | Sequence[float],
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    method: str = "dopri5",
    options: dict | None = None,
) -> StateLike:
    """Solve ``dy/dt = f(t, y)`` with :func:`torchdiffeq.odeint` at the times ``t``.

    As with odeint, values between accepted steps come from the solver's dense-output
    interpolant; pass ``options={"step_t": t}`` to make every output time a step end point.

    Args:
        f: right-hand side; receives a 0-d time tensor and a state of the type of ``y0``.
        y0: initial state at ``t[0]`` (tensor or tuple of tensors of any shapes).
        t: strictly monotone output times ``[K]``; ``t[0]`` is the initial time.
        rtol, atol: tolerances of the adaptive step-size control.
        method: any torchdiffeq method name (``"dopri5"``, ``"dopri8"``, ``"bosh3"``, ...).
        options: extra torchdiffeq solver options.

    Returns:
        the solution at ``t``, time-first: a tensor ``[K, *y0.shape]`` or a tuple of such
        tensors of the type of ``y0``.
    """
    t = _as_time(t, _first(y0))
    if isinstance(y0, Tensor):
        return torchdiffeq.odeint(f, y0, t, rtol=rtol, atol=atol, method=method, options=options)

    def rhs(s: Tensor, y: tuple) -> tuple:
        return tuple(f(s, retype(y0, y)))

    ys = torchdiffeq.odeint(rhs, tuple(y0), t, rtol=rtol, atol=atol, method=method, options=options)
    return retype(y0, ys)


def solve_batched(
    f: Callable[[Tensor, Any], Any],
    y0: StateLike,
    t_eval: Tensor | Sequence[float],
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    method: str = "dopri5",
    max_steps: int | None = None,
) -> StateLike:
    """Solve independent systems with :func:`torchode.solve_ivp`: one step size per sample.

    Same interface as :func:`solve`, except that the leading axis of every state component is
    the batch ``B`` (each sample is integrated with its own adaptive step size) and the output
    times may differ per sample.

    Args:
        f: right-hand side; receives times ``[B, 1, ...]`` (broadcasting against every state
            component) and a state of the type of ``y0``.
        y0: initial state, every component ``[B, ...]``.
        t_eval: output times ``[K]`` (shared) or ``[B, K]`` (per sample), increasing; the
            first column is each sample's initial time.
        rtol, atol: tolerances of the (integral) step-size controller.
        method: a torchode method name (``"dopri5"``, ``"tsit5"``, ``"heun"``).
        max_steps: optional cap on the number of steps.

    Returns:
        the solution at ``t_eval``, time-first like :func:`solve`: ``[K, B, ...]`` per component.

    Raises:
        RuntimeError: if some sample did not finish (torchode status other than success).
    """
    parts = (y0,) if isinstance(y0, Tensor) else tuple(y0)
    batch = parts[0].shape[0]
    if any(p.shape[0] != batch for p in parts):
        raise ValueError("solve_batched: every state component needs the same batch size")
    shapes = [p.shape[1:] for p in parts]
    sizes = [math.prod(s) for s in shapes]
    t_eval = _as_time(t_eval, parts[0])
    if t_eval.ndim == 1:
        t_eval = t_eval.expand(batch, -1)

    def unflatten(flat: Tensor) -> tuple:
        chunks = torch.split(flat, sizes, dim=-1)
        return tuple(c.reshape(*flat.shape[:-1], *s) for c, s in zip(chunks, shapes, strict=True))

    def wrap(comps: tuple) -> StateLike:
        return comps[0] if isinstance(y0, Tensor) else retype(y0, comps)

    def rhs(t: Tensor, flat: Tensor) -> Tensor:
        comps = unflatten(flat)
        tb = t.reshape(batch, *([1] * max(len(s) for s in shapes)))
        dy = f(tb, wrap(comps))
        dy = (dy,) if isinstance(dy, Tensor) else tuple(dy)
        return torch.cat([d.reshape(batch, -1) for d in dy], dim=-1)

    flat0 = torch.cat([p.reshape(batch, -1) for p in parts], dim=-1)
    term = torchode.ODETerm(rhs)
    step = torchode.interface.METHODS[method](term=term)
    controller = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    solver = torchode.AutoDiffAdjoint(step, controller, max_steps=max_steps)
    sol = solver.solve(torchode.InitialValueProblem(flat0, t_eval[:, 0], t_eval[:, -1], t_eval))
    status = torch.as_tensor(sol.status)
    if bool((status != torchode.Status.SUCCESS.value).any()):
        raise RuntimeError(f"solve_batched: torchode failed (status per sample {status.tolist()})")
    ys = unflatten(sol.ys.transpose(0, 1))  # [K, B, F] -> components [K, B, ...]
    return wrap(ys)


# --------------------------------------------------------------------------- events
class EventSolution(NamedTuple):
    """Result of :func:`solve_events`.

    Attributes:
        times: event times ``[E]`` (float64, increasing).
        index: element index of each event ``[E, D]`` (``D`` = number of dimensions of the
            event function's output; rows as from ``Tensor.nonzero``).
        state: state at ``t_end`` (type of ``y0``).
    """

    times: Tensor
    index: Tensor
    state: tuple

    def of(self, *element: int) -> Tensor:
        """Event times of one element (give its full index)."""
        sel = torch.ones(len(self.times), dtype=torch.bool, device=self.times.device)
        for d, i in enumerate(element):
            sel = sel & (self.index[:, d] == i)
        return self.times[sel]


def check_grid(
    t_end: float, check_dt: float, *, t0: float = 0.0, input_dt: float | None = None
) -> list[float]:
    """Check points ``t0 + k check_dt`` and input boundaries ``n input_dt``, up to ``t_end``.

    Points closer than a few ulps of ``t_end`` to each other are merged, so the integrator never
    takes a sliver step (and never straddles an input boundary).
    """
    if not check_dt > 0:
        raise ValueError(f"check_dt must be positive, got {check_dt!r}")
    if not t_end > t0:
        raise ValueError(f"t_end ({t_end}) must be after t0 ({t0})")
    pts = [t0 + k * check_dt for k in range(int(math.ceil((t_end - t0) / check_dt)) + 1)]
    if input_dt is not None:
        first = int(math.floor(t0 / input_dt))
        last = int(math.ceil(t_end / input_dt))
        pts += [n * input_dt for n in range(first, last + 1)]
    tol = 16 * math.ulp(max(abs(t_end), abs(t0), check_dt))
    out: list[float] = []
    for p in sorted(pts):
        if p <= t0 + tol:
            continue
        if p >= t_end - tol:
            break
        if out and p - out[-1] <= tol:
            continue
        out.append(p)
    return [t0, *out, t_end]


def _input_getter(
    input_fn: InputLike, input_dt: float | None, t_end: float
) -> Callable[[float, float], Any]:
    """``x(a, b)``: the (constant) input on the check interval ``[a, b]``."""
    if input_fn is None:
        return lambda a, b: None
    if isinstance(input_fn, Tensor):
        if input_dt is None or not input_dt > 0:
            raise ValueError("an input tensor [T, ...] needs its step input_dt > 0")
        n_steps = input_fn.shape[0]
        if t_end > n_steps * input_dt * (1 + 1e-12):
            raise ValueError(
                f"the input covers {n_steps} steps of {input_dt} s = {n_steps * input_dt} s, "
                f"shorter than t_end = {t_end} s"
            )

        def from_tensor(a: float, b: float) -> Tensor:
            # Step n covers (n dt, (n+1) dt]; the midpoint of [a, b] is safely inside one step.
            n = min(max(int(math.floor(0.5 * (a + b) / input_dt)), 0), n_steps - 1)
            return input_fn[n]

        return from_tensor
    if callable(input_fn):
        return lambda a, b: input_fn(0.5 * (a + b))
    raise TypeError(f"input_fn must be a callable, a tensor or None, got {type(input_fn).__name__}")


class _Crossed(Exception):
    """Raised inside odeint when an accepted step point is past a watched threshold.

    ``lo``/``y_lo``/``g_lo``: the last accepted step point below threshold (time, state and
    largest watched event value); ``hi``/``y_hi``/``g_hi``: the first one at or above it. So
    ``g_lo < 0 <= g_hi``: a bracket one step wide, with an accurate state at its left end.
    """

    def __init__(self, lo: float, y_lo: tuple, g_lo: Tensor, hi: float, y_hi: tuple,
                 g_hi: Tensor) -> None:
        super().__init__(hi)
        self.lo, self.y_lo, self.g_lo = lo, y_lo, g_lo
        self.hi, self.y_hi, self.g_hi = hi, y_hi, g_hi


class _Guarded:
    """Right-hand side for odeint that watches the accepted states through ``callback_step``.

    torchdiffeq's adaptive Runge-Kutta solvers call ``callback_step(t0, y0, dt)`` before every
    step attempt with the last *accepted* state; as soon as it is past threshold the
    integration is abandoned (:class:`_Crossed`), so models that blow up in finite time after
    their threshold (AdEx, QIF, Izhikevich) are never integrated into the singularity.
    """

    def __init__(self, f: Callable[..., Any], like: tuple, x: Any,
                 g_max: Callable[[tuple], Tensor]) -> None:
        self.f, self.like, self.x, self.g_max = f, like, x, g_max
        self.last: tuple[float, tuple, Tensor] | None = None
        self.proposal: float | None = None  # step size the controller is about to try

    def __call__(self, t: Tensor, y: tuple) -> tuple:
        state = retype(self.like, y)
        out = self.f(t, state) if self.x is None else self.f(t, state, self.x)
        # A trial stage far past a finite-time blow-up can overflow; a huge finite slope makes
        # the step controller reject and shrink the step (torchdiffeq turns NaN errors into a
        # zero step and stops). Accepted steps never see these values.
        return tuple(torch.nan_to_num(d, nan=_HUGE, posinf=_HUGE, neginf=-_HUGE) for d in out)

    def callback_step(self, t0: Tensor, y0: tuple, dt: Tensor) -> None:
        t = float(t0)
        self.proposal = float(dt)
        if self.last is not None and self.last[0] == t:  # a retry after a rejected step
            return
        state = retype(self.like, y0)
        g = self.g_max(state)
        if bool(g >= 0):
            if self.last is None:  # cannot happen: the initial state is below threshold
                raise RuntimeError("solve_events: integration started past threshold")
            raise _Crossed(*self.last, t, state, g)
        self.last = (t, state, g)


def solve_events(
    f: Callable[..., Any],
    y0: tuple,
    t_end: float,
    *,
    event: Callable[[tuple], Tensor],
    jump: Callable[[tuple], tuple],
    check_dt: float,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    method: str = "dopri5",
    xtol: float = 1e-13,
    input_fn: InputLike = None,
    input_dt: float | None = None,
    t0: float = 0.0,
    max_events: int = 1_000_000,
    max_iter: int = 200,
) -> EventSolution:
    """Event-driven reference integration of a small system with threshold events.

    An event of an element is an upward zero crossing of ``event(y)`` (``< 0`` before,
    ``>= 0`` after). The system is integrated with :func:`torchdiffeq.odeint` from check point
    to check point (spacing ``check_dt``, plus the input's step boundaries). When elements
    cross between two check points, the crossing time of the earliest one is the root of
    ``max_i event_i(y(t))`` over the elements that were below threshold at the left point;
    it is located by :func:`solvers.roots.find_root`, each evaluation re-integrating from the
    left point at the same tolerance (every state used is a step end point, never a value of
    the dense-output interpolant). ``jump`` is applied to every element at or above threshold
    at that instant and integration restarts there, so several events per check interval are
    handled. Crossings that rise above zero and fall back within one check interval are
    missed: choose ``check_dt`` below the shortest supra-threshold excursion.

    The accepted steps are watched while integrating: as soon as one ends past threshold the
    integration stops, so a model that blows up in finite time after its threshold (AdEx, QIF,
    Izhikevich) is never integrated into the singularity, and the crossing is bracketed by
    that step. The last accepted point below threshold then serves as the left check point:
    it is exactly the state an integration from the previous check point to it returns.

    Args:
        f: right-hand side ``f(t, y)``, or ``f(t, y, x)`` when an input is given; ``y`` has the
            type of ``y0`` and ``t`` is a 0-d tensor.
        y0: initial state at ``t0`` (tuple of float64 tensors; a ``NamedTuple`` keeps its type).
        t_end: final time.
        event: ``g(y)``, a tensor of the element shape (broadcastable against the state).
        jump: ``y -> y`` applied at an event; only the crossing elements take the new value
            (``torch.where`` per component, so components must broadcast with ``g``).
        check_dt: spacing of the check points.
        rtol, atol: odeint tolerances (every integration, including root-finding ones).
        method: a torchdiffeq adaptive Runge-Kutta method, see :data:`ADAPTIVE_METHODS`.
        xtol: absolute tolerance of the event times.
        input_fn: piecewise-constant input ``x``: a function of time (evaluated at the
            midpoint of each check interval, so it must only change at check points) or a
            tensor ``[T, ...]`` holding ``x`` over step ``n`` = ``(n input_dt, (n+1) input_dt]``.
        input_dt: step of a tensor input; its boundaries are added to the check points.
        t0: initial time.
        max_events: safety cap on the number of events.
        max_iter: iteration cap of the root finder.

    Returns:
        :class:`EventSolution` (times, element indices, state at ``t_end``).
    """
    if not isinstance(y0, tuple):
        raise TypeError("solve_events: y0 must be a tuple of tensors (e.g. a NamedTuple)")
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"solve_events: method must be one of {ADAPTIVE_METHODS}, got {method!r}")
    get_input = _input_getter(input_fn, input_dt, t_end)
    grid = check_grid(t_end, check_dt, t0=t0,
                      input_dt=input_dt if isinstance(input_fn, Tensor) else None)
    run = _EventRun(f, event, jump, device=y0[0].device, rtol=rtol, atol=atol, method=method,
                    xtol=xtol, max_events=max_events, max_iter=max_iter)
    y = y0
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        y = run.advance(y, a, b, get_input(a, b))
    return run.solution(y0, y)


class _Bracket(NamedTuple):
    """A crossing between two accepted points of one check interval.

    ``left``/``y_left``: the left check point (time, state) every root-finding integration
    starts from; ``g_lo < 0 <= g_hi``: the largest watched event values at ``lo`` and ``hi``;
    ``memo``: evaluation point -> (event time, state there), filled while bracketing and
    root finding, so the event state is always one the root finder evaluated (consistent with
    the bracket).
    """

    left: float
    y_left: tuple
    lo: float
    g_lo: Tensor
    hi: float
    g_hi: Tensor
    memo: dict[float, tuple[float, tuple]]


class _EventRun:
    """One :func:`solve_events` integration: its settings, the events found so far and the
    step size the controller proposed at the end of the last integration."""

    def __init__(self, f: Callable[..., Any], event: Callable[[tuple], Tensor],
                 jump: Callable[[tuple], tuple], *, device: torch.device, rtol: float,
                 atol: float, method: str, xtol: float, max_events: int, max_iter: int) -> None:
        self.f, self.event, self.jump, self.device = f, event, jump, device
        self.rtol, self.atol, self.method = rtol, atol, method
        self.xtol, self.max_events, self.max_iter = xtol, max_events, max_iter
        self.times: list[Tensor] = []
        self.index: list[Tensor] = []
        self.h: float | None = None  # step size proposed at the end of the last integration

    def g_max(self, y: tuple, watch: Tensor) -> Tensor:
        """Largest event value among the watched elements (``+inf`` if any is not finite)."""
        g = torch.nan_to_num(self.event(y), nan=math.inf, posinf=math.inf)
        return torch.where(watch, g, torch.full_like(g, -math.inf)).max()

    def integrate(self, y: tuple, a: float, b: float, x: Any, watch: Tensor,
                  first_step: float | None) -> tuple[tuple, float | None]:
        """State at ``b`` from ``y`` at ``a`` and the controller's next step proposal.

        Raises :class:`_Crossed` once a watched element is at or above threshold at an accepted
        step point before ``b``. Deterministic: the same arguments give the same result.
        """
        rhs = _Guarded(self.f, y, x, lambda z: self.g_max(z, watch))
        ts = torch.tensor([a, b], dtype=torch.float64)
        # step_t makes the last step end exactly at ``b``: the result is a step end point,
        # not a value of the (lower-order) dense-output interpolant. ``first_step`` reuses the
        # controller's last proposal instead of a fresh, tiny initial step every interval.
        options: dict[str, Any] = {"step_t": ts[1:]}
        if first_step is not None:
            options["first_step"] = min(first_step, b - a)
        ys = torchdiffeq.odeint(rhs, tuple(y), ts, rtol=self.rtol, atol=self.atol,
                                method=self.method, options=options)
        return retype(y, (c[-1] for c in ys)), rhs.proposal

    def advance(self, y: tuple, a: float, b: float, x: Any) -> tuple:
        """State at the check point ``b`` from ``y`` at ``a``, every event between applied."""
        left, y_left = a, y
        while True:
            watch = self.event(y_left) < 0
            h_root = self.h  # root-finding integrations start with the proposal ``left`` had
            y_right, bracket = self._bracket(y_left, left, b, x, watch)
            if bracket is None:
                return y_right
            if len(self.times) >= self.max_events:
                raise RuntimeError(f"solve_events: more than {self.max_events} events")
            t_event, y_event = self._earliest_crossing(bracket, x, watch, h_root)
            y_left = self._fire(t_event, y_event, watch)
            left = t_event
            if left >= b:
                return y_left

    def _bracket(self, y_left: tuple, left: float, b: float, x: Any,
                 watch: Tensor) -> tuple[tuple, None] | tuple[None, _Bracket]:
        """Integrate from ``left`` to ``b``: ``(state at b, None)`` if no watched element
        crosses, else ``(None, bracket of the earliest crossing)``."""
        memo: dict[float, tuple[float, tuple]] = {}
        try:
            y_right, self.h = self.integrate(y_left, left, b, x, watch, self.h)
        except _Crossed as c:
            # The accepted step points around the crossing bracket it; the last one below
            # threshold becomes the left check point (it is the state an integration from
            # ``left`` to it returns: same deterministic step sequence).
            memo[c.hi] = (c.hi, c.y_hi)
            return None, _Bracket(c.lo, c.y_lo, c.lo, c.g_lo, c.hi, c.g_hi, memo)
        g_hi = self.g_max(y_right, watch)
        if not bool(g_hi >= 0):
            return y_right, None
        memo[b] = (b, y_right)
        return None, _Bracket(left, y_left, left, self.g_max(y_left, watch), b, g_hi, memo)

    def _earliest_crossing(self, br: _Bracket, x: Any, watch: Tensor,
                           h_root: float | None) -> tuple[float, tuple]:
        """(time, state) of the earliest crossing in the bracket: the root of the largest
        event value over the watched elements, each evaluation re-integrated from the left
        check point."""

        def g_at(s: Tensor) -> Tensor:
            point = float(s[0])
            try:
                state, _ = self.integrate(br.y_left, br.left, point, x, watch, h_root)
            except _Crossed as c:  # past threshold before ``point``: the root is earlier
                br.memo[point] = (c.hi, c.y_hi)
                return torch.full((1,), math.inf, dtype=torch.float64)
            br.memo[point] = (point, state)
            return self.g_max(state, watch).reshape(1)

        t_root = find_root(
            g_at, torch.tensor([br.lo], dtype=torch.float64),
            torch.tensor([br.hi], dtype=torch.float64),
            torch.as_tensor(br.g_lo, dtype=torch.float64).reshape(1),
            torch.as_tensor(br.g_hi, dtype=torch.float64).reshape(1),
            xtol=self.xtol, max_iter=self.max_iter,
        )
        return br.memo[float(t_root[0])]

    def _fire(self, t_event: float, y_event: tuple, watch: Tensor) -> tuple:
        """Record the events of the watched elements at or above threshold at ``t_event`` and
        return the state after their jump (the other elements keep ``y_event``)."""
        fired = watch & (self.event(y_event) >= 0)
        if not bool(fired.any()):  # cannot happen: memo holds points with g_max >= 0
            raise RuntimeError(f"solve_events: root finding failed near t = {t_event}")
        jumped = self.jump(y_event)
        idx = fired.nonzero()
        self.times.append(torch.full((len(idx),), t_event, dtype=torch.float64,
                                     device=self.device))
        self.index.append(idx)
        return retype(y_event, (torch.where(fired, j, s)
                                for j, s in zip(jumped, y_event, strict=True)))

    def solution(self, y0: tuple, y: tuple) -> EventSolution:
        """The events recorded so far and the final state ``y``."""
        if self.times:
            return EventSolution(torch.cat(self.times), torch.cat(self.index), y)
        ndim = self.event(y0).ndim
        return EventSolution(torch.zeros(0, dtype=torch.float64, device=self.device),
                             torch.zeros((0, ndim), dtype=torch.long, device=self.device), y)
