"""Equation strings: what the parser accepts (EquationSpec) and the errors of bad input."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

import ctsnn
from ctsnn.models.equations import EquationError, EquationModel, EquationSpec, parse_equations
from ctsnn.models.equations.parsing import ATTRIBUTE_NAMES

pytestmark = pytest.mark.usefixtures("float64")

LIF_EQ = "dv/dt = (v_leak - v + r*I)/tau_mem"


def test_spec_of_a_two_variable_model():
    spec = parse_equations(
        """
        dv/dt = (v_leak - v + r*i)/tau_mem   # membrane
        di/dt = (I - i)/tau_syn + 0*drive
        drive = t*0
        """,
        parameters=("tau_mem", "tau_syn", "r", "v_leak", "v_th"),
        threshold="v >= v_th", reset="v = v - v_th; i = i/2; v += 1",
    )
    assert isinstance(spec, EquationSpec)
    v, i, v_th = sp.symbols("v i v_th", real=True)
    assert spec.state_names == ("v", "i") and spec.input_name == "I"
    assert spec.source.splitlines()[0] == "dv/dt = (v_leak - v + r*i)/tau_mem"
    assert sp.simplify(spec.threshold - (v - v_th)) == 0
    # statements compose in order: v <- (v - v_th) + 1, i <- i/2
    assert sp.simplify(spec.reset["v"] - (v - v_th + 1)) == 0 and spec.reset["i"] == i / 2
    assert spec.linear is not None and not spec.uses_time  # 0*t vanishes
    (a_rows, b) = spec.linear
    assert a_rows[1] == (0, -1 / sp.Symbol("tau_syn", real=True))


def test_time_dependent_or_non_linear_equations_have_no_linear_form():
    assert parse_equations("dv/dt = -v*t", parameters=()).linear is None
    assert parse_equations("dv/dt = -v*t", parameters=()).uses_time
    assert parse_equations("dv/dt = v**2", parameters=()).linear is None
    assert parse_equations("dv/dt = -v*I", parameters=()).linear is not None  # input: a coefficient


def test_parameters_cannot_shadow_model_attributes():
    public = {name for name in dir(EquationModel) if not name.startswith("_")}
    assert public <= ATTRIBUTE_NAMES
    for name in ("spec", "equations", "flow", "reset", "n"):
        with pytest.raises(EquationError, match=f"parameter '{name}' clashes with an attribute"):
            ctsnn.from_equations("dv/dt = -v", parameters={name: 1.0})


LIF_PARAMS = dict(tau_mem=0.01, r=1.0, v_leak=0.0, v_th=1.0, v_reset=0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(equations="dv/dt = (v_leak - v + r*I)/tau_mem + x"), r"unknown symbol 'x'.*known"),
        (dict(equations="dv/dt = foo(v)"), r"unknown function 'foo'"),
        (dict(threshold="w >= v_th"), r"unknown symbol 'w' in threshold.*'dw/dt"),
        (dict(reset="v = v_reset; w = 0"), r"assigns 'w', which is not a state variable"),
        (dict(reset="v_th = 0"), r"assigns 'v_th', which is a parameter"),
        (dict(reset="v = w"), r"unknown symbol 'w' in reset"),
        (dict(equations="dv/dt = -v/tau_mem\ndv/dt = I"), r"duplicate derivative.*'v'"),
        (dict(equations="dv/dt -v/tau_mem"), r"malformed equation"),
        (dict(equations="v' = -v/tau_mem"), r"malformed equation"),
        (dict(equations="dv/dx = -v/tau_mem"), r"malformed equation"),
        (dict(equations="dv/dt = (-v"), r"cannot parse"),
        (dict(equations="dv/dt = v.real"), r"unexpected '\.'"),
        (dict(equations="dv/dt = __import__(v)"), r"cannot be used as a name"),
        (dict(reset="v"), r"malformed reset statement"),
        (dict(threshold="v < v_th"), r"'<'.*upward"),
        (dict(threshold="v_th <= v"), r"'<'.*upward"),
        (dict(threshold="v == v_th"), r"threshold"),
        (dict(threshold="v_th + 1"), r"does not depend on any state variable"),
        (dict(threshold="v + I >= 1"), r"unknown symbol 'I' in threshold"),
        (dict(parameters={**LIF_PARAMS, "tau_mem": None}), r"missing value for parameter 'tau_m"),
        (dict(parameters={k: v for k, v in LIF_PARAMS.items() if k != "r"}), r"unknown symbol 'r'"),
        (dict(parameters={**LIF_PARAMS, "v": 1.0}), r"parameter 'v' clashes with the state"),
        (dict(parameters={**LIF_PARAMS, "t": 1.0}), r"parameter 't' clashes with time"),
        (dict(parameters={**LIF_PARAMS, "I": 1.0}), r"parameter 'I' clashes with the input"),
        (dict(parameters={**LIF_PARAMS, "refractory": 1.0}), r"'refractory' clashes"),
        (dict(parameters={**LIF_PARAMS, "exp": 1.0}), r"'exp' clashes with the function"),
        (dict(parameters={**LIF_PARAMS, "training": 1.0}), r"'training' clashes"),
        (dict(parameters={**LIF_PARAMS, "r": math.inf}), r"parameter 'r' must be finite"),
        (dict(parameters={**LIF_PARAMS, "r": torch.tensor([1.0, math.nan, 1.0])}),
         r"parameter 'r' must be finite"),
        (dict(parameters={**LIF_PARAMS, "r": "1.0"}), r"parameter 'r' must be a number"),
        (dict(parameters={**LIF_PARAMS, "r": torch.ones(2)}), r"parameter r must be a scalar"),
        (dict(parameters={**LIF_PARAMS, "tau_mem": -0.01}, positive="tau_mem"),
         r"tau_mem must be positive"),
        (dict(equations="dt/dt = -t"), r"state variable 't' clashes with time"),
        (dict(equations="dI/dt = -I"), r"'I' clashes with the input.*input_name"),
        (dict(learnable=("tau",)), r"learnable names 'tau'"),
        (dict(jump_target="u"), r"jump_target 'u' is not a state variable"),
        (dict(initial={"u": 0.0}), r"initial: 'u' is not a state variable"),
        (dict(initial={"v": "v_th + v"}), r"unknown symbol 'v' in initial value"),
        (dict(equations="dv/dt = sqrt(-1)*v"), r"not a finite real expression"),
        (dict(equations="x = y\ny = x\ndv/dt = x"), r"cycle"),
        (dict(equations="# only a comment"), r"no 'dX/dt = expr' line"),
        (dict(name="not a name"), r"name must be a valid class name"),
    ],
)
def test_errors(kwargs, match):
    args = dict(equations=LIF_EQ, threshold="v >= v_th", reset="v = v_reset",
                parameters=LIF_PARAMS, n=3)
    args.update(kwargs)
    with pytest.raises(EquationError, match=match):
        ctsnn.from_equations(args.pop("equations"), **args)


def test_error_is_a_value_error_and_lists_known_symbols():
    with pytest.raises(ValueError) as info:
        ctsnn.from_equations("dv/dt = -v/tau", parameters={"tau_m": 0.01})
    msg = str(info.value)
    assert "unknown symbol 'tau'" in msg and "dv/dt = -v/tau" in msg
    assert "state variables: v" in msg and "parameters: tau_m" in msg and "input: I" in msg
    with pytest.raises(EquationError, match="unknown parameter 'tau'"):
        type(ctsnn.from_equations("dv/dt = -v/tau_m", parameters={"tau_m": 0.01}))(2, tau=1.0)
