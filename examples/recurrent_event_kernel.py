"""The compiled recurrent event-driven engine: a recurrent CubaLIF layer at the cost of events.

The hidden layer of the ``eventprop_shd_rec`` recipe (input -> recurrent CubaLIF -> CubaLI
readout, SEEDS C1-C2: tau_mem 20 ms, tau_syn 5 ms, zero-delay recurrence unless
``--rec-delay`` is given), reduced in width and duration, fed SHD-like random input spikes.
Without autograd (and in the forward of ``gradient="adjoint"``) the compiled kernel serves the
recurrent layer automatically; ``ctsnn.compiled.use_kernels(False)`` forces the pure-PyTorch
reference engine. Both give the same spikes (float64: to rounding). Prints both forward times
and, with ``--train-step``, the time of one EventProp training step (forward + backward of the
whole network) with the kernels on and off.

Run: ``python examples/recurrent_event_kernel.py [--hidden 64] [--duration 0.1] [--batch 2]
[--rec-delay 0.0] [--train-step] [--no-reference]`` (``--no-reference``: time the kernel alone,
with its CPU time; at the recipe's full width, ``--hidden 512``, the reference takes hours).
"""

from __future__ import annotations

import argparse
import time

import torch

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.config.eventprop import EventPropConfig, EventPropNet


def _input(n_in: int, duration: float, batch: int, dt: float, rate: float) -> ctsnn.Spikes:
    """Uniform random spikes, ``rate`` Hz per input channel (SHD is bursty: at ~60 Hz of
    uniform input the recipe's hidden layer fires)."""
    n_events = int(rate * duration * n_in * batch)
    return ctsnn.Spikes.from_events(
        torch.rand(n_events, dtype=torch.float64) * duration,
        torch.randint(0, n_in, (n_events,)), torch.randint(0, batch, (n_events,)), dt=dt,
        n_steps=round(duration / dt), batch_size=batch, n_units=n_in)


def _forward(net: EventPropNet, spikes: ctsnn.Spikes) -> tuple[float, float, ctsnn.Spikes]:
    """Wall and CPU seconds of the recurrent hidden layer's forward (no autograd) and its
    spikes."""
    start, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        res = ctsnn.simulate(net.layers[0], spikes)
    return time.perf_counter() - start, time.process_time() - cpu, res.spikes


def _train_step(net: EventPropNet, spikes: ctsnn.Spikes, labels: torch.Tensor) -> float:
    net.zero_grad()
    start = time.perf_counter()
    loss = net.loss(net(spikes), labels)
    loss.backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-in", type=int, default=700)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--duration", type=float, default=0.1, help="simulated time (s)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rate", type=float, default=60.0, help="input rate per channel (Hz)")
    parser.add_argument("--rec-delay", type=float, default=0.0,
                        help="upper end of the uniform recurrent delays (s; recipe: 0)")
    parser.add_argument("--train-step", action="store_true",
                        help="also time one training step with the kernels on and off")
    parser.add_argument("--no-reference", action="store_true",
                        help="time the kernel alone (no reference run, no training step)")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = EventPropConfig(n_in=args.n_in, hidden=(args.hidden,), n_out=20,
                          rec_delay_init=(0.0, args.rec_delay), max_delay=1.0)
    net = EventPropNet(cfg, dtype=torch.float64)
    spikes = _input(args.n_in, args.duration, args.batch, cfg.dt, args.rate)
    labels = torch.randint(0, 20, (args.batch,))
    _forward(net, _input(args.n_in, 0.01, 1, cfg.dt, args.rate))  # compile (cached on disk)
    if args.no_reference:
        if args.train_step:
            parser.error("--train-step runs the reference: drop --no-reference")
        wall, cpu, a = _forward(net, spikes)
        print(f"recurrent layer {args.n_in} -> {args.hidden} (recurrent CubaLIF), "
              f"T = {args.duration} s, batch {args.batch}, {len(spikes)} input spikes")
        print(f"forward (kernel): {wall:.3f} s wall, {cpu:.3f} s CPU; {len(a)} spikes")
        return
    times, out = {}, {}
    for kernels in (True, False):
        with use_kernels(kernels):
            times[kernels], _, out[kernels] = _forward(net, spikes)
    a, b = out[True], out[False]
    same = len(a) == len(b) and torch.equal(a.units, b.units) and torch.equal(a.batch, b.batch)
    err = float((a.times - b.times).abs().max()) if same and len(a) else 0.0
    print(f"recurrent layer {args.n_in} -> {args.hidden} (recurrent CubaLIF), "
          f"T = {args.duration} s, batch {args.batch}, {len(spikes)} input spikes")
    print(f"forward: kernel {times[True]:.3f} s, reference {times[False]:.3f} s "
          f"({times[False] / max(times[True], 1e-9):.0f}x); {len(a)} spikes, same spikes: "
          f"{same}, max |dt| = {err:.1e} s")
    if args.train_step:
        step = {}
        for kernels in (True, False):
            with use_kernels(kernels):
                step[kernels] = _train_step(net, spikes, labels)
        print(f"training step (EventProp): kernels on {step[True]:.2f} s, off {step[False]:.2f} s "
              f"({step[False] / max(step[True], 1e-9):.1f}x)")


if __name__ == "__main__":
    main()
