"""Learn recurrent delays (DelRec) on a task that needs them: echo input pulses after a lag.

Three input channels carry sparse random pulses. One recurrent LIF layer has six neurons:
neurons 0-2 relay the input (they fire when their channel pulses); neurons 3-5 get no input and
must fire exactly ``LAGS = (4, 8, 12)`` steps after a pulse of channels 0, 1, 2. The only path is
the recurrent connection, whose effective lag is ``1 + d`` steps, so the relays' axonal delays
must learn ``d = (3, 7, 11)`` from a common start of ``d = 6``. Training uses surrogate
gradients, a van Rossum loss (spike trains filtered with an exponential kernel, then MSE) and
DelRec's shrinking triangular spread ``σ``. Evaluation switches to the paper mode (σ = 0,
rounded delays).

Run: ``python examples/delrec_recurrent.py`` (about 10 s on one CPU core).
``--memory`` instead measures the autograd memory of one T = 1000, B = 64, N = 256 layer
(DelRec SHD delays ``U(10, 30)`` steps, σ = 10): this module vs the reference code's circular
buffer (SEEDS B1.4), which keeps a ``[B, N, L]`` tensor per step for backward.
"""

from __future__ import annotations

import argparse
import time

import torch

import ctsnn
from ctsnn.synapses import RecurrentDense, Triangle
from ctsnn.synapses.kernels import triangle_spread
from ctsnn.training import DelRecSigmaSchedule

DT = 1e-3  # s per step
LAGS = (4, 8, 12)  # target echo lags (steps)
T, BATCH, K = 60, 16, len(LAGS)


def make_batch(gen: torch.Generator, batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Input pulses ``[T, B, K]`` and target output spikes ``[T, B, K]``."""
    x = (torch.rand(T, batch, K, generator=gen) < 0.06).float()
    target = torch.zeros_like(x)
    for k, lag in enumerate(LAGS):
        target[lag:, :, k] = x[:-lag, :, k]
    return x, target


def van_rossum(spikes: torch.Tensor, tau: float = 3.0) -> torch.Tensor:
    """Spike trains ``[T, B, N]`` filtered with ``exp(-t / tau)`` (tau in steps)."""
    decay = torch.exp(torch.tensor(-1.0 / tau))
    out, trace = [], torch.zeros_like(spikes[0])
    for s in spikes:
        trace = decay * trace + s
        out.append(trace)
    return torch.stack(out)


def build() -> tuple[ctsnn.Layer, RecurrentDense]:
    n = 2 * K
    w_rec = torch.zeros(n, n)
    w_rec[K:, :K] = 0.3 * torch.eye(K) + 0.05  # relay k -> output k (plus weak cross-talk)
    rec = RecurrentDense(n, kernel=Triangle(4.0), dt=DT, per="axon", learn_delay=True,
                         delay_init=6 * DT, weight_init=w_rec)
    w_in = torch.zeros(n, K)
    w_in[:K] = 2.0 * torch.eye(K)  # input channel k drives relay k above threshold
    layer = ctsnn.Layer(ctsnn.LIF(n, tau_mem=2 * DT), ctsnn.Dense(weight=w_in, learn_weight=False),
                        recurrent=rec, surrogate=ctsnn.surrogate.atan(alpha=2.0),
                        method="euler")
    return layer, rec


def loss_fn(layer: ctsnn.Layer, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    spikes = layer(x, dt=DT, input_as="jump")[0].raster()
    return torch.mean((van_rossum(spikes[:, :, K:]) - van_rossum(target)) ** 2)


def exact_matches(layer: ctsnn.Layer, x: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of target spikes reproduced at exactly the right step (and no extra spikes)."""
    with torch.no_grad():
        out = layer(x, dt=DT, input_as="jump")[0].raster()[:, :, K:]
    hits = (out * target).sum()
    return float(hits / torch.clamp(torch.maximum(out.sum(), target.sum()), min=1.0))


def train(iterations: int = 100) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    layer, rec = build()
    x_test, t_test = make_batch(torch.Generator().manual_seed(99), 64)
    opt_w = torch.optim.Adam(rec.weight_parameters(), lr=2e-2)
    opt_d = torch.optim.Adam(rec.delay_parameters(), lr=0.15)
    with torch.no_grad():
        before = float(loss_fn(layer, x_test, t_test))
    start = time.perf_counter()
    for it in range(iterations):
        rec.set_sigma(DelRecSigmaSchedule(iterations, sigma_init=4.0).sigma(it))
        x, target = make_batch(gen)
        loss = loss_fn(layer, x, target)
        opt_w.zero_grad()
        opt_d.zero_grad()
        loss.backward()
        opt_w.step()
        opt_d.step()
        rec.clamp_delays_()
        if it % 30 == 0 or it == iterations - 1:
            lags = (1 + rec.delay_steps.detach()[:K]).tolist()
            print(f"iter {it:3d}  sigma {float(rec.sigma):5.2f}  loss {loss.item():.4f}  "
                  f"lags 1+d = {[round(v, 2) for v in lags]}")
    with torch.no_grad():
        after = float(loss_fn(layer, x_test, t_test))
    layer.eval()  # paper mode: sigma = 0, rounded delays
    with torch.no_grad():
        rounded = float(loss_fn(layer, x_test, t_test))
    matches = exact_matches(layer, x_test, t_test)
    print(f"trained in {time.perf_counter() - start:.1f} s")
    print(f"test loss before {before:.4f}  after {after:.4f}  (eval, rounded delays: "
          f"{rounded:.4f}); exact echo matches (eval) {100 * matches:.0f} %")
    d = rec.delay_steps.detach()[:K]
    print("learned relay delays d (steps):", [round(v, 2) for v in d.tolist()],
          " effective lags 1 + round(d):", (1 + torch.round(d)).int().tolist(),
          " target lags:", list(LAGS))


# --------------------------------------------------------------------------- memory
class _CircularBuffer:
    """The reference code's scheme (SEEDS B1.4), for comparison only: after every step the
    spikes, spread over all ``L`` lags, are added to a ``[B, N, L]`` buffer; autograd keeps the
    spread spikes ``[B, N, L]`` of every step."""

    def __init__(self, rec: RecurrentDense) -> None:
        self.rec = rec

    def start(self, batch_size, *, dtype, device):
        rec = self.rec
        self.n_lags = rec.n_lags()
        self.mask = triangle_spread(rec.delay_steps, rec.width(), self.n_lags).t()  # [N, L]
        self.buf = torch.zeros(batch_size, rec.n, self.n_lags, dtype=dtype, device=device)
        self.ptr = 0

    def read(self, n):
        return self.buf[:, :, self.ptr]

    def write(self, n, spikes):
        buf = self.buf.clone()
        buf[:, :, self.ptr] = 0.0
        self.ptr = (self.ptr + 1) % self.n_lags
        spread = torch.einsum("ij,bjl->bil", self.rec.weight, spikes[:, :, None] * self.mask)
        self.buf = buf + torch.roll(spread, shifts=self.ptr - 1, dims=2)


def memory(t_len: int = 1000, batch: int = 64, n: int = 256) -> None:
    """Saved-for-backward bytes (unique storages) of one recurrent layer, three ways."""
    torch.manual_seed(0)
    x = (torch.rand(t_len, batch, n) < 0.05).float()
    w_in = 0.3 * torch.randn(n, n)

    def delays(shape):
        return (10 + 20 * torch.rand(shape, dtype=torch.float64)) * DT

    for kind in ("none", "RecurrentDense", "circular buffer"):
        rec = RecurrentDense(n, kernel=Triangle(10.0), dt=DT, per="axon", learn_delay=True,
                             delay_init=delays)
        recurrent = {"none": None, "RecurrentDense": rec}.get(kind, _CircularBuffer(rec))
        layer = ctsnn.Layer(ctsnn.LIF(n, tau_mem=2 * DT), w_in, recurrent=recurrent,
                            surrogate=ctsnn.surrogate.atan(5.0), method="euler")
        seen: dict[int, int] = {}

        def pack(t, seen=seen):
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
            return t

        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            spikes = layer(x, dt=DT, input_as="jump")[0].raster()
        fwd = time.perf_counter() - start
        spikes.sum().backward()
        total = time.perf_counter() - start
        lags = "  " if recurrent is None else f"{rec.n_lags():2d}"
        print(f"{kind:17s} L = {lags}: saved for backward "
              f"{sum(seen.values()) / 2**20:7.1f} MiB, forward {fwd:5.1f} s, "
              f"forward + backward {total:5.1f} s")
        del spikes, layer, seen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="measure autograd memory")
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory:
        memory()
    else:
        train(args.iterations)
