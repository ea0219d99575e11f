"""Simulate neuron populations and feed-forward networks in discrete or continuous time.

One engine, two time modes, any :class:`~ctsnn.models.base.NeuronModel`:

* ``time="discrete"`` — the classic SNN grid update. Each step of ``dt`` applies one
  integrator step (``method``: ``"exact"`` closed form / exponential, ``"euler"``,
  ``"midpoint"``, ``"heun"``, ``"rk4"``), adds the jumps that arrived during the step,
  then tests the threshold on the grid point and resets. Spikes sit on grid points.
* ``time="continuous"`` — every step is integrated with the model's closed-form flow
  (``"exact"``) or a Runge-Kutta step used as dense output; inputs arrive at their exact
  times inside the step, every upward threshold crossing is located by a safeguarded
  root finder independently for each neuron and sample, the reset is applied at that
  instant and integration resumes (several spikes per step are fine). Spike times are
  real numbers.

Time convention: step ``n`` covers ``(n dt, (n+1) dt]``; a recorded state at index ``n``
is the state at ``(n+1) dt``; input current ``[T, B, N]`` is held constant over its step;
``input_as="jump"`` adds ``input[n]`` to the model's ``jump_target`` at ``(n+1) dt``
(this with ``method="euler"`` is the ``u[t] = (1 - dt/tau) u[t-1] + I[t]`` update of
SpikingJelly/DCLS/DelRec). Units: seconds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from solvers.events import advance_with_events, quadrature, where_state
from solvers.history import History
from solvers.steppers import STEPPERS

from ._checks import check_choice, check_finite, check_positive, check_tensor
from .models.base import NeuronModel
from .spikes import Spikes
from .surrogate import Surrogate
from .synapses import Arrivals, Dense, StepArrivals, merge_arrivals
from .synapses.kernels import Exact

TIME_MODES = ("discrete", "continuous")
INTEGRAL_RULES = ("exact", "grid")
GRADIENTS = ("surrogate", "adjoint")
METHODS = ("exact", *STEPPERS)
INPUT_KINDS = ("current", "jump")


class SimulationResult:
    """Output of one population.

    Attributes:
        spikes: emitted spikes (exact times in continuous mode, grid times in discrete mode; in
            discrete mode built from the raster on first access, so a training loop that only
            uses ``raster`` pays nothing for the event list).
        states: recorded variables, name -> ``[T, B, N]`` (``[B, T, N]`` if ``batch_first``),
            value at the end of each step.
        final_state: state at ``T dt`` (named tuple of ``[B, N]``), to continue a simulation.
        raster: discrete mode only: the spikes as a dense ``[T, B, N]`` tensor that carries the
            surrogate gradient when a ``surrogate`` was given.
        integral: ``∫_0^{T dt} integrand(t, state) dt`` ``[B, N]`` when an integrand was given.
        layers: for a network, the result of every layer (this object is the last one).
    """

    def __init__(self, spikes: Spikes | Callable[[], Spikes], states: dict[str, Tensor],
                 final_state: tuple | None, raster: Tensor | None = None,
                 integral: Tensor | None = None,
                 layers: list[SimulationResult] | None = None) -> None:
        self._spikes = spikes
        self.states, self.final_state = states, final_state
        self.raster, self.integral = raster, integral
        self.layers = [] if layers is None else layers

    @property
    def spikes(self) -> Spikes:
        if callable(self._spikes):
            self._spikes = self._spikes()
        return self._spikes

    @spikes.setter
    def spikes(self, value: Spikes) -> None:
        self._spikes = value

    def __repr__(self) -> str:
        return (f"SimulationResult(states={list(self.states)}, raster="
                f"{None if self.raster is None else list(self.raster.shape)}, "
                f"integral={self.integral is not None}, layers={len(self.layers)})")


class Recurrent(Protocol):
    """A population's own delayed recurrent connection.

    ``start`` is called before the first step (also with ``dt=`` and ``time=`` if it accepts
    them). Discrete time: ``read(n)`` returns the summed jumps ``[B, N]`` arriving at the end
    of step ``n``; ``write(n, spikes)`` hands over the spikes ``[B, N]`` emitted in step ``n``
    (they may arrive in step ``n + 1`` at the earliest). Continuous time additionally:
    ``arrivals(n) -> StepArrivals | None`` and ``emit(n, times, batch, units)`` (see
    :class:`~ctsnn.synapses.RecurrentDense`).
    """

    def start(self, batch_size: int, *, dtype: torch.dtype, device: torch.device) -> None: ...

    def read(self, n: int) -> Tensor: ...

    def write(self, n: int, spikes: Tensor) -> None: ...


class Layer(nn.Module):
    """A population with its input synapses and, optionally, its own recurrent connection.

    Args:
        model: the neurons.
        weight: input synapses: a weight ``[N, N_in]`` (builds a :class:`~ctsnn.synapses.Dense`
            with the given ``delay``), or any synapse module with ``jumps(x) -> [T, B, N]``
            (discrete time) and optionally ``arrivals(spikes)`` (continuous time), e.g.
            :class:`~ctsnn.synapses.Dense`; ``None`` feeds the input one-to-one.
        delay: with a weight tensor: seconds, per synapse ``[N, N_in]`` or per axon ``[N_in]``.
        learn_delay: make that delay a learnable parameter.
        max_delay: upper bound of the delays (seconds), checked and used by ``clamp_delays_``.
        recurrent: the population's own recurrent connection (:class:`Recurrent`); in continuous
            time :class:`~ctsnn.synapses.RecurrentDense` (exact delayed arrivals).
        time, method, surrogate, detach_reset: how :meth:`forward` simulates (see
            :func:`simulate`); ``simulate`` overrides them with its own arguments.
        gradient: ``"surrogate"`` (default): backpropagation through the simulation — with a
            ``surrogate`` derivative of the spike in discrete time; in continuous time spike
            times are differentiable (implicit function theorem at each crossing).
            ``"adjoint"``: exact event-based adjoint gradients (EventProp) in continuous time:
            the forward keeps spike events, not the autograd graph of the trajectory; the
            backward solves the adjoint equations in reverse and hands the layer below the
            gradient w.r.t. the spike times and amplitudes it received, so the two choices mix
            in one network in any order. LIF / CubaLIF / LI / CubaLI feed-forward layers use the
            closed-form EventProp (:mod:`ctsnn.gradients.eventprop`, memory grows with the
            number of spikes, not with T); every other model, recurrent layers and learnable
            neuron parameters use the generic adjoint (:mod:`ctsnn.gradients.adjoint`). A raster
            from a discrete layer below enters as events at its spikes (gradient w.r.t. the
            amplitudes of those spikes; entries without a spike get none).

    ``forward(x, state=None)`` takes the presynaptic spikes as a raster ``[T, B, N_in]`` (or
    ``[B, T, N_in]`` with ``batch_first``) or :class:`Spikes` and returns
    ``(spikes [T, B, N], final_state)``; in discrete time with a surrogate the spikes carry
    gradients, so layers compose as ordinary ``nn.Module``s.
    """

    def __init__(
        self,
        model: NeuronModel,
        weight: Tensor | nn.Module | None = None,
        *,
        delay: Tensor | None = None,
        learn_delay: bool = False,
        max_delay: float | None = None,
        recurrent: Recurrent | None = None,
        time: str = "discrete",
        method: str | None = None,
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        batch_first: bool = False,
        gradient: str = "surrogate",
    ) -> None:
        super().__init__()
        if not isinstance(model, NeuronModel):
            raise TypeError(f"model must be a NeuronModel, got {type(model).__name__}")
        check_choice("gradient", gradient, GRADIENTS)
        if delay is not None and not isinstance(weight, Tensor):
            raise ValueError("delay needs a weight tensor: one-to-one input has no synapses to "
                             "delay, and a synapse module carries its own delays")
        check_choice("time", time, TIME_MODES)
        self.model = model
        if isinstance(weight, Tensor):
            self.synapse = Dense(weight=weight, delay=delay, learn_delay=learn_delay,
                                 max_delay=max_delay)
        elif weight is None or isinstance(weight, nn.Module):
            self.synapse = weight
        else:
            raise TypeError(f"weight must be a Tensor, a synapse module or None, got "
                            f"{type(weight).__name__}")
        n_out = getattr(self.synapse, "n_out", model.n)
        if n_out != model.n:
            raise ValueError(f"weight has {n_out} rows but the model has n = {model.n} neurons")
        self.recurrent = recurrent
        self.time, self.method = time, method
        self.surrogate, self.detach_reset, self.batch_first = surrogate, detach_reset, batch_first
        self.gradient = gradient
        if gradient == "adjoint":
            _check_adjoint_layer(self)

    @property
    def n_in(self) -> int:
        return self.model.n if self.synapse is None else self.synapse.n_in

    def forward(self, x: Tensor | Spikes, state: tuple | None = None, *,
                dt: float = 1e-3) -> tuple[Tensor | Spikes, tuple]:
        """Simulate on presynaptic spikes ``x``; see the class docstring."""
        if isinstance(x, Tensor) and self.batch_first:
            x = x.transpose(0, 1)
        if isinstance(x, Tensor):
            check_tensor("x", x, ndim=3, floating=True)
            if x.shape[2] != self.n_in:
                raise ValueError(f"x has {x.shape[2]} channels but the layer expects {self.n_in}"
                                 f" (shape {list(x.shape)}, time-first [T, B, N])")
        result = _run_layer(self, x, state=state, dt=dt, time=self.time, method=self.method,
                            surrogate=self.surrogate, detach_reset=self.detach_reset)
        out = result.raster if self.time == "discrete" else result.spikes
        if isinstance(out, Tensor) and self.batch_first:
            out = out.transpose(0, 1)
        return out, result.final_state


# --------------------------------------------------------------------------- adjoint layers
def _check_adjoint_layer(layer: Layer) -> None:
    """Construction-time errors for ``gradient="adjoint"``: say what to use instead."""
    from .gradients.adjoint import check_adjoint_model
    from .synapses import RecurrentDense

    if layer.time != "continuous":
        raise ValueError("gradient='adjoint' is exact continuous-time EventProp: use "
                         "time='continuous' (or gradient='surrogate' for a discrete-time layer; "
                         "EventProp on the grid, mlGeNN-style, is "
                         "ctsnn.gradients.DiscreteEventPropNetwork)")
    if layer.surrogate is not None:
        raise ValueError("a surrogate is for gradient='surrogate'; the adjoint needs none "
                         "(drop surrogate=, or choose gradient='surrogate')")
    if not isinstance(layer.synapse, Dense) or not isinstance(layer.synapse.kernel, Exact):
        raise ValueError("gradient='adjoint' needs exact synapses: pass a weight tensor or a "
                         "ctsnn.synapses.Dense with kernel=Exact() (grid kernels spread "
                         "spikes over the grid: train those with gradient='surrogate')")
    if layer.recurrent is not None and not (isinstance(layer.recurrent, RecurrentDense)
                                            and isinstance(layer.recurrent.kernel, Exact)):
        raise ValueError("gradient='adjoint' supports recurrence through "
                         "ctsnn.synapses.RecurrentDense with kernel=Exact() (exact delays); "
                         f"{type(layer.recurrent).__name__} needs gradient='surrogate'")
    check_adjoint_model(layer.model)


def _uses_eventprop(layer: Layer, integrand, integral_rule: str = "exact") -> bool:
    """The closed-form LIF-family EventProp applies (cheaper than the generic adjoint)."""
    from .gradients.eventprop import supports

    if layer.recurrent is not None or not supports(layer.model):
        return False
    if layer.model.spiking:
        return integrand is None
    return integrand is not None and integral_rule == "exact"


def _elementwise(integrand, model: NeuronModel) -> bool:
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


def _run_adjoint_layer(layer: Layer, signal, *, state, dt: float, record, xtol,
                       integrand, integral_rule: str = "exact") -> SimulationResult:
    """One ``gradient="adjoint"`` layer: spikes in, spikes (differentiable times) out."""
    from .gradients import adjoint, eventprop

    if state is not None:
        raise ValueError("gradient='adjoint' starts from the model's resting state; "
                         "state= is not supported")
    if isinstance(signal, Tensor):  # a (surrogate) raster: its spikes become events
        signal = Spikes.from_raster(signal, dt)
    if not isinstance(signal, Spikes):
        raise TypeError("gradient='adjoint' layers are driven by spikes (Spikes or a raster); "
                        "a continuous input current needs gradient='surrogate'")
    if abs(signal.dt - dt) > 1e-12 * dt:
        signal = signal.rebin(dt)
    syn = layer.synapse
    syn.check_input(signal)
    if _uses_eventprop(layer, integrand, integral_rule) and not record:
        out = eventprop.layer_forward(layer.model, signal, syn.effective_weight,
                                      syn.synapse_delay(), integrand=integrand, xtol=xtol)
        if isinstance(out, Spikes):
            return SimulationResult(spikes=out, states={}, final_state=None)
        empty = Spikes.empty(dt=dt, n_steps=signal.n_steps, batch_size=signal.batch_size,
                             n_units=layer.model.n, dtype=out.dtype, device=out.device)
        return SimulationResult(spikes=empty, states={}, final_state=None, integral=out)
    spikes, z, final, states = adjoint.adjoint_layer(
        layer.model, signal, syn.effective_weight, syn.synapse_delay(), recurrent=layer.recurrent,
        integrand=integrand, integral_rule=integral_rule, method=layer.method, xtol=xtol,
        record=tuple(record))
    return SimulationResult(spikes=spikes, states=states, final_state=final, integral=z)


# --------------------------------------------------------------------------- helpers
def _zero_clamped(model: NeuronModel, held: Tensor | None, parts: tuple) -> tuple:
    """Zero the components of ``parts`` (derivatives or jumps) that are clamped where ``held``."""
    if held is None:
        return parts
    names = model.clamped_names
    return tuple(
        torch.where(held, torch.zeros_like(p), p) if name in names else p
        for name, p in zip(model.state_names, parts, strict=True)
    )


def _hold(model: NeuronModel, held: Tensor | None, old: tuple, new: tuple) -> tuple:
    """Restore the clamped variables of held elements to their old values."""
    if held is None:
        return new
    names = model.clamped_names
    return new._replace(
        **{name: torch.where(held, getattr(old, name), getattr(new, name)) for name in names}
    )


def _receive(model: NeuronModel, state: tuple, x: Tensor, held: Tensor | None) -> tuple:
    """Add jump ``x`` to the model's jump target, except into clamped variables of held elements."""
    if held is not None and model.jump_target in model.clamped_names:
        x = torch.where(held, torch.zeros_like(x), x)
    return model.receive(state, x)


class _DelayedReads:
    """History buffers of a model's ``delayed_reads`` (see :class:`NeuronModel`)."""

    def __init__(self, model: NeuronModel, state: tuple, dt: float, method: str) -> None:
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


def _dynamics(model: NeuronModel, delays: _DelayedReads | None, t0: float):
    """``model.dynamics`` with the delayed values filled in when the model reads any."""
    if delays is None:
        return model.dynamics

    def dynamics(t, state, input):
        return model.dynamics(t, state, input, delays.values(t - t0))

    return dynamics


def _make_flow(model: NeuronModel, method: str, t0: Tensor | float, x: Tensor,
               delays: _DelayedReads | None = None):
    """Dense output ``flow(y, tau, h, held)`` of one step for the given method."""
    if method == "exact":

        def flow(y, tau, h, held):
            return _hold(model, held, y, model.flow(y, x, h))

        return flow
    stepper = STEPPERS[method]
    dynamics = _dynamics(model, delays, t0)

    def flow(y, tau, h, held):
        def rhs(t, s):
            return _zero_clamped(model, held, dynamics(t, s, x))

        return _hold(model, held, y, stepper(rhs, t0 + tau, y, h))

    return flow


def _slope_fn(model: NeuronModel, t0: Tensor | float, x: Tensor,
              delays: _DelayedReads | None = None):
    """``dg/dt`` along the dynamics (forward-mode derivative of the threshold).

    For delayed reads the delayed values are taken at the start of the step.
    """
    dynamics = _dynamics(model, delays, t0)

    def slope(y):
        return model.threshold_rate(y, model.State(*dynamics(t0, y, x)))

    return slope


class _SpikeLog:
    """Collects (time, sample, unit) of spikes as they happen, without per-spike Python work."""

    def __init__(self) -> None:
        self.times: list[Tensor] = []
        self.index: list[Tensor] = []

    def add(self, mask: Tensor, offset: Tensor, n: int, dt: float) -> None:
        """Log the elements in ``mask`` as spiking at local ``offset`` within step ``n``."""
        idx = mask.nonzero()
        if idx.numel():
            t = offset if offset.shape == mask.shape else offset.expand(mask.shape)
            # n dt + offset may round past the step's end point: keep it inside its step.
            end = torch.tensor((n + 1) * dt, dtype=t.dtype, device=t.device)
            self.times.append(torch.minimum(t[mask] + n * dt, end))
            self.index.append(idx)

    def since(self, start: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(times, batch, units)`` of the spikes logged after the first ``start`` entries."""
        if len(self.times) == start:
            empty = torch.zeros(0, dtype=torch.long)
            return torch.zeros(0), empty, empty
        idx = torch.cat(self.index[start:])
        return torch.cat(self.times[start:]), idx[:, 0], idx[:, 1]

    def spikes(self, *, dt: float, n_steps: int, shape: tuple[int, int], like: Tensor) -> Spikes:
        if self.times:
            times = torch.cat(self.times)
            idx = torch.cat(self.index)
            batch, units = idx[:, 0], idx[:, 1]
        else:
            times = like.new_zeros(0)
            batch = units = torch.zeros(0, dtype=torch.long, device=like.device)
        return Spikes.from_events(
            times, units, batch, dt=dt, n_steps=n_steps, batch_size=shape[0], n_units=shape[1]
        )


def _raster_spikes(raster: Tensor, dt: float, log: _SpikeLog | None, n_steps: int,
                   shape: tuple[int, int], like: Tensor) -> Callable[[], Spikes]:
    """The discrete-mode event list, built when first asked for (merging spikes at t = 0)."""

    def build() -> Spikes:
        spikes = Spikes.from_raster(raster, dt)
        if log is None:
            return spikes
        first = log.spikes(dt=dt, n_steps=n_steps, shape=shape, like=like)
        return Spikes.from_events(
            torch.cat([first.times, spikes.times]), torch.cat([first.units, spikes.units]),
            torch.cat([first.batch, spikes.batch]), dt=dt, n_steps=n_steps,
            batch_size=shape[0], n_units=shape[1],
        )

    return build


# --------------------------------------------------------------------------- engine
def _check_state(model: NeuronModel, state: tuple, n: int, dt: float, method: str) -> None:
    """Raise if the state went non-finite (diverging integrator or model): say when and why."""
    bad = [name for name, v in zip(model.state_names, state, strict=True)
           if not bool(torch.isfinite(v).all())]
    if bad:
        raise FloatingPointError(
            f"{type(model).__name__}: state variable(s) {bad} became NaN or infinite by step {n} "
            f"(t = {(n + 1) * dt:g} s) with method={method!r} and dt={dt:g} s; the integrator "
            "is probably unstable at this step size: use a smaller dt or another method"
        )


def _start_recurrent(recurrent, batch_size: int, dtype, device, dt: float, time: str) -> None:
    """Call ``recurrent.start`` with the grid step and time mode if it takes them."""
    accepted = inspect.signature(recurrent.start).parameters
    extra = {k: v for k, v in {"dt": dt, "time": time}.items() if k in accepted}
    recurrent.start(batch_size, dtype=dtype, device=device, **extra)


def _initial_events(model: NeuronModel, state: tuple):
    """A resetting neuron that starts at or above threshold fires at t = 0."""
    if not (model.spiking and model.resets):
        return state, None
    fire = model.threshold(state) >= 0
    if not bool(fire.any()):
        return state, None
    state = where_state(fire, model.reset(state), state)
    return state, fire


def run_population(
    model: NeuronModel,
    *,
    dt: float,
    n_steps: int,
    batch_size: int,
    current: Tensor | None = None,
    jumps: Tensor | None = None,
    arrivals: Arrivals | None = None,
    time: str = "discrete",
    method: str | None = None,
    state: tuple | None = None,
    record: Sequence[str] = (),
    record_every: int = 1,
    xtol: float | None = None,
    surrogate: Surrogate | None = None,
    detach_reset: bool = False,
    recurrent: Recurrent | None = None,
    integrand: Callable[[Tensor, tuple], Tensor] | None = None,
    integral_rule: str = "exact",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SimulationResult:
    """Simulate one population for ``n_steps`` steps of ``dt`` seconds (functional core).

    Args:
        current: input current ``[T, B, N]`` held constant over each step (or ``None``).
        jumps: summed jumps ``[T, B, N]`` applied at the end of each step (or ``None``).
        arrivals: exact arrival schedule (continuous time; in discrete time, use ``jumps``).
        state: initial state (``[B, N]`` per variable); default ``model.initial_state``.
        record: names of the variables to record at the end of every step.
        record_every: record only at the end of every ``record_every``-th step (checkpoints:
            index ``k`` holds the state at ``(k + 1) record_every dt``).
        xtol: tolerance of spike times (s); default ``64 eps dt`` of the dtype.
        surrogate: discrete mode: spikes are ``surrogate(threshold(state))`` (0/1 forward,
            surrogate derivative backward) and the reset is blended as
            ``state + s (reset(state) - state)`` so gradients flow through it.
        detach_reset: with a surrogate, stop the gradient through the reset's spike factor.
        recurrent: the population's own delayed recurrent connection. Discrete time: read
            before the threshold test of each step, written with the step's spikes.
            Continuous time (e.g. :class:`~ctsnn.synapses.RecurrentDense`): its scheduled
            arrivals join the step's input, and the step's spikes are handed to ``emit``.
        integrand: ``l(t, state) -> [B, N]``; its time integral is returned as ``integral``
            (e.g. a voltage loss ``∫ l(V) dt``). Continuous mode: Gauss-Legendre on every smooth
            piece between events, exact to rounding for steps well below the time constants,
            and differentiable (also w.r.t. event and arrival times); the integrand must act
            neuron by neuron (each neuron's pieces have their own ends). Discrete mode: the
            rectangle rule ``Σ dt l(t_{n+1}, state_n)``.
        integral_rule: continuous mode: ``"exact"`` (the quadrature above) or ``"grid"`` (the
            rectangle rule on the grid points, as in discrete mode: all neurons are sampled at
            the same instants, so the integrand may couple them, e.g. a softmax over neurons —
            DCLS's time-summed softmax readout is ``integral / dt``).
    Returns:
        a :class:`SimulationResult` (time-first recordings).
    """
    check_choice("time", time, TIME_MODES)
    check_choice("integral_rule", integral_rule, INTEGRAL_RULES)
    grid_rule = integrand is not None and (time == "discrete" or integral_rule == "grid")
    if integrand is not None and not grid_rule and not _elementwise(integrand, model):
        raise ValueError("integrand couples the neurons (its value for one neuron depends on "
                         "another's state): the exact continuous-time quadrature integrates each "
                         "neuron between its own events; use integral_rule='grid'")
    method = method or ("exact" if model.has_flow else ("rk4" if time == "continuous" else "euler"))
    check_choice("method", method, METHODS)
    if method == "exact" and not model.has_flow:
        raise ValueError(
            f"method='exact' needs a closed-form flow, which {type(model).__name__} does not "
            f"provide; use one of {', '.join(STEPPERS)}"
        )
    for name in record:
        if name not in model.state_names:
            raise ValueError(
                f"record: {type(model).__name__} has no state variable {name!r} "
                f"(it has {list(model.state_names)})"
            )
    ref_param = model.refractory
    dtype = dtype or ref_param.dtype
    device = device or ref_param.device
    if state is None:
        state = model.initial_state(batch_size, dtype=dtype, device=device)
    else:
        if not isinstance(state, tuple) or len(state) != len(model.state_names):
            raise ValueError(f"state must be a {type(model).__name__}.State named tuple")
        state = model.State(*state)
    shape = (batch_size, model.n)
    zero = torch.zeros(shape, dtype=dtype, device=device)
    log = _SpikeLog()
    rec: dict[str, list[Tensor]] = {name: [] for name in record}
    threshold = model.threshold if model.spiking else None

    integral: Tensor | None = None
    # Per-step views made once: indexing a [T, ...] tensor inside the loop would make every
    # step's backward allocate a full [T, B, N] gradient (O(T^2) backward).
    current = None if current is None else current.unbind(0)
    jumps = None if jumps is None else jumps.unbind(0)
    state, fired = _initial_events(model, state)
    delays = _DelayedReads(model, state, dt, method) if model.delayed_reads else None
    ref_end = torch.full(shape, -torch.inf, dtype=dtype, device=device)  # absolute time
    raster = None
    if fired is not None:
        log.add(fired, zero, 0, dt)
        ref_end = torch.where(fired, zero + ref_param, ref_end)
    has_ref = bool((ref_param > 0).any())

    if time == "discrete":
        rows: list[Tensor] = []
        h = float(dt)  # a Python step: fused ``y + h k`` updates
        n_ref = torch.round(ref_param / dt)
        # Grid-step countdown; a spike at t = 0 starts it as well.
        count = torch.where(fired, n_ref.expand(shape), zero) if fired is not None else zero.clone()
        if recurrent is not None:
            _start_recurrent(recurrent, batch_size, dtype, device, dt, time)
        for n in range(n_steps):
            x = zero if current is None else current[n]
            held = (count > 0) if has_ref else None
            new = _make_flow(model, method, n * dt, x, delays)(state, zero, h, held)
            if jumps is not None:
                new = _receive(model, new, jumps[n], held)
            if recurrent is not None:
                new = _receive(model, new, recurrent.read(n), held)
            if threshold is not None:
                g = threshold(new)
                # Spikes are disallowed while refractory, and for models without reset unless
                # the threshold was crossed upwards during this step.
                allowed = None if model.resets else threshold(state) < 0
                if held is not None:
                    allowed = ~held if allowed is None else allowed & ~held
                if surrogate is not None:
                    spike = surrogate(g)
                    if allowed is not None:  # exact zeros there, and no gradient
                        spike = spike * allowed.to(dtype)
                    fire = spike > 0
                    factor = spike.detach() if detach_reset else spike
                    reset = model.reset(new)
                    # a + s (r - a) in one operator; variables the reset leaves alone are kept
                    new = model.State(*(a if r is a else torch.lerp(a, r, factor)
                                        for a, r in zip(new, reset, strict=True)))
                else:
                    fire = g >= 0 if allowed is None else (g >= 0) & allowed
                    spike = fire.to(dtype)
                    new = where_state(fire, model.reset(new), new)
                rows.append(spike)
                if has_ref:
                    count = torch.where(fire, n_ref.expand(shape), count - 1)
                if recurrent is not None:
                    recurrent.write(n, spike)
            state = new
            if delays is not None:
                delays.push(state, (n + 1) * dt, x)
            if n % 64 == 63 or n == n_steps - 1:
                _check_state(model, state, n, dt, method)
            if integrand is not None:
                term = dt * integrand(torch.as_tensor((n + 1) * dt, dtype=dtype), state)
                integral = term if integral is None else integral + term
            if (n + 1) % record_every == 0:
                for name in record:
                    rec[name].append(getattr(state, name))
        raster = torch.stack(rows) if rows else torch.zeros((n_steps, *shape), dtype=dtype,
                                                            device=device)
        spikes = _raster_spikes(raster.detach(), dt, log if fired is not None else None,
                                n_steps, shape, zero)
    else:
        if xtol is None:
            xtol = 64 * torch.finfo(dtype).eps * dt
        end_of_step = zero + dt
        infinity = torch.full_like(zero, torch.inf)
        # Fast path for jump-driven monotone models with a closed form (e.g. LIF with v += w).
        jump_only_possible = (
            method == "exact" and model.monotone and threshold is not None and not has_ref
            and (integrand is None or grid_rule) and model.has_flow
        )
        # A NaN fixed point (a flow that cannot take h = inf) means "unknown": general path.
        fixed_point_ok = jump_only_possible and bool(
            (threshold(model.flow(state, zero, infinity)) < 0).all()
        )
        if recurrent is not None:
            if not hasattr(recurrent, "emit"):
                raise ValueError(
                    f"{type(recurrent).__name__} runs in discrete time only; for exact delayed "
                    "recurrence in continuous time use ctsnn.synapses.RecurrentDense"
                )
            _start_recurrent(recurrent, batch_size, dtype, device, dt, time)
        for n in range(n_steps):
            t0 = n * dt
            logged = len(log.times)
            x = zero if current is None else current[n]
            flow = _make_flow(model, method, t0, x, delays)
            rate = _slope_fn(model, t0, x, delays) if threshold is not None else None
            slope = None if model.monotone else rate
            tau = zero
            hold = (ref_end - t0) if has_ref else None
            step_arr: StepArrivals | None = None if arrivals is None else arrivals(n)
            if recurrent is not None:
                step_arr = merge_arrivals(step_arr, recurrent.arrivals(n))
            boundaries = (
                [] if step_arr is None else list(zip(step_arr.offset, step_arr.value, strict=True))
            )
            if jumps is not None:
                boundaries.append((end_of_step, jumps[n]))
            local = None if integrand is None or grid_rule else (
                lambda t, y, t0=t0: integrand(t0 + t, y)
            )
            if jump_only_possible and (
                fixed_point_ok if current is None
                else bool((threshold(model.flow(state, x, infinity)) < 0).all())
            ):
                # Spikes can only happen at jumps: the flow approaches a sub-threshold fixed
                # point monotonically, so no root finding is needed between arrivals.
                for k in range(len(boundaries) + 1):
                    end = boundaries[k][0] if k < len(boundaries) else end_of_step
                    state = model.flow(state, x, end - tau)
                    tau = end
                    if k == len(boundaries):
                        break
                    state = model.receive(state, boundaries[k][1])
                    fire = threshold(state) >= 0
                    if bool(fire.any()):
                        state = where_state(fire, model.reset(state), state)
                        log.add(fire, tau, n, dt)
            else:
                for k in range(len(boundaries) + 1):
                    end = boundaries[k][0] if k < len(boundaries) else end_of_step
                    if threshold is None:
                        if local is not None:
                            integral = quadrature(flow, local, state, tau, end, None, integral)
                        state = flow(state, tau, end - tau, None)
                        tau = end
                    else:
                        out = advance_with_events(
                            flow, state, tau, end, threshold, model.reset, slope=slope, rate=rate,
                            hold_until=hold, hold_time=ref_param, xtol=xtol, integrand=local,
                            integral=integral,
                        )
                        state, tau, hold, events = out[:4]
                        if local is not None:
                            integral = out[4]
                        for ev in events:
                            log.add(ev.mask, ev.time, n, dt)
                    if k == len(boundaries):
                        break
                    held = None if hold is None else hold > tau
                    before = state
                    state = _receive(model, state, boundaries[k][1], held)
                    if threshold is not None and model.spiking:
                        fire = (threshold(state) >= 0) & (threshold(before) < 0)
                        if held is not None:
                            fire = fire & ~held
                        if bool(fire.any()):
                            state = where_state(fire, model.reset(state), state)
                            log.add(fire, tau, n, dt)
                            if hold is not None:
                                hold = torch.where(fire, tau + ref_param, hold)
            if hold is not None:
                ref_end = hold + t0
            if delays is not None:
                delays.push(state, (n + 1) * dt, x)
            if n % 64 == 63 or n == n_steps - 1:
                _check_state(model, state, n, dt, method)
            if grid_rule:
                term = dt * integrand(torch.as_tensor((n + 1) * dt, dtype=dtype), state)
                integral = term if integral is None else integral + term
            if recurrent is not None:  # schedule this step's spikes on the recurrent synapses
                new = log.since(logged)
                recurrent.emit(n, *new)
            if (n + 1) % record_every == 0:
                for name in record:
                    rec[name].append(getattr(state, name))
        spikes = log.spikes(dt=dt, n_steps=n_steps, shape=shape, like=zero)
    if time == "continuous":
        raster = None
    states = {name: torch.stack(v) if v else zero.new_zeros((0, *shape)) for name, v in rec.items()}
    return SimulationResult(spikes=spikes, states=states, final_state=state, raster=raster,
                            integral=integral)


def _run_layer(
    layer: Layer,
    signal: Tensor | Spikes | None,
    *,
    state: tuple | None,
    dt: float,
    time: str,
    method: str | None,
    surrogate: Surrogate | None,
    detach_reset: bool,
    record: Sequence[str] = (),
    xtol: float | None = None,
    as_current: bool = False,
    n_steps: int | None = None,
    batch_size: int | None = None,
    integrand: Callable[[Tensor, tuple], Tensor] | None = None,
    integral_rule: str = "exact",
) -> SimulationResult:
    """Feed ``signal`` (raster / current ``[T, B, N_in]``, Spikes or None) through one layer."""
    if layer.gradient == "adjoint":
        if time != "continuous":
            raise ValueError("a gradient='adjoint' layer runs in continuous time; simulate(..., "
                             "time='continuous') or use gradient='surrogate'")
        if as_current:
            raise ValueError("gradient='adjoint' layers are driven by spikes; a current input "
                             "needs gradient='surrogate'")
        return _run_adjoint_layer(layer, signal, state=state, dt=dt, record=record, xtol=xtol,
                                  integrand=integrand, integral_rule=integral_rule)
    kw: dict = dict(dt=dt, time=time, method=method, state=state, record=record, xtol=xtol,
                    surrogate=surrogate, detach_reset=detach_reset, recurrent=layer.recurrent,
                    integrand=integrand, integral_rule=integral_rule)
    synapse = layer.synapse
    if isinstance(signal, Tensor):
        n_steps, batch_size, kw["dtype"] = signal.shape[0], signal.shape[1], signal.dtype
        if as_current:
            kw["current"] = signal if synapse is None else signal @ synapse.weight.t()
        else:  # spikes (or jump inputs) on the grid
            if isinstance(synapse, Dense):  # grid-kernel synapses refuse another dt
                synapse.check_input(signal, dt=dt)
            kw["jumps"] = signal if synapse is None else synapse.jumps(signal)
    elif isinstance(signal, Spikes):
        n_steps, batch_size = signal.n_steps, signal.batch_size
        kw["dtype"] = signal.dtype if synapse is None else next(synapse.parameters()).dtype
        if time == "continuous":
            if synapse is not None and not hasattr(synapse, "arrivals"):
                raise ValueError(f"{type(synapse).__name__} has no continuous-time arrivals: use "
                                 "time='discrete' or an exact synapse (Dense)")
            kw["arrivals"] = synapse.arrivals(signal) if synapse is not None else Arrivals(
                signal, None)
        else:
            kw["jumps"] = synapse.jumps(signal) if synapse is not None else signal.raster()
    if kw.get("jumps") is not None:  # a synapse may extend the sequence (right padding)
        n_steps = kw["jumps"].shape[0]
    return run_population(layer.model, n_steps=n_steps, batch_size=batch_size, **kw)


# --------------------------------------------------------------------------- public API
def _layers_of(target) -> list[Layer]:
    if isinstance(target, NeuronModel):
        return [Layer(target)]
    if isinstance(target, Layer):
        return [target]
    if isinstance(target, (list, tuple, nn.Sequential, nn.ModuleList)):
        layers = [t if isinstance(t, Layer) else Layer(t) if isinstance(t, NeuronModel) else None
                  for t in target]
        if not layers or any(layer is None for layer in layers):
            raise TypeError("a network must be a non-empty sequence of Layer or NeuronModel")
        return layers
    raise TypeError(
        "simulate() takes a NeuronModel, a Layer or a sequence of them, "
        f"got {type(target).__name__}"
    )


def simulate(
    target: NeuronModel | Layer | Sequence[Layer | NeuronModel],
    input: Tensor | Spikes | None = None,
    *,
    dt: float,
    time: str = "discrete",
    method: str | None = None,
    input_as: str = "current",
    n_steps: int | None = None,
    batch_size: int | None = None,
    state: tuple | Sequence[tuple | None] | None = None,
    record: Sequence[str] | str = (),
    batch_first: bool = False,
    xtol: float | None = None,
    surrogate: Surrogate | None = None,
    detach_reset: bool = False,
    integrand: Callable[[Tensor, tuple], Tensor] | None = None,
    integral_rule: str = "exact",
) -> SimulationResult:
    """Simulate a population, a layer or a feed-forward network of layers.

    Args:
        target: a :class:`NeuronModel` (input feeds it one-to-one), a :class:`Layer`
            (input through its weights) or a sequence of them (each layer's spikes feed the next).
        input: current ``[T, B, N_in]`` (``[B, T, N_in]`` with ``batch_first``), or
            :class:`Spikes` (weighted spikes make the model's ``jump_target`` jump), or
            ``None`` (free run: give ``n_steps`` and ``batch_size``).
        dt: grid step in seconds.
        time: ``"discrete"`` or ``"continuous"``.
        method: integrator; default ``"exact"`` when the model has a closed form, else
            ``"rk4"`` (continuous) / ``"euler"`` (discrete).
        input_as: a current input enters the dynamics (``"current"``) or is added as a jump
            at the end of each step (``"jump"``).
        state: initial state (per layer for a network).
        record: variable names to record for every layer, or ``"all"``.
        batch_first: input and recordings as ``[B, T, N]``.
        xtol: spike-time tolerance in seconds (continuous mode).
        surrogate, detach_reset: discrete mode: differentiable spikes (see
            :func:`run_population`); spikes then travel between layers as the dense
            differentiable ``raster``.
        integrand: ``l(t, state) -> [B, N]`` of the **last** layer (the readout); its time
            integral is returned as ``integral`` (see :func:`run_population`).
        integral_rule: continuous time: ``"exact"`` quadrature (neuron-wise integrands) or
            ``"grid"`` (rectangle rule on the grid points; integrands may couple neurons).

    Returns:
        :class:`SimulationResult` of the last layer; ``.layers`` holds every layer's result.
    """
    check_choice("time", time, TIME_MODES)
    check_choice("input_as", input_as, INPUT_KINDS)
    check_positive("dt", dt)
    layers = _layers_of(target)
    if isinstance(input, Tensor):
        check_tensor("input", input, ndim=3, floating=True)
        check_finite("input", input)
        if batch_first:
            input = input.transpose(0, 1)
        if n_steps is not None and n_steps != input.shape[0]:
            raise ValueError(f"n_steps={n_steps} disagrees with the input's {input.shape[0]} steps")
        n_steps, batch_size = input.shape[0], input.shape[1]
        if input.shape[2] != layers[0].n_in:
            raise ValueError(
                f"input has {input.shape[2]} channels but the first layer expects "
                f"{layers[0].n_in} (input shape {list(input.shape)}, time-first [T, B, N])"
            )
    elif isinstance(input, Spikes):
        if abs(input.dt - dt) > 1e-12 * dt:
            input = input.rebin(dt)
        n_steps = input.n_steps if n_steps is None else n_steps
        if n_steps < input.n_steps:
            raise ValueError(
                f"n_steps={n_steps} is shorter than the input spikes ({input.n_steps} steps)"
            )
        if n_steps > input.n_steps:
            input = input.rebin(dt, n_steps=n_steps)
        batch_size = input.batch_size
        if input.n_units != layers[0].n_in:
            raise ValueError(
                f"input spikes have {input.n_units} units but the first layer expects "
                f"{layers[0].n_in}"
            )
    elif input is None:
        if n_steps is None or batch_size is None:
            raise ValueError("without input, give n_steps and batch_size")
    else:
        raise TypeError(f"input must be a Tensor, Spikes or None, got {type(input).__name__}")
    if not isinstance(n_steps, int) or n_steps <= 0:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    states = list(state) if isinstance(state, list) else [state] + [None] * (len(layers) - 1)
    if len(states) != len(layers):
        raise ValueError(
            f"state: expected {len(layers)} entries (one per layer), got {len(states)}"
        )

    results: list[SimulationResult] = []
    signal: Tensor | Spikes | None = input
    for index, (layer, s0) in enumerate(zip(layers, states, strict=True)):
        names = tuple(layer.model.state_names) if record == "all" else tuple(record)
        if len(layers) > 1:
            names = tuple(n for n in names if n in layer.model.state_names)
        as_current = index == 0 and isinstance(signal, Tensor) and input_as == "current"
        result = _run_layer(layer, signal, state=s0, dt=dt, time=time, method=method,
                            surrogate=surrogate, detach_reset=detach_reset, record=names,
                            xtol=xtol, as_current=as_current, n_steps=n_steps,
                            batch_size=batch_size,
                            integrand=integrand if index == len(layers) - 1 else None,
                            integral_rule=integral_rule)
        if batch_first:
            result.states = {k: v.transpose(0, 1) for k, v in result.states.items()}
        results.append(result)
        signal = result.raster if time == "discrete" else result.spikes
    last = results[-1]
    last.layers = results
    return last
