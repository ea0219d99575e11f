"""Neuron models from equation strings.

:func:`from_equations` (also ``NeuronModel.from_equations`` and ``ctsnn.equations_model``)
turns differential equations written as text into a real :class:`NeuronModel` subclass::

    model = ctsnn.NeuronModel.from_equations(
        "dv/dt = (v_leak - v + r*I)/tau_mem",
        threshold="v >= v_th",
        reset="v = v_reset",
        parameters=dict(tau_mem=0.01, r=1.0, v_leak=0.0, v_th=1.0, v_reset=0.0),
        n=3,
    )

Grammar (one statement per line; ``#`` starts a comment):

* ``dX/dt = expr`` defines the state variable ``X`` (state variables are ordered by their
  first derivative line; one line per variable);
* ``name = expr`` defines a helper expression, substituted into the other lines (any order);
* expressions use state variables, parameters, helpers, the input current (``I``, or
  ``input_name``), time ``t`` (seconds), numbers, ``+ - * / **`` (or ``^``), the constant
  ``pi`` and the functions ``exp log sqrt sin cos tan tanh sinh cosh abs min max``
  (``Min``/``Max`` too).

The text is parsed by :func:`sympy.parsing.sympy_parser.parse_expr` with a restricted
namespace and compiled to torch code by :func:`sympy.lambdify`, so the model runs on batched
tensors (state ``[..., N]``, parameters ``[N]``) and is differentiable by autograd.

When every right-hand side is affine in the state variables with coefficients that depend
only on parameters and the input (not on ``t``), the model gets an exact ``flow``: the
matrix exponential of the augmented system ``[[A, b], [0, 0]]`` (a closed form for one
variable), which also covers singular ``A``. Otherwise ``flow`` returns ``None`` and the
simulation integrates with Runge-Kutta.
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
import torch
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations
from torch import Tensor

from .._checks import check_positive
from .base import NeuronModel

__all__ = ["EquationError", "EquationModel", "equations_model", "from_equations"]


class EquationError(ValueError):
    """An equation, threshold, reset or parameter given to :func:`from_equations` is invalid."""


# --------------------------------------------------------------------------- namespace
_FUNCTIONS: dict[str, Any] = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt,
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
    "tanh": sp.tanh, "sinh": sp.sinh, "cosh": sp.cosh,
    "abs": sp.Abs, "Abs": sp.Abs,
    "min": sp.Min, "max": sp.Max, "Min": sp.Min, "Max": sp.Max,
}
_CONSTANTS: dict[str, Any] = {"pi": sp.pi}
_RESERVED = frozenset(_FUNCTIONS) | frozenset(_CONSTANTS)
# parse_expr evaluates the transformed text with these globals only: no builtins, no sympy star
# import (so ``I``, ``E``, ``S``, ``N``... are plain symbols, never sympy objects).
_PARSE_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "Symbol": sp.Symbol, "Function": sp.Function,
    "Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational,
}
_TRANSFORMATIONS = (*standard_transformations, convert_xor)
_ALLOWED_OPS = frozenset(
    {"+", "-", "*", "/", "**", "^", "(", ")", ",", "<", ">", "<=", ">=", "==", "!="}
)


def _tensor_fold(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[..., Tensor]:
    def fold(*args: Any) -> Tensor:
        ref = next((a for a in args if isinstance(a, Tensor)), None)
        out = torch.as_tensor(args[0]) if ref is None else torch.as_tensor(
            args[0], dtype=ref.dtype, device=ref.device
        )
        for a in args[1:]:
            out = fn(out, torch.as_tensor(a, dtype=out.dtype, device=out.device))
        return out

    return fold


# Printed function names (see sympy's PythonCodePrinter) -> torch implementations.
_TORCH: dict[str, Any] = {
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan,
    "tanh": torch.tanh, "sinh": torch.sinh, "cosh": torch.cosh,
    "Abs": torch.abs, "abs": torch.abs,
    "Min": _tensor_fold(torch.minimum), "Max": _tensor_fold(torch.maximum),
}


def _lambdify(args: Sequence[sp.Symbol], exprs: Any) -> Callable[..., Any]:
    """Compile sympy expression(s) to a function of tensors (autograd-friendly)."""
    return sp.lambdify(list(args), exprs, modules=[_TORCH, "math"], dummify=True)


def _known_text(groups: Mapping[str, Iterable[str]]) -> str:
    parts = [f"{kind}: {', '.join(names) if names else '-'}" for kind, names in groups.items()]
    return "; ".join(parts) + f"; functions: {', '.join(sorted(_FUNCTIONS, key=str.lower))}"


def _check_tokens(text: str, where: str) -> None:
    """Reject anything but names, numbers and arithmetic/comparison operators before parsing."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as exc:
        raise EquationError(f"cannot parse {where}: {exc}") from None
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.NUMBER):
            continue
        if tok.type == tokenize.NAME:
            if keyword.iskeyword(tok.string) or tok.string.startswith("_"):
                raise EquationError(f"{tok.string!r} cannot be used as a name in {where}")
            continue
        if tok.type == tokenize.OP and tok.string in _ALLOWED_OPS:
            continue
        raise EquationError(
            f"unexpected {tok.string!r} in {where}: only names, numbers, + - * / ** ^, "
            "parentheses, commas (function arguments) and comparisons are allowed"
        )


def _parse(
    text: str, where: str, symbols: Mapping[str, sp.Symbol], groups: Mapping[str, Iterable[str]]
) -> sp.Basic:
    """Parse ``text`` with sympy; every free symbol must be one of ``symbols``."""
    text = text.strip()
    if not text:
        raise EquationError(f"empty expression in {where}")
    _check_tokens(text, where)
    local = {**_FUNCTIONS, **_CONSTANTS, **symbols}
    try:
        expr = parse_expr(
            text, local_dict=local, global_dict=dict(_PARSE_GLOBALS),
            transformations=_TRANSFORMATIONS,
        )
    except Exception as exc:  # sympy raises SyntaxError, TypeError, ... on bad input
        raise EquationError(f"cannot parse {where}: {type(exc).__name__}: {exc}") from None
    if not isinstance(expr, sp.Basic):
        expr = sp.sympify(expr)
    undefined = sorted({f.func.__name__ for f in expr.atoms(AppliedUndef)})
    if undefined:
        raise EquationError(
            f"unknown function {undefined[0]!r} in {where}; known: {_known_text(groups)}"
        )
    unknown = sorted(s.name for s in expr.free_symbols if symbols.get(s.name) is not s)
    if unknown:
        name = unknown[0]
        raise EquationError(
            f"unknown symbol {name!r} in {where} (a state variable needs a 'd{name}/dt = ...' "
            f"line, a parameter needs a value in parameters=); known: {_known_text(groups)}"
        )
    if expr.has(sp.I, sp.zoo, sp.oo, -sp.oo, sp.nan):
        raise EquationError(f"{where} is not a finite real expression (got {expr})")
    return expr


def _check_name(name: str, what: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise EquationError(
            f"{what} {name!r} is not a valid name (a Python identifier not starting with '_')"
        )
    if name in _RESERVED:
        raise EquationError(f"{what} {name!r} clashes with the function/constant {name!r}")


# --------------------------------------------------------------------------- parsing
_DERIVATIVE = re.compile(r"d\s*([A-Za-z_]\w*)\s*/\s*dt")
_ASSIGN = re.compile(r"\s*([^=<>!]*?)\s*=(?!=)\s*(.*?)\s*")
_RESET = re.compile(r"\s*([A-Za-z_]\w*)\s*([-+*/]?)=(?!=)\s*(.*?)\s*")


def _lines(text: str | Sequence[str], what: str, separators: str = "\n") -> list[str]:
    if isinstance(text, str):
        chunks = [text]
    elif isinstance(text, Sequence) and all(isinstance(s, str) for s in text):
        chunks = list(text)
    else:
        raise EquationError(f"{what} must be a string or a sequence of strings, got {text!r}")
    out = []
    for chunk in chunks:
        for line in re.split(f"[{re.escape(separators)}]", chunk):
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out


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
    linear: tuple[tuple[tuple[sp.Expr, ...], ...], tuple[sp.Expr, ...]] | None
    uses_time: bool


def _analyse_linear(
    rhs: Sequence[sp.Expr], states: Sequence[sp.Symbol], time: sp.Symbol
) -> tuple[tuple[tuple[sp.Expr, ...], ...], tuple[sp.Expr, ...]] | None:
    """``(A, b)`` if ``rhs = A x + b`` with ``A, b`` free of the state and of ``t``."""
    banned = {*states, time}
    a_rows, b = [], []
    zero = dict.fromkeys(states, sp.Integer(0))
    for f in rhs:
        if f.free_symbols & {time}:
            return None
        row = tuple(sp.diff(f, x) for x in states)
        if any(c.free_symbols & banned for c in row):
            return None
        offset = f.xreplace(zero)
        if offset.free_symbols & banned or offset.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            return None
        a_rows.append(row)
        b.append(offset)
    return tuple(a_rows), tuple(b)


def parse_equations(
    equations: str | Sequence[str],
    *,
    parameters: Sequence[str],
    threshold: str | None = None,
    reset: str | Sequence[str] | None = None,
    input_name: str = "I",
) -> EquationSpec:
    """Parse and check equation strings (no tensors involved). Raises :class:`EquationError`."""
    _check_name(input_name, "input_name")
    if input_name == "t":
        raise EquationError("input_name 't' clashes with time 't'")
    lines = _lines(equations, "equations")
    if not lines:
        raise EquationError("equations: no 'dX/dt = expr' line given")

    # --- split lines into derivatives and helpers
    derivs: dict[str, tuple[str, str]] = {}  # name -> (rhs text, line)
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
            _check_name(var, f"state variable (in {line!r})")
            if var in derivs:
                raise EquationError(
                    f"duplicate derivative for state variable {var!r}: {derivs[var][1]!r} and "
                    f"{line!r}"
                )
            derivs[var] = (rhs_text, line)
        elif lhs.isidentifier():
            _check_name(lhs, f"helper (in {line!r})")
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
    states = tuple(derivs)
    params = tuple(parameters)

    # --- name clashes
    for var in states:
        if var in ("t", input_name):
            what = "time 't'" if var == "t" else f"the input {input_name!r} (pass input_name=...)"
            raise EquationError(f"state variable {var!r} clashes with {what}")
    for p in params:
        if not isinstance(p, str):
            raise EquationError(f"parameters: names must be strings, got {p!r}")
        _check_name(p, "parameter")
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
        if p in _ATTRIBUTE_NAMES:
            raise EquationError(f"parameter {p!r} clashes with an attribute of NeuronModel")
    for h in helpers:
        if h in states or h in params or h in ("t", input_name):
            raise EquationError(
                f"helper {h!r} clashes with a state variable, a parameter, the input or t"
            )

    sym = {name: sp.Symbol(name, real=True) for name in (*states, *params, *helpers)}
    sym_t = sym["t"] = sp.Symbol("t", real=True)
    sym_in = sym[input_name] = sp.Symbol(input_name, real=True)
    groups = {
        "state variables": states, "parameters": params, "helpers": tuple(helpers),
        "input": (input_name,), "time": ("t",),
    }

    def expression(text: str, where: str, allowed: Mapping[str, sp.Symbol]) -> sp.Expr:
        expr = _parse(text, where, allowed, groups)
        if not isinstance(expr, sp.Expr):
            raise EquationError(f"{where} must be an arithmetic expression, got {expr}")
        return expr

    # --- helpers, substituted recursively (cycle-checked)
    helper_raw = {
        h: expression(text, f"equation {line!r}", sym) for h, (text, line) in helpers.items()
    }
    resolved: dict[sp.Symbol, sp.Expr] = {}

    def resolve(h: str, stack: tuple[str, ...]) -> sp.Expr:
        if sym[h] in resolved:
            return resolved[sym[h]]
        if h in stack:
            cycle = " -> ".join((*stack, h))
            raise EquationError(f"helpers depend on each other in a cycle: {cycle}")
        expr = helper_raw[h]
        inner = {sym[g]: resolve(g, (*stack, h)) for g in helpers if sym[g] in expr.free_symbols}
        resolved[sym[h]] = expr.xreplace(inner)
        return resolved[sym[h]]

    for h in helpers:
        resolve(h, ())

    rhs = tuple(
        expression(text, f"equation {line!r}", sym).xreplace(resolved)
        for text, line in derivs.values()
    )
    state_syms = [sym[s] for s in states]
    # threshold and reset see the state and the parameters (and helpers of those) only
    stateless = {k: v for k, v in sym.items() if k not in ("t", input_name)}

    def no_input(expr: sp.Expr, where: str) -> sp.Expr:
        expr = expr.xreplace(resolved)
        bad = sorted(s.name for s in expr.free_symbols & {sym_t, sym_in})
        if bad:
            raise EquationError(
                f"{where} depends on {bad[0]!r} (through a helper); it may only use state "
                "variables and parameters"
            )
        return expr

    # --- threshold
    g = None
    if threshold is not None:
        if not isinstance(threshold, str):
            raise EquationError(f"threshold must be a string, got {type(threshold).__name__}")
        where = f"threshold {threshold!r}"
        cond = _parse(threshold, where, stateless, groups)
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
        g = no_input(g, where)
        if not g.free_symbols & set(state_syms):
            raise EquationError(f"{where} does not depend on any state variable {list(states)}")

    # --- reset: statements applied in order, composed into one simultaneous map
    new_values: dict[str, sp.Expr] | None = None
    if reset is not None:
        current: dict[sp.Symbol, sp.Expr] = {}
        for stmt in _lines(reset, "reset", separators="\n;"):
            m = _RESET.fullmatch(stmt)
            if m is None or not m.group(3):
                raise EquationError(
                    f"malformed reset statement {stmt!r}: expected 'X = expr' (or X += expr, "
                    "-=, *=, /=) with X a state variable; statements are separated by ';' or "
                    "newlines"
                )
            var, op, text = m.groups()
            if var not in states:
                kind = "a parameter (constant)" if var in params else "not a state variable"
                raise EquationError(
                    f"reset statement {stmt!r} assigns {var!r}, which is {kind}: only "
                    f"variables with a 'dX/dt = ...' line can be reset (state variables: "
                    f"{', '.join(states)})"
                )
            where = f"reset statement {stmt!r}"
            value = no_input(expression(text, where, stateless), where)
            if op:
                value = {"+": sp.Add, "-": lambda a, b: a - b, "*": sp.Mul,
                         "/": lambda a, b: a / b}[op](sym[var], value)
            current[sym[var]] = value.xreplace(current)
        new_values = {x.name: e for x, e in current.items() if e != x}
        if any(e.has(sp.zoo, sp.nan, sp.oo, -sp.oo) for e in new_values.values()):
            raise EquationError(f"reset {reset!r} is not finite")

    uses_time = any(sym_t in f.free_symbols for f in rhs)
    return EquationSpec(
        source="\n".join(lines),
        state_names=states,
        param_names=params,
        input_name=input_name,
        rhs=rhs,
        threshold=g,
        reset=new_values,
        linear=_analyse_linear(rhs, state_syms, sym_t),
        uses_time=uses_time,
    )


# --------------------------------------------------------------------------- the module
def _like(value: Any, ref: Tensor) -> Tensor:
    """``value`` (number or tensor) broadcast to the shape of ``ref``."""
    if isinstance(value, Tensor) and value.shape == ref.shape:
        return value
    return torch.zeros_like(ref) + value


class EquationModel(NeuronModel):
    """Base class of the models built by :func:`from_equations` (one subclass per call).

    Subclass attributes (set by :func:`from_equations`): ``spec`` (:class:`EquationSpec`),
    ``equations`` (source text), and the compiled functions. Instances take the same
    keyword arguments as the call that built the class, which are also the defaults::

        model = from_equations("dv/dt = -v/tau", parameters={"tau": 0.01}, n=4)
        other = type(model)(8, tau=0.02)      # same equations, 8 neurons, another tau

    Args:
        n: number of neurons.
        refractory: refractory period (s).
        learnable: names of the parameters registered as ``nn.Parameter``.
        **parameters: parameter values (scalars or ``[n]`` tensors), overriding the defaults.
    """

    spec: EquationSpec
    equations: str
    _defaults: dict[str, Any] = {}
    _default_learnable: tuple[str, ...] = ()
    _positive: tuple[str, ...] = ()
    _initial: dict[str, Any] = {}

    def __init__(
        self,
        n: int,
        *,
        refractory: float | Tensor = 0.0,
        learnable: Sequence[str] | None = None,
        **parameters: float | Tensor,
    ) -> None:
        cls_name = type(self).__name__
        if not hasattr(type(self), "spec"):
            raise TypeError("EquationModel is built by from_equations(), not instantiated directly")
        names = self.spec.param_names
        unknown = sorted(set(parameters) - set(names))
        if unknown:
            raise EquationError(
                f"{cls_name}: unknown parameter {unknown[0]!r}; the equations have "
                f"{list(names) or 'no parameters'}"
            )
        values = {**self._defaults, **parameters}
        learnable = self._default_learnable if learnable is None else learnable
        learnable = (learnable,) if isinstance(learnable, str) else tuple(learnable)
        for name in learnable:
            if name not in names:
                raise EquationError(
                    f"{cls_name}: learnable names {name!r}, which is not a parameter "
                    f"({', '.join(names) or 'none'})"
                )
        super().__init__(n, refractory=refractory)
        for name in names:
            value = values.get(name)
            if value is None:
                raise EquationError(f"{cls_name}: missing value for parameter {name!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
                raise EquationError(
                    f"{cls_name}: parameter {name!r} must be a number or a tensor, got "
                    f"{type(value).__name__}"
                )
            if isinstance(value, Tensor) and not (value.is_floating_point() or value.dtype in (
                torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
                raise EquationError(
                    f"{cls_name}: parameter {name!r} must be real, got dtype {value.dtype}"
                )
            if not torch.isfinite(torch.as_tensor(value)).all():
                raise EquationError(f"{cls_name}: parameter {name!r} must be finite, got {value}")
            if isinstance(value, Tensor):
                value = value.detach().clone()
            if name in self._positive:
                try:
                    check_positive(f"{cls_name}.{name}", torch.as_tensor(value))
                except ValueError as exc:
                    raise EquationError(str(exc)) from None
            try:
                self.add_parameter(name, value, learnable=name in learnable)
            except ValueError as exc:  # wrong shape
                raise EquationError(str(exc)) from None

    # ----------------------------------------------------------------- helpers
    def _params(self) -> list[Tensor]:
        return [getattr(self, p) for p in self.spec.param_names]

    @property
    def has_flow(self) -> bool:
        """Whether the equations are linear (then :meth:`flow` is exact)."""
        return self.spec.linear is not None

    def initial_state(
        self,
        batch_size: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **values: float | Tensor,
    ) -> tuple:
        """Initial state ``[batch_size, n]`` per variable (``initial=`` values, else 0)."""
        if self._initial:
            params = self._params()
            for name, fn in self._initial.items():
                if name not in values:
                    values[name] = fn(*params) if callable(fn) else fn
        return super().initial_state(batch_size, dtype=dtype, device=device, **values)

    # ----------------------------------------------------------------- equations
    def dynamics(self, t: Tensor | float, state: tuple, input: Tensor) -> tuple:
        """Right-hand sides ``dX/dt`` (seconds⁻¹), each ``[..., N]`` like the state.

        Args:
            t: time in seconds (float or tensor broadcastable to the state).
            state: named tuple of ``[..., N]`` tensors.
            input: input current ``[..., N]``.
        """
        ref = state[0]
        if self.spec.uses_time and not isinstance(t, Tensor):
            t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
        out = self._dynamics_fn(*state, input, t, *self._params())
        return tuple(_like(v, ref) for v in out)

    def extra_repr(self) -> str:
        eqs = "; ".join(self.equations.splitlines())
        return f"{super().extra_repr()}, equations={eqs!r}"


def _threshold(self: EquationModel, state: tuple) -> Tensor:
    """Threshold function ``g(state)`` ``[..., N]``: a spike is an upward zero crossing."""
    return _like(self._threshold_fn(*state, *self._params()), state[0])


def _reset(self: EquationModel, state: tuple) -> tuple:
    """State right after a spike (the reset statements, applied in order)."""
    out = self._reset_fn(*state, *self._params())
    return state._replace(
        **{name: _like(v, state[0]) for name, v in zip(self.spec.reset, out, strict=True)}
    )


def _flow(self: EquationModel, state: tuple, input: Tensor, h: Tensor | float) -> tuple:
    """Exact solution after ``h`` seconds (broadcastable to the state) with constant input.

    One variable: ``x e^{a h} + b h phi1(a h)`` with ``phi1(z) = (e^z - 1)/z``; several:
    ``expm(h [[A, b], [0, 0]]) [x; 1]``, batched over all elements with
    :func:`torch.linalg.matrix_exp`. Both are exact for singular ``A``.
    """
    ref = state[0]
    h = torch.as_tensor(h, dtype=ref.dtype, device=ref.device)
    input = torch.as_tensor(input, dtype=ref.dtype, device=ref.device)
    a_flat, b = self._linear_fn(input, *self._params())
    d = len(state)
    if d == 1:
        x = state[0]
        a = _like(a_flat[0], x)
        z = a * h
        zero = z == 0
        phi1 = torch.where(zero, torch.ones_like(z), torch.expm1(z) / torch.where(zero, 1.0, z))
        return self.State(x * torch.exp(z) + _like(b[0], x) * h * phi1)
    shape = torch.broadcast_shapes(ref.shape, h.shape, input.shape)
    base = ref.new_zeros(shape)
    rows = [
        torch.stack([base + a_flat[i * d + j] for j in range(d)] + [base + b[i]], dim=-1)
        for i in range(d)
    ]
    rows.append(ref.new_zeros((*shape, d + 1)))
    m = torch.stack(rows, dim=-2) * (base + h)[..., None, None]
    e = torch.linalg.matrix_exp(m)
    x = torch.stack([base + s for s in state], dim=-1)
    new = (e[..., :d, :d] @ x[..., None]).squeeze(-1) + e[..., :d, d]
    return self.State(*new.unbind(-1))


# Attribute names a parameter must not take (they would shadow the module's own).
_ATTRIBUTE_NAMES = frozenset(dir(EquationModel)) | {"n", "State", "training"}


def _is_affine_in(expr: sp.Expr, var: sp.Symbol) -> bool:
    return var not in sp.diff(expr, var).free_symbols


# --------------------------------------------------------------------------- public API
def from_equations(
    equations: str | Sequence[str],
    *,
    threshold: str | None = None,
    reset: str | Sequence[str] | None = None,
    parameters: Mapping[str, float | Tensor | None] | None = None,
    n: int = 1,
    refractory: float | Tensor = 0.0,
    jump_target: str | None = None,
    clamped: Sequence[str] | None = None,
    initial: Mapping[str, float | Tensor | str] | None = None,
    learnable: Sequence[str] | str = (),
    positive: Sequence[str] | str = (),
    input_name: str = "I",
    name: str = "EquationModel",
) -> EquationModel:
    """Build a neuron model from equation strings.

    Args:
        equations: lines ``dX/dt = expr`` (one per state variable, units of ``X`` per
            second) and optional helper lines ``name = expr``; one string with newlines or a
            sequence of strings.
        threshold: spike condition ``"lhs >= rhs"`` (or ``>``), or an expression ``g`` whose
            upward zero crossing is a spike; state variables and parameters only.
            ``None``: the model never spikes.
        reset: statements ``X = expr`` (also ``+=``, ``-=``, ``*=``, ``/=``) separated by
            ``;`` or newlines, applied in order after a spike. ``None``: no reset.
        parameters: name -> value, a scalar or a per-neuron ``[n]`` tensor (finite).
        n: number of neurons.
        refractory: refractory period in seconds; the ``clamped`` variables are held.
        jump_target: variable incremented by incoming weighted spikes (default: the first
            state variable).
        clamped: variables held during the refractory period (default: the first).
        initial: initial value per state variable: a number, an ``[n]`` tensor or a string
            expression of the parameters (e.g. ``"v_leak"`` or ``"b*c"``); default 0.
        learnable: parameters registered as ``nn.Parameter`` (the others are buffers).
        positive: parameters that must be > 0 (e.g. time constants).
        input_name: name of the input-current symbol in the equations (default ``I``).
        name: name of the generated class.

    Returns:
        an instance of a new :class:`EquationModel` subclass called ``name``, with
        ``state_names`` in order of the derivative lines, an exact ``flow`` when the
        equations are linear (``has_flow``), ``monotone=True`` for one-variable models whose
        threshold is affine in the variable.

    Raises:
        EquationError: (a ``ValueError``) naming the faulty equation or argument.
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise EquationError(f"name must be a valid class name, got {name!r}")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise EquationError(
            f"parameters must be a mapping name -> value, got {type(parameters).__name__}"
        )
    if not isinstance(input_name, str):
        raise EquationError(f"input_name must be a string, got {input_name!r}")
    spec = parse_equations(
        equations, parameters=tuple(parameters), threshold=threshold, reset=reset,
        input_name=input_name,
    )
    states = spec.state_names
    params = spec.param_names
    learnable = (learnable,) if isinstance(learnable, str) else tuple(learnable)
    positive = (positive,) if isinstance(positive, str) else tuple(positive)
    for arg, names in (("learnable", learnable), ("positive", positive)):
        for p in names:
            if p not in params:
                raise EquationError(
                    f"{arg} names {p!r}, which is not a parameter ({', '.join(params) or 'none'})"
                )
    if jump_target is None:
        jump_target = states[0]
    if jump_target not in states:
        raise EquationError(
            f"jump_target {jump_target!r} is not a state variable ({', '.join(states)})"
        )
    if clamped is not None:
        clamped = (clamped,) if isinstance(clamped, str) else tuple(clamped)
        for var in clamped:
            if var not in states:
                raise EquationError(
                    f"clamped names {var!r}, which is not a state variable ({', '.join(states)})"
                )

    sym = {s: sp.Symbol(s, real=True) for s in (*states, *params)}
    state_syms = [sym[s] for s in states]
    param_syms = [sym[p] for p in params]
    sym_in = sp.Symbol(input_name, real=True)
    sym_t = sp.Symbol("t", real=True)

    # initial values: numbers / tensors as given, strings parsed as parameter expressions
    init: dict[str, Any] = {}
    for var, value in (initial or {}).items():
        if var not in states:
            raise EquationError(
                f"initial: {var!r} is not a state variable ({', '.join(states)})"
            )
        if isinstance(value, str):
            where = f"initial value {var}={value!r}"
            expr = _parse(value, where, {p: sym[p] for p in params},
                          {"parameters": params})
            if not isinstance(expr, sp.Expr):
                raise EquationError(f"{where} must be an expression of the parameters")
            init[var] = _lambdify(param_syms, expr)
        elif isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
            raise EquationError(
                f"initial: value of {var!r} must be a number, a tensor or a string, got "
                f"{type(value).__name__}"
            )
        elif not torch.isfinite(torch.as_tensor(value)).all():
            raise EquationError(f"initial: value of {var!r} must be finite, got {value}")
        else:
            init[var] = value

    monotone = (
        len(states) == 1
        and not spec.uses_time
        and (spec.threshold is None or _is_affine_in(spec.threshold, state_syms[0]))
    )
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"Neuron model {name} from equations:\n\n    "
        + "\n    ".join(spec.source.splitlines())
        + (f"\n\n    threshold: {spec.threshold} >= 0" if spec.threshold is not None else "")
        + (f"\n    reset: {spec.reset}" if spec.reset else "")
        + f"\n\nState variables {list(states)}, parameters {list(params)}, "
        f"input {input_name!r}, time t (s).",
        "state_names": states,
        "jump_target": jump_target,
        "clamped": clamped,
        "monotone": monotone,
        "initial_values": {},
        "spec": spec,
        "equations": spec.source,
        "_defaults": dict(parameters),
        "_default_learnable": learnable,
        "_positive": positive,
        "_initial": init,
        "_dynamics_fn": staticmethod(
            _lambdify([*state_syms, sym_in, sym_t, *param_syms], spec.rhs)
        ),
    }
    if spec.threshold is not None:
        attrs["threshold"] = _threshold
        attrs["_threshold_fn"] = staticmethod(_lambdify([*state_syms, *param_syms], spec.threshold))
    if spec.reset:
        attrs["reset"] = _reset
        attrs["_reset_fn"] = staticmethod(
            _lambdify([*state_syms, *param_syms], tuple(spec.reset.values()))
        )
    if spec.linear is not None:
        a_rows, b = spec.linear
        flat = tuple(c for row in a_rows for c in row)
        attrs["flow"] = _flow
        attrs["_linear_fn"] = staticmethod(_lambdify([sym_in, *param_syms], (flat, b)))
    cls = type(name, (EquationModel,), attrs)
    return cls(n, refractory=refractory)


equations_model = from_equations
