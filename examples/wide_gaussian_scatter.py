"""A wide DCLS Gaussian over sparse input spikes: the dense-window spike scatter.

At the start of DCLS training the Gaussian delay kernel covers the whole window (sigma about
K / 2), so every synapse has all ``K`` lags. On the CPU with sparse input (at most
``ctsnn.synapses.spike_scatter.MAX_WINDOW_DENSITY`` of the entries non-zero), ``Dense`` no
longer runs the dense ``conv1d`` forward and weight gradient: each input spike adds its
``[N_out, K]`` slab of the kernel into the output (``window_scatter``) and the kernel gradient
is gathered over the spikes only; the input gradient (needed only when the input is not data)
stays one ``conv1d``. This script runs one synapse both ways and checks that outputs and
gradients agree.

Run: ``python examples/wide_gaussian_scatter.py [--batch B] [--steps T] [--p P]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from ctsnn.compiled import use_kernels
from ctsnn.synapses import Dense, Gaussian

DT = 1e-3


def run(syn: Dense, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], float]:
    """Forward, a fixed random loss and backward; returns output, gradients and seconds."""
    syn.zero_grad()
    t0 = time.perf_counter()
    out = syn.jumps(x)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype)
    (out * g).sum().backward()
    seconds = time.perf_counter() - t0
    return out.detach(), [syn.weight.grad.clone(), syn.delay_steps.grad.clone()], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--p", type=float, default=0.03, help="input spike probability")
    args = parser.parse_args()
    syn = Dense(140, 64, kernel=Gaussian(), max_delay=24 * DT, dt=DT, learn_delay=True,
                pad_right="half", generator=torch.Generator().manual_seed(1))
    x = (torch.rand(args.steps, args.batch, 140,
                    generator=torch.Generator().manual_seed(2)) < args.p).float()
    for _ in range(2):  # the second round is timed (the first loads the compiled kernels)
        with use_kernels(False):
            ref_out, ref_grads, ref_s = run(syn, x)
        out, grads, s = run(syn, x)
    err = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))
              for a, b in zip([out, *grads], [ref_out, *ref_grads], strict=True))
    print(f"sigma = {float(syn.sigma):.2f} steps, K = {syn.kernel_size}, input density "
          f"{float((x != 0).float().mean()):.3f}")
    print(f"forward + backward: window scatter {s * 1e3:.1f} ms, conv1d reference "
          f"{ref_s * 1e3:.1f} ms")
    print(f"largest relative difference (output, dL/dw, dL/dd): {err:.2e}")


if __name__ == "__main__":
    main()
