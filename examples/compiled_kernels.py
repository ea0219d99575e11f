"""Compiled CPU kernels on the grid: spike-sparse delayed synapses and the fused multi-step LIF.

Two delayed layers (DCLS-style grid synapses with learnable delays, then LIF neurons trained
with a surrogate gradient) run once with the compiled kernels (the default on the CPU) and once
with the pure-PyTorch reference path (``ctsnn.compiled.use_kernels(False)``). Both give the same
spikes and the same gradients; the kernels are selected automatically:

* ``Dense`` with a ``Rounded``, ``Triangle`` or narrow ``Gaussian`` kernel scatters each input
  spike into its delayed output slots when the input is sparse (``ctsnn.synapses.spike_scatter``);
* a feed-forward ``LIF`` / ``CubaLIF`` layer runs all its time steps, forward and backward, in
  one kernel (``ctsnn.engine.compiled.lif_bptt``).

numba's JIT runtime (about 0.6 s and 60 MiB, once per process) starts when the first CPU module
is built (``ctsnn.compiled.prepare_kernel_runtime``), not inside the first step.

Run: ``python examples/compiled_kernels.py [--batch B] [--steps T]`` (seconds on one core; the
first run also compiles the kernels, cached afterwards).
"""

from __future__ import annotations

import argparse
import time

import torch

import ctsnn
from ctsnn.compiled import prepare_kernel_runtime, use_kernels
from ctsnn.surrogate import atan
from ctsnn.synapses import Dense, Triangle

DT = 1e-3


def build(seed: int = 0) -> torch.nn.ModuleList:
    """140 -> 128 -> 20 with triangle-interpolated learnable delays up to 24 steps."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for n_in, n_out in ((140, 128), (128, 20)):
        syn = Dense(n_in, n_out, kernel=Triangle(), max_delay=24 * DT, dt=DT, learn_delay=True,
                    pad_right="half", generator=g, weight_init="kaiming_uniform")
        with torch.no_grad():
            syn.weight.mul_(4.0)
        lif = ctsnn.LIF(n_out, tau_mem=2 * DT)
        layers.append(ctsnn.Layer(lif, syn, method="euler", surrogate=atan(2.0)))
    return torch.nn.ModuleList(layers)


def step(net: torch.nn.ModuleList, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Forward through both layers, spike-count loss, backward; returns (output, gradients)."""
    net.zero_grad()
    h = x
    for layer in net:
        h = layer(h, dt=DT, input_as="jump")[0].raster()
    loss = (h.sum(0) - 2.0).pow(2).mean()
    loss.backward()
    return h.detach(), [p.grad.clone() for p in net.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    t0 = time.perf_counter()
    net = build()  # the first CPU module built starts numba's runtime
    print(f"built in {time.perf_counter() - t0:.2f} s; numba runtime ready: "
          f"{prepare_kernel_runtime()}")  # a no-op now: already started by the build
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.steps, args.batch, 140, generator=g) < 0.05).float()
    results = {}
    for on in (True, False):
        with use_kernels(on):
            step(net, x)  # warm-up (the first kernel call compiles or loads the cache)
            t0 = time.perf_counter()
            results[on] = step(net, x)
            results[on] = (*results[on], time.perf_counter() - t0)
    (out_k, grads_k, t_k), (out_r, grads_r, t_r) = results[True], results[False]
    diff = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))
               for a, b in zip(grads_k, grads_r, strict=True))
    print(f"output spikes: kernels {int(out_k.sum())}, reference {int(out_r.sum())}, "
          f"identical: {torch.equal(out_k, out_r)}")
    print(f"largest relative gradient difference (float32): {diff:.2e}")
    print(f"training step: kernels {t_k * 1e3:.1f} ms, reference {t_r * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
