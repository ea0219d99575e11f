"""Threshold events inside a step, located independently for every element.

The central routine, :func:`advance_with_events`, integrates a batch of independent
systems from per-element local times ``tau`` to per-element end times ``end``
through a *flow* (a map ``(y, tau, h) -> y(tau + h)``: a closed-form solution or one
step of a Runge-Kutta method used as the step's dense output). Whenever an event
function ``g`` crosses zero upwards for an element, the crossing time is located by
:func:`solvers.roots.find_root`, a jump map is applied at that instant and that
element resumes from there; several events per element and per call are handled.
Optionally an element is *held* for a while after its event (refractoriness).

Crossings hidden inside an interval (``g`` rises above zero and falls back before the
interval ends) are found when the caller supplies ``slope(y) = dg/dt`` along the
flow: if ``g`` rises at the start and falls at the end, its maximum is located and
tested. This is exact for functions with at most one interior extremum per interval
(e.g. every linear two-variable neuron model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor

from .roots import find_root
from .steppers import retype

Flow = Callable[[tuple, Tensor, Tensor, "Tensor | None"], tuple]
"""``flow(y, tau, h, held) -> y(tau + h)``; ``held`` marks elements whose held components
must not change (``None`` when nothing is held)."""


class Piece(Protocol):
    """One integrated piece ``[tau, tau + h]`` with a continuous extension (adaptive solvers).

    ``end``: the state at ``tau + reached`` (no gradient): ``reached == h`` except for the
    watched elements whose event function became ``>= 0`` (they stop at the end of the
    integrator's step that brackets the crossing); ``piece(x)``: the state at ``tau + x`` for
    ``0 <= x <= reached`` per element (no gradient, no re-integration); ``replay(keep)``: the
    state at ``tau + h`` with gradient for the elements of ``keep`` (which must have reached
    ``h``), the others left at the piece's start state.
    """

    end: tuple
    reached: Tensor

    def __call__(self, x: Tensor) -> tuple: ...

    def replay(self, keep: Tensor | None = None) -> tuple: ...


DenseFlow = Callable[[tuple, Tensor, Tensor, "Tensor | None", Callable, Tensor], Piece]
"""``dense(y, tau, h, held, event, watch) -> Piece``: integrate once (the elements of ``watch``
stop at their first step ending with ``event >= 0``), then evaluate anywhere inside."""


class Event(NamedTuple):
    """Elements that had an event (``mask``) and their event times (``time``, local)."""

    mask: Tensor
    time: Tensor


def where_state(mask: Tensor, a: tuple, b: tuple) -> tuple:
    """Component-wise ``torch.where(mask, a, b)`` for tuple states (keeps the tuple type)."""
    return retype(a, (torch.where(mask, x, y) for x, y in zip(a, b, strict=True)))


# Gauss-Legendre nodes and weights on [-1, 1] (8 points: exact for degree <= 15).
_GL_NODES, _GL_WEIGHTS = (
    torch.tensor(a, dtype=torch.float64) for a in np.polynomial.legendre.leggauss(8)
)


def quadrature(
    flow: Flow,
    integrand: Callable[[Tensor, tuple], Tensor],
    y: tuple,
    a: Tensor,
    b: Tensor,
    held: Tensor | None,
    total: Tensor | None,
) -> Tensor:
    """Add ``∫_a^b integrand(t, y(t)) dt`` along ``flow`` from ``(y, a)`` to ``total``.

    8-point Gauss-Legendre per element (exact for polynomials of degree 15), differentiable
    w.r.t. the state, the flow and the ends ``a``, ``b``. The integrand must be smooth on
    ``[a, b]``: callers split at events.
    """
    half = 0.5 * (b - a)
    nodes = _GL_NODES.to(a.dtype)
    weights = _GL_WEIGHTS.to(a.dtype)
    acc = None
    for x, w in zip(nodes.tolist(), weights.tolist(), strict=True):
        t = a + half * (x + 1.0)
        term = w * integrand(t, flow(y, a, t - a, held))
        acc = term if acc is None else acc + term
    piece = half * acc
    return piece if total is None else total + piece


def _crossing_speed(flow, event, rate, y, tau, t_root, held, y_root) -> Tensor:
    """``d/dt g(flow(y, tau, t - tau))`` at the root: the rate along the step map the root was
    found on, so event times are differentiated exactly for that map (a Runge-Kutta step's
    time derivative differs from ``dg/dt`` along the exact dynamics by the local error).

    Reverse mode on the sum over elements (they are independent systems), with grad mode on:
    a flow that searches its step sizes without gradient (the adaptive pairs) then replays the
    accepted steps, whose last one carries ``t``; with grad mode off it would return the
    detached search result, i.e. a zero speed, and event-time gradients off by ``1 / speed``.
    Falls back to ``rate`` where ``g`` does not depend on ``t`` through the flow.
    """
    y0 = retype(y, (c.detach() for c in y))
    tau0 = tau.detach()
    t = t_root.detach().requires_grad_()
    with torch.enable_grad():
        g = event(flow(y0, tau0, t - tau0, held))
        speed = None
        if g.requires_grad:
            (speed,) = torch.autograd.grad(g.sum(), t, allow_unused=True)
    return rate(y_root) if speed is None else speed


def _polish(flow, event, rate, y, tau, held, t, upper, cross, xtol) -> Tensor:
    """Refine a crossing ``t`` located on a piece's continuous extension on ``flow`` itself.

    The extension differs from the integrated solution by about the tolerance, so at ``t`` the
    integrated ``g`` may still be slightly negative: the state at the event would then sit just
    below the threshold and a model without reset would cross again at once. A bracket
    ``[lo, hi]`` of the integrated ``g`` around ``t`` is grown from the Newton width
    ``2 |g(t)| / |dg/dt|`` and the root is found in it on ``flow``: the result has
    ``event(flow(y, tau, t - tau)) >= 0``, like the root of every other method.
    """

    def g(x):
        return torch.nan_to_num(event(flow(y, tau, x - tau, held)), nan=torch.inf,
                                posinf=torch.inf)

    y_t = flow(y, tau, t - tau, held)
    g_t = torch.nan_to_num(event(y_t), nan=torch.inf, posinf=torch.inf)
    speed = rate(y_t).abs() if rate is not None else torch.zeros_like(t)
    newton = torch.where(torch.isfinite(speed) & (speed > 0) & torch.isfinite(g_t),
                         2 * g_t.abs() / speed, torch.zeros_like(t))
    w = torch.maximum(newton, 1e-10 * (upper - tau)).clamp_min(xtol)
    lo, hi, g_lo, g_hi = t, t, g_t, g_t
    need_lo, need_hi = cross & (g_t >= 0), cross & (g_t < 0)
    for _ in range(40):       # x4 per round: from 1e-10 of the piece to all of it in 17
        if not bool((need_lo | need_hi).any()):
            break
        lo = torch.where(need_lo, torch.maximum(tau, t - w), lo)
        hi = torch.where(need_hi, torch.minimum(upper, t + w), hi)
        gx = g(torch.where(need_lo, lo, hi))
        g_lo, g_hi = torch.where(need_lo, gx, g_lo), torch.where(need_hi, gx, g_hi)
        need_lo = need_lo & (g_lo >= 0) & (lo > tau)
        need_hi = need_hi & (g_hi < 0) & (hi < upper)
        w = 4 * w
    fine = cross & (g_lo < 0) & (g_hi >= 0)
    return torch.where(fine, find_root(g, lo, hi, g_lo, g_hi, mask=fine, xtol=xtol), t)


def _implicit_time(flow, event, rate, y, tau, t_root, held, cross) -> Tensor:
    """``t_root`` with the implicit-function-theorem gradient attached (value unchanged).

    At the crossing ``F(t*, θ) = g(flow(y, tau, t* - tau)) = 0``, so
    ``dt*/dθ = -F_θ / F_t`` with ``F_t = dg/dt``. Writing ``t* - (F - F.detach()) / F_t``
    gives the value ``t*`` and exactly that derivative (``t*`` itself enters detached).
    """
    y_root = flow(y, tau, t_root - tau, held)
    g_root = event(y_root)
    if not g_root.requires_grad:
        return t_root
    with torch.no_grad():
        speed = _crossing_speed(flow, event, rate, y, tau, t_root, held, y_root)
        speed = torch.where(cross & (speed != 0), speed, torch.ones_like(speed))
    correction = torch.where(cross, (g_root - g_root.detach()) / speed, torch.zeros_like(g_root))
    return t_root - correction


def _tangent(flow: Flow, y: tuple, tau: Tensor, h: Tensor, held: Tensor | None) -> tuple:
    """Zero-valued terms whose derivative is ``d flow(y, tau, h)/dh`` at ``h`` (value 0): the
    vector field at ``y`` times ``h``, carrying ``h``'s gradient only."""
    y0 = retype(y, (c.detach() for c in y))
    moved = flow(y0, tau.detach(), h, held)
    return tuple(m - m.detach() for m in moved)


def _zero_length_tangent(flow: Flow, y: tuple, tau: Tensor, end: Tensor,
                         hold_until: Tensor | None, start: Tensor) -> tuple:
    """The state at ``end`` given the state ``y`` at ``tau``, where ``tau == end`` in value.

    The value is ``y`` bit for bit, but the state still depends on both ends of the (empty)
    remaining piece: ``dy(end)/d end = f(y) = -dy(end)/d tau``. Skipping the piece would drop
    that derivative, e.g. w.r.t. an arrival at the very end of a grid step (offset ``dt``, the
    case of every arrival on a grid point), or a spike exactly at ``end``. Likewise a hold that
    ends exactly at ``end`` splits the empty piece into a held part ``[tau, hold_until]`` and a
    free part ``[hold_until, end]``: the tangent is ``f_held (hold_until - tau) + f_free (end -
    hold_until)`` (e.g. ``dy/d hold_until = f_held(y) - f_free(y)`` for a hold that covered the
    end of the step). A hold that ended at the call's ``start`` was released by an earlier call.
    """
    moving = [t for t in (tau, end, hold_until) if t is not None and t.requires_grad]
    if not moving:
        return y
    held = None if hold_until is None else hold_until > end
    delta = _tangent(flow, y, tau, end - tau, held)
    if hold_until is not None:
        release = (hold_until == end) & (hold_until > start)  # the hold ends exactly here
        if bool(release.any()):
            h = torch.where(release, hold_until - tau, torch.zeros_like(end))
            held_f = _tangent(flow, y, tau, h, release)
            free_f = _tangent(flow, y, tau, h, None)
            delta = tuple(d + a - b for d, a, b in zip(delta, held_f, free_f, strict=True))
    return retype(y, (c + d for c, d in zip(y, delta, strict=True)))


def _hidden(slope, event, along, y, y1, tau, stop, candidate, cross, upper, g1, xtol):
    """Crossings hidden inside the piece (``g`` rises above zero and falls back): where the
    slope goes from rising to falling, locate the maximum and test it. Returns the updated
    ``(cross, upper, g1)``."""
    s0, s1 = slope(y), slope(y1)
    hidden = candidate & ~cross & (s0 > 0) & (s1 < 0)
    if bool(hidden.any()):
        t_max = find_root(lambda x: -slope(along(x)), tau, stop, -s0, -s1, mask=hidden,
                          xtol=xtol)
        g_max = event(along(t_max))
        hidden = hidden & (g_max >= 0)
        cross = cross | hidden
        upper = torch.where(hidden, t_max, upper)
        g1 = torch.where(hidden, g_max, g1)
    return cross, upper, g1


def _integrate_piece(flow, dense, event, y, tau, stop, held, todo, candidate):
    """The piece ``[tau, stop]``: ``(piece, y1, upper, along)`` with ``y1`` the state at
    ``upper`` (``stop``, or for ``dense`` the end of the step bracketing a watched crossing;
    without gradient for ``dense``, replayed later), ``along(x)`` the state at local time ``x``
    (the flow, or the continuous extension) and ``piece`` the :class:`Piece` or ``None``.
    Finished elements keep their state bit for bit (a flow over h = 0 may round)."""
    if dense is None:
        def along(x):
            return flow(y, tau, x - tau, held)

        return None, where_state(todo, flow(y, tau, stop - tau, held), y), stop, along
    piece = dense(y, tau, stop - tau, held, event, candidate)

    def along_piece(x):
        return piece(x - tau)

    return (piece, where_state(todo, piece.end, y), torch.minimum(stop, tau + piece.reached),
            along_piece)


def advance_with_events(
    flow: Flow,
    y: tuple,
    tau: Tensor,
    end: Tensor,
    event: Callable[[tuple], Tensor],
    jump: Callable[[tuple], tuple],
    *,
    slope: Callable[[tuple], Tensor] | None = None,
    rate: Callable[[tuple], Tensor] | None = None,
    hold_until: Tensor | None = None,
    hold_time: Tensor | float = 0.0,
    xtol: float = 0.0,
    max_events: int = 100_000,
    integrand: Callable[[Tensor, tuple], Tensor] | None = None,
    integral: Tensor | None = None,
    on_piece: Callable[[tuple, Tensor, Tensor | None], None] | None = None,
    dense: DenseFlow | None = None,
) -> tuple[tuple, Tensor, Tensor | None, list[Event]] | tuple[
    tuple, Tensor, Tensor | None, list[Event], Tensor
]:
    """Integrate every element from ``tau`` to ``end``, handling upward zero crossings of ``event``.

    Args:
        flow: dense output of the integrator, see :data:`Flow`.
        y: state at ``tau`` (tuple of tensors, all of the element shape).
        tau, end: local start and end time per element (``end >= tau``).
        event: ``g(y)``; an event is an upward crossing ``g < 0 -> g >= 0``.
        jump: map applied to the state at the event instant.
        slope: optional ``dg/dt`` along the flow, enabling hidden-crossing detection.
        rate: ``dg/dt`` along the flow at a state, used to make event times differentiable:
            when given and autograd is recording, each event time carries the gradient of
            the implicit function theorem, ``dt*/dθ = -(∂g/∂θ) / (dg/dt)``, so everything
            downstream of an event (its time, the state after the jump) is differentiable
            w.r.t. whatever the state, the flow and the interval ends depend on. Defaults to
            ``slope``.
        hold_until: per-element local time until which an element is held (no events,
            held components frozen by ``flow``); ``None`` disables holding.
        hold_time: hold duration started by each event.
        xtol: absolute tolerance on event times.
        max_events: safety cap on events per call (raises instead of looping forever).
        integrand: optional ``l(tau, y)``; its integral over ``[tau, end]`` along the solution
            is accumulated into ``integral`` by Gauss-Legendre quadrature on every smooth
            piece between events (the flow is the dense output), and returned last.
        integral: running value to add to (default zeros).
        on_piece: optional ``on_piece(y, tau, held)``, called with the state at the start of
            every smooth piece (after each event's jump, at each release of a hold): with
            ``flow`` it gives the solution at any time (dense output) without changing it.
        dense: optional :data:`DenseFlow` of the same integrator (adaptive solvers): each
            piece is integrated once and its crossings are searched on the continuous
            extension instead of re-integrating for every root-finder evaluation; the state at
            an event is still ``flow`` over the exact interval to the event (the integrated
            one, not the interpolated one).

    Returns:
        ``(y, tau, hold_until, events)`` with ``tau == end`` everywhere and the list of
        :class:`Event` in the order they were processed (per element, in time order); plus
        the integral when ``integrand`` is given.
    """
    events: list[Event] = []
    start = tau.detach()
    rate = rate or slope
    differentiable = rate is not None and torch.is_grad_enabled()
    for _ in range(max_events):
        if on_piece is not None:
            on_piece(y, tau, None if hold_until is None else hold_until > tau)
        todo = tau < end
        if not bool(todo.any()):
            break
        if hold_until is None:
            held = None
            stop = end
        else:
            held = hold_until > tau
            stop = torch.where(held & (hold_until < end), hold_until, end)
        g0 = event(y)
        candidate = todo & (g0 < 0)
        if held is not None:
            candidate = candidate & ~held
        piece, y1, upper, along = _integrate_piece(flow, dense, event, y, tau, stop, held,
                                                   todo, candidate)
        g1 = torch.nan_to_num(event(y1), nan=torch.inf, posinf=torch.inf)
        cross = candidate & (g1 >= 0)
        if slope is not None:
            cross, upper, g1 = _hidden(slope, event, along, y, y1, tau, stop, candidate, cross,
                                       upper, g1, xtol)
        if piece is not None and torch.is_grad_enabled():
            # crossing elements take y_event instead: their piece past the event is not replayed
            y1 = where_state(todo, piece.replay(todo & ~cross), y)
        if not bool(cross.any()):
            # Finished elements keep their own ``tau`` (the empty rest of their interval is
            # accounted for once, at the end).
            stop = torch.where(todo, stop, tau)
            if integrand is not None:
                integral = quadrature(flow, integrand, y, tau, stop, held, integral)
            y, tau = y1, stop
            if held is None:  # every element reached its end: skip the final check
                break
            continue
        with torch.no_grad():  # the search itself needs no graph
            t_event = find_root(lambda x, along=along: event(along(x)), tau, upper, g0, g1,
                                mask=cross, xtol=xtol)
            if piece is not None:
                t_event = _polish(flow, event, rate, y, tau, held, t_event, upper, cross, xtol)
        if differentiable:
            t_event = _implicit_time(flow, event, rate, y, tau, t_event, held, cross)
        y_event = flow(y, tau, t_event - tau, held)
        if differentiable and piece is None and not all(bool(torch.isfinite(c).all())
                                                        for c in y1):
            # The full-interval flow overflowed where the state runs away past the threshold
            # (exponential models). Those elements take y_event instead, but a zero cotangent
            # through an overflowed flow is still 0 * inf = NaN in backward: recompute the
            # kept value without integrating the crossing elements.
            y1 = where_state(todo, flow(y, tau, torch.where(cross, tau, stop) - tau, held), y)
        piece_end = torch.where(cross, t_event, torch.where(todo, stop, tau))
        if integrand is not None:
            integral = quadrature(flow, integrand, y, tau, piece_end, held, integral)
        y = where_state(cross, jump(y_event), y1)
        tau = piece_end
        if hold_until is not None:
            hold_until = torch.where(cross, t_event + hold_time, hold_until)
        events.append(Event(cross, t_event))
    else:
        raise RuntimeError(
            f"more than {max_events} events in one interval: the jump map probably does not "
            "move the state below the event threshold (check the reset of the neuron model)"
        )
    if torch.is_grad_enabled():
        if integrand is not None and (tau.requires_grad or end.requires_grad):
            # the empty piece's integral: zero valued, derivative l(y) w.r.t. end, -l(y) w.r.t. tau
            h = end - tau
            y0 = retype(y, (c.detach() for c in y))
            piece = integrand(end.detach(), y0) * (h - h.detach())
            integral = piece if integral is None else integral + piece
        y = _zero_length_tangent(flow, y, tau, end, hold_until, start)
    tau = end
    if integrand is not None:
        return y, tau, hold_until, events, integral
    return y, tau, hold_until, events
