"""Benchmark workload W3 ``delrec-shd``: recurrent learnable delays, DelRec's SHD network.

W3 (the project's benchmark doc): 140 -> 256 (LIF) -> 256 (LIF with recurrent axonal delays,
triangular spread, sigma = 10 at the start of training) -> 20, BatchNorm, tau = 1.05 steps,
batch 64 and 256, T = 100 and 1000. The DelRec reference is research code outside any package,
so the side-by-side yardstick is W4's SpikingJelly network (plain LIF, no recurrence) measured
in the same run. Targets: <= 2x the W4 SpikingJelly step time (about 0.2x DelRec); memory
<= 0.25x DelRec's; batch 64 x T = 1000 in under 2 GiB.

What :func:`main` measures (``ctsnn bench w3 [--quick] [--no-reference]``):

* **ours** — :class:`ctsnn.papers.delrec.DelRecNet` (``DelRecConfig.shd()``: recurrent delays
  ``U(10, 30)`` steps, sigma 10, recurrent dropout 0.2, dropout 0.4) with the DelRec recipe
  (:func:`~ctsnn.papers.delrec.delrec_optimisers` at epoch 0: AdamW on weights, AdamW on
  delays, clamp); a training step is ``zero_grad``, forward, loss, backward, both optimiser
  steps and the clamp. Input Bernoulli(0.03) (as W1), labels uniform.
  Time by the protocol (fewer repeats when one step exceeds the budget: ``reduced``), peak RSS
  increase of one step in a fresh process, saved-for-backward memory of one forward pass.
* **yardstick** — W4's SpikingJelly network (:func:`ctsnn.bench.peers.spikingjelly_lif_net`)
  on the same input shape, same run, plus its W4 configuration (batch 64, T = 100,
  Bernoulli(0.05)) for the target.
* The DelRec anchors of the benchmark doc (measured on this machine kind, not in this run)
  are reported alongside for the memory target: a ratio against them is indicative only.

Output: one JSON line per (batch, T) with ``ours``/``reference``(the yardstick)/``ratio`` and a
summary line with the targets.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ctsnn.papers.delrec import DelRecConfig, DelRecNet, count_parameters, delrec_optimisers

from . import w4
from .harness import bench_env, json_line, peak_rss_increase
from .peers import (
    bernoulli_input,
    git_state,
    import_error,
    module_version,
    plain_weights,
    saved_tensor_bytes,
    spikingjelly_lif_net,
    time_summary,
    timed,
)

__all__ = ["CONFIGS", "DELREC_ANCHORS", "MEMORY_LIMITED", "build_ours", "main"]

WORKLOAD = "W3 delrec-shd"
P_INPUT = 0.03
#: (batch, T) measured by default, in this order.
CONFIGS: tuple[tuple[int, int], ...] = ((64, 100), (64, 1000), (256, 100), (256, 1000))
#: (batch, T) -> (repeats, warm-ups) for configurations whose full protocol does not fit in
#: memory. Empty since the per-step leak of the recurrent delays (a reference cycle through
#: ``ctx.run``, then in ``ctsnn/delays/recurrent.py``, now ``ctsnn/synapses/ring.py``) was
#: fixed; 256 x 1000 used (1, 1) before.
MEMORY_LIMITED: dict[tuple[int, int], tuple[int, int]] = {}
#: The DelRec reference as measured for the benchmark doc (not in this run): (batch, T) ->
#: (seconds per step, peak RSS increase MiB).
DELREC_ANCHORS: dict[tuple[int, int], tuple[float, float]] = {
    (64, 100): (1.431, 1658.0),
    (256, 100): (5.649, 6451.0),
    (64, 1000): (42.9, 14.6 * 1024),
}


def build_ours(batch: int, n_steps: int, *, seed: int = 0,
               config: DelRecConfig | None = None) -> tuple[DelRecNet, Callable[[], None]]:
    """Our DelRec SHD network at the start of training (sigma 10) and its training step."""
    torch.manual_seed(seed)
    cfg = config or DelRecConfig.shd()
    net = DelRecNet(cfg)
    opt = delrec_optimisers(net)
    opt.start_epoch(0)  # sigma = sigma_init = 10
    x, y = bernoulli_input(n_steps, batch, cfg.n_in, P_INPUT, seed=seed, n_classes=cfg.n_out)
    net.train()

    def step() -> None:
        opt.zero_grad()
        net.loss(net(x), y).backward()
        opt.step()  # both optimisers, then the clamp of the delays

    step.x, step.y = x, y  # type: ignore[attr-defined]
    return net, step


def _memory_setup(batch: int, n_steps: int, seed: int) -> Callable[[], None]:
    return build_ours(batch, n_steps, seed=seed)[1]


def _yardstick(batch: int, n_steps: int, p: float, *, seed: int, repeats: int, warmup: int,
               budget_s: float | None) -> dict[str, Any]:
    """W4's SpikingJelly network: one training step timed, saved-for-backward memory."""
    x, y = bernoulli_input(n_steps, batch, w4.SIZES[0], p, seed=seed, n_classes=w4.SIZES[-1])
    torch.manual_seed(seed)
    net, run = spikingjelly_lif_net(plain_weights(w4.SIZES, seed=seed), tau=w4.TAU_STEPS,
                                    alpha=w4.ALPHA)
    _, saved = saved_tensor_bytes(lambda: F.cross_entropy(run(x).sum(0), y))
    out = time_summary(timed(w4.train_step(net, run, x, y), repeats=repeats, warmup=warmup,
                             budget_s=budget_s))
    out.update(saved)
    out.update(implementation=f"SpikingJelly {module_version('spikingjelly')} W4 network "
               "(140-256-256-20 LIF, no delays, no recurrence)", p_input=p)
    return out


def main(
    quick: bool = False,
    reference: bool = True,
    *,
    seed: int = 0,
    configs: Sequence[tuple[int, int]] | None = None,
    repeats: int | None = None,
    warmup: int | None = None,
    memory: bool = True,
    budget_s: float | None = 300.0,
) -> int:
    """Run W3; JSON lines on stdout, progress on stderr.

    Args:
        quick: batch 64 x T = 100 only, 3 timed steps after 1 warm-up.
        reference: run the SpikingJelly yardstick (if it imports).
        configs: ``(batch, T)`` pairs (default :data:`CONFIGS`: batch 64 and 256, T = 100
            and 1000).
        memory: measure our peak RSS increase (a fresh process per configuration).
        budget_s: per configuration, fewer repeats when one step is very slow (``reduced``).
    """
    configs = tuple(configs) if configs is not None else (((64, 100),) if quick else CONFIGS)
    repeats = repeats or (3 if quick else 5)
    warmup = warmup if warmup is not None else (1 if quick else 2)
    env = bench_env(2)
    git = git_state()

    def log(msg: str) -> None:
        print(f"[w3] {msg}", file=sys.stderr, flush=True)

    sj_version = module_version("spikingjelly")
    use_ref = reference and sj_version is not None
    if reference and not use_ref:
        log(f"yardstick skipped: spikingjelly not importable: {import_error('spikingjelly')}")

    summary: dict[str, Any] = {"spikingjelly": sj_version}
    w4_sj: dict[str, Any] | None = None
    if use_ref:
        log("yardstick: W4 SpikingJelly network at its W4 configuration (64 x 100, p 0.05)...")
        w4_sj = _yardstick(64, 100, 0.05, seed=seed, repeats=repeats, warmup=warmup,
                           budget_s=budget_s)
        summary["w4_spikingjelly_median_s"] = w4_sj["median_s"]

    records: dict[tuple[int, int], dict[str, Any]] = {}
    for batch, n_steps in configs:
        log(f"ours, batch {batch}, T = {n_steps}...")
        net, step = build_ours(batch, n_steps, seed=seed)
        reps, warm = MEMORY_LIMITED.get((batch, n_steps), (repeats, warmup))
        reps, warm = min(reps, repeats), min(warm, warmup)
        ours = time_summary(timed(step, repeats=reps, warmup=warm, budget_s=budget_s))
        if (reps, warm) != (repeats, warmup):
            ours["protocol"]["note"] = (f"{reps} timed step(s) after {warm} warm-up(s): the full "
                                        "protocol does not fit in memory")
        _, saved = saved_tensor_bytes(lambda net=net, step=step: net.loss(net(step.x), step.y))
        for m in net.recurrent_modules():
            # A forward pass without backward stays referenced by the recurrent module's working
            # set until its next start(): drop it (else two graphs coexist in memory).
            m.release()
        ours.update(saved)
        ours["parameters"] = count_parameters(net)
        ours["sigma"] = float(net.recurrent_modules()[0].sigma)
        del net, step
        if memory:
            setup = functools.partial(_memory_setup, batch, n_steps, seed)
            try:
                ours["peak_rss_mib"] = peak_rss_increase(setup, timeout=7200)
            except (RuntimeError, TimeoutError) as exc:
                log(f"memory measurement failed: {exc}")
                ours["peak_rss_mib"] = None
        anchor = DELREC_ANCHORS.get((batch, n_steps))
        if anchor is not None:
            ours["time_vs_delrec_anchor"] = ours["median_s"] / anchor[0]
            if ours.get("peak_rss_mib") is not None:
                ours["memory_vs_delrec_anchor"] = ours["peak_rss_mib"] / anchor[1]
        ref = None
        if use_ref:
            log(f"yardstick at batch {batch}, T = {n_steps}...")
            ref = _yardstick(batch, n_steps, P_INPUT, seed=seed, repeats=repeats,
                             warmup=warmup, budget_s=budget_s)
            if anchor is not None:
                ref["delrec_anchor_not_same_run"] = {"median_s": anchor[0],
                                                     "peak_rss_mib": anchor[1]}
        if w4_sj is not None:
            ours["time_vs_w4_spikingjelly"] = ours["median_s"] / w4_sj["median_s"]
        config = {"batch": batch, "n_steps": n_steps, "p_input": P_INPUT,
                  "sizes": [140, 256, 256, 20], "recurrent": "axonal delays, layer 2",
                  "sigma": 10.0, "tau_steps": 1.05, "dtype": "float32",
                  "threads": env["torch_threads"], "seed": seed}
        json_line(WORKLOAD, config, ours, ref)
        records[(batch, n_steps)] = ours

    # ---- targets
    b64 = records.get((64, 100))
    if b64 is not None and w4_sj is not None:
        t = b64["median_s"] / w4_sj["median_s"]
        summary.update(time_64x100_vs_w4_spikingjelly=t, time_target_le_2x=t <= 2.0)
    mem = {f"{b}x{t}": r.get("memory_vs_delrec_anchor") for (b, t), r in records.items()}
    summary["memory_vs_delrec_anchor"] = mem
    known = [v for v in mem.values() if v is not None]
    if known:
        summary["memory_target_le_0p25_delrec"] = all(v <= 0.25 for v in known)
    long = records.get((64, 1000))
    if long is not None and long.get("peak_rss_mib") is not None:
        summary.update(memory_64x1000_mib=long["peak_rss_mib"],
                       memory_64x1000_target_lt_2GiB=long["peak_rss_mib"] < 2048.0)
    summary["not_run"] = [f"{b}x{t}" for b, t in ((64, 100), (64, 1000), (256, 100),
                                                  (256, 1000)) if (b, t) not in records]
    json_line(WORKLOAD, {"summary": True, "git": git, "env": env,
                         "omp_wait_policy_env": os.environ.get("OMP_WAIT_POLICY")},
              summary, None)
    return 0
