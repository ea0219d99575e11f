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
  steps and the clamp. On the CPU with kernels on, the recurrent layer (LIF + axonal scatter)
  runs fused over all steps (:mod:`ctsnn.engine.compiled.lif_recurrent`), the other LIF layers
  in :mod:`ctsnn.engine.compiled.lif_bptt`. Input Bernoulli(0.03) (as W1), labels uniform.
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
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ctsnn.data import bernoulli_input
from ctsnn.papers.delrec import DelRecConfig, DelRecNet, delrec_optimisers
from ctsnn.training import count_parameters

from . import lif_plain
from .harness import (
    Protocol,
    bench_env,
    git_state,
    json_line,
    protocol_counts,
    stderr_log,
    summary_line,
    time_summary,
    timed,
)
from .peers import (
    import_error,
    module_version,
    plain_weights,
    saved_tensor_bytes,
    spikingjelly_lif_net,
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
    sizes = lif_plain.SIZES
    x, y = bernoulli_input(n_steps, batch, sizes[0], p, seed=seed, n_classes=sizes[-1])
    torch.manual_seed(seed)
    net, run = spikingjelly_lif_net(plain_weights(sizes, seed=seed), tau=lif_plain.TAU_STEPS,
                                    alpha=lif_plain.ALPHA)
    _, saved = saved_tensor_bytes(lambda: F.cross_entropy(run(x).sum(0), y))
    out = time_summary(timed(lif_plain.train_step(net, run, x, y), repeats=repeats, warmup=warmup,
                             budget_s=budget_s))
    out.update(saved)
    out.update(implementation=f"SpikingJelly {module_version('spikingjelly')} W4 network "
               "(140-256-256-20 LIF, no delays, no recurrence)", p_input=p)
    return out


def _measure_ours(run: Protocol, batch: int, n_steps: int, seed: int) -> dict[str, Any]:
    """Our training step at one (batch, T): time, saved-for-backward and peak memory, the
    ratios to the DelRec anchors of the benchmark doc."""
    run.log(f"ours, batch {batch}, T = {n_steps}...")
    net, step = build_ours(batch, n_steps, seed=seed)
    reps, warm = MEMORY_LIMITED.get((batch, n_steps), (run.repeats, run.warmup))
    reps, warm = min(reps, run.repeats), min(warm, run.warmup)
    ours = time_summary(timed(step, repeats=reps, warmup=warm, budget_s=run.budget_s))
    if (reps, warm) != (run.repeats, run.warmup):
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
    if run.memory:
        setup = functools.partial(_memory_setup, batch, n_steps, seed)
        ours["peak_rss_mib"] = run.peak_rss(setup, timeout=7200)
    anchor = DELREC_ANCHORS.get((batch, n_steps))
    if anchor is not None:
        ours["time_vs_delrec_anchor"] = ours["median_s"] / anchor[0]
        if ours.get("peak_rss_mib") is not None:
            ours["memory_vs_delrec_anchor"] = ours["peak_rss_mib"] / anchor[1]
    return ours


def _targets(records: dict[tuple[int, int], dict[str, Any]],
             w4_sj: dict[str, Any] | None) -> dict[str, Any]:
    """Time against the W4 SpikingJelly yardstick, memory against the DelRec anchors."""
    out: dict[str, Any] = {}
    b64 = records.get((64, 100))
    if b64 is not None and w4_sj is not None:
        t = b64["median_s"] / w4_sj["median_s"]
        out.update(time_64x100_vs_w4_spikingjelly=t, time_target_le_2x=t <= 2.0)
    mem = {f"{b}x{t}": r.get("memory_vs_delrec_anchor") for (b, t), r in records.items()}
    out["memory_vs_delrec_anchor"] = mem
    known = [v for v in mem.values() if v is not None]
    if known:
        out["memory_target_le_0p25_delrec"] = all(v <= 0.25 for v in known)
    long = records.get((64, 1000))
    if long is not None and long.get("peak_rss_mib") is not None:
        out.update(memory_64x1000_mib=long["peak_rss_mib"],
                   memory_64x1000_target_lt_2GiB=long["peak_rss_mib"] < 2048.0)
    out["not_run"] = [f"{b}x{t}" for b, t in ((64, 100), (64, 1000), (256, 100),
                                              (256, 1000)) if (b, t) not in records]
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
    repeats, warmup = protocol_counts(quick, repeats, warmup)
    env = bench_env(2)
    git = git_state()
    log = stderr_log("w3")
    run = Protocol(repeats=repeats, warmup=warmup, budget_s=budget_s, memory=memory, log=log)
    yardstick = functools.partial(_yardstick, seed=seed, repeats=repeats, warmup=warmup,
                                  budget_s=budget_s)

    sj_version = module_version("spikingjelly")
    use_ref = reference and sj_version is not None
    if reference and not use_ref:
        log(f"yardstick skipped: spikingjelly not importable: {import_error('spikingjelly')}")

    summary: dict[str, Any] = {"spikingjelly": sj_version}
    w4_sj: dict[str, Any] | None = None
    if use_ref:
        log("yardstick: W4 SpikingJelly network at its W4 configuration (64 x 100, p 0.05)...")
        w4_sj = yardstick(64, 100, 0.05)
        summary["w4_spikingjelly_median_s"] = w4_sj["median_s"]

    records: dict[tuple[int, int], dict[str, Any]] = {}
    for batch, n_steps in configs:
        ours = _measure_ours(run, batch, n_steps, seed)
        anchor = DELREC_ANCHORS.get((batch, n_steps))
        ref = None
        if use_ref:
            log(f"yardstick at batch {batch}, T = {n_steps}...")
            ref = yardstick(batch, n_steps, P_INPUT)
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

    summary.update(_targets(records, w4_sj))
    summary_line(WORKLOAD, summary, git=git, env=env)
    return 0
