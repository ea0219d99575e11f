"""Discrete vs continuous time on a *trained* network: does it keep its accuracy in the other mode?

1. Train a small network in continuous time with exact gradients: two CubaLIF neurons read 8
   input channels through learnable weights and delays and classify spike templates by which
   neuron fires first (the task of ``ctsnn demo``, :func:`ctsnn.data.spike_template_task`).
2. Run the trained network, unchanged, in both time modes at several grid steps with
   :func:`ctsnn.compare_time_modes` on held-out samples: accuracy, spike-time errors, van Rossum
   distances, wall time, observed order.
3. Write figures: delays before/after training, overlaid rasters of the two modes, the
   convergence of the discrete spike times.

Run: ``python examples/compare_time_modes.py [--steps 8] [--out-dir .]`` (about a minute on
2 cores). The tutorial ``docs/tutorials/discrete-vs-continuous.md`` walks through its output.

``--work-precision`` instead runs the work-precision study of ``docs/study-tools.md`` on the
network of ``ctsnn demo`` (CubaLIF -> a user-defined exponential IF, no closed form): discrete
Euler and continuous RK4 at several steps against continuous RK4 at 1/16 ms, and writes
``work_precision.png`` (a few minutes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ctsnn
from ctsnn.analysis import TimeModeComparison, work_precision
from ctsnn.data import poisson_spikes, spike_template_task
from ctsnn.demos import two_modes
from ctsnn.demos.delay_learning import build
from ctsnn.plot import (
    comparison_figure,
    convergence_plot,
    delay_distributions,
    work_precision_plot,
)

TAU = 0.002  # s: temperature of the first-spike cross-entropy


def train(layer: ctsnn.Layer, steps: int, batch: int = 32, seed: int = 0) -> None:
    """Exact-gradient training in continuous time (first-spike cross-entropy)."""
    opt = torch.optim.Adam([{"params": [layer.synapse.weight], "lr": 0.02},
                            {"params": [layer.synapse.delay], "lr": 5e-4}])  # delays in s
    for step in range(steps):
        spikes, labels = spike_template_task(batch, seed=seed + 1 + step)
        first = ctsnn.simulate(layer, spikes, dt=1e-3, time="continuous").spikes.first_times()
        loss = torch.nn.functional.cross_entropy(-first / TAU, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        layer.synapse.clamp_delays_()
        print(f"step {step:2d}  loss {loss.item():.3f}")


def main(steps: int = 8, out_dir: str = ".", n_test: int = 200) -> TimeModeComparison:
    torch.set_default_dtype(torch.float64)
    layer = build(seed=0)
    delays_before = layer.synapse.delay.detach().clone()
    train(layer, steps)

    spikes, labels = spike_template_task(n_test, seed=100)  # held out
    cmp = ctsnn.compare_time_modes(layer, spikes, [4e-3, 2e-3, 1e-3, 5e-4, 2.5e-4],
                                   labels=labels, predict="first_spike", tau=0.005)
    print(cmp.table())
    print(f"\nobserved order of the discrete spike-time error: {cmp.order('discrete'):.2f}")
    for run in cmp.runs:
        print(f"{run.time:>10} dt = {run.dt * 1e3:5.3g} ms: accuracy {run.accuracy:.1%} "
              f"({run.accuracy_difference:+.1%} vs continuous)")

    out = Path(out_dir)
    delay_distributions({"before training": delays_before, "after training":
                         layer.synapse.delay.detach()},
                        bins=16, title="Delays of the 2 x 8 synapses").savefig(
        out / "compare_delays.png", dpi=100)
    comparison_figure(cmp, [("continuous", 2.5e-4), ("discrete", 2e-3)],
                      layer_names=["output neurons"], window=(0.0, 0.05)).savefig(
        out / "compare_rasters.png", dpi=100)
    convergence_plot(cmp).savefig(out / "compare_convergence.png", dpi=100)
    print(f"\nfigures written to {out}/compare_*.png")
    return cmp


def work_precision_study(out_dir: str = ".", repeats: int = 3) -> TimeModeComparison:
    """Error against wall time on the ``ctsnn demo`` network, over modes, steps and solvers."""
    torch.set_default_dtype(torch.float64)
    net = two_modes.build_network()
    x = poisson_spikes(40, 20.0, 0.1, batch=1, dt=1e-3, seed=1)
    settings = ([("discrete", dt, "euler") for dt in (5e-4, 2.5e-4, 1.25e-4)]
                + [("continuous", dt, "rk4") for dt in (1e-3, 5e-4, 2.5e-4)])
    wp = work_precision(net, x, settings, reference=("continuous", 6.25e-5, "rk4"),
                        repeats=repeats)
    print(wp.table())
    work_precision_plot(wp).savefig(Path(out_dir) / "work_precision.png", dpi=100)
    print(f"\nfigure written to {out_dir}/work_precision.png")
    return wp


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps (batch 32)")
    parser.add_argument("--n-test", type=int, default=200, help="held-out samples")
    parser.add_argument("--out-dir", default=".", help="where the PNG figures go")
    parser.add_argument("--work-precision", action="store_true",
                        help="run the work-precision study instead")
    args = parser.parse_args()
    if args.work_precision:
        work_precision_study(args.out_dir)
    else:
        main(steps=args.steps, out_dir=args.out_dir, n_test=args.n_test)
