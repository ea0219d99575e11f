"""DelRec's recurrent delays on the compiled spike scatter, against the PyTorch ring reference.

A layer of LIF neurons with learnable recurrent axonal delays (``RecurrentDense`` with
``Triangle(sigma)``, DelRec) trains one step with the compiled kernels (the default on the
CPU: each step's spikes are scattered into the future ring slots they reach, backward is the
transpose, ``ctsnn.synapses.ring_scatter``; with LIF neurons the layer's neurons and the scatter
run together over all steps in one autograd node, ``ctsnn.engine.compiled.lif_recurrent``) and
once with the reference (``ctsnn.compiled.use_kernels(False)``: the engine's step loop): same
spikes, same gradients for weights and delays.

Run: ``python examples/delrec_scatter_kernel.py [--batch B] [--steps T] [--sigma S]``.
"""

from __future__ import annotations

import argparse
import time

import torch

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.surrogate import atan
from ctsnn.synapses import Dense, RecurrentDense, Triangle
from ctsnn.synapses.init import uniform_delays

DT = 1e-3


def build(n_in: int, n: int, sigma: float, seed: int = 0) -> ctsnn.Layer:
    """``n_in -> n`` LIF layer with recurrent axonal delays ``U(2, 12)`` steps."""
    g = torch.Generator().manual_seed(seed)
    rec = RecurrentDense(n, kernel=Triangle(sigma), dt=DT, per="axon", learn_delay=True,
                         delay_init=uniform_delays(2 * DT, 12 * DT), max_delay=16 * DT,
                         generator=g)
    syn = Dense(n_in, n, generator=g, weight_init="kaiming_uniform")
    with torch.no_grad():
        syn.weight.mul_(3.0)
    return ctsnn.Layer(ctsnn.LIF(n, tau_mem=3 * DT), syn, recurrent=rec, method="euler",
                       surrogate=atan(2.0))


def step(layer: ctsnn.Layer, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward, spike-count loss, backward; returns (spikes, gradients by name)."""
    layer.zero_grad()
    out = layer(x, dt=DT, input_as="jump")[0].raster()
    (out.sum(0) - 3.0).pow(2).mean().backward()
    return out.detach(), {k: p.grad.clone() for k, p in layer.named_parameters()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=2.0)
    args = parser.parse_args()
    layer = build(40, 64, args.sigma)
    g = torch.Generator().manual_seed(1)
    dtype = layer.recurrent.weight.dtype
    x = (torch.rand(args.steps, args.batch, 40, generator=g) < 0.05).to(dtype)
    results = {}
    for on in (True, False):
        with use_kernels(on):
            step(layer, x)  # warm-up (the first kernel call compiles or loads the cache)
            t0 = time.perf_counter()
            results[on] = (*step(layer, x), time.perf_counter() - t0)
    (out_k, grads_k, t_k), (out_r, grads_r, t_r) = results[True], results[False]
    print(f"output spikes: kernels {int(out_k.sum())}, reference {int(out_r.sum())}, "
          f"identical: {torch.equal(out_k, out_r)}")
    for name in ("recurrent.weight", "recurrent.delay_steps"):
        a, b = grads_k[name], grads_r[name]
        rel = float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))
        print(f"{name}: largest relative gradient difference ({b.dtype}) {rel:.2e}")
    print(f"training step: kernels {t_k * 1e3:.1f} ms, reference {t_r * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
