"""Linear leaky models with closed-form flows: LIF, current-based LIF, leaky integrator.

Equations follow NIR (time constants in seconds):

* ``LI``:      ``tau_mem dv/dt = (v_leak - v) + r I``  (no spikes)
* ``LIF``:     same, spike when ``v >= v_threshold``, then a reset (below)
* ``CubaLI``:  ``tau_syn dI/dt = -I + x``; ``tau_mem dv/dt = (v_leak - v) + r I`` (no spikes)
* ``CubaLIF``: same, with threshold and reset; spikes arriving through synapses make ``I``
  jump.

Reset after a spike (``reset=`` of LIF and CubaLIF; the mode is ``model.reset_mode``):

* ``"zero"`` (default, hard reset): ``v <- v_reset``;
* ``"subtract"`` (soft reset): ``v <- v - (v_threshold - v_reset)``, which keeps the overshoot
  above threshold; with ``v_reset = 0`` this is ``v <- v - v_threshold`` (snnTorch
  ``reset_mechanism="subtract"``, SpikingJelly ``v_reset=None``);
* ``"none"``: ``v`` is left unchanged; like any model without reset, a neuron then spikes
  only when ``v`` crosses ``v_threshold`` upwards, not at every step it stays above.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import NeuronModel
from .exponentials import coupled_response

RESET_MODES = ("zero", "subtract", "none")
"""Values of ``reset=`` of the LIF family (see the module docstring)."""


def _check_reset_below_threshold(model: NeuronModel) -> None:
    if (model.v_reset >= model.v_threshold).any():
        raise ValueError(
            f"{type(model).__name__}: v_reset must be below v_threshold (a reset at or above "
            "threshold would fire again at once)"
        )


class _Fires:
    """The spiking part shared by LIF and CubaLIF: ``v >= v_threshold``, then the reset."""

    reset_mode: str
    """``"zero"``, ``"subtract"`` or ``"none"``: which reset :meth:`reset` applies."""

    def _add_firing(self, v_threshold, v_reset, learn_threshold: bool, reset: str) -> None:
        if reset not in RESET_MODES:
            raise ValueError(
                f"{type(self).__name__}: reset must be one of {', '.join(map(repr, RESET_MODES))}"
                f", got {reset!r}"
            )
        self.reset_mode = reset
        self.add_parameter("v_threshold", v_threshold, learnable=learn_threshold)
        self.add_parameter("v_reset", v_reset)
        _check_reset_below_threshold(self)

    def threshold(self, state: tuple) -> Tensor:
        return state.v - self.v_threshold

    def reset(self, state: tuple) -> tuple:
        if self.reset_mode == "zero":
            # a broadcast view, not a new [B, N] tensor: the reset runs every step in discrete
            # time
            return state._replace(v=self.v_reset.to(state.v.dtype).expand_as(state.v))
        if self.reset_mode == "subtract":
            return state._replace(v=state.v - (self.v_threshold - self.v_reset))
        return state  # "none": the very same state, so the engine's blend leaves it untouched

    @property
    def resets(self) -> bool:
        """Whether a spike changes the state (``False`` for ``reset="none"``)."""
        return self.reset_mode != "none"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reset={self.reset_mode!r}"


class LI(NeuronModel):
    """Leaky integrator (non-spiking readout): ``tau_mem dv/dt = (v_leak - v) + r I``.

    Spike inputs make ``v`` jump by the synaptic weight. Parameters are per neuron ``[n]``.
    """

    state_names = ("v",)
    jump_target = "v"
    threshold_variable = "v"
    monotone = True
    initial_values = {"v": "v_leak"}

    def __init__(
        self,
        n: int,
        *,
        tau_mem: float | Tensor = 0.02,
        r: float | Tensor = 1.0,
        v_leak: float | Tensor = 0.0,
        learn_tau: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(n, **kwargs)
        self.add_parameter("tau_mem", tau_mem, positive=True, learnable=learn_tau)
        self.add_parameter("r", r)
        self.add_parameter("v_leak", v_leak)

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        return ((self.v_leak - state.v + self.r * input) / self.tau_mem,)

    def flow(self, state: tuple, input: Tensor, h: Tensor) -> tuple:
        v_inf = self.v_leak + self.r * input
        return state._replace(v=v_inf + (state.v - v_inf) * torch.exp(-h / self.tau_mem))


class LIF(_Fires, LI):
    """Leaky integrate-and-fire neuron (NIR ``LIF``).

    ``tau_mem dv/dt = (v_leak - v) + r I``; spike when ``v`` reaches ``v_threshold``;
    then the reset (``v <- v_reset`` by default). Input spikes make ``v`` jump by the weight.

    Args:
        n: number of neurons.
        tau_mem: membrane time constant (s).
        r: input resistance.
        v_leak, v_threshold, v_reset: potentials (any consistent unit).
        refractory: refractory period (s), ``v`` held at its reset value meanwhile.
        learn_tau, learn_threshold: make those parameters learnable.
        reset: ``"zero"`` (``v <- v_reset``), ``"subtract"`` (``v <- v - (v_threshold -
            v_reset)``) or ``"none"``; see :mod:`ctsnn.models.lif`.
    """

    def __init__(
        self,
        n: int,
        *,
        tau_mem: float | Tensor = 0.02,
        r: float | Tensor = 1.0,
        v_leak: float | Tensor = 0.0,
        v_threshold: float | Tensor = 1.0,
        v_reset: float | Tensor = 0.0,
        learn_tau: bool = False,
        learn_threshold: bool = False,
        reset: str = "zero",
        **kwargs,
    ) -> None:
        super().__init__(n, tau_mem=tau_mem, r=r, v_leak=v_leak, learn_tau=learn_tau, **kwargs)
        self._add_firing(v_threshold, v_reset, learn_threshold, reset)


class CubaLI(NeuronModel):
    """Current-based leaky integrator (NIR ``CubaLI``): a non-spiking readout.

    ``tau_syn dI/dt = -I + x``, ``tau_mem dv/dt = (v_leak - v) + r I``; input spikes make ``I``
    jump by the weight. The closed-form flow is exact, including ``tau_syn == tau_mem``.
    """

    state_names = ("v", "i")
    jump_target = "i"
    threshold_variable = "v"
    clamped = ("v",)
    initial_values = {"v": "v_leak"}

    def __init__(
        self,
        n: int,
        *,
        tau_mem: float | Tensor = 0.02,
        tau_syn: float | Tensor = 0.005,
        r: float | Tensor = 1.0,
        v_leak: float | Tensor = 0.0,
        learn_tau: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(n, **kwargs)
        self.add_parameter("tau_mem", tau_mem, positive=True, learnable=learn_tau)
        self.add_parameter("tau_syn", tau_syn, positive=True, learnable=learn_tau)
        self.add_parameter("r", r)
        self.add_parameter("v_leak", v_leak)

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        dv = (self.v_leak - state.v + self.r * state.i) / self.tau_mem
        di = (input - state.i) / self.tau_syn
        return (dv, di)

    def flow(self, state: tuple, input: Tensor, h: Tensor) -> tuple:
        tm, ts = self.tau_mem, self.tau_syn
        em, es = torch.exp(-h / tm), torch.exp(-h / ts)
        c = self.r * (state.i - input)  # the decaying part of r*I
        v_inf = self.v_leak + self.r * input
        # Particular solution of tau_m v' = -v + c e^{-t/ts}: c kappa(t), written without
        # cancellation and differentiable at ts = tm (its limit (t/tm) e^{-t/tm}).
        coupled = c * coupled_response(h, tm, ts)
        v = v_inf + (state.v - v_inf) * em + coupled
        i = input + (state.i - input) * es
        return state._replace(v=v, i=i)


class CubaLIF(_Fires, CubaLI):
    """Current-based LIF (NIR ``CubaLIF``): an exponential synaptic current drives a LIF.

    ``tau_syn dI/dt = -I + x``, ``tau_mem dv/dt = (v_leak - v) + r I``; spike when ``v``
    reaches ``v_threshold``, then the reset of ``v`` (``reset=``: ``"zero"``, the default,
    ``v <- v_reset``; ``"subtract"``, ``v <- v - (v_threshold - v_reset)``; ``"none"``; see
    :mod:`ctsnn.models.lif`). Spikes arriving through synapses make ``I`` jump by the weight;
    a continuous input ``x`` is low-pass filtered by ``tau_syn``. The closed-form flow is
    exact, including the limit ``tau_syn == tau_mem``.
    """

    def __init__(
        self,
        n: int,
        *,
        tau_mem: float | Tensor = 0.02,
        tau_syn: float | Tensor = 0.005,
        r: float | Tensor = 1.0,
        v_leak: float | Tensor = 0.0,
        v_threshold: float | Tensor = 1.0,
        v_reset: float | Tensor = 0.0,
        learn_tau: bool = False,
        learn_threshold: bool = False,
        reset: str = "zero",
        **kwargs,
    ) -> None:
        super().__init__(n, tau_mem=tau_mem, tau_syn=tau_syn, r=r, v_leak=v_leak,
                         learn_tau=learn_tau, **kwargs)
        self._add_firing(v_threshold, v_reset, learn_threshold, reset)
