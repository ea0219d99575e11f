"""Demo: learn synaptic delays and weights with exact gradients in continuous time.

Task (:func:`ctsnn.data.spike_template_task`): each sample is one spike on each of ``n_in``
input channels. Class ``c`` has its own template of spike times; samples jitter around it. Two
current-based LIF output neurons read all inputs through learnable weights and learnable
per-synapse delays; the class is the neuron that fires first. The loss is the cross-entropy of
``-t_first / tau``. Delays can line a template's spikes up so that its neuron's inputs coincide:
exactly what delays are for.

Gradients are exact: spike times are located by root finding and differentiated by the
implicit function theorem, so ``loss.backward()`` gives dL/dw and dL/dd for every synapse.
"""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

import ctsnn
from ctsnn.data import spike_template_task
from ctsnn.dtypes import default_dtype


def build(n_in: int = 8, seed: int = 0) -> ctsnn.Layer:
    gen = torch.Generator().manual_seed(seed)
    weight = 1.6 + 0.4 * torch.rand(2, n_in, generator=gen, dtype=torch.float64)
    delay = 0.02 * torch.rand(2, n_in, generator=gen, dtype=torch.float64)
    model = ctsnn.CubaLIF(2, tau_mem=0.01, tau_syn=0.005)
    return ctsnn.Layer(model, weight, delay=delay, learn_delay=True, max_delay=0.025)


def evaluate(layer: ctsnn.Layer, spikes: ctsnn.Spikes, labels: torch.Tensor, tau: float
             ) -> tuple[float, float]:
    """(loss, accuracy) of first-spike classification."""
    with torch.no_grad():
        res = ctsnn.simulate(layer, spikes, dt=1e-3, time="continuous")
        first = res.spikes.first_times()
        loss = torch.nn.functional.cross_entropy(-first / tau, labels).item()
        acc = (first.argmin(1) == labels).double().mean().item()
    return loss, acc


def run(steps: int = 60, batch: int = 32, seed: int = 0) -> dict:
    """Train, with a progress bar; returns before/after loss and accuracy on held-out data."""
    with default_dtype(torch.float64):
        return _run(steps=steps, batch=batch, seed=seed)


def _run(steps: int = 60, batch: int = 32, seed: int = 0) -> dict:
    """Train, with a progress bar; returns before/after loss and accuracy on held-out data."""
    layer = build(seed=seed)
    test_spikes, test_labels = spike_template_task(300, seed=seed + 100)
    tau = 0.002
    before = evaluate(layer, test_spikes, test_labels, tau)
    opt = torch.optim.Adam([
        {"params": [layer.synapse.weight], "lr": 0.02},
        {"params": [layer.synapse.delay], "lr": 5e-4},  # seconds
    ])
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="learning delays (exact gradients)", ncols=100)
    for step in bar:
        spikes, labels = spike_template_task(batch, seed=seed + 1 + step)
        res = ctsnn.simulate(layer, spikes, dt=1e-3, time="continuous")
        first = res.spikes.first_times()
        loss = torch.nn.functional.cross_entropy(-first / tau, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        layer.synapse.clamp_delays_()  # delays stay within [0, max_delay]
        acc = (first.argmin(1) == labels).double().mean().item()
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}")
    after = evaluate(layer, test_spikes, test_labels, tau)
    elapsed = time.perf_counter() - start
    print(f"held-out loss {before[0]:.3f} -> {after[0]:.3f}, accuracy {before[1]:.1%} -> "
          f"{after[1]:.1%} ({steps} steps of batch {batch}, {elapsed:.1f} s)")
    d = (layer.synapse.delay.detach() * 1e3).round(decimals=1)
    print("learned delays (ms):\n" + "\n".join(f"  neuron {i}: {d[i].tolist()}" for i in range(2)))
    return {"before": before, "after": after}
