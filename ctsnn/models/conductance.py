"""Conductance-based Hodgkin-Huxley neuron (no reset: a spike is a voltage crossing)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import NeuronModel


def _x_over_expm1(x: Tensor) -> Tensor:
    """``x / (1 - exp(-x))``, continuous at ``x = 0`` (where the rate formulas are 0/0)."""
    small = x.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1.0 + 0.5 * x, safe / -torch.expm1(-safe))


class HodgkinHuxley(NeuronModel):
    """Hodgkin-Huxley squid axon (1952), modern sign convention (rest near -65 mV).

    ``C dV/dt = I - g_Na m^3 h (V - E_Na) - g_K n^4 (V - E_K) - g_L (V - E_L)`` with the classic
    rate functions (ms⁻¹), converted to seconds by ``time_unit``. Units: mV, µF/cm², mS/cm²,
    µA/cm². A spike is the upward crossing of ``v_spike`` (0 mV); the state is not reset.
    """

    state_names = ("v", "m", "h", "n")
    jump_target = "v"
    threshold_variable = "v"

    def __init__(
        self,
        n: int,
        *,
        c_m: float | Tensor = 1.0,
        g_na: float | Tensor = 120.0,
        g_k: float | Tensor = 36.0,
        g_l: float | Tensor = 0.3,
        e_na: float | Tensor = 50.0,
        e_k: float | Tensor = -77.0,
        e_l: float | Tensor = -54.387,
        v_spike: float | Tensor = 0.0,
        v_rest: float | Tensor = -65.0,
        time_unit: float = 1e-3,
        **kwargs,
    ) -> None:
        super().__init__(n, **kwargs)
        self.add_parameter("c_m", c_m, positive=True)
        self.add_parameter("time_unit", time_unit, positive=True)
        for name, value in dict(g_na=g_na, g_k=g_k, g_l=g_l, e_na=e_na, e_k=e_k, e_l=e_l,
                                v_spike=v_spike, v_rest=v_rest).items():
            self.add_parameter(name, value)

    @staticmethod
    def rates(v: Tensor) -> tuple[Tensor, ...]:
        """Rates ``(a_m, b_m, a_h, b_h, a_n, b_n)`` in ms⁻¹ at voltage ``v`` (mV)."""
        a_m = _x_over_expm1((v + 40.0) / 10.0)
        b_m = 4.0 * torch.exp(-(v + 65.0) / 18.0)
        a_h = 0.07 * torch.exp(-(v + 65.0) / 20.0)
        b_h = 1.0 / (1.0 + torch.exp(-(v + 35.0) / 10.0))
        a_n = 0.1 * _x_over_expm1((v + 55.0) / 10.0)
        b_n = 0.125 * torch.exp(-(v + 65.0) / 80.0)
        return a_m, b_m, a_h, b_h, a_n, b_n

    def initial_state(self, batch_size: int, **kw) -> tuple:
        v = torch.as_tensor(kw.get("v", self.v_rest), dtype=kw.get("dtype") or self.c_m.dtype)
        a_m, b_m, a_h, b_h, a_n, b_n = self.rates(v)
        kw.setdefault("v", v)
        kw.setdefault("m", a_m / (a_m + b_m))
        kw.setdefault("h", a_h / (a_h + b_h))
        kw.setdefault("n", a_n / (a_n + b_n))
        return super().initial_state(batch_size, **kw)

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        v, m, h, n = state
        a_m, b_m, a_h, b_h, a_n, b_n = self.rates(v)
        i_ion = (
            self.g_na * m**3 * h * (v - self.e_na)
            + self.g_k * n**4 * (v - self.e_k)
            + self.g_l * (v - self.e_l)
        )
        k = 1.0 / self.time_unit
        return (
            k * (input - i_ion) / self.c_m,
            k * (a_m * (1 - m) - b_m * m),
            k * (a_h * (1 - h) - b_h * h),
            k * (a_n * (1 - n) - b_n * n),
        )

    def threshold(self, state: tuple) -> Tensor:
        return state.v - self.v_spike
