"""Equations printed as ``math`` source (the compiled generic loop's model functions)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ctsnn
from ctsnn.engine.compiled.generic_loop import EQUATION_FORMS
from ctsnn.models.equations import parse_equations
from ctsnn.models.equations.codegen import CodegenError, expression_source, model_source

F64 = torch.float64


def _functions(source):
    namespace = {"math": math}
    exec(source.source, namespace)  # plain Python: what numba compiles
    return namespace["rhs"], namespace["g"], namespace["slope"], namespace["reset"]


def _as_equations(model):
    equations, threshold, reset, names = EQUATION_FORMS[type(model)]
    return ctsnn.from_equations(equations, threshold=threshold, reset=reset,
                                parameters={p: getattr(model, p) for p in names}, n=model.n,
                                name=f"{type(model).__name__}Eq").double()


@pytest.mark.parametrize("cls", list(EQUATION_FORMS))
def test_equation_forms_are_the_builtin_models(cls):
    """:data:`EQUATION_FORMS` (what the loop is generated from) are the built-in models'
    dynamics, threshold and reset (float64, to rounding: sympy orders the terms)."""
    gen = torch.Generator().manual_seed(0)
    model = cls(5, a=0.004 + torch.rand(5, generator=gen, dtype=F64) * 0.01).double()
    eq = _as_equations(model)
    assert set(EQUATION_FORMS[cls][3]) == set(model.param_names) - {"refractory"}
    v = model.initial_state(3, dtype=F64)[0] + 20 * torch.rand(3, 5, generator=gen, dtype=F64)
    state = model.State(v, *(torch.rand(3, 5, generator=gen, dtype=F64)
                             for _ in model.state_names[1:]))
    zero = torch.zeros(3, 5, dtype=F64)
    for a, b in zip(model.dynamics(0.0, state, zero), eq.dynamics(0.0, state, zero),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(model.threshold(state), eq.threshold(state), rtol=0, atol=0)
    for a, b in zip(model.reset(state), eq.reset(state), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@functools.cache
def _mixed():
    return ctsnn.from_equations(
        "dv/dt = (v_l - v + amp*sin(2*pi*f*t) + Max(v, 0)**2/3 - w)/tau\n"
        "dw/dt = (a*(v - v_l) - w)/tau_w + sqrt(abs(w))*0.5",
        threshold="v + 0.1*w >= v_th", reset="v = v_l; w += b*v",
        parameters={"tau": 0.02, "tau_w": 0.1, "a": 0.3, "b": 0.2, "v_l": 0.0, "v_th": 1.0,
                    "amp": torch.tensor([0.3, 1.2], dtype=F64), "f": 40.0},
        n=2, name="Mixed").double()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.floats(0, 1))
def test_generated_source_equals_torch_functions(seed, t):
    """rhs, threshold, reset and the threshold's slope of the printed source equal the torch
    functions of the model (float64, to rounding)."""
    gen = torch.Generator().manual_seed(seed)
    model = _mixed()
    source = model_source(model.spec)
    rhs, g, slope, reset = _functions(source)
    p = np.stack([getattr(model, n).detach().expand(2).numpy() for n in source.param_names], 1)
    y = (torch.rand(2, 2, generator=gen, dtype=F64) * 2 - 0.5)
    state = model.State(*y.unbind(-1))
    zero = torch.zeros(2, dtype=F64)
    dyn = model.dynamics(torch.tensor(t, dtype=F64), state, zero)
    for j in range(2):
        out = np.empty(2)
        rhs(y[j].numpy(), t, p, j, out)
        np.testing.assert_allclose(out, [float(d[j]) for d in dyn], rtol=1e-12, atol=1e-12)
        assert g(y[j].numpy(), p, j) == pytest.approx(float(model.threshold(state)[j]), abs=1e-15)
        dy = np.array([float(d[j]) for d in dyn])
        rate = model.threshold_rate(state, model.State(*dyn))[j]
        assert slope(y[j].numpy(), dy, p, j) == pytest.approx(float(rate), rel=1e-13, abs=1e-13)
        yy = y[j].numpy().copy()
        reset(yy, p, j)
        np.testing.assert_allclose(yy, [float(r[j]) for r in model.reset(state)], rtol=0,
                                   atol=1e-15)


def test_floats_print_exactly():
    x = sp.Symbol("x", real=True)
    text = expression_source(x * sp.Float(0.1) + sp.Float(1 / 3), {x: "s_0"}, "test")
    assert eval(text, {"s_0": 2.0}) == 2.0 * 0.1 + 1 / 3  # noqa: S307 - our own source


def test_unsupported_function_is_a_clear_error():
    x = sp.Symbol("x", real=True)
    with pytest.raises(CodegenError, match="cannot evaluate erf"):
        expression_source(sp.erf(x), {x: "s_0"}, "dx/dt")
    with pytest.raises(CodegenError, match="unknown symbol"):
        expression_source(x + sp.Symbol("y", real=True), {x: "s_0"}, "dx/dt")
    spec = parse_equations("dv/dt = -v/tau", parameters=("tau",), threshold="v >= 1")
    spec = type(spec)(**{**spec.__dict__, "rhs": (sp.erf(sp.Symbol("v", real=True)),)})
    with pytest.raises(CodegenError, match="dv/dt"):
        model_source(spec)
