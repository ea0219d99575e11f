"""Benchmark workload W4 ``lif-plain`` (and its W6 roofline line): plain LIF, no delays.

W4 (the project's benchmark doc): 140 -> 256 -> 256 -> 20 LIF, no delays, BPTT with an arctan
surrogate, batch 64, T = 100, input Bernoulli(0.05). Target: no slower than SpikingJelly
(stretch 0.7x) with no more saved-for-backward memory.

What :func:`main` measures (``ctsnn bench w4 [--quick] [--no-reference]``):

* The same network in every implementation (:func:`ctsnn.bench.peers.plain_weights`, no bias):
  LIF ``u[t] = (1 - 1/tau) u[t-1] + I[t]`` with ``tau = 2`` steps, threshold 1, hard reset to 0,
  arctan surrogate (alpha 2; Norse has none and uses its SuperSpike default). The loss is the
  cross-entropy of the output spike counts (summed over time) against uniform labels.
* **ours** — three :class:`ctsnn.Layer` (``LIF``, weight tensor, ``method="euler"``,
  ``surrogate=atan(2)``) chained as ``nn.Module`` s.
* **references** — SpikingJelly multi-step ``Linear``/``LIFNode``, snnTorch ``Leaky`` and Norse
  ``LIFBoxCell`` loops (:mod:`ctsnn.bench.peers`), whichever import.
* Per implementation: a training step (``zero_grad``, forward, loss, backward, Adam step) timed
  by the protocol (median of 5 after 2 warm-ups), the saved-for-backward memory of one forward
  pass (:func:`~ctsnn.bench.peers.saved_tensor_bytes`) and the spike count of every layer on
  the benchmark input (all implementations must agree in the forward pass).
* **W6 roofline** — the minimal floating-point work of a training step (the three matrix
  products forward and backward, plus the LIF updates), the rate each implementation achieves,
  the fp32 matrix-multiply rate of this run (:func:`~ctsnn.bench.peers.matmul_peak`), the time
  of the same matrix products done as three large GEMMs, and where our time goes (the top
  operators of a profiled step).

Output: one JSON line per reference (``ours`` vs that reference), a roofline line and a summary
line with the targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ctsnn
from ctsnn.data import bernoulli_input
from ctsnn.surrogate import atan

from .harness import (
    bench_env,
    git_state,
    json_line,
    profile_top,
    protocol_counts,
    stderr_log,
    summary_line,
    time_summary,
    timed,
)
from .peers import (
    import_error,
    matmul_peak,
    module_version,
    norse_lif_net,
    plain_weights,
    saved_tensor_bytes,
    snntorch_lif_net,
    spikingjelly_lif_net,
)

__all__ = ["PEERS", "SIZES", "build", "layer_spike_counts", "main", "ours_lif_net",
           "train_step"]

WORKLOAD = "W4 lif-plain"
SIZES: tuple[int, ...] = (140, 256, 256, 20)
TAU_STEPS = 2.0
ALPHA = 2.0
DT = 1e-3

#: name -> (import name, builder) of the references, in the order they are run.
PEERS: dict[str, tuple[str, Callable[..., tuple[nn.Module, Callable[[Tensor], Tensor]]]]] = {
    "spikingjelly": ("spikingjelly", spikingjelly_lif_net),
    "snntorch": ("snntorch", snntorch_lif_net),
    "norse": ("norse", norse_lif_net),
}


def ours_lif_net(weights: Sequence[Tensor], *, tau: float = TAU_STEPS, alpha: float = ALPHA,
                 dt: float = DT) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    """Our W4 network: one :class:`ctsnn.Layer` per weight, chained; returns ``(net, run)``."""
    layers = nn.ModuleList(
        ctsnn.Layer(ctsnn.LIF(w.shape[0], tau_mem=tau * dt, v_threshold=1.0, v_reset=0.0),
                    w, method="euler", surrogate=atan(alpha))
        for w in weights
    )

    def run(x: Tensor) -> Tensor:
        h = x
        for layer in layers:
            h = layer(h, dt=dt, input_as="jump")[0].raster()
        return h

    return layers, run


def build(impl: str, weights: Sequence[Tensor]) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    """``(net, run)`` of implementation ``impl`` (``"ours"`` or a key of :data:`PEERS`)."""
    if impl == "ours":
        return ours_lif_net(weights)
    if impl == "norse":
        return norse_lif_net(weights, tau=TAU_STEPS, dt=DT)
    return PEERS[impl][1](weights, tau=TAU_STEPS, alpha=ALPHA)


def train_step(net: nn.Module, run: Callable[[Tensor], Tensor], x: Tensor,
               y: Tensor) -> Callable[[], None]:
    """The timed training step: ``zero_grad``, forward, loss, backward, Adam step."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(run(x).sum(0), y)
        loss.backward()
        opt.step()

    return step


def layer_spike_counts(net: nn.Module, run: Callable[[Tensor], Tensor], impl: str,
                       x: Tensor) -> list[int]:
    """Spikes of every layer on ``x`` (forward only): the implementations must agree."""
    with torch.no_grad():
        if impl == "ours":
            counts, h = [], x
            for layer in net:
                h = layer(h, dt=DT, input_as="jump")[0].raster()
                counts.append(int(h.sum()))
            return counts
        if impl == "spikingjelly":
            from spikingjelly.activation_based import functional

            functional.reset_net(net)
            counts, h = [], x
            for m in net:
                h = m(h)
                if not isinstance(m, nn.Linear):
                    counts.append(int(h.sum()))
            return counts
    return [int(run(x).sum())]  # others: output layer only


def _flops(batch: int, n_steps: int, sizes: Sequence[int]) -> dict[str, float]:
    """Minimal floating-point work of one training step of the W4 network."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    fwd_mm = sum(2.0 * batch * n_steps * a * b for a, b in pairs)
    # backward: weight gradient of every layer, input gradient of all but the first
    bwd_mm = sum(2.0 * batch * n_steps * a * b for a, b in pairs) + sum(
        2.0 * batch * n_steps * a * b for a, b in pairs[1:])
    neurons = batch * n_steps * sum(sizes[1:])
    lif = 8.0 * neurons  # leak, add, compare, reset blend forward; surrogate and chain backward
    return {"matmul_forward": fwd_mm, "matmul_backward": bwd_mm, "lif_elementwise": lif,
            "training_step": fwd_mm + bwd_mm + lif}


def _gemm_floor(x: Tensor, weights: Sequence[Tensor], y: Tensor, *, repeats: int,
                warmup: int) -> float:
    """Median time of the same matrix products as three large GEMMs (forward and backward)."""
    ws = [w.clone().requires_grad_(True) for w in weights]
    flat = x.reshape(-1, x.shape[-1])

    def step() -> None:
        h = flat
        for w in ws:
            h = h @ w.t()
        h.sum().backward()
        for w in ws:
            w.grad = None

    return float(timed(step, repeats=repeats, warmup=warmup, budget_s=None)["median_s"])


def _measure(impl: str, weights: Sequence[Tensor], x: Tensor, y: Tensor, *, repeats: int,
             warmup: int, budget_s: float | None) -> dict[str, Any]:
    torch.manual_seed(0)
    net, run = build(impl, weights)
    counts = layer_spike_counts(net, run, impl, x)
    _, saved = saved_tensor_bytes(lambda: F.cross_entropy(run(x).sum(0), y))
    step = train_step(net, run, x, y)
    stats = timed(step, repeats=repeats, warmup=warmup, budget_s=budget_s)
    out = time_summary(stats)
    out.update(saved)
    out["spikes_per_layer"] = counts
    out["parameters"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return out


def _measure_peer(name: str, weights: Sequence[Tensor], x: Tensor, y: Tensor,
                  missing: dict[str, str], log: Callable[[str], None], *, repeats: int,
                  warmup: int, budget_s: float | None) -> dict[str, Any] | None:
    """One peer's measurement, or None with the reason in ``missing`` (not importable or
    failed: reported, not fatal)."""
    module = PEERS[name][0]
    version = module_version(module)
    if version is None:
        missing[name] = import_error(module) or "not importable"
        log(f"{name} not available: {missing[name]}")
        return None
    log(f"{name} {version}...")
    try:
        ref = _measure(name, weights, x, y, repeats=repeats, warmup=warmup, budget_s=budget_s)
    except Exception as exc:  # noqa: BLE001 - a broken peer is reported, not fatal
        missing[name] = f"failed: {type(exc).__name__}: {exc}"
        log(f"{name} failed: {exc}")
        return None
    ref["implementation"] = name
    ref["version"] = version
    return ref


def _roofline_line(x: Tensor, y: Tensor, weights: Sequence[Tensor], ours: dict[str, Any],
                   results: dict[str, dict[str, Any]], config: dict[str, Any], *, quick: bool,
                   repeats: int, warmup: int) -> None:
    """The W6 roofline line: minimal work, rates achieved, matmul peak, GEMM floor, profile."""
    n_steps, batch = x.shape[0], x.shape[1]
    flops = _flops(batch, n_steps, SIZES)
    peak = matmul_peak(1024 if quick else 2048, repeats=repeats, warmup=warmup)
    gemm_s = _gemm_floor(x, weights, y, repeats=repeats, warmup=warmup)
    net, run = build("ours", weights)
    top = profile_top(train_step(net, run, x, y))
    rates = {"ours": flops["training_step"] / ours["median_s"] / 1e9}
    rates.update({k: flops["training_step"] / v["median_s"] / 1e9
                  for k, v in results.items()})
    roof = {
        "flops": flops,
        "matmul_peak_gflops": peak["gflops"],
        "matmul_peak": peak,
        "achieved_gflops": rates,
        "fraction_of_peak": {k: v / peak["gflops"] for k, v in rates.items()},
        "gemm_floor_s": gemm_s,
        "gemm_floor_share_of_ours": gemm_s / ours["median_s"],
        "ours_top_ops": top,
        "note": ("minimal work = the three matrix products forward and backward (weight "
                 "gradients; input gradients of layers 2-3) + ~8 flops per neuron-step of "
                 "LIF updates; at these sizes the arithmetic is small (gemm_floor_s does "
                 "all of it as three large GEMMs); the rest is per-step operators (one "
                 "dispatch per step, layer and operation); ours_top_ops shows where our "
                 "time goes"),
    }
    json_line("W6 roofline", {"workload": WORKLOAD, **config}, roof, None)


def _summary(ours: dict[str, Any], results: dict[str, dict[str, Any]],
             missing: dict[str, str]) -> dict[str, Any]:
    """The summary line's fields: every ratio to the peers, the targets against SpikingJelly."""
    sj = results.get("spikingjelly")
    summary: dict[str, Any] = {
        "peers_run": {k: v["version"] for k, v in results.items()},
        "peers_missing": missing,
        "ours_median_s": ours["median_s"],
        "ours_saved_mib": ours["saved_mib"],
    }
    for name, ref in results.items():
        summary[f"time_vs_{name}"] = ours["median_s"] / ref["median_s"]
        summary[f"saved_vs_{name}"] = ours["saved_mib"] / ref["saved_mib"]
    if sj is not None:
        t_ratio = ours["median_s"] / sj["median_s"]
        summary.update(
            target_time_le_1x_spikingjelly=t_ratio <= 1.0,
            stretch_time_le_0p7x_spikingjelly=t_ratio <= 0.7,
            target_saved_le_spikingjelly=ours["saved_mib"] <= sj["saved_mib"],
        )
    return summary


def main(
    quick: bool = False,
    reference: bool = True,
    *,
    seed: int = 0,
    batch: int | None = None,
    n_steps: int | None = None,
    p: float = 0.05,
    repeats: int | None = None,
    warmup: int | None = None,
    peers: Sequence[str] | None = None,
    roofline: bool = True,
    budget_s: float | None = 300.0,
) -> int:
    """Run W4 (and the W6 roofline line for W4); JSON lines on stdout, progress on stderr.

    Args:
        quick: 3 timed steps after 1 warm-up, and a smaller matmul-peak measurement.
        reference: run the peers (those that import; the others are reported as missing).
        batch, n_steps, p: input size (default 64, 100, 0.05: the W4 configuration).
        repeats, warmup: default 5 and 2 (protocol), 3 and 1 when ``quick``.
        peers: subset of :data:`PEERS` to run (default all).
        roofline: also measure the matmul peak, the GEMM floor and a profile (W6).
        budget_s: per implementation, cut the repeats when one step is so slow that they would
            exceed this many seconds (the JSON says ``reduced``).

    Returns:
        0 (also when a peer is missing: that is reported, not an error).
    """
    batch = batch or 64
    n_steps = n_steps or 100
    repeats, warmup = protocol_counts(quick, repeats, warmup)
    env = bench_env(2)
    git = git_state()
    log = stderr_log("w4")

    x, y = bernoulli_input(n_steps, batch, SIZES[0], p, seed=seed, n_classes=SIZES[-1])
    weights = plain_weights(SIZES, seed=seed)
    config = {"sizes": list(SIZES), "batch": batch, "n_steps": n_steps, "p_input": p,
              "tau_steps": TAU_STEPS, "surrogate": f"atan(alpha={ALPHA})", "dtype": "float32",
              "threads": env["torch_threads"], "seed": seed}
    log(f"ours, batch {batch}, T = {n_steps}...")
    ours = _measure("ours", weights, x, y, repeats=repeats, warmup=warmup, budget_s=budget_s)

    results: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for name in (peers or list(PEERS)) if reference else []:
        ref = _measure_peer(name, weights, x, y, missing, log, repeats=repeats, warmup=warmup,
                            budget_s=budget_s)
        if ref is not None:
            results[name] = ref
            json_line(WORKLOAD, {**config, "reference": name}, ours, ref)
    if not results:
        json_line(WORKLOAD, {**config, "reference": None}, ours, None)

    if roofline:
        log("roofline: matmul peak, GEMM floor, profile of our step...")
        _roofline_line(x, y, weights, ours, results, config, quick=quick, repeats=repeats,
                       warmup=warmup)

    summary = _summary(ours, results, missing)
    summary_line(WORKLOAD, summary, git=git, env=env)
    return 0
