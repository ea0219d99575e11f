"""Quadratic integrate-and-fire models: QIF and Izhikevich."""

from __future__ import annotations

import torch
from torch import Tensor

from .adaptive import check_reset_below
from .base import NeuronModel


class QIF(NeuronModel):
    """Quadratic integrate-and-fire.

    ``tau_mem dv/dt = a (v - v_rest)(v - v_crit) + r I``; spike when ``v`` reaches ``v_peak``,
    then ``v <- v_reset``. Dimensionless voltages, seconds.
    """

    state_names = ("v",)
    jump_target = "v"
    threshold_variable = "v"
    monotone = True
    initial_values = {"v": "v_rest"}

    def __init__(
        self,
        n: int,
        *,
        tau_mem: float | Tensor = 0.01,
        a: float | Tensor = 1.0,
        r: float | Tensor = 1.0,
        v_rest: float | Tensor = 0.0,
        v_crit: float | Tensor = 1.0,
        v_peak: float | Tensor = 10.0,
        v_reset: float | Tensor = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(n, **kwargs)
        self.add_parameter("tau_mem", tau_mem, positive=True)
        for name, value in dict(a=a, r=r, v_rest=v_rest, v_crit=v_crit, v_peak=v_peak,
                                v_reset=v_reset).items():
            self.add_parameter(name, value)
        if (self.v_reset >= self.v_peak).any():
            raise ValueError("QIF: v_reset must be below v_peak")

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        dv = self.a * (state.v - self.v_rest) * (state.v - self.v_crit) + self.r * input
        return (dv / self.tau_mem,)

    def threshold(self, state: tuple) -> Tensor:
        return state.v - self.v_peak

    def reset(self, state: tuple) -> tuple:
        return state._replace(v=torch.zeros_like(state.v) + self.v_reset)


class Izhikevich(NeuronModel):
    """Izhikevich (2003) simple model, with its constants per millisecond.

    ``dv/dt = (0.04 v^2 + 5 v + 140 - u + I) / ms``, ``du/dt = a (b v - u) / ms``; spike when
    ``v`` reaches ``v_peak`` (30 mV): ``v <- c``, ``u <- u + d``. Defaults: regular spiking
    (a = 0.02, b = 0.2, c = -65, d = 8). ``I`` in the model's own units (mV/ms).
    """

    state_names = ("v", "u")
    jump_target = "v"
    threshold_variable = "v"
    clamped = ("v",)

    def __init__(
        self,
        n: int,
        *,
        a: float | Tensor = 0.02,
        b: float | Tensor = 0.2,
        c: float | Tensor = -65.0,
        d: float | Tensor = 8.0,
        v_peak: float | Tensor = 30.0,
        time_unit: float = 1e-3,
        **kwargs,
    ) -> None:
        super().__init__(n, **kwargs)
        for name, value in dict(a=a, b=b, c=c, d=d, v_peak=v_peak).items():
            self.add_parameter(name, value)
        check_reset_below(self, "c", "v_peak")
        self.add_parameter("time_unit", time_unit, positive=True)

    def initial_state(self, batch_size: int, **kw) -> tuple:
        kw.setdefault("v", self.c)
        kw.setdefault("u", self.b * self.c)
        return super().initial_state(batch_size, **kw)

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        v, u = state.v, state.u
        dv = (0.04 * v * v + 5.0 * v + 140.0 - u + input) / self.time_unit
        du = self.a * (self.b * v - u) / self.time_unit
        return (dv, du)

    def threshold(self, state: tuple) -> Tensor:
        return state.v - self.v_peak

    def reset(self, state: tuple) -> tuple:
        return state._replace(v=torch.zeros_like(state.v) + self.c, u=state.u + self.d)
