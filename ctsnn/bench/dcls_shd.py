"""Benchmark workload W1 ``dcls-shd`` (and its W6 roofline line): DCLS's SHD network.

W1 (the project's benchmark doc): 140 -> 256 -> 256 -> 20, dense per-synapse delays over
``K = 25`` steps, LIF with ``tau = 1.005`` steps, BatchNorm + dropout 0.4, time-summed softmax
readout; T = 100, batch 64 and 256, input Bernoulli(0.03). Reference: DCLS's ``Dcls1d``
(Gaussian, kernel 25) + SpikingJelly LIF (SEEDS A1), built by
:class:`ctsnn.bench.peers.DCLSReferenceNet`. Targets: at the initial width ours <= 0.7x the
reference time; at the final width and with rounded delays <= 0.2x its time and <= 0.5x its
memory.

What :func:`main` measures (``ctsnn bench w1 [--quick] [--no-reference]``), per batch size:

* **ours** — :class:`ctsnn.papers.dcls.DCLSNet` (``DCLSConfig.shd()``) with the DCLS recipe
  (:func:`~ctsnn.papers.dcls.dcls_optimisers`: two Adams, delays clamped after each step), in
  these states:

  - ``initial_width``: Gaussian kernel, ``sigma_eff = 12.27`` steps (the schedule's start);
  - ``final_width``: Gaussian kernel at ``sigma_eff = 0.5`` (the schedule's end; the dense
    convolution costs the same at any width);
  - ``final_width_triangle``: the triangle kernel (two taps, linear interpolation: the
    ``sigma -> 0`` limit of the training kernel, *not* numerically the Gaussian at 0.5), through
    the sparse tap path — our candidate for the final width;
  - ``final_width_rounded``: one tap at the rounded delay with a straight-through gradient;
  - ``eval_rounded``: ``model.eval()`` forward without autograd (rounded one-tap delays).

  A training step is ``zero_grad``, forward, loss, backward, both optimiser steps, clamp.
* **reference** — the same steps on :class:`~ctsnn.bench.peers.DCLSReferenceNet` at the initial
  ``SIG = 12`` (training; its dense kernel costs the same at any width) and after its evaluation
  switch (``SIG = 0``, ``"max"`` kernel, rounded positions; forward without autograd).
* time by the protocol; memory = peak RSS increase of one step in a fresh process per
  configuration; the parameter counts of both (214,016).
* **W6 roofline** — minimal work of each state (``2 B T_out N_in N_out`` flops per tap per layer
  in the forward pass, about 3x that for a training step), the work actually executed (the
  dense convolution runs all ``K`` taps; our tap path one dense matrix product per distinct
  lag), the fp32 matrix-multiply rate of this run, and the rates achieved.

Output: one JSON line per (batch, state) with ``ours``/``reference``/``ratio``, a roofline line
per batch and a summary line with the targets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from ctsnn.data import bernoulli_input
from ctsnn.losses import summed_softmax_cross_entropy
from ctsnn.papers.dcls import DCLSConfig, DCLSNet, dcls_optimisers
from ctsnn.training import count_parameters

from .harness import (
    Protocol,
    bench_env,
    git_state,
    json_line,
    protocol_counts,
    stderr_log,
    summary_line,
)
from .peers import DCLSReferenceNet, dcls_reference_status, matmul_peak

__all__ = ["OURS_STATES", "build_ours", "build_reference", "layer_shapes", "main"]

WORKLOAD = "W1 dcls-shd"
P_INPUT = 0.03
N_STEPS = 100
EPOCHS = 150

#: our states: name -> (kernel, sigma_eff in steps or None for the default start, training?)
OURS_STATES: dict[str, tuple[str, float | None, bool]] = {
    "initial_width": ("gaussian", None, True),
    "final_width": ("gaussian", 0.5, True),
    "final_width_triangle": ("triangle", None, True),
    "final_width_rounded": ("rounded", None, True),
    "eval_rounded": ("gaussian", None, False),
}
#: our state -> reference state it is compared with
REFERENCE_OF = {
    "initial_width": "train",
    "final_width": "train",
    "final_width_triangle": "train",
    "final_width_rounded": "train",
    "eval_rounded": "eval",
}


# --------------------------------------------------------------------------- builders
def build_ours(state: str, batch: int, *, n_steps: int = N_STEPS, seed: int = 0,
               config: DCLSConfig | None = None) -> tuple[DCLSNet, Callable[[], None]]:
    """Our network in ``state`` (a key of :data:`OURS_STATES`) and its step function.

    The step is a training step (``zero_grad``, forward,
    :func:`~ctsnn.losses.summed_softmax_cross_entropy`, backward, both optimiser steps and the
    clamp) or, for ``eval_rounded``, a forward pass under ``torch.no_grad()`` in ``eval()`` mode.
    """
    kernel, sigma, training = OURS_STATES[state]
    cfg = replace(config or DCLSConfig.shd(), kernel=kernel)
    torch.manual_seed(seed)
    net = DCLSNet(cfg, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    x, y = bernoulli_input(n_steps, batch, cfg.n_in, P_INPUT, seed=seed, n_classes=cfg.n_out)
    if not training:
        net.eval()

        def forward() -> None:
            with torch.no_grad():
                net(x)

        return net, forward
    opt = dcls_optimisers(net, EPOCHS)  # sets the schedule's epoch-0 width
    if sigma is not None:
        net.set_sigma(sigma)

    def step() -> None:
        opt.zero_grad()
        summed_softmax_cross_entropy(net(x), y).backward()
        opt.step()  # both Adams, then the clamp

    return net, step


def build_reference(state: str, batch: int, *, n_steps: int = N_STEPS,
                    seed: int = 0) -> tuple[DCLSReferenceNet, Callable[[], None]]:
    """The DCLS + SpikingJelly reference in ``state`` (``"train"`` or ``"eval"``) and its step."""
    torch.manual_seed(seed)
    net = DCLSReferenceNet(seed=seed)
    x, y = bernoulli_input(n_steps, batch, 140, P_INPUT, seed=seed, n_classes=20)
    if state == "eval":
        net.to_eval_rounded()

        def forward() -> None:
            with torch.no_grad():
                net(x)
            net.reset_states()

        return net, forward
    step = net.training_step(x, y)
    return net, step


def _memory_setup(side: str, state: str, batch: int, n_steps: int, seed: int) -> Callable[[], None]:
    """Setup of a memory measurement (runs in the fresh process): build, return the step."""
    if side == "ours":
        return build_ours(state, batch, n_steps=n_steps, seed=seed)[1]
    return build_reference(state, batch, n_steps=n_steps, seed=seed)[1]


# --------------------------------------------------------------------------- roofline
def layer_shapes(n_steps: int, cfg: DCLSConfig | None = None) -> list[tuple[int, int, int]]:
    """``(n_in, n_out, T_out)`` of every delayed layer (each adds ``(K - 1) // 2`` steps)."""
    cfg = cfg or DCLSConfig.shd()
    sizes = [cfg.n_in] + [cfg.n_hidden] * cfg.n_layers + [cfg.n_out]
    out, t = [], n_steps
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        t += cfg.pad_steps
        out.append((a, b, t))
    return out


def _distinct_lags(net: DCLSNet) -> list[int]:
    """Distinct lags per delayed layer in the current mode (dense Gaussian: all ``K``)."""
    out = []
    for m in net.delayed():
        taps = m.taps()
        out.append(m.kernel_size if taps is None else int(torch.unique(taps.lags).numel()))
    return out


def _work(batch: int, n_steps: int, taps: Sequence[float], training: bool) -> float:
    """Flops of the delayed synapses with ``taps[l]`` dense taps in layer ``l``."""
    fwd = sum(2.0 * batch * t_out * a * b * k
              for (a, b, t_out), k in zip(layer_shapes(n_steps), taps, strict=True))
    return 3.0 * fwd if training else fwd


# --------------------------------------------------------------------------- main
@dataclass(frozen=True)
class _Settings(Protocol):
    """What every measurement of one :func:`main` run shares: the protocol and the shape."""

    n_steps: int = N_STEPS
    seed: int = 0
    quick: bool = False


def _measure(run: _Settings, side: str, state: str, batch: int) -> dict[str, Any]:
    """Time one (side, state, batch), count its parameters, measure its memory."""
    builder = build_ours if side == "ours" else build_reference
    net, step = builder(state, batch, n_steps=run.n_steps, seed=run.seed)
    out = run.time(step)
    out["parameters"] = count_parameters(net) if side == "ours" else net.count_parameters()
    if side == "ours":
        out["distinct_lags_per_layer"] = _distinct_lags(net)
    if run.memory:
        setup = functools.partial(_memory_setup, side, state, batch, run.n_steps, run.seed)
        rss = run.rss(setup, timeout=3600)
        out["peak_rss_mib"] = None if rss is None else rss["step_mib"]
        # what building took (ours: includes numba's one-off runtime start, ~60 MiB)
        out["build_rss_mib"] = None if rss is None else rss["build_mib"]
    del net, step
    return out


def _measure_references(run: _Settings, states: Sequence[str], batch: int,
                        versions: dict[str, str | None]) -> dict[str, dict[str, Any]]:
    """The reference states that ``states`` are compared with ("train" before "eval")."""
    refs: dict[str, dict[str, Any]] = {}
    for rstate in sorted({REFERENCE_OF[s] for s in states}, reverse=True):
        run.log(f"reference {rstate}, batch {batch}...")
        refs[rstate] = _measure(run, "reference", rstate, batch)
        refs[rstate].update(implementation=f"DCLS {versions['DCLS']} Dcls1d gauss K=25 "
                            f"+ SpikingJelly {versions['spikingjelly']} LIFNode",
                            state="SIG=12 (sigma_eff 12.27)" if rstate == "train"
                            else "eval: SIG=0, 'max' kernel, rounded positions")
    return refs


def _measure_ours(run: _Settings, state: str, batch: int) -> dict[str, Any]:
    """Our side in ``state``, with its kernel, training flag and width."""
    run.log(f"ours {state}, batch {batch}...")
    ours = _measure(run, "ours", state, batch)
    kernel, sigma, training = OURS_STATES[state]
    ours.update(kernel=kernel, training=training,
                sigma_eff=(12.27 if sigma is None and kernel == "gaussian" and training
                           else sigma))
    return ours


def _batch_targets(ours_all: dict[str, dict[str, Any]],
                   refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets of one batch size: time and memory ratios of the states to the reference."""

    def r(state: str, key: str = "median_s") -> float | None:
        o, ref = ours_all.get(state), refs.get(REFERENCE_OF.get(state, ""))
        if o is None or ref is None or not o.get(key) or not ref.get(key):
            return None
        return o[key] / ref[key]

    finals = [s for s in ("final_width", "final_width_triangle", "final_width_rounded")
              if r(s) is not None]
    best_final = min(finals, key=lambda s: r(s) or float("inf")) if finals else None
    tb: dict[str, Any] = {
        "initial_width_time_ratio": r("initial_width"),
        "initial_width_target_le_0p7": (None if r("initial_width") is None
                                        else r("initial_width") <= 0.7),
        "final_width_fastest_state": best_final,
    }
    if best_final is not None:
        t, m = r(best_final), r(best_final, "peak_rss_mib")
        tb.update(final_width_time_ratio=t, final_width_memory_ratio=m,
                  final_width_target_met=(t <= 0.2 and m is not None and m <= 0.5))
    if r("eval_rounded") is not None:
        t, m = r("eval_rounded"), r("eval_rounded", "peak_rss_mib")
        tb.update(rounded_time_ratio=t, rounded_memory_ratio=m,
                  rounded_target_met=(t <= 0.2 and m is not None and m <= 0.5))
    if "train" in refs and ours_all:
        tb["parameters"] = {"ours": next(iter(ours_all.values()))["parameters"],
                            "reference": refs["train"]["parameters"]}
    return tb


def _roofline_states(batch: int, n_steps: int, peak_gflops: float,
                     ours_all: dict[str, dict[str, Any]],
                     refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Minimal and executed work of every measured state, and the rates achieved."""
    k = 25
    lines: dict[str, Any] = {}
    for state, o in ours_all.items():
        kernel, _, training = OURS_STATES[state]
        minimal_taps = {"gaussian": k, "triangle": 2, "rounded": 1}[kernel]
        if not training:
            minimal_taps = 1
        minimal = _work(batch, n_steps, [minimal_taps] * 3, training)
        executed = _work(batch, n_steps, o["distinct_lags_per_layer"], training)
        lines[f"ours_{state}"] = {
            "minimal_gflop": minimal / 1e9, "executed_gflop": executed / 1e9,
            "minimal_rate_gflops": minimal / o["median_s"] / 1e9,
            "executed_rate_gflops": executed / o["median_s"] / 1e9,
            "executed_fraction_of_peak": executed / o["median_s"] / 1e9 / peak_gflops,
        }
    for rstate, o in refs.items():
        training = rstate == "train"
        work = _work(batch, n_steps, [k] * 3, training)
        lines[f"reference_{rstate}"] = {
            "minimal_gflop_of_dense_gaussian": work / 1e9,
            "minimal_gflop_of_one_tap": _work(batch, n_steps, [1] * 3, training) / 1e9,
            "executed_rate_gflops": work / o["median_s"] / 1e9,
            "executed_fraction_of_peak": work / o["median_s"] / 1e9 / peak_gflops,
        }
    return lines


def _roofline_line(run: _Settings, batch: int, config: dict[str, Any],
                   ours_all: dict[str, dict[str, Any]], refs: dict[str, dict[str, Any]]) -> None:
    """Measure the matmul peak and print the W6 roofline line of one batch size."""
    run.log("roofline: matmul peak...")
    peak = matmul_peak(1024 if run.quick else 2048, repeats=run.repeats, warmup=run.warmup)
    lines = _roofline_states(batch, run.n_steps, peak["gflops"], ours_all, refs)
    json_line("W6 roofline", {"workload": WORKLOAD, **config}, {
        "matmul_peak_gflops": peak["gflops"], "matmul_peak": peak, "states": lines,
        "note": ("flops of the delayed synapses only (BatchNorm, LIF and loss are "
                 "O(B T N) and negligible); a training step counted as 3x the forward "
                 "products; 'executed' = what the implementation multiplies: the dense "
                 "convolution all K = 25 taps, our tap path one dense [T B, N_in] x "
                 "[N_in, N_out] product per distinct lag present (up to K), so the "
                 "sparse kernels do not reduce the arithmetic below the dense one"),
    }, None)


def main(
    quick: bool = False,
    reference: bool = True,
    *,
    seed: int = 0,
    batches: Sequence[int] | None = None,
    n_steps: int = N_STEPS,
    states: Sequence[str] | None = None,
    repeats: int | None = None,
    warmup: int | None = None,
    memory: bool = True,
    roofline: bool = True,
    budget_s: float | None = 300.0,
) -> int:
    """Run W1 (and the W6 roofline line for W1); JSON lines on stdout, progress on stderr.

    Args:
        quick: batch 16 only, 3 timed steps after 1 warm-up.
        reference: run the DCLS + SpikingJelly reference (if ``DCLS`` and ``spikingjelly``
            import).
        batches: default ``(64, 256)`` (``quick``: ``(16,)``).
        states: subset of :data:`OURS_STATES` (default all).
        memory: measure peak RSS increases (a fresh process per configuration).
        roofline: measure the matmul peak and write the W6 line per batch.
        budget_s: per configuration, fewer repeats when one step is very slow (``reduced``).
    """
    batches = tuple(batches) if batches is not None else ((16,) if quick else (64, 256))
    states = tuple(states) if states is not None else tuple(OURS_STATES)
    repeats, warmup = protocol_counts(quick, repeats, warmup)
    env = bench_env(2)
    git = git_state()
    log = stderr_log("w1")
    use_ref, versions, missing = dcls_reference_status(reference, log)
    run = _Settings(n_steps=n_steps, seed=seed, repeats=repeats, warmup=warmup,
                    budget_s=budget_s, memory=memory, quick=quick, log=log)

    summary: dict[str, Any] = {"reference_versions": versions, "reference_missing": missing}
    for batch in batches:
        config = {"batch": batch, "n_steps": n_steps, "p_input": P_INPUT, "kernel_K": 25,
                  "sizes": [140, 256, 256, 20], "dtype": "float32",
                  "threads": env["torch_threads"], "seed": seed}
        refs = _measure_references(run, states, batch, versions) if use_ref else {}
        ours_all: dict[str, dict[str, Any]] = {}
        for state in states:
            ours_all[state] = _measure_ours(run, state, batch)
            json_line(WORKLOAD, {**config, "state": state}, ours_all[state],
                      refs.get(REFERENCE_OF[state]))
        summary[f"batch_{batch}"] = _batch_targets(ours_all, refs)
        if roofline:
            _roofline_line(run, batch, config, ours_all, refs)
    summary_line(WORKLOAD, summary, git=git, env=env)
    return 0
