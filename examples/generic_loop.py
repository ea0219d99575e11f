"""Simulate an equation-string model fast: the compiled generic loop.

A quadratic integrate-and-fire neuron with adaptation, written as equations, in a layer of 50
neurons behind 40 Poisson inputs with per-synapse delays, simulated in continuous time with
RK4 (the model has no closed form) and no autograd. The compiled loop serves the call
automatically: the equations are printed as numba code (the first call compiles them, tens of
seconds on a busy machine; later calls in the process reuse it).
``ctsnn.compiled.use_kernels(False)`` forces the pure-PyTorch reference engine; both give the
same spikes (float64: spike times to rounding).

Run: ``python examples/generic_loop.py [--duration 0.1]``.
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
    dt, n_in, n_out = 1e-3, 40, 50
    n_steps = round(args.duration / dt)
    n_events = int(30 * args.duration * n_in)  # 30 Hz Poisson-like input
    spikes = ctsnn.Spikes.from_events(
        torch.rand(n_events, dtype=torch.float64) * args.duration,
        torch.randint(0, n_in, (n_events,)), dt=dt, n_steps=n_steps, batch_size=1,
        n_units=n_in)
    model = ctsnn.from_equations(
        """
        dv/dt = ((v - v_r)*(v - v_c) - w)/tau
        dw/dt = (a*(v - v_r) - w)/tau_w
        """,
        threshold="v >= v_peak", reset="v = v_r; w += b",
        parameters=dict(tau=0.01, tau_w=0.1, v_r=0.0, v_c=1.0, v_peak=20.0, a=0.5, b=0.5),
        n=n_out, name="AdaptiveQIF").double()
    layer = ctsnn.Layer(model, torch.rand(n_out, n_in, dtype=torch.float64) * 1.2,
                        delay=torch.rand(n_out, n_in, dtype=torch.float64) * 0.01,
                        time="continuous")
    results = {}
    for kernels in (True, False):
        with use_kernels(kernels), torch.no_grad():
            if kernels:  # the first call compiles the model's loop
                start = time.perf_counter()
                ctsnn.simulate(layer, spikes)
                print(f"first call (compiles): {time.perf_counter() - start:.1f} s")
            start = time.perf_counter()
            results[kernels] = ctsnn.simulate(layer, spikes)
            took = time.perf_counter() - start
        name = "compiled loop   " if kernels else "reference engine"
        print(f"{name}: {len(results[kernels].spikes)} spikes in {took:.3f} s")
    a, b = results[True].spikes, results[False].spikes
    same = len(a) == len(b) and torch.equal(a.units, b.units) and torch.equal(a.batch, b.batch)
    error = float((a.times - b.times).abs().max()) if same and len(a) else 0.0
    print(f"same spikes: {same}; largest spike-time difference: {error:.2e} s")


if __name__ == "__main__":
    main()
