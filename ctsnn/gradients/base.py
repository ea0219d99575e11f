"""What a gradient method is: an object that says whether it supports a layer and runs it.

The network layer (:mod:`ctsnn.network`) hands every layer's run to the layer's gradient
method, the way diffrax passes ``adjoint=`` to ``diffeqsolve``. A method sees the layer through
the small :class:`LayerLike` protocol and the run through :class:`LayerCall`; it returns the
engine's :class:`~ctsnn.engine.SimulationResult`. Adding a method = one new module with one
:class:`GradientMethod` subclass (and, for a string shorthand, one entry in
:data:`ctsnn.gradients.SHORTHANDS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from torch import Tensor, nn

from ..engine import Method, SimulationResult
from ..losses import Readout
from ..models.base import NeuronModel
from ..spikes import Spikes
from ..surrogate import Surrogate


class LayerLike(Protocol):
    """The parts of a :class:`ctsnn.Layer` a gradient method uses."""

    model: NeuronModel
    synapse: nn.Module | None
    recurrent: nn.Module | None
    time: str | None
    surrogate: Surrogate | None


@dataclass(frozen=True)
class LayerCall:
    """One layer's run as the network asks for it (everything but the layer and its input).

    Attributes:
        dt: grid step (s). time: ``"discrete"`` or ``"continuous"``. method: integrator or
        ``None`` (the model's default). state: initial state or ``None``. record: variables to
        record. xtol: spike-time tolerance (s). surrogate, detach_reset: discrete surrogate
        spikes. as_current: a tensor input is a current (``False``: jumps). n_steps, batch_size:
        the grid when there is no input. readout: the last layer's readout (else ``None``).
        integral_rule: ``"exact"`` or ``"grid"`` (continuous integral readouts).
        saveat: times (s) at which to save the recorded variables, or ``None``.
    """

    dt: float
    time: str
    method: Method | None = None
    state: tuple | None = None
    record: tuple[str, ...] = ()
    xtol: float | None = None
    surrogate: Surrogate | None = None
    detach_reset: bool = False
    as_current: bool = False
    n_steps: int | None = None
    batch_size: int | None = None
    readout: Readout | None = None
    integral_rule: str = "exact"
    saveat: Tensor | tuple[float, ...] | None = None


class GradientMethod:
    """Base class of the gradient methods (see the module docstring).

    Subclasses set :attr:`name` and implement :meth:`check` (construction-time errors that say
    what to use instead) and :meth:`run`.
    """

    name: ClassVar[str] = ""

    def check(self, layer: LayerLike) -> None:
        """Raise ``ValueError`` if this method cannot train ``layer``; say what to use."""

    def run(self, layer: LayerLike, signal: Tensor | Spikes | None,
            call: LayerCall) -> SimulationResult:
        """Simulate ``layer`` on ``signal`` so that autograd gets this method's gradients."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields: dict[str, Any] = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({inner})"
