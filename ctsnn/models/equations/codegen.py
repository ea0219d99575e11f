"""Equations as plain-Python ``math`` source, for compiled loops (numba).

:func:`model_source` prints the sympy expressions of an :class:`EquationSpec` as the source of
four scalar functions of one neuron (state ``y`` and parameters as float64 arrays), which a
caller compiles with ``numba.njit`` (see :mod:`ctsnn.engine.compiled.generic_loop`)::

    rhs(y, t, p, j, out)   # out[i] = dX_i/dt at time t (input current 0), neuron j
    g(y, p, j)             # the threshold function (upward zero crossing = spike)
    slope(y, dy, p, j)     # dg/dt when the state moves with dy (sum_i dg/dX_i dy_i)
    reset(y, p, j)         # the reset statements, in place (all from the pre-reset state)

``p`` is ``[N, P]`` (parameters in ``spec.param_names`` order), ``j`` the neuron. Expressions
are printed by sympy's Python printer (the same printer family the torch functions of
:func:`ctsnn.from_equations` come from, so both evaluate the same expression tree), floats as
their exact ``repr``. Only the functions of the equation grammar are accepted
(:data:`SUPPORTED`); anything else raises :class:`CodegenError`, so a caller can fall back to
the PyTorch path.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from .parsing import EquationSpec
from .symbolic import EquationError

__all__ = ["SUPPORTED", "CodegenError", "ModelSource", "expression_source", "model_source"]

#: sympy functions that print to ``math`` / builtins that numba compiles.
SUPPORTED = (sp.exp, sp.log, sp.sin, sp.cos, sp.tan, sp.tanh, sp.sinh, sp.cosh, sp.Abs, sp.Min,
             sp.Max)


class CodegenError(EquationError):
    """An expression uses something the compiled loop cannot evaluate."""


class _Printer(PythonCodePrinter):
    """Python source with ``math.`` functions; floats printed exactly (``repr``)."""

    def __init__(self) -> None:
        super().__init__({"strict": True, "fully_qualified_modules": True})

    def _print_Float(self, expr: sp.Float) -> str:  # noqa: N802 - sympy's naming
        return repr(float(expr))

    def _print_Integer(self, expr: sp.Integer) -> str:  # noqa: N802
        return repr(float(expr)) if abs(int(expr)) < 2**53 else repr(int(expr))


def expression_source(expr: sp.Expr, names: dict[sp.Symbol, str], where: str) -> str:
    """``expr`` as Python source with the symbols renamed by ``names``.

    Raises:
        CodegenError: an unsupported function, a non-finite constant or an unknown symbol.
    """
    expr = sp.sympify(expr)
    for fn in expr.atoms(sp.Function):
        if not isinstance(fn, SUPPORTED):
            raise CodegenError(f"{where}: the compiled loop cannot evaluate {fn.func.__name__} "
                               f"(supported: {', '.join(f.__name__ for f in SUPPORTED)})")
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise CodegenError(f"{where}: a non-finite constant in {expr}")
    unknown = {s.name for s in expr.free_symbols} - {s.name for s in names}
    if unknown:
        raise CodegenError(f"{where}: unknown symbol(s) {sorted(unknown)}")
    by_name = {s.name: sp.Symbol(new) for s, new in names.items()}
    renamed = expr.xreplace({s: by_name[s.name] for s in expr.free_symbols})
    try:
        return _Printer().doprint(renamed)
    except Exception as exc:  # sympy raises its own PrintMethodNotImplementedError
        raise CodegenError(f"{where}: cannot print {expr} as Python ({exc})") from None


@dataclass(frozen=True)
class ModelSource:
    """Source of ``rhs``, ``g``, ``slope`` and ``reset`` (see the module docstring).

    Attributes:
        source: Python source defining the four functions (``import math`` assumed).
        state_names, param_names: the order of ``y`` and of the columns of ``p``.
        spiking: whether there is a threshold (else ``g`` returns -1).
        resets: whether there is a reset (else ``reset`` leaves ``y`` unchanged).
    """

    source: str
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    spiking: bool
    resets: bool


def _names(spec: EquationSpec) -> dict[sp.Symbol, str]:
    names = {sp.Symbol(s, real=True): f"s_{i}" for i, s in enumerate(spec.state_names)}
    names.update({sp.Symbol(p, real=True): f"p_{i}" for i, p in enumerate(spec.param_names)})
    names[sp.Symbol(spec.input_name, real=True)] = "inp"
    names[sp.Symbol("t", real=True)] = "tt"
    return names


def model_source(spec: EquationSpec) -> ModelSource:
    """The scalar functions of ``spec`` as Python source (see the module docstring).

    Raises:
        CodegenError: an expression the compiled loop cannot evaluate.
    """
    names = _names(spec)
    n_s = len(spec.state_names)
    load_y = "".join(f"    s_{i} = y[{i}]\n" for i in range(n_s))
    load_p = "".join(f"    p_{i} = p[j, {i}]\n" for i in range(len(spec.param_names)))
    lines = ["def rhs(y, tt, p, j, out):\n", load_y, load_p, "    inp = 0.0\n"]
    for i, (var, expr) in enumerate(zip(spec.state_names, spec.rhs, strict=True)):
        lines.append(f"    out[{i}] = {expression_source(expr, names, f'd{var}/dt')}\n")
    spiking = spec.threshold is not None
    g_src = expression_source(spec.threshold, names, "threshold") if spiking else "-1.0"
    lines += ["\n\ndef g(y, p, j):\n", load_y, load_p, f"    return {g_src}\n"]
    if spiking:
        terms = []
        for i, var in enumerate(spec.state_names):
            d = sp.diff(spec.threshold, sp.Symbol(var, real=True))
            if d != 0:
                terms.append(f"({expression_source(d, names, 'threshold slope')}) * dy[{i}]")
        slope_src = " + ".join(terms) if terms else "0.0"
    else:
        slope_src = "0.0"
    lines += ["\n\ndef slope(y, dy, p, j):\n", load_y, load_p, f"    return {slope_src}\n"]
    lines += ["\n\ndef reset(y, p, j):\n", load_y, load_p]
    resets = bool(spec.reset)
    index = {s: i for i, s in enumerate(spec.state_names)}
    for k, (var, expr) in enumerate((spec.reset or {}).items()):
        lines.append(f"    r_{k} = {expression_source(expr, names, f'reset of {var}')}\n")
    for k, var in enumerate(spec.reset or {}):
        lines.append(f"    y[{index[var]}] = r_{k}\n")
    lines.append("    return 0\n")
    return ModelSource("".join(lines), spec.state_names, spec.param_names, spiking, resets)
