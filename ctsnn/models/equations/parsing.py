"""Parsing and checking equation strings into an :class:`EquationSpec` (sympy, no tensors).

Grammar (one statement per line; ``#`` starts a comment):

* ``dX/dt = expr`` defines the state variable ``X`` (state variables are ordered by their
  first derivative line; one line per variable);
* ``name = expr`` defines a helper expression, substituted into the other lines (any order);
* a threshold is ``"lhs >= rhs"`` (or ``>``) or an expression whose upward zero crossing is a
  spike; a reset is statements ``X = expr`` (also ``+= -= *= /=``) separated by ``;`` or
  newlines, applied in order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy as sp

from ..base import NeuronModel
from .linear import LinearSystem, analyse_linear
from .symbolic import EquationError, check_name, parse_expression, split_lines

__all__ = ["ATTRIBUTE_NAMES", "EquationSpec", "parse_equations"]

# Attribute names a parameter must not take (they would shadow the module's own).
ATTRIBUTE_NAMES = frozenset(dir(NeuronModel)) | {"n", "State", "training", "spec", "equations"}

_DERIVATIVE = re.compile(r"d\s*([A-Za-z_]\w*)\s*/\s*dt")
_ASSIGN = re.compile(r"\s*([^=<>!]*?)\s*=(?!=)\s*(.*?)\s*")
_RESET = re.compile(r"\s*([A-Za-z_]\w*)\s*([-+*/]?)=(?!=)\s*(.*?)\s*")
_UPDATE = {"+": sp.Add, "-": lambda a, b: a - b, "*": sp.Mul, "/": lambda a, b: a / b}


@dataclass(frozen=True)
class EquationSpec:
    """Parsed and analysed equations (sympy expressions), shared by all instances of a class.

    Attributes:
        source: the equation lines, normalised (one per line).
        state_names: state variables, in order of their derivative lines.
        param_names: parameter names, in the order given.
        input_name: name of the input current symbol.
        rhs: right-hand side per state variable (helpers substituted), in seconds⁻¹.
        threshold: ``g(state)`` whose upward zero crossing is a spike, or ``None``.
        reset: new value per reset variable, in terms of the pre-reset state (statements
            composed in order), or ``None``.
        linear: ``(A, b)`` with ``rhs = A x + b`` (entries depend on parameters and the input
            only), or ``None`` for a non-linear / time-dependent model.
        uses_time: whether the right-hand side depends on ``t``.
    """

    source: str
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    input_name: str
    rhs: tuple[sp.Expr, ...]
    threshold: sp.Expr | None
    reset: dict[str, sp.Expr] | None
    linear: LinearSystem | None
    uses_time: bool


# --------------------------------------------------------------------------- statements
def _split_statements(
    lines: Sequence[str],
) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """``(derivatives, helpers)``: name -> (right-hand side text, line), in order."""
    derivs: dict[str, tuple[str, str]] = {}
    helpers: dict[str, tuple[str, str]] = {}
    for line in lines:
        m = _ASSIGN.fullmatch(line)
        if m is None or not m.group(2):
            raise EquationError(
                f"malformed equation {line!r}: expected 'dX/dt = expr' (or a helper 'name = expr')"
            )
        lhs, rhs_text = m.group(1), m.group(2)
        d = _DERIVATIVE.fullmatch(lhs)
        if d is not None:
            var = d.group(1)
            check_name(var, f"state variable (in {line!r})")
            if var in derivs:
                raise EquationError(
                    f"duplicate derivative for state variable {var!r}: {derivs[var][1]!r} and "
                    f"{line!r}"
                )
            derivs[var] = (rhs_text, line)
        elif lhs.isidentifier():
            check_name(lhs, f"helper (in {line!r})")
            if lhs in helpers:
                raise EquationError(
                    f"helper {lhs!r} is defined twice: {helpers[lhs][1]!r}, {line!r}"
                )
            helpers[lhs] = (rhs_text, line)
        else:
            raise EquationError(
                f"malformed equation {line!r}: the left-hand side {lhs!r} must be 'dX/dt' "
                "(X a state variable) or a helper name"
            )
    if not derivs:
        raise EquationError("equations: no 'dX/dt = expr' line given (only helpers)")
    return derivs, helpers


def _check_clashes(
    states: Sequence[str], params: Sequence[str], helpers: Sequence[str], input_name: str
) -> None:
    """State variables, parameters, helpers, the input and ``t`` must have distinct names."""
    for var in states:
        if var in ("t", input_name):
            what = "time 't'" if var == "t" else f"the input {input_name!r} (pass input_name=...)"
            raise EquationError(f"state variable {var!r} clashes with {what}")
    for p in params:
        if not isinstance(p, str):
            raise EquationError(f"parameters: names must be strings, got {p!r}")
        check_name(p, "parameter")
        if p in states:
            raise EquationError(f"parameter {p!r} clashes with the state variable {p!r}")
        if p in ("t", input_name):
            raise EquationError(
                f"parameter {p!r} clashes with {'time' if p == 't' else 'the input'} {p!r}"
            )
        if p == "refractory":
            raise EquationError(
                "parameter 'refractory' clashes with the built-in refractory period; "
                "use the refractory= argument"
            )
        if p in ATTRIBUTE_NAMES:
            raise EquationError(f"parameter {p!r} clashes with an attribute of NeuronModel")
    for h in helpers:
        if h in states or h in params or h in ("t", input_name):
            raise EquationError(
                f"helper {h!r} clashes with a state variable, a parameter, the input or t"
            )


# --------------------------------------------------------------------------- expressions
@dataclass
class _Names:
    """The symbols of one set of equations and the helper substitutions."""

    states: tuple[str, ...]
    params: tuple[str, ...]
    helpers: tuple[str, ...]
    input_name: str
    sym: dict[str, sp.Symbol] = field(init=False)
    groups: dict[str, tuple[str, ...]] = field(init=False)
    resolved: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = (*self.states, *self.params, *self.helpers, "t", self.input_name)
        self.sym = {name: sp.Symbol(name, real=True) for name in names}
        self.groups = {
            "state variables": self.states, "parameters": self.params, "helpers": self.helpers,
            "input": (self.input_name,), "time": ("t",),
        }

    @property
    def stateless(self) -> dict[str, sp.Symbol]:
        """Symbols a threshold or reset may use: state, parameters, helpers (no input, no t)."""
        return {k: v for k, v in self.sym.items() if k not in ("t", self.input_name)}

    def expression(self, text: str, where: str, allowed: Mapping[str, sp.Symbol]) -> sp.Expr:
        """An arithmetic expression (not a comparison) of the ``allowed`` symbols."""
        expr = parse_expression(text, where, allowed, self.groups)
        if not isinstance(expr, sp.Expr):
            raise EquationError(f"{where} must be an arithmetic expression, got {expr}")
        return expr

    def no_input(self, expr: sp.Expr, where: str) -> sp.Expr:
        """``expr`` with helpers substituted; it must not depend on the input or ``t``."""
        expr = expr.xreplace(self.resolved)
        bad = sorted(
            s.name for s in expr.free_symbols & {self.sym["t"], self.sym[self.input_name]}
        )
        if bad:
            raise EquationError(
                f"{where} depends on {bad[0]!r} (through a helper); it may only use state "
                "variables and parameters"
            )
        return expr


def _resolve_helpers(names: _Names, helpers: Mapping[str, tuple[str, str]]) -> None:
    """Fill ``names.resolved``: each helper symbol -> its expression, helpers substituted."""
    sym = names.sym
    raw = {h: names.expression(text, f"equation {line!r}", sym) for h, (text, line) in
           helpers.items()}

    def resolve(h: str, stack: tuple[str, ...]) -> sp.Expr:
        if sym[h] in names.resolved:
            return names.resolved[sym[h]]
        if h in stack:
            cycle = " -> ".join((*stack, h))
            raise EquationError(f"helpers depend on each other in a cycle: {cycle}")
        expr = raw[h]
        inner = {sym[g]: resolve(g, (*stack, h)) for g in helpers if sym[g] in expr.free_symbols}
        names.resolved[sym[h]] = expr.xreplace(inner)
        return names.resolved[sym[h]]

    for h in helpers:
        resolve(h, ())


def _threshold_function(names: _Names, threshold: str) -> sp.Expr:
    """``g(state)`` whose upward zero crossing is the spike described by ``threshold``."""
    if not isinstance(threshold, str):
        raise EquationError(f"threshold must be a string, got {type(threshold).__name__}")
    where = f"threshold {threshold!r}"
    cond = parse_expression(threshold, where, names.stateless, names.groups)
    if isinstance(cond, (sp.LessThan, sp.StrictLessThan)):
        raise EquationError(
            f"{where} uses '<': a spike is an upward crossing; write the condition as "
            "'lhs >= rhs' (e.g. 'v >= v_th') or give an expression whose upward zero "
            "crossing is the spike"
        )
    if isinstance(cond, (sp.GreaterThan, sp.StrictGreaterThan)):
        g = cond.lhs - cond.rhs
    elif isinstance(cond, sp.Expr):
        g = cond
    else:
        raise EquationError(
            f"{where} must be 'lhs >= rhs', 'lhs > rhs' or an expression (got {cond})"
        )
    g = names.no_input(g, where)
    if not g.free_symbols & {names.sym[s] for s in names.states}:
        raise EquationError(f"{where} does not depend on any state variable {list(names.states)}")
    return g


def _reset_map(names: _Names, reset: str | Sequence[str]) -> dict[str, sp.Expr]:
    """Reset statements applied in order, composed into one simultaneous map name -> value."""
    sym = names.sym
    current: dict[sp.Symbol, sp.Expr] = {}
    for stmt in split_lines(reset, "reset", separators="\n;"):
        m = _RESET.fullmatch(stmt)
        if m is None or not m.group(3):
            raise EquationError(
                f"malformed reset statement {stmt!r}: expected 'X = expr' (or X += expr, "
                "-=, *=, /=) with X a state variable; statements are separated by ';' or "
                "newlines"
            )
        var, op, text = m.groups()
        if var not in names.states:
            kind = "a parameter (constant)" if var in names.params else "not a state variable"
            raise EquationError(
                f"reset statement {stmt!r} assigns {var!r}, which is {kind}: only "
                f"variables with a 'dX/dt = ...' line can be reset (state variables: "
                f"{', '.join(names.states)})"
            )
        where = f"reset statement {stmt!r}"
        value = names.no_input(names.expression(text, where, names.stateless), where)
        if op:
            value = _UPDATE[op](sym[var], value)
        current[sym[var]] = value.xreplace(current)
    new_values = {x.name: e for x, e in current.items() if e != x}
    if any(e.has(sp.zoo, sp.nan, sp.oo, -sp.oo) for e in new_values.values()):
        raise EquationError(f"reset {reset!r} is not finite")
    return new_values


# --------------------------------------------------------------------------- entry point
def parse_equations(
    equations: str | Sequence[str],
    *,
    parameters: Sequence[str],
    threshold: str | None = None,
    reset: str | Sequence[str] | None = None,
    input_name: str = "I",
) -> EquationSpec:
    """Parse and check equation strings (no tensors involved).

    Args:
        equations: ``dX/dt = expr`` and helper ``name = expr`` lines (a string or strings).
        parameters: the parameter names the expressions may use.
        threshold, reset: as for ``ctsnn.from_equations`` (``None``: no spikes / no reset).
        input_name: name of the input-current symbol.

    Raises:
        EquationError: naming the faulty line or argument.
    """
    check_name(input_name, "input_name")
    if input_name == "t":
        raise EquationError("input_name 't' clashes with time 't'")
    lines = split_lines(equations, "equations")
    if not lines:
        raise EquationError("equations: no 'dX/dt = expr' line given")
    derivs, helpers = _split_statements(lines)
    states, params = tuple(derivs), tuple(parameters)
    _check_clashes(states, params, tuple(helpers), input_name)
    names = _Names(states, params, tuple(helpers), input_name)
    _resolve_helpers(names, helpers)
    rhs = tuple(
        names.expression(text, f"equation {line!r}", names.sym).xreplace(names.resolved)
        for text, line in derivs.values()
    )
    sym_t = names.sym["t"]
    return EquationSpec(
        source="\n".join(lines),
        state_names=states,
        param_names=params,
        input_name=input_name,
        rhs=rhs,
        threshold=None if threshold is None else _threshold_function(names, threshold),
        reset=None if reset is None else _reset_map(names, reset),
        linear=analyse_linear(rhs, [names.sym[s] for s in states], sym_t),
        uses_time=any(sym_t in f.free_symbols for f in rhs),
    )
