"""BatchNorm, LIF, dropout and padding of a DCLS hidden block in one kernel (``bn_lif``).

In training, a DCLS hidden layer normalises the synapses' output with ``BatchNorm1d``
(statistics over all ``T x B`` entries), runs the LIF, applies dropout with one mask per
(sample, unit) and pads the spikes for the next layer. ``DCLSNet`` runs all four as one
kernel (``ctsnn.engine.compiled.bn_lif.bn_lif``): the backward pass keeps only the synapses'
output, and the membrane is recomputed. This script runs one block both ways, checks that
spikes and gradients agree (to rounding) and counts the ``[T, B, N]`` tensors each keeps
for its backward pass.

Run: ``python examples/fused_batchnorm_lif.py [--batch B] [--steps T]``.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import ctsnn
from ctsnn.dropout import SequenceDropout
from ctsnn.engine import run_population
from ctsnn.engine.compiled.bn_lif import bn_lif, bn_lif_applies
from ctsnn.surrogate import atan

DT, N, PAD = 0.01, 64, 12


def block(x, norm, lif, drop, fused: bool):
    """The block's padded output; ``fused``: one kernel, else the modules one by one."""
    torch.manual_seed(0)  # the same dropout mask both ways
    if fused:
        keep = drop.shared_mask(x)
        return bn_lif(x, norm, lif, dt=DT, method="euler", surrogate=atan(5.0),
                      detach_reset=True, keep=keep, p=drop.p, pad=PAD)
    y = norm(x.reshape(-1, N)).view(x.shape)
    s = run_population(lif, dt=DT, n_steps=x.shape[0], batch_size=x.shape[1], jumps=y,
                       method="euler", surrogate=atan(5.0), detach_reset=True).raster
    return F.pad(drop(s), (0, 0, 0, 0, 0, PAD))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(1)
    x0 = 0.5 + torch.randn(args.steps, args.batch, N, generator=g)
    w = torch.randn(args.steps + PAD, args.batch, N, generator=g)
    lif = ctsnn.LIF(N, tau_mem=0.01005, v_threshold=1.0, v_reset=0.0)
    drop = SequenceDropout(0.4)
    applies = bn_lif_applies(x0, nn.BatchNorm1d(N), lif, method="euler", surrogate=atan(5.0))
    print(f"fused kernel applies: {applies}")
    results = {}
    for fused in (False, True):
        norm = nn.BatchNorm1d(N)
        x = x0.clone().requires_grad_()
        kept: set[int] = set()

        def pack(t, kept=kept):
            if t.numel() >= x0.numel():
                kept.add(t.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = block(x, norm, lif, drop, fused)
        grads = torch.autograd.grad((out * w).sum(), (x, norm.weight, norm.bias))
        results[fused] = (out.detach(), grads)
        name = "fused (bn_lif)" if fused else "modules"
        print(f"{name:15s}: {int((out != 0).sum())} output spikes, [T, B, N] tensors kept "
              f"for backward: {len(kept)}")
    (o0, g0), (o1, g1) = results[False], results[True]
    print(f"outputs equal: {torch.equal(o0, o1)}")
    for name, a, b in zip(("x", "weight", "bias"), g0, g1, strict=True):
        rel = float((a - b).abs().max() / a.abs().max())
        print(f"gradient of {name:6s}: max relative difference {rel:.1e}")


if __name__ == "__main__":
    main()
