"""Exact EventProp gradients through a recurrent spiking layer, compiled.

A ``CubaLIF`` hidden layer with its own delayed recurrence (``RecurrentDense``, learnable
recurrent weights and delays) and a ``CubaLI`` readout, all with ``gradient="adjoint"``. On the
CPU the recurrent layer's backward runs the compiled kernel
(``ctsnn.gradients.eventprop.recurrent_kernels``); ``--compare`` also runs the reference (the
generic adjoint, ``ctsnn.compiled.use_kernels(False)``) and prints the largest gradient
difference and both backward times.

Run: ``python examples/eventprop_recurrent.py [--compare]``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.synapses import RecurrentDense

DT, STEPS, N_IN, N_HID, N_OUT, BATCH = 1e-3, 60, 20, 8, 3, 2


def step(kernels: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward + backward; returns (backward seconds, gradients by name)."""
    g = torch.Generator().manual_seed(0)
    n_ev = 80
    spikes = ctsnn.Spikes(torch.rand(n_ev, generator=g) * 0.04,
                          torch.randint(0, N_IN, (n_ev,), generator=g),
                          torch.randint(0, BATCH, (n_ev,), generator=g),
                          dt=DT, n_steps=STEPS, batch_size=BATCH, n_units=N_IN)
    rec = RecurrentDense(weight=0.3 * torch.randn(N_HID, N_HID, generator=g),
                         delay=0.01 * torch.rand(N_HID, N_HID, generator=g), learn_delay=True)
    hidden = ctsnn.Layer(ctsnn.CubaLIF(N_HID, tau_mem=0.02, tau_syn=0.005),
                         0.8 + 0.5 * torch.randn(N_HID, N_IN, generator=g),
                         delay=0.02 * torch.rand(N_HID, N_IN, generator=g), learn_delay=True,
                         recurrent=rec, time="continuous", gradient="adjoint")
    readout = ctsnn.Layer(ctsnn.CubaLI(N_OUT, tau_mem=0.02, tau_syn=0.005),
                          0.5 * torch.randn(N_OUT, N_HID, generator=g), time="continuous",
                          gradient="adjoint")
    labels = torch.arange(BATCH) % N_OUT
    with use_kernels(kernels):
        res = ctsnn.simulate([hidden, readout], spikes, dt=DT, time="continuous",
                             readout="avg_exp")
        loss = F.cross_entropy(res.output, labels)
        params = {"w_in": hidden.synapse.weight, "d_in": hidden.synapse.delay,
                  "w_rec": rec.weight, "d_rec": rec.delay, "w_out": readout.synapse.weight}
        t0 = time.perf_counter()
        grads = torch.autograd.grad(loss, list(params.values()))
        seconds = time.perf_counter() - t0
    print(f"kernels={kernels}: loss {loss.item():.4f}, hidden spikes "
          f"{len(res.layers[0].spikes)}, backward {seconds:.3f} s")
    return seconds, dict(zip(params, grads, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", action="store_true", help="also run the reference backward")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    step(True)  # the first call compiles the kernels (cached on disk afterwards)
    _, grads = step(True)
    for name, g in grads.items():
        print(f"  |dL/d{name}| = {g.norm().item():.4e}")
    if args.compare:
        _, ref = step(False)
        worst = max(float((grads[k] - ref[k]).abs().max() / ref[k].abs().max()) for k in ref)
        print(f"largest relative difference to the reference: {worst:.1e}")


if __name__ == "__main__":
    main()
