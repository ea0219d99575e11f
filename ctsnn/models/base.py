"""Neuron models as ODE modules.

A :class:`NeuronModel` is only its equations: named state variables, the right-hand
side ``dynamics(t, state, input)``, a threshold function whose upward zero crossing is
a spike, a reset (jump) map, an optional refractory period and, for linear models, an
optional closed-form ``flow``. Stepping, event location, delays and gradients are
written once elsewhere and work for every model.

Shapes: a state is a ``NamedTuple`` of tensors of one common shape ``[..., N]``
(usually ``[B, N]``); per-neuron parameters have shape ``[N]`` and broadcast over the
leading dimensions. Time is in seconds.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._checks import check_positive
from ..compiled import prepare_kernel_runtime
from ..dtypes import ExactValues


class NeuronModel(ExactValues, nn.Module):
    """Base class of all neuron models.

    Subclasses set the class attributes and implement :meth:`dynamics` (and, if they spike,
    :meth:`threshold` and usually :meth:`reset`)::

        class MyLIF(NeuronModel):
            state_names = ("v",)
            jump_target = "v"

            def __init__(self, n, tau=0.01):
                super().__init__(n)
                self.add_parameter("tau", tau, positive=True)

            def dynamics(self, t, state, input):
                return ((input - state.v) / self.tau,)

            def threshold(self, state):
                return state.v - 1.0

            def reset(self, state):
                return state._replace(v=torch.zeros_like(state.v))

    Class attributes:
        state_names: names of the state variables, in order.
        jump_target: variable that spike inputs (weighted) and ``input_as="jump"`` increment.
        input_target: documentation only: where a continuous input current enters.
        clamped: variables held constant during the refractory period (default: the first).
        monotone: ``True`` if, for a constant input, the threshold function cannot rise and
            fall within one interval (one-variable models); skips hidden-crossing checks.
        initial_values: default initial value per variable (0 where not given); a string
            names a parameter (e.g. ``{"v": "v_leak"}``).
        threshold_variable: set when ``threshold(state)`` is ``state.<var> - constant``: the
            rate of the threshold function is then that variable's derivative (a fast path
            for :meth:`threshold_rate`).
        delayed_reads: delay-differential models: ``{name: (variable, lag_parameter)}``. The
            simulation keeps a history of each such state variable and calls
            ``dynamics(t, state, input, delayed)`` with ``delayed[name]`` = the variable at
            ``t - lag`` (per neuron, seconds, cubic Hermite interpolation, differentiable
            w.r.t. the lag). Lags must be at least one grid step; the pre-history is the
            initial state; Runge-Kutta methods only (no closed-form flow).

    Dtype: a model has one floating dtype, that of its floating tensor parameters (the first
    one given fixes it), else the default dtype at construction; Python numbers take it, and
    tensor parameters of two floating dtypes are an error naming both. ``.double()`` /
    ``.to(dtype)`` re-derive constant parameters from the values they were built from
    (:class:`~ctsnn.dtypes.ExactValues`): ``LIF(1, tau_mem=0.02).double()`` holds exactly
    0.02, like a model built under a float64 default.

    Args:
        n: number of neurons.
        refractory: refractory period in seconds (0 = none). During it the ``clamped``
            variables are held, jumps into them are discarded and no spike can occur.
    """

    state_names: ClassVar[tuple[str, ...]] = ()
    jump_target: ClassVar[str | None] = None
    clamped: ClassVar[tuple[str, ...] | None] = None
    monotone: ClassVar[bool] = False
    initial_values: ClassVar[dict[str, Any]] = {}
    threshold_variable: ClassVar[str | None] = None
    delayed_reads: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, n: int, *, refractory: float | Tensor = 0.0) -> None:
        super().__init__()
        prepare_kernel_runtime()  # numba's one-off start (CPU only), not in a step
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"n (number of neurons) must be a positive int, got {n!r}")
        names = tuple(self.state_names)
        if not names:
            raise TypeError(f"{type(self).__name__} must define state_names")
        if self.jump_target is not None and self.jump_target not in names:
            raise TypeError(f"jump_target {self.jump_target!r} is not a state variable {names}")
        self.n = n
        self.State = type(self)._state_type(names)
        self._param_names: list[str] = []
        self._dtype_source: str | None = None  # the tensor parameter that fixed the dtype
        self.add_parameter("refractory", refractory, positive=True, allow_zero=True)

    @classmethod
    def _state_type(cls, names: tuple[str, ...]) -> type:
        """The state named tuple of this class, made once and findable by pickle."""
        cached = cls.__dict__.get("_State")
        if cached is None or cached._fields != names:
            cached = namedtuple(f"{cls.__name__}State", names)  # noqa: PYI024
            cached.__qualname__ = f"{cls.__qualname__}._State"
            cached.__module__ = cls.__module__
            cls._State = cached
        return cached

    # ----------------------------------------------------------------- parameters
    def add_parameter(
        self,
        name: str,
        value: float | Tensor,
        *,
        learnable: bool = False,
        positive: bool = False,
        allow_zero: bool = False,
    ) -> None:
        """Register a per-neuron parameter of shape ``[n]`` (a scalar is broadcast).

        ``positive`` validates time constants and similar quantities; ``learnable`` makes it
        an ``nn.Parameter`` (otherwise a buffer, so it still moves with ``.to(device)``).
        A floating tensor keeps its dtype, which becomes the model's (see the class docstring);
        other values take the model's dtype. The float64 value is remembered for exact dtype
        conversions.
        """
        t = self._as_model_dtype(name, value)
        if t.ndim == 0:
            t = t.expand(self.n).clone()
        if t.shape != (self.n,):
            raise ValueError(
                f"{type(self).__name__}: parameter {name} must be a scalar or have shape "
                f"[{self.n}], got {list(t.shape)}"
            )
        if positive:
            check_positive(f"{type(self).__name__}.{name}", t, allow_zero=allow_zero)
        elif not torch.isfinite(t).all():
            raise ValueError(f"{type(self).__name__}.{name} must be finite")
        if name in self._param_names:
            delattr(self, name)
        else:
            self._param_names.append(name)
        if learnable:
            self.register_parameter(name, nn.Parameter(t))
        else:
            self.register_buffer(name, t)
        exact = value.detach() if isinstance(value, Tensor) else torch.as_tensor(
            value, dtype=torch.float64)
        self.remember_exact(name, exact.to(torch.float64).expand(self.n))

    def _as_model_dtype(self, name: str, value: float | Tensor) -> Tensor:
        """``value`` as a tensor of the model's dtype; a first floating tensor fixes it."""
        existing = [getattr(self, p) for p in self._param_names if p != name]
        dtype = existing[0].dtype if existing else torch.get_default_dtype()
        if not (isinstance(value, Tensor) and value.is_floating_point()):
            return torch.as_tensor(value, dtype=dtype)
        if self._dtype_source is None or self._dtype_source == name:
            self._dtype_source = name
            if value.dtype != dtype:  # earlier parameters came from numbers: re-derive them
                for p in self._param_names:
                    if p != name:
                        self._set_dtype(p, value.dtype)
            return torch.as_tensor(value)
        if value.dtype != dtype:
            raise TypeError(
                f"{type(self).__name__}: parameter {name} is {value.dtype} but parameter "
                f"{self._dtype_source} is {dtype}: a model has one dtype; give its tensor "
                "parameters in one dtype (numbers take the model's dtype)")
        return torch.as_tensor(value)

    def _set_dtype(self, name: str, dtype: torch.dtype) -> None:
        """Parameter ``name`` in ``dtype``, from its remembered exact value."""
        current = getattr(self, name)
        exact = self.exact_value(name).to(dtype=dtype, device=current.device)
        with torch.no_grad():
            if isinstance(current, nn.Parameter):
                current.data = exact.clone()
            else:
                self._buffers[name] = exact.clone()

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the per-neuron parameters (including ``refractory``)."""
        return tuple(self._param_names)

    # ----------------------------------------------------------------- equations
    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        """Time derivatives of the state variables (seconds⁻¹), in ``state_names`` order.

        Args:
            t: time in seconds, broadcastable to the state shape.
            state: named tuple of tensors ``[..., N]``.
            input: input current ``[..., N]`` (zero when the model is driven by spikes only).
        """
        raise NotImplementedError

    def threshold(self, state: tuple) -> Tensor | None:
        """Spike condition ``g(state)``: an upward zero crossing is a spike (None: no spikes)."""
        return None

    def threshold_rate(self, state: tuple, derivative: tuple) -> Tensor:
        """Time derivative of ``threshold(state)`` when the state moves with ``derivative``.

        Used to find crossings hidden inside a step. Default: forward-mode autodiff
        (``torch.func.jvp``), or the fast path of :attr:`threshold_variable`.
        """
        if self.threshold_variable is not None:
            return getattr(derivative, self.threshold_variable)
        return torch.func.jvp(
            lambda *s: self.threshold(self.State(*s)), tuple(state), tuple(derivative)
        )[1]

    def reset(self, state: tuple) -> tuple:
        """State right after a spike. Default: unchanged (a model without reset, e.g. HH)."""
        return state

    def receive(self, state: tuple, x: Tensor) -> tuple:
        """Apply a jump input ``x`` ``[..., N]`` (sum of weighted spikes arriving now)."""
        if self.jump_target is None:
            raise TypeError(f"{type(self).__name__} has no jump_target: it cannot receive spikes")
        return state._replace(**{self.jump_target: getattr(state, self.jump_target) + x})

    def flow(self, state: tuple, input: Tensor, h: Tensor) -> tuple | None:
        """Closed-form solution after a time ``h`` (seconds, broadcastable) with constant input.

        Return ``None`` (the default) when there is no closed form; simulations then use a
        Runge-Kutta method.
        """
        return None

    # ----------------------------------------------------------------- helpers
    @property
    def has_flow(self) -> bool:
        """Whether :meth:`flow` is implemented (checked on a one-element state)."""
        cached = getattr(self, "_has_flow", None)
        if cached is None:
            cached = type(self).flow is not NeuronModel.flow
            self._has_flow = cached
        return cached

    @property
    def spiking(self) -> bool:
        """Whether the model has a threshold."""
        return type(self).threshold is not NeuronModel.threshold

    @property
    def resets(self) -> bool:
        """Whether the model defines a reset (otherwise spikes leave the state unchanged)."""
        return type(self).reset is not NeuronModel.reset

    @property
    def clamped_names(self) -> tuple[str, ...]:
        """Variables held during the refractory period."""
        return tuple(self.clamped) if self.clamped is not None else self.state_names[:1]

    def initial_state(
        self,
        batch_size: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **values: float | Tensor,
    ) -> tuple:
        """Resting state ``[batch_size, n]`` per variable; keyword overrides per variable."""
        unknown = set(values) - set(self.state_names)
        if unknown:
            raise ValueError(
                f"initial_state: unknown state variable(s) {sorted(unknown)}; "
                f"{type(self).__name__} has {list(self.state_names)}"
            )
        ref = self.refractory
        dtype = dtype or ref.dtype
        device = device or ref.device
        parts = []
        for name in self.state_names:
            v = values.get(name, self.initial_values.get(name, 0.0))
            if isinstance(v, str):
                v = getattr(self, v)
            v = torch.as_tensor(v, dtype=dtype, device=device)
            parts.append(torch.zeros(batch_size, self.n, dtype=dtype, device=device) + v)
        return self.State(*parts)

    def extra_repr(self) -> str:
        return f"n={self.n}, state={list(self.state_names)}"
