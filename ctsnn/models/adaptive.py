"""Adaptive integrate-and-fire models: AdLIF (linear) and AdEx (exponential).

Both carry an adaptation current ``w`` that grows by ``b`` at each spike and couples to
the membrane through ``a``. No closed form is provided: simulations use Runge-Kutta.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import NeuronModel


def check_reset_below(model: NeuronModel, reset: str, threshold: str) -> None:
    """Raise ``ValueError`` unless parameter ``reset`` < parameter ``threshold`` for every
    neuron (a reset at or above threshold would fire again at once: the time modes and step
    sizes then disagree on the spike count), naming both parameters and the first neuron."""
    low, high = getattr(model, reset), getattr(model, threshold)
    bad = (low >= high).expand(model.n)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        at = lambda p: float(p.expand(model.n)[i])  # noqa: E731
        raise ValueError(f"{type(model).__name__}: {reset} = {at(low)!r} must be below "
                         f"{threshold} = {at(high)!r} (neuron {i}); a reset at or above the "
                         "threshold would fire again at once")


class AdLIF(NeuronModel):
    """Adaptive LIF.

    ``tau_mem dv/dt = (v_leak - v) + r (I - w)``, ``tau_w dw/dt = a (v - v_leak) - w``;
    spike when ``v`` reaches ``v_threshold``: ``v <- v_reset``, ``w <- w + b``.
    Dimensionless voltages by default (threshold 1), times in seconds.
    """

    state_names = ("v", "w")
    jump_target = "v"
    threshold_variable = "v"
    clamped = ("v",)
    initial_values = {"v": "v_leak"}

    def __init__(
        self,
        n: int,
        *,
        tau_mem: float | Tensor = 0.02,
        tau_w: float | Tensor = 0.1,
        a: float | Tensor = 0.5,
        b: float | Tensor = 0.2,
        r: float | Tensor = 1.0,
        v_leak: float | Tensor = 0.0,
        v_threshold: float | Tensor = 1.0,
        v_reset: float | Tensor = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(n, **kwargs)
        self.add_parameter("tau_mem", tau_mem, positive=True)
        self.add_parameter("tau_w", tau_w, positive=True)
        for name, value in dict(a=a, b=b, r=r, v_leak=v_leak, v_threshold=v_threshold,
                                v_reset=v_reset).items():
            self.add_parameter(name, value)
        check_reset_below(self, "v_reset", "v_threshold")

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        dv = (self.v_leak - state.v + self.r * (input - state.w)) / self.tau_mem
        dw = (self.a * (state.v - self.v_leak) - state.w) / self.tau_w
        return (dv, dw)

    def threshold(self, state: tuple) -> Tensor:
        return state.v - self.v_threshold

    def reset(self, state: tuple) -> tuple:
        return state._replace(v=torch.zeros_like(state.v) + self.v_reset, w=state.w + self.b)


class AdEx(NeuronModel):
    """Adaptive exponential integrate-and-fire (Brette & Gerstner 2005).

    ``tau_mem dv/dt = -(v - v_leak) + delta_t exp((v - v_t)/delta_t) + r (I - w)``,
    ``tau_w dw/dt = a (v - v_leak) - w``; spike when ``v`` reaches ``v_peak``:
    ``v <- v_reset``, ``w <- w + b``.

    Units: seconds, mV, nA, MOhm (``r`` = 1/g_L). Defaults are the paper's regular-spiking
    cell (C = 281 pF, g_L = 30 nS, so tau_mem = 9.37 ms and r = 33.3 MOhm; a = 4 nS,
    b = 0.0805 nA, tau_w = 144 ms) with the usual cut ``v_peak = v_t + 5 delta_t``.
    """

    state_names = ("v", "w")
    jump_target = "v"
    threshold_variable = "v"
    clamped = ("v",)
    initial_values = {"v": "v_leak"}

    def __init__(
        self,
        n: int,
        *,
        tau_mem: float | Tensor = 281.0 / 30.0 * 1e-3,
        tau_w: float | Tensor = 0.144,
        r: float | Tensor = 1000.0 / 30.0,
        v_leak: float | Tensor = -70.6,
        v_t: float | Tensor = -50.4,
        delta_t: float | Tensor = 2.0,
        a: float | Tensor = 0.004,
        b: float | Tensor = 0.0805,
        v_reset: float | Tensor = -70.6,
        v_peak: float | Tensor | None = None,
        **kwargs,
    ) -> None:
        super().__init__(n, **kwargs)
        self.add_parameter("tau_mem", tau_mem, positive=True)
        self.add_parameter("tau_w", tau_w, positive=True)
        self.add_parameter("delta_t", delta_t, positive=True)
        for name, value in dict(r=r, v_leak=v_leak, v_t=v_t, a=a, b=b, v_reset=v_reset).items():
            self.add_parameter(name, value)
        if v_peak is None:  # derived in float64 from the exact values (exact under .double())
            v_peak = (self.exact_value("v_t") + 5 * self.exact_value("delta_t")).tolist()
        self.add_parameter("v_peak", v_peak)
        check_reset_below(self, "v_reset", "v_peak")

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        spike_current = self.delta_t * torch.exp((state.v - self.v_t) / self.delta_t)
        dv = (self.v_leak - state.v + spike_current + self.r * (input - state.w)) / self.tau_mem
        dw = (self.a * (state.v - self.v_leak) - state.w) / self.tau_w
        return (dv, dw)

    def threshold(self, state: tuple) -> Tensor:
        return state.v - self.v_peak

    def reset(self, state: tuple) -> tuple:
        return state._replace(v=torch.zeros_like(state.v) + self.v_reset, w=state.w + self.b)
