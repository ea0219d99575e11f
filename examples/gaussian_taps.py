"""A narrow DCLS Gaussian's taps, weights included, in one compiled pass.

At DCLS's final width (sigma_eff = 0.5 step) a ``Dense`` on the spike-scatter path needs, per
synapse, the Gaussian truncated to its numerical support (6 taps in float32) times the weight.
With kernels on (the CPU default) ``ctsnn.synapses.gaussian_taps.weighted_gaussian_taps``
computes them in two compiled loops around PyTorch's ``exp`` (the same values as the
reference ``gaussian_support_taps(d, sigma, K) * w``, bit for bit) and their gradient w.r.t.
delays and weights in one loop, instead of about twenty tensor operations and their autograd
backward. This script computes one layer's taps both ways, checks that they agree and times
them.

Run: ``python examples/gaussian_taps.py [--n-in N] [--n-out M] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from ctsnn.compiled import use_kernels
from ctsnn.synapses.gaussian_taps import weighted_gaussian_taps

K = 25


def taps_and_grads(d: torch.Tensor, w: torch.Tensor, g: torch.Tensor):
    """Weighted taps at sigma 0.5, a fixed linear loss, its gradients w.r.t. delays and
    weights."""
    taps = weighted_gaussian_taps(d, w, 0.5, K)
    loss = (taps.coefs * g).sum()
    return (taps.lags, taps.coefs.detach(), *torch.autograd.grad(loss, (d, w)))


def timed(fn, repeats: int) -> tuple[tuple, float]:
    fn()  # the first call loads the compiled kernels
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return out, (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-in", type=int, default=256)
    parser.add_argument("--n-out", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    d = ((K - 1) * torch.rand(args.n_out, args.n_in, generator=gen)).requires_grad_()
    w = torch.randn(args.n_out, args.n_in, generator=gen).requires_grad_()
    g = torch.randn(6, args.n_out, args.n_in, generator=gen)
    fused, t_fused = timed(lambda: taps_and_grads(d, w, g), args.repeats)
    with use_kernels(False):
        ref, t_ref = timed(lambda: taps_and_grads(d, w, g), args.repeats)
    same = torch.equal(fused[0], ref[0]) and torch.equal(fused[1], ref[1])
    err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(fused[2:], ref[2:],
                                                                         strict=True))
    print(f"{args.n_out} x {args.n_in} synapses, {fused[0].shape[0]} taps each (float32)")
    print(f"lags and weighted coefficients identical to the reference: {same}")
    print(f"largest relative difference of dL/dd, dL/dw: {err:.1e}")
    print(f"taps + gradients: compiled {t_fused * 1e3:.2f} ms, reference {t_ref * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
