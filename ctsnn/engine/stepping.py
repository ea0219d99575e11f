"""Step maps of one population: the pieces both time-mode loops are built from.

* :func:`make_flow` — the dense output ``flow(y, tau, h, held)`` of one grid step (closed-form
  flow, a Runge-Kutta step, or an adaptive embedded pair integrating to its tolerance), with
  refractory clamping; :func:`as_method` — the one check of a ``method`` argument;
* :func:`slope_fn` — the threshold's rate along the dynamics (root-finding safeguard);
* :class:`DelayedReads` — history buffers for models that read their own delayed state (DDEs);
* :func:`receive`, :func:`hold`, :func:`zero_clamped` — jumps and refractory clamping;
* :func:`initial_events`, :func:`check_state`, :func:`elementwise` — checks shared by the loops.

Units: seconds. States are the model's named tuples of ``[B, N]`` tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from solvers.embedded import TABLEAUS, Adaptive, Steps, solve
from solvers.events import where_state
from solvers.history import History
from solvers.steppers import STEPPERS

from ..compiled import compiled_steps_enabled
from ..models.base import NeuronModel

#: Method names: closed-form flow, fixed Runge-Kutta steps, adaptive embedded pairs (default
#: tolerances; pass a :class:`solvers.embedded.Adaptive` to set them).
METHODS = ("exact", *STEPPERS, *TABLEAUS)

Method = str | Adaptive


def is_adaptive(method: Method | None) -> bool:
    """Whether ``method`` names an adaptive embedded pair."""
    return isinstance(method, Adaptive) or (isinstance(method, str) and method in TABLEAUS)


def as_method(method: Method | None, model: NeuronModel, time: str = "continuous") -> Method:
    """Check a ``method`` argument; ``None`` gives the default (``"exact"`` for a closed-form
    model, else ``"rk4"`` in continuous and ``"euler"`` in discrete time)."""
    if method is None:
        return "exact" if model.has_flow else ("rk4" if time == "continuous" else "euler")
    if isinstance(method, Adaptive):
        return method
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of "
                         f"{', '.join(map(repr, METHODS))} or a solvers.embedded.Adaptive")
    if method == "exact" and not model.has_flow:
        raise ValueError(
            f"method='exact' needs a closed-form flow, which {type(model).__name__} does not "
            f"provide; use one of {', '.join(m for m in METHODS if m != 'exact')}")
    return Adaptive(method) if method in TABLEAUS else method


def zero_clamped(model: NeuronModel, held: Tensor | None, parts: tuple) -> tuple:
    """Zero the components of ``parts`` (derivatives or jumps) that are clamped where ``held``."""
    if held is None:
        return parts
    names = model.clamped_names
    return tuple(
        torch.where(held, torch.zeros_like(p), p) if name in names else p
        for name, p in zip(model.state_names, parts, strict=True)
    )


def hold(model: NeuronModel, held: Tensor | None, old: tuple, new: tuple) -> tuple:
    """Restore the clamped variables of held elements to their old values."""
    if held is None:
        return new
    names = model.clamped_names
    return new._replace(
        **{name: torch.where(held, getattr(old, name), getattr(new, name)) for name in names}
    )


def receive(model: NeuronModel, state: tuple, x: Tensor, held: Tensor | None) -> tuple:
    """Add jump ``x`` to the model's jump target, except into clamped variables of held elements."""
    if held is not None and model.jump_target in model.clamped_names:
        x = torch.where(held, torch.zeros_like(x), x)
    return model.receive(state, x)


class DelayedReads:
    """History buffers of a model's ``delayed_reads`` (see :class:`NeuronModel`)."""

    def __init__(self, model: NeuronModel, state: tuple, dt: float, method: Method) -> None:
        if method == "exact":
            raise ValueError(
                f"{type(model).__name__} reads delayed state: use a Runge-Kutta method "
                "(closed-form flows cannot see x(t - lag))"
            )
        self.model, self.dt = model, dt
        self.reads = dict(model.delayed_reads)
        self.buffers = {}
        for name, (var, lag_name) in self.reads.items():
            if var not in model.state_names or not hasattr(model, lag_name):
                raise ValueError(f"delayed_reads[{name!r}] = ({var!r}, {lag_name!r}): unknown "
                                 "state variable or lag parameter")
            lag = getattr(model, lag_name)
            if bool((lag < dt * (1 - 1e-9)).any()):
                raise ValueError(
                    f"{type(model).__name__}.{lag_name} must be at least one grid step "
                    f"(dt = {dt} s), got a minimum of {float(lag.detach().min())} s"
                )
            self.buffers[name] = History(
                getattr(state, var).shape, float(lag.detach().max()), dt,
                initial=getattr(state, var).detach(), interp="hermite",
                dtype=getattr(state, var).dtype, device=getattr(state, var).device,
            )
        self.push(state, 0.0, None)

    def values(self, offset: Tensor | float) -> dict[str, Tensor]:
        """Each delayed variable at ``t_last + offset - lag``."""
        return {name: buf.read(getattr(self.model, self.reads[name][1]), offset)
                for name, buf in self.buffers.items()}

    def push(self, state: tuple, t: float, x: Tensor | None) -> None:
        """Store the state at grid time ``t`` (and its derivative, for Hermite)."""
        x = torch.zeros_like(state[0]) if x is None else x
        last = next(iter(self.buffers.values())).t_last
        offset = 0.0 if last is None else t - last  # delayed values at t itself
        dy = self.model.State(*self.model.dynamics(t, state, x, self.values(offset)))
        for name, buf in self.buffers.items():
            var = self.reads[name][0]
            buf.push(getattr(state, var), getattr(dy, var))


def delayed_dynamics(model: NeuronModel, delays: DelayedReads | None, t0: float):
    """``model.dynamics`` with the delayed values filled in when the model reads any."""
    if delays is None:
        return model.dynamics

    def dynamics(t, state, input):
        return model.dynamics(t, state, input, delays.values(t - t0))

    return dynamics


def fixed_step(stepper, model: NeuronModel, t: Tensor, y: tuple, h: Tensor, x: Tensor,
               held: Tensor | None) -> tuple:
    """One fixed Runge-Kutta step of ``model`` (no delayed reads) with refractory clamping:
    the map :func:`make_flow` hands to ``torch.compile`` under
    :func:`ctsnn.compiled.use_compiled_steps`."""
    def rhs(tt, s):
        return zero_clamped(model, held, model.dynamics(tt, s, x))

    return hold(model, held, y, stepper(rhs, t, y, h))


_COMPILED: dict[str, object] = {}


def _compiled_fixed_step():
    # one compiled function for all models and steppers: Dynamo guards on which are passed
    if "step" not in _COMPILED:
        _COMPILED["step"] = torch.compile(fixed_step, dynamic=True)
    return _COMPILED["step"]


def make_flow(model: NeuronModel, method: Method, t0: Tensor | float, x: Tensor,
               delays: DelayedReads | None = None):
    """Dense output ``flow(y, tau, h, held)`` of one step for the given method (a name of
    :data:`METHODS` or an :class:`~solvers.embedded.Adaptive`)."""
    if method == "exact":

        def flow(y, tau, h, held):
            return hold(model, held, y, model.flow(y, x, h))

        return flow
    stepper = method if isinstance(method, Adaptive) else (
        Adaptive(method) if method in TABLEAUS else STEPPERS[method])
    if delays is None and not isinstance(stepper, Adaptive) and compiled_steps_enabled():
        step = _compiled_fixed_step()

        def compiled_flow(y, tau, h, held):
            return step(stepper, model, t0 + tau, y, h, x, held)

        return compiled_flow
    dynamics = delayed_dynamics(model, delays, t0)

    def flow(y, tau, h, held):
        def rhs(t, s):
            return zero_clamped(model, held, dynamics(t, s, x))

        return hold(model, held, y, stepper(rhs, t0 + tau, y, h))

    return flow


class HeldPiece:
    """A :class:`solvers.embedded.Steps` seen through refractory clamping (see :func:`hold`):
    the :class:`solvers.events.Piece` of one adaptive piece of the engine."""

    def __init__(self, model: NeuronModel, held: Tensor | None, steps: Steps) -> None:
        self.model, self.held, self.steps = model, held, steps
        self.end, self.reached = self._held(steps.end), steps.reached

    def _held(self, new: tuple) -> tuple:
        return hold(self.model, self.held, self.steps.y, new)

    def __call__(self, x: Tensor) -> tuple:
        """The state at ``tau + x`` on the continuous extension (no gradient)."""
        return self._held(self.steps(x))

    def replay(self, keep: Tensor | None = None) -> tuple:
        """The state at the piece's end with gradient (``keep``: see ``Steps.replay``)."""
        return self._held(self.steps.replay(keep))


def make_dense(model: NeuronModel, method: Method, t0: Tensor | float, x: Tensor,
               delays: DelayedReads | None = None):
    """For an adaptive pair, ``dense(y, tau, h, held)``: the piece integrated once, as a
    :class:`HeldPiece` (end state, continuous extension, replay); ``None`` for other methods
    (their step map is cheap to re-evaluate)."""
    if not is_adaptive(method):
        return None
    spec = method if isinstance(method, Adaptive) else Adaptive(method)
    dynamics = delayed_dynamics(model, delays, t0)

    def dense(y, tau, h, held, event=None, watch=None):
        def rhs(t, s):
            return zero_clamped(model, held, dynamics(t, s, x))

        return HeldPiece(model, held, solve(rhs, t0 + tau, y, h, spec, event, watch))

    return dense


def slope_fn(model: NeuronModel, t0: Tensor | float, x: Tensor,
              delays: DelayedReads | None = None):
    """``dg/dt`` along the dynamics (forward-mode derivative of the threshold).

    For delayed reads the delayed values are taken at the start of the step.
    """
    dynamics = delayed_dynamics(model, delays, t0)

    def slope(y):
        return model.threshold_rate(y, model.State(*dynamics(t0, y, x)))

    return slope



def check_state(model: NeuronModel, state: tuple, n: int, dt: float, method: Method) -> None:
    """Raise if the state went non-finite (diverging integrator or model): say when and why."""
    bad = [name for name, v in zip(model.state_names, state, strict=True)
           if not bool(torch.isfinite(v).all())]
    if bad:
        raise FloatingPointError(
            f"{type(model).__name__}: state variable(s) {bad} became NaN or infinite by step {n} "
            f"(t = {(n + 1) * dt:g} s) with method={method!r} and dt={dt:g} s; the integrator "
            "is probably unstable at this step size: use a smaller dt or another method"
        )


def initial_events(model: NeuronModel, state: tuple):
    """A resetting neuron that starts at or above threshold fires at t = 0."""
    if not (model.spiking and model.resets):
        return state, None
    fire = model.threshold(state) >= 0
    if not bool(fire.any()):
        return state, None
    state = where_state(fire, model.reset(state), state)
    return state, fire



def elementwise(integrand, model: NeuronModel) -> bool:
    """Whether ``integrand(t, state)`` acts neuron by neuron (closed-form EventProp needs it;
    e.g. a softmax over the neurons does not, and goes to the generic adjoint)."""
    if model.n == 1:
        return True
    gen = torch.Generator().manual_seed(0)
    ref = model.refractory
    parts = tuple(torch.randn((1, model.n), generator=gen, dtype=ref.dtype).to(ref.device)
                  .requires_grad_() for _ in model.state_names)
    with torch.enable_grad():
        out = integrand(torch.tensor(0.01, dtype=ref.dtype, device=ref.device),
                        model.State(*parts))
        if not out.requires_grad:
            return True
        grads = torch.autograd.grad(out[..., 1:].sum(), parts, allow_unused=True)
    return all(g is None or not bool(g[..., 0].any()) for g in grads)
