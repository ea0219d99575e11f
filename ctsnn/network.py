"""Layers and networks: one way to build and run them, in either time mode.

A :class:`Layer` is input synapses + a neuron model + an optional recurrent connection, with
the gradient method that trains it (an object of :mod:`ctsnn.gradients`, or the shorthand
``"surrogate"`` / ``"adjoint"``). :func:`simulate` runs a model, a layer or a sequence of
layers; ``Layer.forward`` is ``simulate`` on one layer. Per-layer settings (``time``,
``method``, ``surrogate``, ``detach_reset``, ``batch_first``) are respected by ``simulate``; an
argument of ``simulate`` fills in what a layer leaves open (``None``) and conflicting values
are an error, never a silent override.

Conventions shared by both entry points:

* ``dt`` (s) is an argument of the call; it may be omitted when the input is :class:`Spikes`
  (their grid is used). Spikes on another grid are re-gridded (their exact times are kept).
  Synapses whose delays are counted in grid steps (kernel synapses) refuse another ``dt``.
* A tensor input ``[T, B, N_in]`` (``[B, T, N_in]`` with ``batch_first``) is a **current** held
  constant over each step (``input_as="current"``), or jumps added at the end of each step
  (``input_as="jump"``, e.g. a spike raster). :class:`Spikes` are spikes.
* The output is a :class:`~ctsnn.engine.SimulationResult` (``simulate``) or
  ``(Spikes, final_state)`` (``Layer.forward``) in both time modes. In discrete time with a
  surrogate, ``spikes.raster()`` carries the surrogate gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import as_int, check_choice, check_finite, check_positive, check_tensor
from .dtypes import check_simulation_dtypes
from .engine import INTEGRAL_RULES, TIME_MODES, Method, Recurrent, SimulationResult
from .engine.limits import check_grid, grid_problem
from .gradients import GradientMethod, LayerCall, as_gradient
from .losses import Readout, as_readout
from .models.base import NeuronModel
from .spikes import Spikes
from .surrogate import Surrogate
from .synapses import Dense

INPUT_KINDS = ("current", "jump")


class Layer(nn.Module):
    """A population with its input synapses and, optionally, its own recurrent connection.

    Args:
        model: the neurons (``N = model.n``).
        weight: input synapses: a weight ``[N, N_in]`` (builds an exact
            :class:`~ctsnn.synapses.Dense` with the given ``delay``), any synapse module (e.g.
            from :mod:`ctsnn.synapses`; it carries its own delays), or ``None``: then ``n_in``
            builds a default-initialised ``Dense`` (Kaiming-uniform weights), and without
            ``n_in`` the input feeds the neurons one-to-one.
        n_in: number of inputs of the default synapses (with ``weight=None``).
        delay: seconds: per synapse ``[N, N_in]``, per axon ``[N_in]`` (shared by the targets of
            each input), a number, or an initialiser name (``"uniform"`` in ``[0, max_delay]``,
            ``"half_normal"``); default: no delays, or ``"uniform"`` when ``max_delay`` is given
            without a weight tensor.
        learn_delay: make the delays learnable parameters.
        max_delay: upper bound of the delays (s), checked and used by :func:`clamp_delays_`.
        fan_in: with ``n_in``: each neuron gets exactly ``fan_in`` random inputs (fixed mask).
        recurrent: the population's own delayed recurrent connection (recurrent synapses of
            :mod:`ctsnn.synapses`).
        time: ``"discrete"``, ``"continuous"`` or ``None`` (decided by :func:`simulate`,
            default discrete).
        method: integrator (see :func:`simulate`) or ``None``.
        gradient: ``"surrogate"`` (:class:`ctsnn.gradients.Autodiff`: backpropagation through
            the simulation, with ``surrogate`` spikes in discrete time and exact spike-time
            derivatives in continuous time), ``"adjoint"`` (:class:`ctsnn.gradients.Adjoint`:
            exact event-based EventProp gradients) or a :class:`~ctsnn.gradients.GradientMethod`
            object (e.g. ``Adjoint(spike_reg=(1e-3, 5.0))``). Unsupported combinations fail
            here, saying what to use instead.
        surrogate, detach_reset: discrete-time surrogate spikes (``None``: decided by
            :func:`simulate`).
        batch_first: tensors as ``[B, T, N]`` (``None``: decided by :func:`simulate`).

    ``forward(x, state=None, *, dt=None, input_as="current")`` returns
    ``(spikes: Spikes, final_state)``; see :func:`simulate` for the arguments.
    """

    def __init__(
        self,
        model: NeuronModel,
        weight: Tensor | nn.Module | None = None,
        *,
        n_in: int | None = None,
        delay: Tensor | float | str | None = None,
        learn_delay: bool = False,
        max_delay: float | None = None,
        fan_in: int | None = None,
        recurrent: Recurrent | nn.Module | None = None,
        time: str | None = None,
        method: Method | None = None,
        gradient: str | GradientMethod = "surrogate",
        surrogate: Surrogate | None = None,
        detach_reset: bool | None = None,
        batch_first: bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, NeuronModel):
            raise TypeError(f"model must be a NeuronModel, got {type(model).__name__}")
        if time is not None:
            check_choice("time", time, TIME_MODES)
        self.model = model
        self.synapse = _input_synapse(model, weight, n_in=n_in, delay=delay,
                                      learn_delay=learn_delay, max_delay=max_delay, fan_in=fan_in)
        n_out = getattr(self.synapse, "n_out", model.n)
        if n_out != model.n:
            raise ValueError(f"weight has {n_out} rows but the model has n = {model.n} neurons")
        self.recurrent = recurrent
        self.time, self.method = time, method
        self.surrogate, self.detach_reset, self.batch_first = surrogate, detach_reset, batch_first
        self.gradient = as_gradient(gradient)
        self.gradient.check(self)

    @property
    def n_in(self) -> int:
        """Number of input channels."""
        return self.model.n if self.synapse is None else self.synapse.n_in

    def forward(self, x: Tensor | Spikes | None, state: tuple | None = None, *,
                dt: float | None = None, input_as: str = "current"
                ) -> tuple[Spikes, tuple | None]:
        """Simulate on ``x`` (see :func:`simulate`): ``(output spikes, final state)``."""
        result = simulate(self, x, dt=dt, state=state, input_as=input_as)
        return result.spikes, result.final_state

    def extra_repr(self) -> str:
        parts = [f"gradient={self.gradient!r}"]
        parts += [f"{k}={getattr(self, k)!r}" for k in ("time", "method", "batch_first")
                  if getattr(self, k) is not None]
        return ", ".join(parts)


def _input_synapse(model: NeuronModel, weight: Tensor | nn.Module | None, *, n_in: int | None,
                   delay: Tensor | float | str | None, learn_delay: bool,
                   max_delay: float | None, fan_in: int | None) -> nn.Module | None:
    """The synapse a :class:`Layer` builds from its shortcut arguments (see its docstring)."""
    extras = {"delay": delay, "max_delay": max_delay, "fan_in": fan_in, "n_in": n_in}
    if isinstance(weight, nn.Module) or (weight is None and n_in is None):
        given = [k for k, v in extras.items() if v is not None] + (["learn_delay"] * learn_delay)
        if given:
            what = "a synapse module carries its own" if weight is not None else (
                "one-to-one input (no weight, no n_in) has no")
            raise ValueError(f"{', '.join(given)}: {what} synapses to configure; build a "
                             "ctsnn.synapses.Dense instead")
        return weight
    if not isinstance(weight, (Tensor, type(None))):
        raise TypeError(f"weight must be a Tensor, a synapse module or None, got "
                        f"{type(weight).__name__}")
    per = "axon" if isinstance(delay, Tensor) and delay.ndim == 1 else "synapse"
    if weight is not None:
        if fan_in is not None:
            raise ValueError("fan_in draws a random connectivity: give n_in instead of a weight "
                             "tensor (or mask the tensor yourself)")
        return Dense(n_in, weight=weight, delay=delay, learn_delay=learn_delay,
                     max_delay=max_delay, per=per)
    if delay is None and max_delay is not None:
        delay = "uniform"
    init = {"delay_init": delay} if isinstance(delay, str) else {"delay": delay}
    return Dense(n_in, model.n, learn_delay=learn_delay, max_delay=max_delay, fan_in=fan_in,
                 per=per, dtype=model.refractory.dtype, device=model.refractory.device, **init)


# --------------------------------------------------------------------------- parameters
def _synapses(net: nn.Module | Sequence[nn.Module]) -> Iterator[nn.Module]:
    modules = net if isinstance(net, (list, tuple)) else [net]
    seen: set[int] = set()
    for module in modules:
        for m in module.modules():
            if id(m) not in seen and callable(getattr(m, "clamp_delays_", None)):
                seen.add(id(m))
                yield m


def delay_parameters(net: nn.Module | Sequence[nn.Module]) -> list[nn.Parameter]:
    """The learnable delays of every synapse in ``net`` (for their own optimiser / lr)."""
    out: dict[int, nn.Parameter] = {}  # a synapse wrapping another shares its parameters
    for syn in _synapses(net):
        params = syn.delay_parameters() if hasattr(syn, "delay_parameters") else [
            getattr(syn, "delay", None)]
        out.update((id(p), p) for p in params
                   if isinstance(p, nn.Parameter) and p.requires_grad)
    return list(out.values())


def weight_parameters(net: nn.Module | Sequence[nn.Module]) -> list[nn.Parameter]:
    """Every learnable parameter of ``net`` that is not a delay."""
    delays = {id(p) for p in delay_parameters(net)}
    modules = net if isinstance(net, (list, tuple)) else [net]
    out, seen = [], set()
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in delays and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def clamp_delays_(net: nn.Module | Sequence[nn.Module]) -> None:
    """Project every synapse's delays into its range ``[0, max_delay]`` in place (call after
    each optimiser step; the forward pass never clamps silently)."""
    for syn in _synapses(net):
        syn.clamp_delays_()


# --------------------------------------------------------------------------- simulate
def layers_of(target: Any, caller: str = "simulate") -> list[Layer]:
    """The layers of a network as :func:`simulate` takes it: a :class:`NeuronModel`, a
    :class:`Layer` or a non-empty sequence of them (models are wrapped in a default
    :class:`Layer`). ``caller`` names the public function in error messages."""
    if isinstance(target, (NeuronModel, Layer)):
        target = [target]
    if not isinstance(target, (list, tuple, nn.Sequential, nn.ModuleList)) or not len(target):
        raise TypeError(f"{caller}() takes a NeuronModel, a Layer or a non-empty sequence of "
                        f"them, got {type(target).__name__}")
    layers = []
    for k, item in enumerate(target):
        if isinstance(item, NeuronModel):
            item = Layer(item)
        if not isinstance(item, Layer):
            raise TypeError(f"{caller}(): network item {k} is a {type(item).__name__}, not a "
                            "Layer or NeuronModel")
        layers.append(item)
    return layers


def _setting(layers: list[Layer], name: str, given: Any, default: Any) -> list[Any]:
    """Each layer's value of ``name``: the layer's own, else ``given``, else ``default``;
    a layer value that contradicts an explicit ``given`` is an error."""
    out = []
    for k, layer in enumerate(layers):
        own = getattr(layer, name)
        if own is not None and given is not None and own is not given and own != given:
            raise ValueError(f"simulate({name}={given!r}) conflicts with layer {k}'s own "
                             f"{name}={own!r}: drop one of them")
        out.append(own if own is not None else given if given is not None else default)
    return out


def _batch_first(layers: list[Layer], given: bool | None) -> bool:
    values = {bool(v) for v in [given, *(layer.batch_first for layer in layers)]
              if v is not None}
    if len(values) > 1:
        raise ValueError("batch_first disagrees between simulate() and the layers: set it once")
    return values.pop() if values else False


def _on_grid(spikes: Spikes, dt: float, n_steps: int | None) -> Spikes:
    """``spikes`` on the grid ``dt`` (exact times kept), extended to ``n_steps`` if longer."""
    if abs(spikes.dt - dt) > 1e-12 * dt:
        spikes = spikes.rebin(dt)
    if n_steps is not None:
        if n_steps < spikes.n_steps:
            raise ValueError(f"n_steps={n_steps} is shorter than the input spikes "
                             f"({spikes.n_steps} steps)")
        if n_steps > spikes.n_steps:
            spikes = spikes.rebin(dt, n_steps=n_steps)
    return spikes


def _check_input(input: Any, layers: list[Layer], batch_first: bool, n_steps: int | None,
                 batch_size: int | None, dt: float) -> tuple[Any, int, int | None]:
    if input is not None and batch_size is not None:
        given = input.shape[1 - batch_first] if isinstance(input, Tensor) else getattr(
            input, "batch_size", None)
        if given is not None and given != batch_size:
            raise ValueError(f"batch_size={batch_size} disagrees with the input's {given} "
                             "samples (the input sets the batch size: drop batch_size)")
    if isinstance(input, Tensor):
        check_tensor("input", input, ndim=3, floating=True)
        check_finite("input", input)
        if batch_first:
            input = input.transpose(0, 1)
        if n_steps is not None and n_steps != input.shape[0]:
            raise ValueError(f"n_steps={n_steps} disagrees with the input's {input.shape[0]} steps")
        if input.shape[2] != layers[0].n_in:
            raise ValueError(
                f"input has {input.shape[2]} channels but the first layer expects "
                f"{layers[0].n_in} (input shape {list(input.shape)}, "
                f"{'batch-first [B, T, N]' if batch_first else 'time-first [T, B, N]'})"
            )
        return input, input.shape[0], input.shape[1]
    if isinstance(input, Spikes):
        input = _on_grid(input, dt, n_steps)
        if input.n_units != layers[0].n_in:
            raise ValueError(f"input spikes have {input.n_units} units but the first layer "
                             f"expects {layers[0].n_in}")
        return input, input.n_steps, input.batch_size
    if input is None:
        if n_steps is None or batch_size is None:
            raise ValueError("without input, give n_steps and batch_size")
        if not isinstance(n_steps, int) or n_steps <= 0:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
        return None, n_steps, as_int("batch_size", batch_size, minimum=1)
    raise TypeError(f"input must be a Tensor, Spikes or None, got {type(input).__name__}")


def _check_size(signal: Tensor | Spikes | None, layers: list[Layer], n_steps: int,
                batch_size: int, dt: float) -> None:
    """Refuse a run too large to fit before allocating it (:mod:`ctsnn.engine.limits`), naming
    what made the grid this long: the latest input spike, or the input's / given length."""
    width = sum(layer.n_in + layer.model.n * (1 + len(layer.model.state_names))
                for layer in layers)
    dtype = getattr(signal, "dtype", None)
    itemsize = torch.finfo(dtype).bits // 8 if dtype is not None and dtype.is_floating_point \
        else 4
    if grid_problem(n_steps, max(batch_size, 1), width, itemsize) is None:
        return  # the cause below is only worked out for a run that does not fit
    cause = f"n_steps = {n_steps} steps of dt = {dt} s"
    if isinstance(signal, Spikes) and len(signal):
        i = int(signal.times.detach().argmax())
        t = float(signal.times[i])
        if int(t / dt) + 2 >= n_steps:  # the grid is as long as this spike needs
            cause = (f"input spike at t = {t:g} s (event {i}: sample {int(signal.batch[i])}, "
                     f"unit {int(signal.units[i])}) makes a grid of {n_steps} steps of "
                     f"dt = {dt} s")
    elif isinstance(signal, Tensor):
        cause = f"the input tensor has {n_steps} steps of dt = {dt} s"
    check_grid(n_steps, max(batch_size, 1), width, itemsize, cause=cause)


def _check_readout(readout: Readout | None, layer: Layer) -> None:
    if readout is None:
        return
    model = layer.model
    if readout.kind in ("sum", "avg_exp", "max") and "v" not in model.state_names:
        raise ValueError(f"readout={readout.kind!r} reads the voltage v, which "
                         f"{type(model).__name__} does not have (state {model.state_names})")
    if readout.kind == "first_spike" and not model.spiking:
        raise ValueError(f"readout='first_spike' needs a spiking last layer; "
                         f"{type(model).__name__} does not spike")


def simulate(
    target: NeuronModel | Layer | Sequence[Layer | NeuronModel],
    input: Tensor | Spikes | None = None,
    *,
    dt: float | None = None,
    time: str | None = None,
    method: Method | None = None,
    input_as: str = "current",
    n_steps: int | None = None,
    batch_size: int | None = None,
    state: tuple | Sequence[tuple | None] | None = None,
    record: Sequence[str] | str = (),
    batch_first: bool | None = None,
    xtol: float | None = None,
    surrogate: Surrogate | None = None,
    detach_reset: bool | None = None,
    readout: str | Callable[[Tensor, tuple], Tensor] | Readout | None = None,
    integral_rule: str = "exact",
    saveat: Tensor | Sequence[float] | None = None,
) -> SimulationResult:
    """Simulate a population, a layer or a feed-forward network of layers.

    Args:
        target: a :class:`NeuronModel` (input feeds it one-to-one), a :class:`Layer` or a
            sequence of them (each layer's spikes feed the next).
        input: a tensor ``[T, B, N_in]`` (``[B, T, N_in]`` with ``batch_first``; a current, or
            jumps with ``input_as="jump"``), :class:`Spikes` (weighted spikes make the model's
            ``jump_target`` jump), or ``None`` (free run: give ``n_steps`` and ``batch_size``).
        dt: grid step in seconds; default: the grid of input :class:`Spikes`.
        time: ``"discrete"`` or ``"continuous"`` for the layers that leave it open (default
            ``"discrete"``). Layers may run in different modes; spikes pass between them as
            :class:`Spikes`.
        method: integrator for layers that leave it open: ``"exact"`` (closed-form flow), a
            Runge-Kutta step (``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``) or an adaptive
            embedded pair integrating each grid step to a tolerance (``"dopri5"``, ``"bosh3"``,
            or :class:`solvers.embedded.Adaptive` with ``rtol``/``atol``); default ``"exact"``
            when the model has a closed form, else ``"rk4"`` (continuous) / ``"euler"``
            (discrete).
        input_as: a tensor input is a ``"current"`` or ``"jump"``s.
        state: initial state (per layer for a network, as a list).
        record: variable names to record for every layer (those it has), or ``"all"``.
        batch_first: input and recordings as ``[B, T, N]``.
        xtol: spike-time tolerance in seconds (continuous mode; finite, ``>= 0``).
        surrogate, detach_reset: discrete-time differentiable spikes for layers that leave them
            open (see :mod:`ctsnn.engine.discrete`); in continuous time a surrogate has no effect
            (a warning says so).
        readout: of the **last** layer, returned as ``output`` ``[B, N]``: ``"first_spike"``,
            ``"sum"``, ``"avg_exp"``, ``"max"`` or a callable integrand ``l(t, state)`` (see
            :mod:`ctsnn.losses`).
        integral_rule: continuous time, integral readouts: ``"exact"`` quadrature (neuron-wise
            integrands) or ``"grid"`` (rectangle rule on the grid points; may couple neurons).
        saveat: times (s; 1-D, sorted ascending, within ``[0, n_steps dt]``) at which every
            layer that records saves its ``record`` variables: ``result.saved[name]``
            ``[S, B, N]`` (``[B, S, N]`` with ``batch_first``). Continuous time: the exact
            trajectory between grid points (closed-form flows; the Runge-Kutta dense output
            otherwise), right-continuous (after a jump or reset at that time), without changing
            the run; discrete time: grid points only. ``gradient="adjoint"`` layers refuse it.
            See :mod:`ctsnn.engine.saveat`.

    Dtype: a simulation runs in one dtype, float32 or float64, that of the first layer's model;
    every layer's parameters and buffers, the input and the initial states must have it (an
    error names both dtypes and where); half precision is refused (see :mod:`ctsnn.dtypes`).

    Returns:
        :class:`~ctsnn.engine.SimulationResult` of the last layer; ``.layers`` holds every
        layer's result.

    A run too large to fit (e.g. one input spike far in the future making a huge grid) is a
    ``ValueError`` naming the spike, raised before anything is allocated (limits:
    :mod:`ctsnn.engine.limits`).
    """
    if time is not None:
        check_choice("time", time, TIME_MODES)
    if saveat is not None and not record:
        raise ValueError("saveat: name the variables to save with record= (e.g. record=('v',) "
                         "or record='all')")
    check_choice("input_as", input_as, INPUT_KINDS)
    check_choice("integral_rule", integral_rule, INTEGRAL_RULES)
    if dt is None:
        if not isinstance(input, Spikes):
            raise ValueError("dt is required (seconds) unless the input is Spikes")
        dt = input.dt
    check_positive("dt", dt)
    layers = layers_of(target)
    times = _setting(layers, "time", time, "discrete")
    methods = _setting(layers, "method", method, None)
    surrogates = _setting(layers, "surrogate", surrogate, None)
    detaches = _setting(layers, "detach_reset", detach_reset, False)
    if batch_size is not None:
        batch_size = as_int("batch_size", batch_size, minimum=1)
    if xtol is not None and "continuous" not in times:
        raise ValueError("xtol is the spike-time tolerance of continuous time; every layer runs "
                         "in discrete time, where spikes sit on grid points: drop xtol")
    bf = _batch_first(layers, batch_first)
    ro = as_readout(readout)
    _check_readout(ro, layers[-1])
    signal, n_steps, batch_size = _check_input(input, layers, bf, n_steps, batch_size, dt)
    _check_size(signal, layers, n_steps, batch_size, dt)
    states = list(state) if isinstance(state, list) else [state] + [None] * (len(layers) - 1)
    if len(states) != len(layers):
        raise ValueError(f"state: expected {len(layers)} entries (one per layer), "
                         f"got {len(states)}")
    check_simulation_dtypes(layers, [layer.model for layer in layers], signal, states)
    results: list[SimulationResult] = []
    for k, layer in enumerate(layers):
        names = tuple(layer.model.state_names) if record == "all" else tuple(record)
        if len(layers) > 1:
            names = tuple(n for n in names if n in layer.model.state_names)
        last = k == len(layers) - 1
        call = LayerCall(
            dt=dt, time=times[k], method=methods[k], state=states[k], record=names, xtol=xtol,
            surrogate=surrogates[k], detach_reset=detaches[k],
            as_current=k == 0 and isinstance(signal, Tensor) and input_as == "current",
            n_steps=n_steps, batch_size=batch_size, readout=ro if last else None,
            integral_rule=integral_rule, saveat=saveat if names else None)
        result = layer.gradient.run(layer, signal, call)
        if bf:
            result.states = {name: v.transpose(0, 1) for name, v in result.states.items()}
            result.saved = {name: v.transpose(0, 1) for name, v in result.saved.items()}
        results.append(result)
        signal = result.spikes
    out = results[-1]
    out.layers = results
    for observer in tuple(_OBSERVERS):
        observer(layers, input, results)
    return out


#: Callbacks ``fn(layers, input, results)`` run after every :func:`simulate` (see
#: :func:`observing`).
_OBSERVERS: list[Callable[[list[Layer], Any, list[SimulationResult]], None]] = []


@contextlib.contextmanager
def observing(fn: Callable[[list[Layer], Any, list[SimulationResult]], None]
              ) -> Iterator[None]:
    """Inside the block, call ``fn(layers, input, results)`` after every :func:`simulate`
    (also the one each :meth:`Layer.forward` runs): the network's layers, the input as given
    and one :class:`SimulationResult` per layer. This is how
    :class:`ctsnn.training.SpikeMonitor` counts spikes of models that call :func:`simulate`
    themselves."""
    if not callable(fn):
        raise TypeError(f"observing(fn) takes a callable, got {type(fn).__name__}")
    _OBSERVERS.append(fn)
    try:
        yield
    finally:
        _OBSERVERS.remove(fn)


__all__ = ["Layer", "simulate", "observing", "delay_parameters", "weight_parameters",
           "clamp_delays_",
           "layers_of"]

