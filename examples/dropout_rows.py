"""Skip the input-gradient rows a time-shared dropout zeroes (the W1 / DCLS pattern).

A hidden layer's spikes go through :class:`ctsnn.dropout.SequenceDropout` (one mask per
(sample, unit) for all steps) into a delayed :class:`ctsnn.synapses.Dense`. The dropout's
backward multiplies the gradient of the dropped (sample, unit) rows by zero, so the synapse
need not compute ``dL/dx`` there: ``SequenceDropout.with_rows`` returns the kept rows and
``Dense.input_rows(rows)`` tells the synapse (the spike scatter skips those rows' work, about
``p`` of its dense ``dL/dx``). The gradients that reach the parameters and the layer before
are identical; this script checks it and times the backward both ways.

Run: ``python examples/dropout_rows.py [--batch B] [--steps T] [--kernel triangle]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from ctsnn.dropout import SequenceDropout
from ctsnn.synapses import Dense

DT = 1e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--kernel", default="triangle", choices=["rounded", "triangle"])
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    syn = Dense(256, 256, kernel=args.kernel, max_delay=24 * DT, dt=DT, learn_delay=True,
                generator=gen)
    drop = SequenceDropout(0.4)
    # stands for the previous layer's spikes, differentiable (a surrogate gradient)
    hidden = ((torch.rand(args.steps, args.batch, 256, generator=gen) < 0.13) * 1.0)
    hidden.requires_grad_()
    up = torch.randn(syn.output_steps(args.steps), args.batch, 256, generator=gen)

    def step(use_rows: bool) -> tuple[list[torch.Tensor], float]:
        torch.manual_seed(1)  # the same dropout mask both ways
        x, rows = drop.with_rows(hidden)
        with syn.input_rows(rows if use_rows else None):
            out = syn.jumps(x)
        t0 = time.perf_counter()
        grads = torch.autograd.grad((out * up).sum(), [hidden, syn.weight, syn.delay_steps])
        return list(grads), time.perf_counter() - t0

    full_s = skipped_s = float("inf")
    for _ in range(4):  # the best of the last three rounds (the first loads the kernels)
        full, s = step(False)
        full_s = min(full_s, s) if _ else full_s
        skipped, s = step(True)
        skipped_s = min(skipped_s, s) if _ else skipped_s
    err = max(float((a - b).abs().max()) for a, b in zip(full, skipped, strict=True))
    print(f"{args.kernel}, batch {args.batch}, {args.steps} steps, dropout p = {drop.p}")
    print(f"backward (best of 3): every row {full_s * 1e3:.1f} ms, kept rows only "
          f"{skipped_s * 1e3:.1f} ms")
    print(f"largest difference of dL/dhidden, dL/dw, dL/dd: {err:.1e}")


if __name__ == "__main__":
    main()
