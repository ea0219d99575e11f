"""Spike containers, exact delayed arrivals and the discrete/continuous correspondence.

1. Build `Spikes` from exact event times, look at the grid view (step + offset), the raster
   and the NIR-style padded arrays.
2. Send them through synapses with per-synapse delays into LIF neurons: in continuous time a
   spike at t arrives at t + d exactly; in discrete time d is rounded to whole steps.
3. Show that continuous-time spike times do not depend on the grid step.

Run: ``python examples/spikes_and_delays.py`` (a second or two).
"""

from __future__ import annotations

import torch

import ctsnn

torch.set_default_dtype(torch.float64)

# 1. Events at arbitrary real times (seconds) for 2 samples and 3 input channels.
times = torch.tensor([0.0013, 0.0021, 0.0047, 0.0010, 0.0062])
units = torch.tensor([0, 2, 1, 1, 0])
batch = torch.tensor([0, 0, 0, 1, 1])
spikes = ctsnn.Spikes.from_events(times, units, batch, dt=1e-3, n_steps=10, n_units=3)
print(spikes)
print("step  :", spikes.step.tolist())
print("offset:", [round(o, 6) for o in spikes.offset.tolist()])
print("raster sample 0:\n", spikes.raster()[:, 0].T)
padded_times, padded_units = spikes.to_padded()
print("padded times:\n", padded_times, "\npadded units:\n", padded_units)

# 2. Per-synapse delays (seconds) into 2 LIF neurons.
weight = torch.tensor([[0.6, 0.5, 0.7], [1.2, 0.0, 0.0]])
delay = torch.tensor([[0.0020, 0.0005, 0.0], [0.00333, 0.0, 0.0]])
layer = ctsnn.Layer(ctsnn.LIF(2, tau_mem=0.02), weight, delay=delay)
for time in ("continuous", "discrete"):
    res = ctsnn.simulate(layer, spikes, dt=1e-3, time=time)
    print(f"{time:>10}: spike times {res.spikes.times.tolist()} units {res.spikes.units.tolist()}"
          f" samples {res.spikes.batch.tolist()}")

# 3. Continuous time: the grid step changes the cost, not the spike times.
for dt in (1e-3, 2.5e-4, 1e-5):
    res = ctsnn.simulate(layer, spikes.rebin(dt), dt=dt, time="continuous")
    print(f"dt = {dt:g} s: {[f'{t:.15f}' for t in res.spikes.times.tolist()]}")
