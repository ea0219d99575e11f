"""Hostile or degenerate equation strings: refused at construction, quickly, with an
EquationError naming the faulty part; nothing in a string is ever executed.

Each call runs in a forked child with a time limit, so a regression (a parser that spins on
exact big-integer arithmetic, or a model that builds and then hangs) fails instead of hanging
the suite.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from typing import Any

import pytest
import torch

import ctsnn
from ctsnn.models.equations import EquationError

LIMIT = 20.0  # seconds before a child counts as hung
FAST = 1.0  # seconds an error may take

LIF = dict(threshold="v >= v_th", reset="v = v_reset",
           parameters=dict(tau=0.01, v_th=1.0, v_reset=0.0))


def _child(conn: Any, kwargs: dict[str, Any]) -> None:
    start = time.perf_counter()
    try:
        ctsnn.from_equations(**kwargs)
        outcome: tuple[str, str] = ("built", "")
    except EquationError as exc:
        outcome = ("EquationError", str(exc))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        outcome = (type(exc).__name__, str(exc)[:500])
    conn.send((*outcome, time.perf_counter() - start))
    conn.close()


def build(**kwargs: Any) -> tuple[str, str, float]:
    """``(outcome, message, seconds)`` of ``from_equations(**kwargs)`` in a forked child."""
    parent, child = multiprocessing.get_context("fork").Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(child, kwargs))
    proc.start()
    child.close()
    ready = parent.poll(LIMIT)
    if not ready:
        proc.kill()
        proc.join()
        pytest.fail(f"from_equations({kwargs!r:.200}) still running after {LIMIT} s")
    result = parent.recv()
    proc.join()
    return result


def refused(match: str, **kwargs: Any) -> str:
    """Assert that ``from_equations(**kwargs)`` raises EquationError matching ``match``, fast."""
    outcome, message, seconds = build(**kwargs)
    assert outcome == "EquationError", f"{outcome}: {message}"
    assert seconds < FAST, f"took {seconds:.2f} s"
    assert re.search(match, message), message
    return message


def short_id(value: Any) -> str | None:
    """Readable test ids for long strings."""
    return value[:40] if isinstance(value, str) and len(value) > 40 else None


NESTED_EXP = "dv/dt = " + "exp(" * 200 + "v" + ")" * 200


@pytest.mark.parametrize(
    ("equations", "match"),
    [
        ("dv/dt = 9**9**9", r"exponent larger than 1024 \(nested powers .* at '9\*\*9\*\*9'"),
        ("dv/dt = 9^9^9", r"exponent larger than 1024"),
        ("dv/dt = -v + ((1000001/1000000)**1000)**1000", r"exponent larger than 1024"),
        ("dv/dt = v**(2**20)", r"exponent larger than 1024 .* at 'v\*\*\(2\*\*20\)'"),
        ("dv/dt = 1e999999999", r"number '1e999999999'.*outside the float64 range"),
        ("dv/dt = -v + 1e-999999999", r"number '1e-999999999'.*outside the float64 range"),
        ("dv/dt = -v + 2e308", r"number '2e308'.*outside the float64 range"),
        ("dv/dt = -v + " + "9" * 400, r"outside the float64 range"),
        ("dv/dt = -v + exp(1000)", r"not a finite real expression.*overflows.*'exp\(1000\)'"),
        ("dv/dt = -v/(2 - 2)", r"'dv/dt = -v/\(2 - 2\)' is not a finite real expression"),
        ("dv/dt = -v + 1/(2 - 2)", r"not a finite real expression: division by zero at '1/\("),
        ("dv/dt = -v + log(0)", r"not a finite real expression.*'log\(0\)'"),
        ("dv/dt = -v + (-8)**(1/3)", r"not a finite real expression.*not real"),
        (NESTED_EXP, r"nested more than 32 levels deep at 'exp\(exp\("),
        ("dv/dt = " + "-" * 100 + "v", r"nested more than 32 levels"),
        ("dv/dt = " + "(" * 300 + "v" + ")" * 300, r"nested|cannot parse"),
        ("dv/dt = -v + " + "+".join(["v"] * 1500), r"too long \(\d+ characters, at most 2000\)"),
        ("dv/dt = 2j*v", r"number '2j'.*complex literal"),
        ("dv/dt = -v + 1.5J", r"number '1.5J'.*complex literal"),
        ("dv/dt = 0x10*v", r"number '0x10'.*not a plain decimal"),
        ("dv/dt = -v + du/dt", r"derivative 'du/dt'.*'u' is not even a state variable.*du/dt ="),
        ("dv/dt = -v + dw/dt\ndw/dt = -w", r"derivative 'dw/dt'.*'w' is a state variable"),
        ("dw/dt = -u/dt\ndv/dt = -v", r"unknown symbol 'dt'.*time is 't'"),
    ],
    ids=short_id,
)
def test_hostile_equations_are_refused_quickly(equations, match):
    message = refused(match, equations=equations)
    assert "equation 'd" in message or "equations is too long" in message


def test_complex_literal_is_not_the_input_current():
    # '2j' once parsed as 2*I (I: the input current); the same text spelled out still works
    refused(r"complex literal", equations="dv/dt = -v + 2j", parameters={})
    m = ctsnn.from_equations("dv/dt = -v + 2*I")
    assert {s.name for s in m.spec.rhs[0].free_symbols} == {"v", "I"} and m.has_flow


def test_whole_text_is_bounded():
    refused(r"equations is too long", equations="dv/dt = -v\n" + "# x\n" * 20_000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(threshold="v >= 9**9**9"), r"threshold 'v >= 9\*\*9\*\*9'.*exponent"),
        (dict(threshold="v >= 1e999"), r"number '1e999' in threshold"),
        (dict(reset="v = 2j"), r"number '2j' in reset statement 'v = 2j'"),
        (dict(reset="v = " + "exp(" * 50 + "v" + ")" * 50), r"reset statement.*nested"),
        (dict(initial={"v": "9**9**9"}), r"initial value v='9\*\*9\*\*9'.*exponent"),
    ],
)
def test_threshold_reset_and_initial_strings_are_bounded(kwargs, match):
    refused(match, equations="dv/dt = -v/tau", **{**LIF, **kwargs})


# ----------------------------------------------------------------------------- injection
@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch {marker}')",
        "v.__class__",
        "v.__class__.__base__.__subclasses__()",
        "(lambda: 1)()",
        "exec('open(\"{marker}\", \"w\")')",
        "eval('1')",
        "'abc'",
        "v; import os",
        "getattr(v, 'x')",
        "[c for c in ()]",
        "v if v else v",
        "__builtins__",
        "exp(*v)",
        "exp(x=v)",
        "v @ v",
        "open",
        "exec",
        "(yield v)",
        "f'{v}'",
    ],
)
@pytest.mark.parametrize("where", ["equation", "threshold", "reset", "initial"])
def test_injection_attempts_are_refused_and_not_executed(text, where, tmp_path):
    marker = tmp_path / "executed"
    text = text.replace("{marker}", str(marker))
    kwargs: dict[str, Any] = dict(equations="dv/dt = -v/tau", **LIF)
    if where == "equation":
        kwargs["equations"] = f"dv/dt = {text}"
    elif where == "threshold":
        kwargs["threshold"] = f"v >= {text}"
    elif where == "reset":
        kwargs["reset"] = f"v = {text}"
    else:
        kwargs["initial"] = {"v": text}
    outcome, message, seconds = build(**kwargs)
    assert outcome == "EquationError", f"{outcome}: {message}"
    assert seconds < FAST
    assert not marker.exists()


def test_injection_in_the_parent_process_is_not_executed(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    for text in ("__import__('os').system('x')", "exec('import os')", "v.__class__"):
        with pytest.raises(EquationError):
            ctsnn.from_equations(f"dv/dt = {text}")
    assert calls == []


# ----------------------------------------------------------------------------- parameter values
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(equations="dv/dt = -v/tau", parameters={"tau": 0.0}),
         r"right-hand side of dv/dt divides by 'tau', which is 0 .*tau=0"),
        (dict(equations="dv/dt = -v/(a - b)", parameters={"a": 1.0, "b": 1.0}),
         r"divides by 'a - b', which is 0 .*a=1, b=1"),
        (dict(equations="dv/dt = -v/tau", parameters={"tau": torch.tensor([0.01, 0.0])}, n=2),
         r"divides by 'tau'.*neuron 1: tau=0"),
        (dict(equations="dv/dt = -v*k\nk = 1/(a*c)", parameters={"a": 2.0, "c": 0.0}),
         r"divides by 'c', which is 0 .*neuron 0: c=0"),
        (dict(equations="dv/dt = -v/tau", threshold="v/c >= 1", reset="v = 0",
              parameters={"tau": 0.01, "c": 0.0}), r"the threshold divides by 'c'"),
        (dict(equations="dv/dt = -v/tau", threshold="v >= 1", reset="v = v/c",
              parameters={"tau": 0.01, "c": 0.0}), r"the reset of v divides by 'c'"),
        (dict(equations="dv/dt = 1/v"), r"divides by 'v', which is 0 .* at the initial state"),
        (dict(equations="dv/dt = log(v)"),
         r"right-hand side of dv/dt is -inf at the initial state \(v=0"),
        (dict(equations="dv/dt = sqrt(v - 1)"), r"right-hand side of dv/dt is nan"),
    ],
)
def test_zero_denominators_and_non_finite_rates_are_refused(kwargs, match):
    refused(match, **kwargs)


def test_parameter_values_are_checked_for_every_instance():
    model = ctsnn.from_equations("dv/dt = -v/(a - b)", parameters={"a": 2.0, "b": 1.0})
    with pytest.raises(EquationError, match=r"divides by 'a - b'.*a=3, b=3"):
        type(model)(2, a=3.0, b=3.0)
    assert type(model)(2, a=3.0, b=1.0).n == 2
    # a denominator away from the initial state is fine (1/v with v starting at 1)
    assert ctsnn.from_equations("dv/dt = -1/v", initial={"v": 1.0}).n == 1


# ----------------------------------------------------------------------------- reset vs threshold
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(threshold="v >= 1", reset="v = 2"),
         r"reset 'v = 2' puts the state at or above the threshold 'v - 1 >= 0'.*v=2"),
        (dict(threshold="v >= v_th", reset="v = v_th", parameters={"v_th": 1.0}),
         r"reset 'v = v_th' puts the state at or above"),
        (dict(equations="dv/dt = -v\ndw/dt = -w", threshold="v >= 1", reset="w = w + 1"),
         r"reset 'w = w \+ 1' puts the state at or above.*v=1, w=0"),
        (dict(threshold="v**3 >= 8", reset="v = 3"), r"reset 'v = 3'.*v=2"),
        (dict(threshold="v >= 1", reset="v = v_r", parameters={"v_r": torch.tensor([0.0, 1.5])},
              n=2), r"neuron 1\) it gives v=1.5"),
        (dict(threshold="v - a*w >= 1", reset="v = 0; w = w - 2",
              parameters={"a": 1.0}, equations="dv/dt = -v\ndw/dt = -w", jump_target="v"),
         r"reset 'v = 0; w = w - 2'|reset 'w = w - 2; v = 0'"),
    ],
)
def test_reset_at_or_above_threshold_is_refused(kwargs, match):
    refused(match, **{"equations": "dv/dt = -v", **kwargs})


def test_resets_below_threshold_are_accepted():
    ok = [
        dict(threshold="v >= 1", reset="v = 0"),
        dict(threshold="v >= 1", reset="v -= 0.5"),
        dict(threshold="v**3 >= 8", reset="v = 1"),
        dict(threshold="v >= v_th", reset="v = v - v_th", parameters={"v_th": 1.0}),
        dict(equations="dv/dt = -v\ndw/dt = -w", threshold="v >= 1 + w", reset="w += 1"),
    ]
    for kwargs in ok:
        outcome, message, seconds = build(**{"equations": "dv/dt = -v", **kwargs})
        assert outcome == "built", f"{kwargs}: {outcome}: {message}"
    model = ctsnn.from_equations("dv/dt = -v", threshold="v >= 1", reset="v = v_r",
                                 parameters={"v_r": 0.0})
    with pytest.raises(EquationError, match=r"reset 'v = v_r'.*v=1"):
        type(model)(1, v_r=1.0)


def test_reset_above_threshold_is_refused_before_any_run():
    # this model fired 96 times in discrete time and once in continuous time (100 steps)
    with pytest.raises(EquationError, match=r"reset 'v = 1.5' puts the state at or above"):
        ctsnn.from_equations("dv/dt = (I - v)/tau", threshold="v >= 1", reset="v = 1.5",
                             parameters={"tau": 0.01})
