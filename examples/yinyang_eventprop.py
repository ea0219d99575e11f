"""Yin-Yang with exact EventProp gradients in continuous time (BENCHMARKS.md Y1).

5 input spike times (4 features + a bias spike) -> 64 CubaLIF with learnable delays (max
10 ms) -> 3 LI readouts, max-over-time cross-entropy. Trains ``--batches`` batches of
``--batch`` samples and prints the time per batch and the extrapolated epoch time (5,000
samples). ``--kernels off`` runs the pure-PyTorch reference backward instead of the compiled
kernels (``ctsnn.compiled.use_kernels``).

    python examples/yinyang_eventprop.py --batches 20 --batch 32
"""

from __future__ import annotations

import argparse
import time

import torch

import ctsnn
from ctsnn.compiled import use_kernels
from ctsnn.data import YinYang


def build(seed: int = 0) -> list[ctsnn.Layer]:
    """The Y1 network: 5 -> 64 CubaLIF (learnable delays <= 10 ms) -> 3 LI."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(64, 5, generator=g, dtype=torch.float64) * 1.0 + 1.5
    d1 = torch.rand(64, 5, generator=g, dtype=torch.float64) * 5e-3
    w2 = torch.randn(3, 64, generator=g, dtype=torch.float64) * 0.5 + 0.2
    hidden = ctsnn.Layer(ctsnn.CubaLIF(64, tau_mem=0.02, tau_syn=0.005, v_threshold=1.0),
                         torch.nn.Parameter(w1), delay=torch.nn.Parameter(d1), learn_delay=True,
                         max_delay=0.01, time="continuous", gradient="adjoint")
    out = ctsnn.Layer(ctsnn.LI(3, tau_mem=0.02), torch.nn.Parameter(w2), time="continuous",
                      gradient="adjoint")
    return [hidden.to(torch.float64), out.to(torch.float64)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--kernels", choices=("on", "off"), default="on")
    args = ap.parse_args()
    data = YinYang("train", bias_time=0.0, dt=1e-3, n_steps=30)
    net = build()
    params = [p for layer in net for p in layer.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    fwd, bwd = [], []
    with use_kernels(args.kernels == "on"):
        for k in range(args.batches + 1):  # batch 0 warms up (numba compile / caches)
            idx = range(k * args.batch, (k + 1) * args.batch)
            spikes, labels = data.collate([data[i % len(data)] for i in idx])
            t0 = time.perf_counter()
            z = ctsnn.simulate(net, spikes, time="continuous", readout="max").output
            loss = torch.nn.functional.cross_entropy(z, labels)
            t1 = time.perf_counter()
            opt.zero_grad()
            loss.backward()
            opt.step()
            ctsnn.clamp_delays_(net)
            t2 = time.perf_counter()
            if k:
                fwd.append(t1 - t0)
                bwd.append(t2 - t1)
            else:
                print(f"first batch (incl. compile) {t2 - t0:.3f} s")
    f = sum(fwd) / max(1, len(fwd))
    b = sum(bwd) / max(1, len(bwd))
    epoch = (f + b) * 5000 / args.batch
    print(f"kernels={args.kernels} batch={args.batch}: forward {f * 1e3:.1f} ms + backward and "
          f"step {b * 1e3:.1f} ms per batch, epoch (5000 samples) ~ {epoch:.2f} s, "
          f"last loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
