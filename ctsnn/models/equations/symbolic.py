"""Text to sympy and sympy to torch: the restricted namespace of equation strings.

Every expression is tokenised and checked first (names, real decimal numbers and
arithmetic/comparison operators only), then bounded and folded with Python's :mod:`ast` (at most
:data:`MAX_CHARS` characters, :data:`MAX_DEPTH` levels of nesting, constant exponents up to
:data:`MAX_EXPONENT`; constant sub-expressions are evaluated in float64 and must stay finite and
real, so sympy never sees a big-integer computation), then parsed by
:func:`sympy.parsing.sympy_parser.parse_expr` with a namespace
holding only the allowed functions and the given symbols (no builtins, no sympy star import, so
``I``, ``E``, ``S``, ``N``... are plain symbols). :func:`lambdify` compiles the expressions to
torch code, so models run on batched tensors and are differentiable by autograd; a compiled
expression may return a number or a smaller tensor, hence :func:`broadcast_like`.
"""

from __future__ import annotations

import ast
import io
import keyword
import math
import re
import tokenize
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sympy as sp
import torch
from sympy.core.function import AppliedUndef
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations
from torch import Tensor

__all__ = [
    "MAX_CHARS", "MAX_DEPTH", "MAX_EXPONENT", "MAX_TOTAL_CHARS", "EquationError",
    "broadcast_like", "check_name", "lambdify", "parse_expression", "split_lines",
]

MAX_CHARS = 2000
"""Longest expression (characters) accepted in one equation, threshold or reset statement."""
MAX_TOTAL_CHARS = 20 * MAX_CHARS
"""Longest equations / reset text (characters) accepted in one call."""
MAX_DEPTH = 32
"""Deepest nesting (function calls, parentheses, powers, signs) accepted in an expression."""
MAX_EXPONENT = 1024
"""Largest constant exponent (product along nested powers) of a non-constant base."""


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


_DECIMAL = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_DERIVATIVE_NAME = re.compile(r"d([A-Za-z]\w*)")
_FLOAT_MAX = float(torch.finfo(torch.float64).max)
_EXACT_INT = 2**53  # integers up to this stay exact (sympy Integer); larger become floats


def _check_number(literal: str, where: str) -> None:
    """A number token must be a real decimal literal representable in float64."""
    if not _DECIMAL.fullmatch(literal):
        kind = "a complex literal" if literal[-1:] in "jJ" else "not a plain decimal number"
        raise EquationError(
            f"number {literal!r} in {where} is {kind}: only real decimal numbers (e.g. 2, 0.5, "
            "1e-3) are allowed"
        )
    number = Decimal(literal)  # exact and cheap: no power of ten is computed
    if number and not 0 < abs(float(number)) <= _FLOAT_MAX:
        raise EquationError(
            f"number {literal!r} in {where} is outside the float64 range (about 2.2e-308 to "
            "1.8e308)"
        )


def _check_tokens(text: str, where: str, symbols: Mapping[str, sp.Symbol],
                  states: Sequence[str]) -> str:
    """Reject anything but names, numbers and arithmetic/comparison operators before parsing.

    Returns ``text`` with each ``^`` written ``**`` (same precedence as in the equations).
    """
    if len(text) > MAX_CHARS:
        raise EquationError(
            f"{where[:80]}... is too long ({len(text)} characters, at most {MAX_CHARS})"
        )
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as exc:
        raise EquationError(f"cannot parse {where}: {exc}") from None
    for i, tok in enumerate(tokens):
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if tok.type == tokenize.NUMBER:
            _check_number(tok.string, where)
            continue
        if tok.type == tokenize.NAME:
            if keyword.iskeyword(tok.string) or tok.string.startswith("_"):
                raise EquationError(f"{tok.string!r} cannot be used as a name in {where}")
            d = _DERIVATIVE_NAME.fullmatch(tok.string)
            if (d is not None and "dt" not in symbols and tok.string not in symbols
                    and [(t.type, t.string) for t in tokens[i + 1:i + 3]]
                    == [(tokenize.OP, "/"), (tokenize.NAME, "dt")]):
                var = d.group(1)
                declared = (
                    f"{var!r} is a state variable" if var in states else
                    f"{var!r} is not even a state variable: that needs a 'd{var}/dt = ...' line"
                )
                raise EquationError(
                    f"derivative 'd{var}/dt' in {where}: a derivative may only appear on the "
                    f"left of its own 'd{var}/dt = expr' line, not in an expression; {declared}"
                )
            continue
        if tok.type == tokenize.OP and tok.string in _ALLOWED_OPS:
            continue
        raise EquationError(
            f"unexpected {tok.string!r} in {where}: only names, numbers, + - * / ** ^, "
            "parentheses, commas (function arguments) and comparisons are allowed"
        )
    line_starts = [0]
    for line in text.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    for tok in reversed(tokens):
        if tok.type == tokenize.OP and tok.string == "^":
            at = line_starts[tok.start[0] - 1] + tok.start[1]
            text = text[:at] + "**" + text[at + 1:]
    return text


# ----------------------------------------------------------------------------- bounded folding
_MATH: dict[str, Callable[..., float]] = {
    "exp": math.exp, "log": math.log, "sqrt": math.sqrt,
    "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "tanh": math.tanh, "sinh": math.sinh, "cosh": math.cosh,
    "abs": abs, "Abs": abs, "min": min, "max": max, "Min": min, "Max": max,
}
_BINARY: dict[type, Callable[[float, float], Any]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a ** b,
}
_COMPARISONS = (ast.Lt, ast.Gt, ast.LtE, ast.GtE, ast.Eq, ast.NotEq)


_NOT_FINITE = "is not a finite real expression: "


def _literal(value: float) -> ast.expr:
    """An AST literal for a folded constant: an exact integer when small, else a float."""
    number: int | float = (
        int(value) if value.is_integer() and abs(value) <= _EXACT_INT else value
    )
    if number < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=-number))
    return ast.Constant(value=number)


class _Folder:
    """Checks an expression's AST (bounded depth and exponents, allowed nodes only) and
    replaces each constant sub-expression by its float64 value (finite and real)."""

    def __init__(self, text: str, where: str) -> None:
        self.text, self.where = text, where

    def fail(self, node: ast.AST, what: str) -> EquationError:
        part = ast.get_source_segment(self.text, node) or ast.unparse(node)
        if len(part) > 60:
            part = part[:57] + "..."
        sep = " " if what.startswith("is ") else ": "
        where = self.where if len(self.where) <= 120 else self.where[:100] + "...'"
        return EquationError(f"{where}{sep}{what} at {part!r}")

    def value(self, node: ast.AST, compute: Callable[[], Any]) -> tuple[ast.expr, float]:
        """``compute()`` as a checked float64 constant replacing ``node``."""
        try:
            result = compute()
        except ZeroDivisionError:
            raise self.fail(node, _NOT_FINITE + "division by zero") from None
        except OverflowError:
            raise self.fail(node, _NOT_FINITE + "a constant overflows float64") from None
        except (ValueError, TypeError) as exc:
            raise self.fail(node, _NOT_FINITE + f"a constant cannot be evaluated ({exc})") from None
        if isinstance(result, complex) or not isinstance(result, (int, float)):
            raise self.fail(node, _NOT_FINITE + "a constant is not real")
        result = float(result)
        if not math.isfinite(result):
            raise self.fail(node, _NOT_FINITE + "a constant is not finite in float64")
        return _literal(result), result

    def fold(self, node: ast.AST, depth: int, scale: float) -> tuple[ast.expr, float | None]:
        """``(new node, constant value or None)``; ``scale``: product of enclosing exponents."""
        if depth > MAX_DEPTH:
            raise self.fail(node, f"the expression is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, ast.Constant):
            return self.value(node, lambda: node.value)
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return self.value(node, lambda: math.pi)
            return node, None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            operand, v = self.fold(node.operand, depth + 1, scale)
            if v is not None:
                return self.value(node, lambda: v if isinstance(node.op, ast.UAdd) else -v)
            return ast.UnaryOp(op=node.op, operand=operand), None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return self.power(node, depth, scale)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self.chain(node, depth, scale)
        if isinstance(node, ast.Call):
            return self.call(node, depth, scale)
        raise self.fail(node, f"unsupported {type(node).__name__} syntax")

    def power(self, node: ast.BinOp, depth: int, scale: float) -> tuple[ast.expr, float | None]:
        exponent, e = self.fold(node.right, depth + 1, scale)
        if e is not None:
            scale *= max(1.0, abs(e))
            if scale > MAX_EXPONENT:
                raise self.fail(node, f"exponent larger than {MAX_EXPONENT} (nested powers "
                                      "multiply)")
        base, b = self.fold(node.left, depth + 1, scale)
        if b is not None and e is not None:
            return self.value(node, lambda: b ** e)
        return ast.BinOp(left=base, op=ast.Pow(), right=exponent), None

    def chain(self, node: ast.BinOp, depth: int, scale: float) -> tuple[ast.expr, float | None]:
        """A left-associative chain ``a + b - c ...`` (or ``* /``) counts as one level."""
        group = (ast.Add, ast.Sub) if isinstance(node.op, (ast.Add, ast.Sub)) else (
            ast.Mult, ast.Div)
        spine: list[ast.BinOp] = []
        cur: ast.expr = node
        while isinstance(cur, ast.BinOp) and isinstance(cur.op, group):
            spine.append(cur)
            cur = cur.left
        left, lv = self.fold(cur, depth + 1, scale)
        for op_node in reversed(spine):
            right, rv = self.fold(op_node.right, depth + 1, scale)
            if lv is not None and rv is not None:
                fn, a, b = _BINARY[type(op_node.op)], lv, rv
                left, lv = self.value(op_node, lambda fn=fn, a=a, b=b: fn(a, b))
            else:
                left, lv = ast.BinOp(left=left, op=op_node.op, right=right), None
        return left, lv

    def call(self, node: ast.Call, depth: int, scale: float) -> tuple[ast.expr, float | None]:
        if not isinstance(node.func, ast.Name) or node.keywords or any(
                isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, "only calls f(x, ...) of the known functions are allowed")
        folded = [self.fold(a, depth + 1, scale) for a in node.args]
        args = [a for a, _ in folded]
        values = [v for _, v in folded]
        fn = _MATH.get(node.func.id)
        if fn is not None and values and all(v is not None for v in values):
            return self.value(node, lambda: fn(*values))
        return ast.Call(func=ast.Name(id=node.func.id, ctx=ast.Load()), args=args,
                        keywords=[]), None

    def top(self, node: ast.AST) -> ast.expr:
        """The folded top-level expression (one comparison allowed at the top)."""
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or not isinstance(node.ops[0], _COMPARISONS):
                raise self.fail(node, "only one comparison 'lhs >= rhs' is allowed")
            lhs, _ = self.fold(node.left, 1, 1.0)
            rhs, _ = self.fold(node.comparators[0], 1, 1.0)
            return ast.Compare(left=lhs, ops=node.ops, comparators=[rhs])
        return self.fold(node, 1, 1.0)[0]


def _bounded_text(text: str, where: str) -> str:
    """``text`` checked (syntax, depth, exponents) with its constants folded in float64."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        msg = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise EquationError(f"cannot parse {where}: {msg}") from None
    folded = _Folder(text, where).top(tree.body)
    return ast.unparse(ast.fix_missing_locations(ast.Expression(body=folded)))


def _check_numbers(expr: sp.Basic, where: str) -> None:
    """Every number sympy produced (e.g. by combining powers) must be finite in float64."""
    for number in expr.atoms(sp.Number):
        if isinstance(number, sp.Rational):  # printed as p/q: both must be floats
            ok = max(abs(number.p).bit_length(), number.q.bit_length()) <= 1024
        else:
            ok = math.isfinite(float(number))
        if not ok:
            raise EquationError(f"{where} has a constant outside the float64 range: {number}")


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
        if name == "dt":
            raise EquationError(
                f"unknown symbol 'dt' in {where}: a derivative 'dX/dt' may only appear on the "
                "left of its own line and time is 't' (a step size needs a parameter 'dt' in "
                f"parameters=); known: {_known_text(groups)}"
            )
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
            non-finite / complex result, a literal that is complex or outside the float64
            range, an expression longer than :data:`MAX_CHARS`, nested deeper than
            :data:`MAX_DEPTH` or with an exponent above :data:`MAX_EXPONENT`, a derivative
            ``dX/dt`` inside an expression.
    """
    text = text.strip()
    if not text:
        raise EquationError(f"empty expression in {where}")
    text = _check_tokens(text, where, symbols, tuple(groups.get("state variables", ())))
    bounded = _bounded_text(text, where)
    local = {**_FUNCTIONS, **_CONSTANTS, **symbols}
    try:
        expr = parse_expr(
            bounded, local_dict=local, global_dict=dict(_PARSE_GLOBALS),
            transformations=_TRANSFORMATIONS,
        )
    except (RecursionError, MemoryError) as exc:
        raise EquationError(f"{where} is too complex ({type(exc).__name__})") from None
    except Exception as exc:  # sympy raises SyntaxError, TypeError, ... on bad input
        raise EquationError(f"cannot parse {where}: {type(exc).__name__}: {exc}") from None
    if not isinstance(expr, sp.Basic):
        expr = sp.sympify(expr)
    _check_symbols(expr, where, symbols, groups)
    _check_numbers(expr, where)
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
    size = sum(len(chunk) for chunk in chunks)
    if size > MAX_TOTAL_CHARS:
        raise EquationError(f"{what} is too long ({size} characters, at most {MAX_TOTAL_CHARS})")
    out = []
    for chunk in chunks:
        for line in re.split(f"[{re.escape(separators)}]", chunk):
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out
