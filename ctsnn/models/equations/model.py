"""The neuron-model class built from equation strings: :func:`from_equations`.

:func:`from_equations` turns the :class:`~ctsnn.models.equations.parsing.EquationSpec` of some
equation strings into a new :class:`EquationModel` subclass whose ``dynamics``, ``threshold``,
``reset`` and (for linear equations) exact ``flow`` are the sympy expressions compiled to torch
code, and returns an instance of it.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp
import torch
from torch import Tensor

from ..._checks import check_positive
from ..base import NeuronModel
from .linear import is_affine_in, linear_flow
from .parsing import EquationSpec, parse_equations
from .symbolic import EquationError, broadcast_like, lambdify, parse_expression
from .validation import (
    ModelProbes,
    build_probes,
    check_reset_below_threshold,
    check_start,
)

__all__ = ["EquationModel", "from_equations"]


def _checked_value(
    cls_name: str, name: str, value: float | Tensor | None, positive: bool
) -> float | Tensor:
    """A parameter value checked (given, real, finite, > 0 if ``positive``); tensors copied."""
    if value is None:
        raise EquationError(f"{cls_name}: missing value for parameter {name!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise EquationError(
            f"{cls_name}: parameter {name!r} must be a number or a tensor, got "
            f"{type(value).__name__}"
        )
    if isinstance(value, Tensor) and not (value.is_floating_point() or value.dtype in (
        torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise EquationError(f"{cls_name}: parameter {name!r} must be real, got dtype {value.dtype}")
    if not torch.isfinite(torch.as_tensor(value)).all():
        raise EquationError(f"{cls_name}: parameter {name!r} must be finite, got {value}")
    if isinstance(value, Tensor):
        value = value.detach().clone()
    if positive:
        try:
            check_positive(f"{cls_name}.{name}", torch.as_tensor(value))
        except ValueError as exc:
            raise EquationError(str(exc)) from None
    return value


class EquationModel(NeuronModel):
    """Base class of the models built by :func:`from_equations` (one subclass per call).

    Subclass attributes (set by :func:`from_equations`): ``spec`` (:class:`EquationSpec`),
    ``equations`` (source text), and the compiled functions. Instances take the same
    keyword arguments as the call that built the class, which are also the defaults::

        model = ctsnn.from_equations("dv/dt = -v/tau", parameters={"tau": 0.01}, n=4)
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
    _probes: ModelProbes

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
            raise TypeError(
                "EquationModel is built by ctsnn.from_equations(), not instantiated directly"
            )
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
            value = _checked_value(cls_name, name, values.get(name), name in self._positive)
            try:
                self.add_parameter(name, value, learnable=name in learnable)
            except ValueError as exc:  # wrong shape
                raise EquationError(str(exc)) from None
        self._check_values()

    def _check_values(self) -> None:
        """Finite right-hand sides and a reset below threshold with these parameter values.

        See :mod:`~ctsnn.models.equations.validation`; evaluated once in float64.
        """
        cls_name = type(self).__name__
        with torch.no_grad():
            params = [p.detach().to(torch.float64) for p in self._params()]
            state = [x.to(torch.float64) for x in self.initial_state(1, dtype=torch.float64)]
            check_start(cls_name, self.spec, self._probes, self._dynamics_fn, state, params)
            if self.spec.threshold is not None and self.spec.reset:
                check_reset_below_threshold(
                    cls_name, self.spec, self._probes, self._threshold_fn, self._reset_fn,
                    state, params,
                )

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
        return tuple(broadcast_like(v, ref) for v in out)

    def extra_repr(self) -> str:
        eqs = "; ".join(self.equations.splitlines())
        return f"{super().extra_repr()}, equations={eqs!r}"


def _threshold(self: EquationModel, state: tuple) -> Tensor:
    """Threshold function ``g(state)`` ``[..., N]``: a spike is an upward zero crossing."""
    return broadcast_like(self._threshold_fn(*state, *self._params()), state[0])


def _reset(self: EquationModel, state: tuple) -> tuple:
    """State right after a spike (the reset statements, applied in order)."""
    out = self._reset_fn(*state, *self._params())
    return state._replace(
        **{name: broadcast_like(v, state[0]) for name, v in zip(self.spec.reset, out, strict=True)}
    )


def _flow(self: EquationModel, state: tuple, input: Tensor, h: Tensor | float) -> tuple:
    """Exact solution after ``h`` seconds (broadcastable to the state) with constant input.

    See :func:`~ctsnn.models.equations.linear.linear_flow`; exact for singular ``A``.
    """
    ref = state[0]
    h = torch.as_tensor(h, dtype=ref.dtype, device=ref.device)
    input = torch.as_tensor(input, dtype=ref.dtype, device=ref.device)
    a_flat, b = self._linear_fn(input, *self._params())
    return self.State(*linear_flow(tuple(state), a_flat, b, h, input))


# --------------------------------------------------------------------------- the builder
def _names(value: Sequence[str] | str) -> tuple[str, ...]:
    """One name or a sequence of names as a tuple."""
    return (value,) if isinstance(value, str) else tuple(value)


def _check_arguments(name: Any, parameters: Any, input_name: Any) -> Mapping[str, Any]:
    """Types of the simple arguments of :func:`from_equations`; the parameters mapping."""
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
    return parameters


def _check_roles(
    spec: EquationSpec,
    learnable: tuple[str, ...],
    positive: tuple[str, ...],
    jump_target: str | None,
    clamped: Sequence[str] | str | None,
) -> tuple[str, tuple[str, ...] | None]:
    """Check the names given to ``learnable``/``positive``/``jump_target``/``clamped``.

    Returns ``(jump_target, clamped)`` with the defaults filled in.
    """
    states, params = spec.state_names, spec.param_names
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
        clamped = _names(clamped)
        for var in clamped:
            if var not in states:
                raise EquationError(
                    f"clamped names {var!r}, which is not a state variable ({', '.join(states)})"
                )
    return jump_target, clamped


def _initial_values(
    spec: EquationSpec, initial: Mapping[str, float | Tensor | str] | None
) -> dict[str, Any]:
    """Initial value per state variable: numbers / tensors as given, strings compiled."""
    states, params = spec.state_names, spec.param_names
    param_syms = {p: sp.Symbol(p, real=True) for p in params}
    init: dict[str, Any] = {}
    for var, value in (initial or {}).items():
        if var not in states:
            raise EquationError(
                f"initial: {var!r} is not a state variable ({', '.join(states)})"
            )
        if isinstance(value, str):
            where = f"initial value {var}={value!r}"
            expr = parse_expression(value, where, param_syms, {"parameters": params})
            if not isinstance(expr, sp.Expr):
                raise EquationError(f"{where} must be an expression of the parameters")
            init[var] = lambdify(list(param_syms.values()), expr)
        elif isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
            raise EquationError(
                f"initial: value of {var!r} must be a number, a tensor or a string, got "
                f"{type(value).__name__}"
            )
        elif not torch.isfinite(torch.as_tensor(value)).all():
            raise EquationError(f"initial: value of {var!r} must be finite, got {value}")
        else:
            init[var] = value
    return init


def _docstring(spec: EquationSpec, name: str) -> str:
    return (
        f"Neuron model {name} from equations:\n\n    "
        + "\n    ".join(spec.source.splitlines())
        + (f"\n\n    threshold: {spec.threshold} >= 0" if spec.threshold is not None else "")
        + (f"\n    reset: {spec.reset}" if spec.reset else "")
        + f"\n\nState variables {list(spec.state_names)}, parameters {list(spec.param_names)}, "
        f"input {spec.input_name!r}, time t (s)."
    )


def _compiled_methods(spec: EquationSpec) -> dict[str, Any]:
    """``dynamics`` and, as the equations have them, ``threshold``, ``reset`` and ``flow``.

    The compiled functions are static methods taking the state variables (and the input and
    ``t`` for the right-hand side), then the parameters in ``spec.param_names`` order.
    """
    sym = {s: sp.Symbol(s, real=True) for s in (*spec.state_names, *spec.param_names)}
    state_syms = [sym[s] for s in spec.state_names]
    param_syms = [sym[p] for p in spec.param_names]
    sym_in = sp.Symbol(spec.input_name, real=True)
    sym_t = sp.Symbol("t", real=True)
    attrs: dict[str, Any] = {
        "_dynamics_fn": staticmethod(lambdify([*state_syms, sym_in, sym_t, *param_syms], spec.rhs))
    }
    if spec.threshold is not None:
        attrs["threshold"] = _threshold
        attrs["_threshold_fn"] = staticmethod(lambdify([*state_syms, *param_syms], spec.threshold))
    if spec.reset:
        attrs["reset"] = _reset
        attrs["_reset_fn"] = staticmethod(
            lambdify([*state_syms, *param_syms], tuple(spec.reset.values()))
        )
    if spec.linear is not None:
        a_rows, b = spec.linear
        flat = tuple(c for row in a_rows for c in row)
        attrs["flow"] = _flow
        attrs["_linear_fn"] = staticmethod(lambdify([sym_in, *param_syms], (flat, b)))
    return attrs


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
    """Build a neuron model from equation strings (``ctsnn.from_equations``).

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
        EquationError: (a ``ValueError``) naming the faulty equation or argument; also (here
            and when an instance is built with other parameter values) a division by a term
            that is zero, or a right-hand side that is not finite, at the initial state, and a
            reset that puts a state at the threshold at or above it.
    """
    parameters = _check_arguments(name, parameters, input_name)
    spec = parse_equations(
        equations, parameters=tuple(parameters), threshold=threshold, reset=reset,
        input_name=input_name,
    )
    learnable, positive = _names(learnable), _names(positive)
    jump_target, clamped = _check_roles(spec, learnable, positive, jump_target, clamped)
    init = _initial_values(spec, initial)
    first = sp.Symbol(spec.state_names[0], real=True)
    monotone = (
        len(spec.state_names) == 1
        and not spec.uses_time
        and (spec.threshold is None or is_affine_in(spec.threshold, first))
    )
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": _docstring(spec, name),
        "state_names": spec.state_names,
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
        "_probes": build_probes(spec, jump_target),
        **_compiled_methods(spec),
    }
    cls = type(name, (EquationModel,), attrs)
    return cls(n, refractory=refractory)
