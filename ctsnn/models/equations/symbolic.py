"""Text to sympy and sympy to torch: the restricted namespace of equation strings.

Every expression is tokenised and checked first (names, numbers and arithmetic/comparison
operators only), then parsed by :func:`sympy.parsing.sympy_parser.parse_expr` with a namespace
holding only the allowed functions and the given symbols (no builtins, no sympy star import, so
``I``, ``E``, ``S``, ``N``... are plain symbols). :func:`lambdify` compiles the expressions to
torch code, so models run on batched tensors and are differentiable by autograd; a compiled
expression may return a number or a smaller tensor, hence :func:`broadcast_like`.
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sympy as sp
import torch
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations
from torch import Tensor

__all__ = [
    "EquationError", "broadcast_like", "check_name", "lambdify", "parse_expression", "split_lines",
]


class EquationError(ValueError):
    """An equation, threshold, reset or parameter given to ``from_equations`` is invalid."""


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
    """A variadic ``Min``/``Max`` on tensors and numbers from a binary torch function."""

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


def lambdify(args: Sequence[sp.Symbol], exprs: Any) -> Callable[..., Any]:
    """Compile sympy expression(s) to a function of tensors (autograd-friendly)."""
    return sp.lambdify(list(args), exprs, modules=[_TORCH, "math"], dummify=True)


def broadcast_like(value: Any, ref: Tensor) -> Tensor:
    """``value`` (number or tensor) broadcast to the shape of ``ref``."""
    if isinstance(value, Tensor) and value.shape == ref.shape:
        return value
    return torch.zeros_like(ref) + value


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


def _check_symbols(
    expr: sp.Basic, where: str, symbols: Mapping[str, sp.Symbol],
    groups: Mapping[str, Iterable[str]],
) -> None:
    """Every function must be a known one and every free symbol one of ``symbols``."""
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


def parse_expression(
    text: str, where: str, symbols: Mapping[str, sp.Symbol], groups: Mapping[str, Iterable[str]]
) -> sp.Basic:
    """Parse ``text`` with sympy; every free symbol must be one of ``symbols``.

    Args:
        text: the expression (or comparison) as written by the user.
        where: what to call it in error messages (e.g. ``"equation 'dv/dt = ...'"``).
        symbols: name -> sympy symbol of every name the text may use.
        groups: kind -> names (``"parameters": (...)``...), listed in "unknown name" errors.

    Raises:
        EquationError: naming ``where`` for a syntax error, an unknown name or function, or a
            non-finite / complex result.
    """
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
    _check_symbols(expr, where, symbols, groups)
    if expr.has(sp.I, sp.zoo, sp.oo, -sp.oo, sp.nan):
        raise EquationError(f"{where} is not a finite real expression (got {expr})")
    return expr


def check_name(name: str, what: str) -> None:
    """Raise :class:`EquationError` unless ``name`` can name a variable, parameter or helper."""
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise EquationError(
            f"{what} {name!r} is not a valid name (a Python identifier not starting with '_')"
        )
    if name in _RESERVED:
        raise EquationError(f"{what} {name!r} clashes with the function/constant {name!r}")


def split_lines(text: str | Sequence[str], what: str, separators: str = "\n") -> list[str]:
    """Non-empty statements of ``text`` (a string or strings), comments (``#``) removed."""
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
