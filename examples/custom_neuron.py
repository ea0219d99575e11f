"""Two ways to define your own neuron model, simulated in discrete and in continuous time.

1. Subclass :class:`ctsnn.NeuronModel`: name the state variables and write ``dynamics``,
   ``threshold``, ``reset`` (and, for a linear model, the closed-form ``flow``).
2. Write the equations as strings: ``ctsnn.from_equations(...)`` parses them
   with sympy and compiles them to torch; a linear model gets an exact flow automatically.

Run: ``python examples/custom_neuron.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import torch
from torch import Tensor

import ctsnn


class LeakyIF(ctsnn.NeuronModel):
    """``tau dv/dt = -v + I``; spike when ``v`` reaches 1, then ``v <- 0``.

    Dimensionless ``v``; ``tau`` in seconds (per neuron ``[n]``); state ``[B, n]``.
    """

    state_names = ("v",)
    jump_target = "v"
    monotone = True

    def __init__(self, n: int, *, tau: float | Tensor = 0.02, **kwargs) -> None:
        super().__init__(n, **kwargs)
        self.add_parameter("tau", tau, positive=True)

    def dynamics(self, t: Tensor, state: tuple, input: Tensor) -> tuple:
        return ((input - state.v) / self.tau,)

    def threshold(self, state: tuple) -> Tensor:
        return state.v - 1.0

    def reset(self, state: tuple) -> tuple:
        return state._replace(v=torch.zeros_like(state.v))

    def flow(self, state: tuple, input: Tensor, h: Tensor) -> tuple:
        """Exact solution after ``h`` seconds with a constant input."""
        return state._replace(v=input + (state.v - input) * torch.exp(-h / self.tau))


def adex(n: int) -> ctsnn.NeuronModel:
    """Adaptive exponential integrate-and-fire from equation strings (mV, seconds)."""
    return ctsnn.from_equations(
        """
        dv/dt = (E_L - v + spike_current - w + I) / tau_m
        dw/dt = (a*(v - E_L) - w) / tau_w
        spike_current = delta_T * exp((v - v_T) / delta_T)   # helper expression
        """,
        threshold="v >= v_peak",
        reset="v = v_r; w = w + b",
        parameters=dict(E_L=-70.0, v_T=-50.0, delta_T=2.0, tau_m=0.02, tau_w=0.1,
                        a=torch.tensor([0.0, 2.0, 4.0]), b=5.0, v_peak=-40.0, v_r=-58.0),
        n=n, initial={"v": "E_L"}, positive=("tau_m", "tau_w", "delta_T"), name="EqAdEx",
    )


def show(title: str, result: ctsnn.SimulationResult) -> None:
    spikes = result.spikes
    print(title)
    for unit in range(spikes.n_units):
        times = spikes.times[(spikes.units == unit) & (spikes.batch == 0)]
        ms = ", ".join(f"{1e3 * t:.4f}" for t in times.tolist())
        print(f"  neuron {unit}: {len(times):2d} spikes at [{ms}] ms")


def main() -> None:
    torch.set_default_dtype(torch.float64)
    # constant drive per neuron, one sample: [T, B=1, N=3]
    lif = LeakyIF(3, tau=0.02)
    drive = torch.tensor([1.2, 1.5, 2.5]).expand(100, 1, 3).contiguous()
    for time in ("discrete", "continuous"):
        show(f"LeakyIF (subclass, exact flow), {time} time, dt = 1 ms",
             ctsnn.simulate(lif, drive, dt=1e-3, time=time))

    lif_eq = ctsnn.from_equations(
        "dv/dt = (I - v)/tau", threshold="v >= 1", reset="v = 0",
        parameters={"tau": 0.02}, n=3,
    )
    print(f"equation LIF: has_flow = {lif_eq.has_flow} (linear -> exact closed-form flow)")
    show("equation LIF, continuous time", ctsnn.simulate(lif_eq, drive, dt=1e-3, time="continuous"))

    model = adex(3)  # a = 0, 2, 4: stronger adaptation from neuron to neuron
    print(f"{type(model).__name__}: has_flow = {model.has_flow} (non-linear -> Runge-Kutta)")
    current = torch.full((500, 1, 3), 40.0)  # 0.1 s of constant 40 mV drive
    for time in ("discrete", "continuous"):
        show(f"{type(model).__name__} (equations, rk4), {time} time, dt = 0.2 ms",
             ctsnn.simulate(model, current, dt=2e-4, time=time, method="rk4"))


if __name__ == "__main__":
    main()
