"""Numeric checks of an equation model at construction, with its parameter values.

Parsing cannot know the parameter values, so :class:`~ctsnn.models.equations.EquationModel`
evaluates its compiled expressions once, in float64, when an instance is built:

* every denominator of the right-hand sides, threshold and reset must be non-zero at the initial
  state (zero input, ``t = 0``), and the right-hand sides must be finite there (``-v/tau`` with
  ``tau = 0`` or ``/(a - b)`` with ``a == b`` would make the continuous run spin);
* the reset must put a state at the threshold strictly below it: ``g(reset(x*)) < 0`` at a probe
  state ``x*`` where ``g`` just reaches 0 (``g(x*) >= 0``, found by bisection in one state
  variable of the threshold, the others at their initial values), otherwise the neuron fires
  again at once and the discrete and continuous runs disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
import torch
from torch import Tensor

from .parsing import EquationSpec
from .symbolic import EquationError, broadcast_like, lambdify

__all__ = ["ModelProbes", "build_probes", "check_reset_below_threshold", "check_start"]

_BRACKET_STEPS = 64  # search the threshold within ±2**63 of the initial value
_BISECTIONS = 1100  # enough to reach adjacent float64 numbers from any bracket


@dataclass(frozen=True)
class ModelProbes:
    """What the construction checks evaluate, compiled once per equation class.

    Attributes:
        terms: ``(where, denominator text, its symbols)`` per denominator, in
            ``denominators`` order.
        denominators: ``f(*state, input, t, *params)`` -> the denominators (tuple).
        probe_var: index of the state variable solved for the threshold, or ``None``.
    """

    terms: tuple[tuple[str, str, frozenset[str]], ...]
    denominators: Callable[..., Any] | None
    probe_var: int | None


def _denominators(expr: sp.Expr) -> list[sp.Expr]:
    """Bases of the negative constant powers in ``expr`` (its denominators), deduplicated."""
    found: list[sp.Expr] = []
    for node in sp.preorder_traversal(expr):
        if (isinstance(node, sp.Pow) and node.exp.is_number and node.exp.is_negative
                and not node.base.is_number and node.base not in found):
            found.append(node.base)
    return found


def build_probes(spec: EquationSpec, jump_target: str) -> ModelProbes:
    """The denominators and the threshold probe of ``spec`` (see the module docstring)."""
    sym = {s: sp.Symbol(s, real=True) for s in (*spec.state_names, *spec.param_names)}
    args = [
        *(sym[s] for s in spec.state_names), sp.Symbol(spec.input_name, real=True),
        sp.Symbol("t", real=True), *(sym[p] for p in spec.param_names),
    ]
    parts: list[tuple[str, sp.Expr]] = [
        (f"the right-hand side of d{var}/dt", f) for var, f in zip(spec.state_names, spec.rhs,
                                                                    strict=True)
    ]
    if spec.threshold is not None:
        parts.append(("the threshold", spec.threshold))
    for var, value in (spec.reset or {}).items():
        parts.append((f"the reset of {var}", value))
    terms, dens = [], []
    for where, expr in parts:
        for den in _denominators(expr):
            terms.append((where, str(den), frozenset(x.name for x in den.free_symbols)))
            dens.append(den)
    probe_var = None
    if spec.threshold is not None:
        used = [s for s in spec.state_names if sym[s] in spec.threshold.free_symbols]
        probe_var = spec.state_names.index(jump_target if jump_target in used else used[0])
    return ModelProbes(
        terms=tuple(terms),
        denominators=lambdify(args, tuple(dens)) if dens else None,
        probe_var=probe_var,
    )


def _values_text(
    names: Sequence[str], values: Sequence[Tensor], used: frozenset[str], index: int
) -> str:
    """``name=value`` for the ``used`` names (neuron ``index``)."""
    shown = []
    for name, value in zip(names, values, strict=True):
        if name in used:
            flat = value.reshape(-1)
            shown.append(f"{name}={flat[min(index, flat.numel() - 1)].item():.6g}")
    return ", ".join(shown)


def check_start(
    cls_name: str,
    spec: EquationSpec,
    probes: ModelProbes,
    dynamics_fn: Callable[..., Any],
    state: Sequence[Tensor],
    params: Sequence[Tensor],
) -> None:
    """Denominators non-zero and right-hand sides finite at the initial ``state``.

    Args:
        cls_name: the model's class name (for messages).
        spec: the parsed equations.
        probes: from :func:`build_probes`.
        dynamics_fn: the compiled right-hand sides ``f(*state, input, t, *params)``.
        state: initial state, one ``[1, N]`` float64 tensor per variable.
        params: parameter values (float64, scalars or ``[N]``).

    Raises:
        EquationError: naming the denominator (or the equation) and the values that make it
            zero (or non-finite).
    """
    ref = state[0]
    zero = torch.zeros_like(ref)
    args = (*state, zero, zero, *params)
    names = (*spec.state_names, spec.input_name, "t", *spec.param_names)
    if probes.denominators is not None:
        for (where, text, used), den in zip(probes.terms, probes.denominators(*args), strict=True):
            den = broadcast_like(den, ref)
            bad = (den == 0) | ~torch.isfinite(den)
            if bad.any():
                i = int(bad.reshape(-1).nonzero()[0])
                values = _values_text(names, args, used, i)
                at = "" if used <= set(spec.param_names) else " at the initial state"
                raise EquationError(
                    f"{cls_name}: {where} divides by {text!r}, which is "
                    f"{den.reshape(-1)[i].item():g} for the given parameters{at} (neuron {i}: "
                    f"{values}); give values that keep it non-zero"
                )
    for var, value in zip(spec.state_names, dynamics_fn(*args), strict=True):
        value = broadcast_like(value, ref)
        if not torch.isfinite(value).all():
            i = int((~torch.isfinite(value)).reshape(-1).nonzero()[0])
            state_text = ", ".join(
                f"{s}={x.reshape(-1)[i].item():.6g}" for s, x in zip(spec.state_names, state,
                                                                     strict=True)
            )
            raise EquationError(
                f"{cls_name}: the right-hand side of d{var}/dt is {value.reshape(-1)[i].item()} "
                f"at the initial state ({state_text}, neuron {i}, zero input, t = 0) with the "
                "given parameters; it must be finite"
            )


def _at_threshold(
    probes: ModelProbes, threshold_fn: Callable[..., Any], state: list[Tensor],
    params: Sequence[Tensor],
) -> tuple[Tensor, Tensor]:
    """``(x, found)``: the probe variable where the threshold is just reached (``g(x) >= 0``
    within rounding of a point where ``g < 0``), by bracketing from the initial value and
    bisection; ``found`` is False where no sign change lies within ``±2**63`` of the start."""
    k = probes.probe_var
    assert k is not None

    def g(x: Tensor) -> Tensor:
        return broadcast_like(threshold_fn(*state[:k], x, *state[k + 1:], *params), state[0])

    x0 = state[k]
    nan = torch.full_like(x0, float("nan"))
    g0 = g(x0)
    lo = torch.where(g0 < 0, x0, nan)
    hi = torch.where(g0 >= 0, x0, nan)
    for e in range(_BRACKET_STEPS):
        for x in (x0 + 2.0**e, x0 - 2.0**e):
            gx = g(x)
            lo = torch.where(lo.isnan() & (gx < 0), x, lo)
            hi = torch.where(hi.isnan() & (gx >= 0), x, hi)
        if not (lo.isnan() | hi.isnan()).any():
            break
    found = ~(lo.isnan() | hi.isnan())
    lo, hi = torch.where(found, lo, x0), torch.where(found, hi, x0)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if ((mid == lo) | (mid == hi)).all():  # adjacent floats everywhere: done
            break
        upper = g(mid) >= 0
        lo, hi = torch.where(upper, lo, mid), torch.where(upper, mid, hi)
    return hi, found


def check_reset_below_threshold(
    cls_name: str,
    spec: EquationSpec,
    probes: ModelProbes,
    threshold_fn: Callable[..., Any],
    reset_fn: Callable[..., Any],
    state: Sequence[Tensor],
    params: Sequence[Tensor],
) -> None:
    """The reset of a state at the threshold must land strictly below the threshold.

    Args:
        cls_name: the model's class name (for messages).
        spec: the parsed equations (with a threshold and a reset).
        probes: from :func:`build_probes`.
        threshold_fn, reset_fn: the compiled threshold function and reset values.
        state: initial state, one ``[1, N]`` float64 tensor per variable (the variables other
            than the probe variable keep these values).
        params: parameter values (float64).

    Raises:
        EquationError: naming the reset, the threshold and the probe state.
    """
    if spec.threshold is None or not spec.reset or probes.probe_var is None:
        return
    state = list(state)
    k = probes.probe_var
    x_star, found = _at_threshold(probes, threshold_fn, state, params)
    at = [*state[:k], x_star, *state[k + 1:]]
    new = dict(zip(spec.reset, reset_fn(*at, *params), strict=True))
    after = [broadcast_like(new.get(s, x), x) for s, x in zip(spec.state_names, at, strict=True)]
    g_after = broadcast_like(threshold_fn(*after, *params), state[0])
    bad = found & ~(g_after < 0)
    if not bad.any():
        return
    i = int(bad.reshape(-1).nonzero()[0])
    reset_text = "; ".join(
        f"{var} = {sp.sstr(value, full_prec=False)}" for var, value in spec.reset.items()
    )
    threshold_text = sp.sstr(spec.threshold, full_prec=False)
    before = ", ".join(f"{s}={x.reshape(-1)[i].item():.6g}" for s, x in
                       zip(spec.state_names, at, strict=True))
    landed = ", ".join(f"{s}={broadcast_like(new[s], x_star).reshape(-1)[i].item():.6g}"
                       for s in spec.reset)
    raise EquationError(
        f"{cls_name}: the reset {reset_text!r} puts the state at or above the threshold "
        f"'{threshold_text} >= 0': at the threshold ({before}, neuron {i}) it gives {landed}, "
        f"where the threshold function is {g_after.reshape(-1)[i].item():.6g} >= 0, so "
        "the neuron would fire again at once; the reset must land below the threshold"
    )
