"""Linear equations: detecting ``dx/dt = A x + b`` and its exact flow.

When every right-hand side is affine in the state variables with coefficients that depend only
on parameters and the input (not on ``t``), the model's ``flow`` is exact: a closed form for one
variable, else the matrix exponential of the augmented system ``[[A, b], [0, 0]]``; both also
cover singular ``A``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy as sp
import torch
from torch import Tensor

from ..exponentials import expm1_ratio
from .symbolic import broadcast_like

__all__ = ["analyse_linear", "is_affine_in", "linear_flow"]

LinearSystem = tuple[tuple[tuple[sp.Expr, ...], ...], tuple[sp.Expr, ...]]


def analyse_linear(
    rhs: Sequence[sp.Expr], states: Sequence[sp.Symbol], time: sp.Symbol
) -> LinearSystem | None:
    """``(A, b)`` if ``rhs = A x + b`` with ``A, b`` free of the state and of ``t``, else None.

    ``A`` is a tuple of rows (one per state variable), ``b`` one offset per variable; their
    entries are sympy expressions of the parameters and the input.
    """
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


def is_affine_in(expr: sp.Expr, var: sp.Symbol) -> bool:
    """Whether ``expr`` is affine in ``var`` (its derivative does not depend on ``var``)."""
    return var not in sp.diff(expr, var).free_symbols


def linear_flow(
    state: Sequence[Tensor], a_flat: Sequence[Any], b: Sequence[Any], h: Tensor, input: Tensor
) -> tuple[Tensor, ...]:
    """Exact solution of ``dx/dt = A x + b`` after ``h`` seconds.

    One variable: ``x e^{a h} + b h phi1(a h)`` with ``phi1(z) = (e^z - 1)/z``; several:
    ``expm(h [[A, b], [0, 0]]) [x; 1]``, batched over all elements with
    :func:`torch.linalg.matrix_exp`. Both are exact for singular ``A``.

    Args:
        state: the ``d`` state variables, tensors ``[..., N]``.
        a_flat: the ``d * d`` entries of ``A``, row by row (numbers or tensors broadcastable
            to the state, seconds⁻¹).
        b: the ``d`` offsets (units of the variable per second).
        h: step in seconds, a tensor broadcastable to the state.
        input: the constant input ``A`` and ``b`` were evaluated at; with several variables
            the result has the broadcast shape of the state, ``h`` and ``input``.

    Returns:
        the ``d`` new state variables.
    """
    d = len(state)
    ref = state[0]
    if d == 1:
        a = broadcast_like(a_flat[0], ref)
        z = a * h
        return (ref * torch.exp(z) + broadcast_like(b[0], ref) * h * expm1_ratio(z),)
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
    return tuple(new.unbind(-1))
