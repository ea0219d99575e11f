"""Train a small delayed spiking network on Yin-Yang with exact gradients, in continuous time.

Network: 4 latency-coded inputs (one spike each, 1.5-20 ms) -> ``hidden`` current-based LIF
neurons (tau_mem 20 ms, tau_syn 5 ms) with per-synapse delays in [0, 10] ms (learned, or none
with ``--no-delays``) -> 3 current-based leaky integrators; the class is the integrator with
the highest peak voltage (cross-entropy on the peaks). Every layer runs in continuous time
(exact spike times, exact delayed arrivals) and is trained with ``gradient="adjoint"``
(EventProp: exact gradients for weights and delays). Training runs through
:class:`ctsnn.training.Trainer`: Adam for weights and delays with their own rates, model
selection on the published validation split, the published test split at the end, atomic
checkpoints (kill it and run the same command again: it resumes).

Run: ``python examples/train_yinyang.py --out runs/yy --epochs 20`` (add ``--no-delays`` for
the baseline, ``--seed`` for another seed). ``--train-size`` / ``--val-size`` use the first
samples of the published splits only (``--test-size`` likewise, for smoke tests).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch
from torch import nn

import ctsnn
from ctsnn.data import YinYang
from ctsnn.training import Trainer, TrainerConfig

T_STEPS, DT = 40, 1e-3  # 40 ms grid (the spike times themselves are exact)
MAX_DELAY = 0.01  # s


class YinYangNet(nn.Module):
    """4 inputs -> ``hidden`` CubaLIF (delays optional) -> 3 CubaLI, all continuous-time adjoint.

    ``forward(spikes)`` returns the :class:`~ctsnn.engine.SimulationResult` of the network
    with ``output`` = the peak voltage of each readout ``[B, 3]``.
    """

    def __init__(self, hidden: int = 30, *, learn_delay: bool = True, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w_in = 2.0 + torch.randn(hidden, 4, generator=g)
        w_out = 3.0 * torch.randn(3, hidden, generator=g)
        delay = MAX_DELAY * torch.rand(hidden, 4, generator=g) if learn_delay else None
        self.hidden = ctsnn.Layer(
            ctsnn.CubaLIF(hidden, tau_mem=0.02, tau_syn=0.005), w_in, delay=delay,
            learn_delay=learn_delay, max_delay=MAX_DELAY if learn_delay else None,
            time="continuous", gradient="adjoint")
        self.readout = ctsnn.Layer(ctsnn.CubaLI(3, tau_mem=0.02, tau_syn=0.005), w_out,
                                   time="continuous", gradient="adjoint")

    def forward(self, spikes: ctsnn.Spikes) -> ctsnn.engine.SimulationResult:
        return ctsnn.simulate([self.hidden, self.readout], spikes, readout="max")


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--hidden", type=int, default=30)
    p.add_argument("--no-delays", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None,
                   help="train on the first N published training samples")
    p.add_argument("--val-size", type=int, default=None,
                   help="validate on the first N published validation samples")
    p.add_argument("--test-size", type=int, default=None,
                   help="test on the first N published test samples (default: all 1,000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--lr-delay", type=float, default=1e-3, help="s per unit gradient step")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)

    enc = dict(n_steps=T_STEPS, dt=DT)
    train = YinYang("train", size=args.train_size, **enc)
    val = YinYang("validation", size=args.val_size, **enc)
    test = YinYang("test", size=args.test_size, **enc)
    torch.manual_seed(args.seed)
    model = YinYangNet(args.hidden, learn_delay=not args.no_delays, seed=args.seed).double()
    delays = {} if args.no_delays else {"lr_delay": args.lr_delay, "delay_schedule": "cosine"}
    config = TrainerConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           schedule="cosine", seed=args.seed, progress=args.progress, **delays)
    final = Trainer(model, train, config, out_dir=args.out, val_set=val, test_set=test,
                    metadata={"example": "train_yinyang", "hidden": args.hidden,
                              "delays": not args.no_delays}).fit()
    print(json.dumps({"best_val": final["best"], "test_accuracy": final["test"]["accuracy"],
                      "test_spikes_hidden": final["test"].get("spikes/hidden")}))
    return final


if __name__ == "__main__":
    main()
