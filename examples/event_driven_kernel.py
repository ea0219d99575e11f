"""The compiled event-driven engine: same spikes as the reference engine, at the cost of events.

A layer of 100 LIF neurons behind 100 inputs with per-synapse delays, simulated in continuous
time without autograd. The compiled kernel serves the call automatically (numba on the CPU);
``ctsnn.compiled.use_kernels(False)`` forces the pure-PyTorch reference engine. Both give the
same spike times (float64: to rounding) and counts.

Run: ``python examples/event_driven_kernel.py [--duration 0.1]``.
"""

from __future__ import annotations

import argparse
import time

import torch

import ctsnn
from ctsnn.compiled import use_kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=0.1, help="simulated time (s)")
    args = parser.parse_args()
    torch.manual_seed(0)
    dt, n_in, n_out = 1e-3, 100, 100
    n_steps = round(args.duration / dt)
    n_events = int(20 * args.duration * n_in)  # 20 Hz Poisson-like input
    spikes = ctsnn.Spikes.from_events(
        torch.rand(n_events, dtype=torch.float64) * args.duration,
        torch.randint(0, n_in, (n_events,)), dt=dt, n_steps=n_steps, batch_size=1,
        n_units=n_in)
    layer = ctsnn.Layer(ctsnn.LIF(n_out, tau_mem=0.01).double(),
                        torch.rand(n_out, n_in, dtype=torch.float64) * 0.3,
                        delay=torch.rand(n_out, n_in, dtype=torch.float64) * 0.025,
                        time="continuous")
    results = {}
    for kernels in (True, False):
        with use_kernels(kernels), torch.no_grad():
            if kernels:  # warm-up: the first kernel call loads (or compiles) it
                ctsnn.simulate(layer, spikes)
            start = time.perf_counter()
            results[kernels] = ctsnn.simulate(layer, spikes)
            took = time.perf_counter() - start
        name = "compiled kernel " if kernels else "reference engine"
        print(f"{name}: {len(results[kernels].spikes)} spikes in {took:.3f} s")
    a, b = results[True].spikes, results[False].spikes
    same = len(a) == len(b) and torch.equal(a.units, b.units) and torch.equal(a.batch, b.batch)
    error = float((a.times - b.times).abs().max()) if same and len(a) else 0.0
    print(f"same spikes: {same}; largest spike-time difference: {error:.2e} s")


if __name__ == "__main__":
    main()
