"""Benchmark workload Y1 ``yinyang-epoch``: what a user waits for.

Y1 (the project's benchmark doc): one epoch (5,000 samples, batch 32) of Yin-Yang training
with exact gradients in continuous time: 5 input spike times (the 4 features latency-encoded
over 30 ms, plus a bias spike at 0) -> 64 CubaLIF (tau_mem 20 ms, tau_syn 5 ms) with learnable
per-synapse delays in ``[0, 10 ms]`` -> 3 leaky-integrator readouts with a current synapse
(CubaLI; no delays), readout ``"max"`` (``max_t v``), cross-entropy; both layers
``gradient="adjoint"`` (exact event-based gradients). Adam (weights lr 1e-2, delays 1e-3),
delays clamped after every step. Target: <= 2 s per epoch on 2 cores.

What :func:`main` measures (``ctsnn bench y1 [--quick]``): the wall time of one epoch through
the public API — the ``DataLoader`` (latency encoding in ``collate``), forward, loss, backward,
optimiser step, delay clamp — in float32 on 2 threads; the first batch (imports of the lazily
loaded paths, kernel compilation) is reported apart and the epoch time counts it. ``--quick``
runs only the first :data:`QUICK_BATCHES` batches and **extrapolates** the epoch from their
mean time per batch (the JSON line says ``extrapolated: true`` and how many batches ran). There
is no peer: ``--no-reference`` changes nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import ctsnn
from ctsnn.data import YinYang

from .harness import bench_env, git_state, json_line, stderr_log, summary_line

__all__ = ["DT", "QUICK_BATCHES", "build_network", "epoch_estimate", "main", "make_loader",
           "train_batches"]

WORKLOAD = "Y1 yinyang-epoch"
#: Grid step (s): continuous time, the spike times and gradients do not depend on it.
DT = 5e-3
#: Simulated time per sample (s): inputs up to 30 ms, delays up to 10 ms, then the readout.
DURATION = 0.05
#: Batches run by ``--quick`` (the epoch time is extrapolated from them).
QUICK_BATCHES = 8
#: Target seconds per epoch.
TARGET_S = 2.0
MAX_DELAY = 0.01

_log = stderr_log("y1")


def make_loader(*, batch: int = 32, size: int | None = None, seed: int = 0,
                dt: float = DT) -> DataLoader:
    """The shuffled Yin-Yang training set (5,000 samples unless ``size``) as a ``DataLoader``
    of ``(Spikes [B x 5 channels], labels [B])``: features over ``[0, 30 ms]``, bias at 0."""
    data = YinYang("train", size=size, t_early=0.0, t_late=0.03, bias_time=0.0, dt=dt,
                   n_steps=max(1, round(DURATION / dt)))
    gen = torch.Generator().manual_seed(seed)

    def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[ctsnn.Spikes,
                                                                        torch.Tensor]:
        return data.collate([(x.float(), y) for x, y in items])  # float32 spike times

    return DataLoader(data, batch_size=batch, shuffle=True, generator=gen, collate_fn=collate)


def build_network(*, n_hidden: int = 64, seed: int = 0) -> list[ctsnn.Layer]:
    """The Y1 network (float32), both layers ``gradient="adjoint"``."""
    gen = torch.Generator().manual_seed(seed)
    w_hidden = 2.0 + 1.5 * torch.randn(n_hidden, 5, generator=gen)
    d_hidden = MAX_DELAY * torch.rand(n_hidden, 5, generator=gen)
    w_out = torch.randn(3, n_hidden, generator=gen) * (3.0 / math.sqrt(n_hidden))
    hidden = ctsnn.Layer(ctsnn.CubaLIF(n_hidden, tau_mem=0.02, tau_syn=0.005), w_hidden,
                         delay=d_hidden, learn_delay=True, max_delay=MAX_DELAY,
                         time="continuous", gradient="adjoint")
    readout = ctsnn.Layer(ctsnn.CubaLI(3, tau_mem=0.02, tau_syn=0.005), w_out,
                          time="continuous", gradient="adjoint")
    return [hidden, readout]


def train_batches(layers: list[ctsnn.Layer], loader: DataLoader, *, max_batches: int | None,
                  lr: float = 1e-2, lr_delay: float = 1e-3) -> dict[str, Any]:
    """Train over ``loader`` (at most ``max_batches`` batches); return per-batch wall times
    (s), losses and accuracies."""
    delays = ctsnn.delay_parameters(layers)
    ids = {id(p) for p in delays}
    others = [p for layer in layers for p in layer.parameters() if id(p) not in ids]
    opt = torch.optim.Adam([{"params": others, "lr": lr}, {"params": delays, "lr": lr_delay}])
    times, losses, correct, seen = [], [], 0, 0
    it = iter(loader)
    t0 = time.perf_counter()
    for k in range(len(loader)):
        if max_batches is not None and k >= max_batches:
            break
        spikes, labels = next(it)
        out = ctsnn.simulate(layers, spikes, readout="max").output  # [B, 3]
        loss = F.cross_entropy(out, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ctsnn.clamp_delays_(layers)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        t0 = t1
        losses.append(float(loss.detach()))
        correct += int((out.detach().argmax(1) == labels).sum())
        seen += len(labels)
    return {"batch_s": times, "losses": losses, "accuracy": correct / max(seen, 1)}


def epoch_estimate(batch_s: list[float], n_batches: int) -> tuple[float, bool]:
    """``(epoch seconds, extrapolated)`` from the wall times of the batches run: their sum when
    all ``n_batches`` ran, else the first batch (it pays the one-time costs) plus the mean of
    the others (of all, if only one ran) times the remaining ``n_batches - 1``."""
    if not batch_s or n_batches < len(batch_s):
        raise ValueError(f"need 1 to n_batches = {n_batches} batch times, got {len(batch_s)}")
    if len(batch_s) == n_batches:
        return float(sum(batch_s)), False
    rest = batch_s[1:] or batch_s
    return batch_s[0] + sum(rest) / len(rest) * (n_batches - 1), True


def main(quick: bool = False, reference: bool = True, *, seed: int = 0, batch: int = 32,
         size: int | None = None, n_hidden: int = 64, max_batches: int | None = None,
         dt: float = DT) -> int:
    """Run benchmark Y1 and print its JSON lines on stdout (progress on stderr).

    Args:
        quick: run :data:`QUICK_BATCHES` batches and extrapolate the epoch (said in the output).
        reference: no peer exists for Y1; accepted for the common ``main`` signature.
        seed: data order and initialisation. batch: batch size. size: training samples
            (default: the published 5,000). n_hidden: hidden neurons.
        max_batches: batches to run (overrides ``quick``'s count; None with ``quick`` False:
            the whole epoch).
        dt: grid step (s).

    Returns:
        0 (1 if a loss was not finite).
    """
    del reference  # no peer
    env = bench_env(2)
    git = git_state()
    loader = make_loader(batch=batch, size=size, seed=seed, dt=dt)
    n_batches = len(loader)
    if max_batches is None and quick:
        max_batches = QUICK_BATCHES
    layers = build_network(n_hidden=n_hidden, seed=seed)
    c0 = time.process_time()
    res = train_batches(layers, loader, max_batches=max_batches)
    cpu = time.process_time() - c0
    ran = len(res["batch_s"])
    wall = sum(res["batch_s"])
    rest = res["batch_s"][1:] or res["batch_s"]
    epoch_s, extrapolated = epoch_estimate(res["batch_s"], n_batches)
    ours = {
        "epoch_s": epoch_s, "extrapolated": extrapolated, "batches_run": ran,
        "batches_per_epoch": n_batches, "first_batch_s": res["batch_s"][0],
        "median_batch_s": sorted(rest)[len(rest) // 2], "wall_s": wall,
        "cpu_per_wall": cpu / wall if wall > 0 else None,
        "loss_first": res["losses"][0], "loss_last": res["losses"][-1],
        "train_accuracy": res["accuracy"],
    }
    config = {"batch": batch, "samples": len(loader.dataset), "n_hidden": n_hidden, "dt": dt,
              "duration": DURATION, "dtype": "float32", "threads": env["torch_threads"],
              "seed": seed}
    if extrapolated:
        _log(f"ran {ran} of {n_batches} batches: the epoch time is extrapolated")
    json_line(WORKLOAD, config, ours, None)
    summary_line(WORKLOAD, {"epoch_s": epoch_s, "extrapolated": extrapolated,
                            "target_s": TARGET_S, "target_met": epoch_s <= TARGET_S},
                 git=git, env=env)
    return 0 if all(math.isfinite(v) for v in res["losses"]) else 1
