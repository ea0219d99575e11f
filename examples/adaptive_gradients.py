"""Spike-time gradients through an adaptive solver (dopri5) in continuous time.

An AdEx layer driven by input spikes is integrated with ``method="dopri5"``: every grid step is
integrated to the tolerance, threshold crossings are located on the accepted steps' continuous
extension and refined on the integrated solution. ``gradient="surrogate"`` (autograd through
the replayed accepted steps and the implicit-function-theorem event times) and
``gradient="adjoint"`` give the same weight gradient, which matches a central finite
difference. Run: ``python examples/adaptive_gradients.py`` (a few seconds).
"""

from __future__ import annotations

import torch

import ctsnn
from solvers.embedded import Adaptive

DT, STEPS = 1e-3, 10
METHOD = Adaptive("dopri5", rtol=1e-10, atol=1e-12)


def loss_and_count(weight: torch.Tensor, gradient: str) -> tuple[torch.Tensor, int, ctsnn.Layer]:
    """A smooth function of the output spike times, the spike count and the layer."""
    g = torch.Generator().manual_seed(1)
    times = torch.rand(8, generator=g, dtype=torch.float64) * 0.008      # seconds
    units = torch.randint(0, 2, (8,), generator=g)
    spikes = ctsnn.Spikes(times, units, torch.zeros_like(units), dt=DT, n_steps=STEPS,
                          batch_size=1, n_units=2)
    layer = ctsnn.Layer(ctsnn.AdEx(2).double(), weight, time="continuous", gradient=gradient)
    out = ctsnn.simulate(layer, spikes, dt=DT, time="continuous", method=METHOD).spikes
    return (300.0 * out.times * (1.0 + out.units)).sin().sum(), len(out), layer


def main() -> None:
    weight = torch.tensor([[14.0, 12.5], [13.0, 15.5]], dtype=torch.float64)  # mV jumps
    grads = {}
    for gradient in ("surrogate", "adjoint"):
        loss, count, layer = loss_and_count(weight.clone(), gradient)
        (grads[gradient],) = torch.autograd.grad(loss, [layer.synapse.weight])
        print(f"gradient={gradient}: {count} output spikes, dL/dw[0, 1] = "
              f"{float(grads[gradient][0, 1]):.9f}")
    eps = 1e-6
    with torch.no_grad():
        plus, minus = weight.clone(), weight.clone()
        plus[0, 1] += eps
        minus[0, 1] -= eps
        fd = (loss_and_count(plus, "surrogate")[0] - loss_and_count(minus, "surrogate")[0]) / (
            2 * eps)
    print(f"central finite difference:        dL/dw[0, 1] = {float(fd):.9f}")


if __name__ == "__main__":
    main()
