"""Choose the gradient method per layer and mix them in one network (continuous time).

Network (2 classes: which half of 8 input channels bursts first, the other half 12 ms later):

1. a hidden layer of a neuron model written as equation strings (an exponential
   integrate-and-fire with adaptation, learnable ``b``), trained with ``gradient="adjoint"``:
   the generic adjoint derives the adjoint equations and jumps from the model's own
   equations (vector-Jacobian products), nothing written per model;
2. a recurrent current-based LIF layer (exact recurrent delays), ``gradient="surrogate"``:
   autograd through the continuous simulation, spike times differentiable;
3. a current-based leaky-integrator readout, ``gradient="adjoint"`` (closed-form EventProp),
   loss = cross-entropy of the exponentially weighted mean voltage.

Each layer's backward hands the layer below the gradient w.r.t. the spike times (and
amplitudes) it received, so the choice is per layer. Delays and weights of every layer learn.

Run: ``python examples/mixed_gradients.py`` (about 45 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.synapses import RecurrentDense

DT, STEPS = 1e-3, 40  # seconds; 40 ms per sample


def exp_if(n: int) -> ctsnn.NeuronModel:
    """Adaptive exponential IF in dimensionless units, from equation strings."""
    return ctsnn.from_equations(
        """
        dv/dt = (-v + 0.2*exp((v - 1)/0.2) - w) / tau_m
        dw/dt = -w / tau_w
        """,
        threshold="v >= 2", reset="v = 0; w = w + b",
        parameters=dict(tau_m=0.01, tau_w=0.05, b=0.1), n=n, learnable=("b",),
        positive=("tau_m", "tau_w"), name="ExpIF",
    )


def make_data(batch: int, generator: torch.Generator) -> tuple[ctsnn.Spikes, torch.Tensor]:
    """Class 0: channels 0-3 fire around 3 ms, channels 4-7 around 15 ms; class 1: reversed."""
    labels = torch.randint(0, 2, (batch,), generator=generator)
    times, units, batches = [], [], []
    for b, y in enumerate(labels.tolist()):
        for ch in range(8):
            early = (ch < 4) == (y == 0)
            if not early and ch % 2:  # the late half is sparser: order and identity both tell
                continue
            t = (0.003 if early else 0.015) + 0.002 * torch.rand((), generator=generator).item()
            times.append(t)
            units.append(ch)
            batches.append(b)
    spikes = ctsnn.Spikes(torch.tensor(times), torch.tensor(units), torch.tensor(batches),
                          dt=DT, n_steps=STEPS, batch_size=batch, n_units=8)
    return spikes, labels


def build(generator: torch.Generator) -> list[ctsnn.Layer]:
    def rand(*shape: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=generator)

    hidden = ctsnn.Layer(exp_if(12), rand(12, 8, lo=0.5, hi=1.5), delay=rand(12, 8, lo=0, hi=0.01),
                         learn_delay=True, max_delay=0.02, time="continuous", gradient="adjoint")
    recurrent = RecurrentDense(weight=rand(10, 10, lo=-0.3, hi=0.3),
                               delay=rand(10, 10, lo=DT, hi=0.005), learn_delay=True,
                               max_delay=0.02)
    middle = ctsnn.Layer(ctsnn.CubaLIF(10, tau_mem=0.02, tau_syn=0.005),
                         rand(10, 12, lo=0.5, hi=2.5), delay=rand(10, 12, lo=0, hi=0.01),
                         learn_delay=True, max_delay=0.02, recurrent=recurrent,
                         time="continuous", gradient="surrogate")
    readout = ctsnn.Layer(ctsnn.CubaLI(2, tau_mem=0.02, tau_syn=0.005),
                          rand(2, 10, lo=-2.0, hi=2.0), delay=rand(2, 10, lo=0, hi=0.01),
                          learn_delay=True, max_delay=0.02, time="continuous", gradient="adjoint")
    return [hidden, middle, readout]


def main(steps: int = 14, batch: int = 8, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    layers = build(gen)
    net = torch.nn.ModuleList(layers)
    delays = [p for name, p in net.named_parameters() if name.endswith("delay")]
    others = [p for name, p in net.named_parameters() if not name.endswith("delay")]
    opt = torch.optim.Adam([{"params": others, "lr": 0.1}, {"params": delays, "lr": 1e-3}])
    t_end = DT * STEPS

    def readout(t: torch.Tensor, state: tuple) -> torch.Tensor:
        return state.v * torch.exp(-t / t_end) / t_end

    held_out = make_data(32, torch.Generator().manual_seed(seed + 1))

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            z = ctsnn.simulate(layers, held_out[0], readout=readout).output
        return (F.cross_entropy(z, held_out[1]).item(),
                (z.argmax(1) == held_out[1]).double().mean().item())

    for k, layer in enumerate(layers):
        print(f"layer {k}: {type(layer.model).__name__:8s} gradient={layer.gradient.name}")
    before = evaluate()
    for step in range(steps):
        spikes, labels = make_data(batch, gen)
        res = ctsnn.simulate(layers, spikes, readout=readout)  # dt, time: from spikes, layers
        loss = F.cross_entropy(res.output, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctsnn.clamp_delays_(layers)
        with torch.no_grad():  # recurrent delays stay at least one step (causality)
            layers[1].recurrent.delay.clamp_(min=DT)
        acc = (res.output.argmax(1) == labels).double().mean().item()
        counts = [len(r.spikes) for r in res.layers[:2]]
        print(f"step {step:2d}  loss {loss.item():.4f}  accuracy {acc:.2f}  "
              f"spikes per layer {counts}  b = {layers[0].model.b.mean().item():.3f}")
    after = evaluate()
    print(f"held-out (32 samples): loss {before[0]:.4f} -> {after[0]:.4f}, "
          f"accuracy {before[1]:.2f} -> {after[1]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    main(steps=args.steps, batch=args.batch)
