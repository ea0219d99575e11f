"""Observed convergence orders of simulated spike times, printed as markdown tables.

For every built-in model with a non-trivial spike mechanism, ``ctsnn.simulate`` is run with a
constant current for a sequence of halved ``dt`` and its spike times are compared with the
event-driven reference :func:`solvers.adaptive.solve_events` (torchdiffeq dopri8,
rtol 1e-12, crossings refined by root finding on re-integrations). The observed order between
two successive ``dt`` is ``log2(error(dt) / error(dt/2))``.

* continuous time, ``method="rk4"``: error = max over all spikes of all samples;
* discrete time (``"euler"``, ``"rk4"``): error = mean over all spikes (a grid spike is
  quantised to the end of its step, so single errors jump around); the order is also given
  as the least-squares slope of log(error) against log(dt).

Usage::

    python -m ctsnn.analysis.convergence_orders            # long windows (a few minutes)
    python -m ctsnn.analysis.convergence_orders --quick    # the short windows of the fast tests

The configurations are those of ``tests/ctsnn/engine/test_convergence.py``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import ctsnn
from ctsnn.analysis.orders import fitted_order, observed_orders
from ctsnn.models import NeuronModel
from solvers.adaptive import solve_events

F64 = torch.float64
REFERENCE_METHOD = "dopri8"
MARGIN = 0.05  # reference spikes in the last 5 % of a window are not compared


def halving(dt0: float, n: int) -> tuple[float, ...]:
    return tuple(dt0 / 2**k for k in range(n))


def spread(base: float, n: int = 4, step: float = 0.03) -> tuple[float, ...]:
    return tuple(base * (1.0 + step * k) for k in range(n))


@dataclass(frozen=True)
class Config:
    label: str
    build: Callable[[], NeuronModel]
    currents: tuple[float, ...]
    t_end: float
    rk4: tuple[float, ...]
    discrete: tuple[float, ...] | None
    rtol: float = 1e-12  # reference tolerance (atol = rtol / 100)


LONG = [
    Config("AdEx (v_peak = v_t + 2 delta_t), I = 0.8 nA",
           lambda: ctsnn.AdEx(1, v_peak=-46.4).double(), spread(0.8), 0.2, halving(3.2e-4, 4),
           halving(1.6e-4, 5)),
    Config("AdEx (default v_peak = v_t + 5 delta_t), I = 0.8 nA", lambda: ctsnn.AdEx(1).double(),
           spread(0.8), 0.048, halving(1.6e-4, 6), None),
    Config("Izhikevich (RS), I = 10", lambda: ctsnn.Izhikevich(1).double(),
           spread(10.0), 0.2, halving(1e-4, 4), halving(1e-4, 5)),
    Config("Hodgkin-Huxley, I = 10 uA/cm^2", lambda: ctsnn.HodgkinHuxley(1).double(),
           spread(10.0), 0.035, halving(4e-5, 4), halving(2e-5, 4), rtol=1e-10),
    Config("AdLIF, I = 2", lambda: ctsnn.AdLIF(1).double(),
           spread(2.0), 0.2, halving(1.6e-3, 4), halving(4e-4, 5)),
    Config("QIF, I = 1", lambda: ctsnn.QIF(1).double(),
           spread(1.0), 0.2, halving(4e-4, 5), halving(4e-4, 5)),
]

QUICK = [
    Config("AdEx (v_peak = v_t + 2 delta_t), I = 0.8 nA", LONG[0].build, spread(0.8), 0.0192,
           halving(1.6e-4, 3), halving(1.6e-4, 5)),
    Config("Izhikevich (RS), I = 10", LONG[2].build, spread(10.0), 0.03, halving(2e-4, 3),
           halving(1e-4, 5)),
    Config("Hodgkin-Huxley, I = 10 uA/cm^2", LONG[3].build, spread(10.0), 0.0025,
           halving(2e-5, 3), halving(2e-5, 4), rtol=1e-10),
    Config("AdLIF, I = 2", LONG[4].build, spread(2.0), 0.0192, halving(1.6e-3, 3),
           halving(4e-4, 5)),
    Config("QIF, I = 1", LONG[5].build, spread(1.0), 0.03, halving(4e-4, 3), halving(4e-4, 5)),
]


def reference(cfg: Config, rtol: float | None = None) -> list[Tensor]:
    """Reference spike times per sample (all spikes in the window)."""
    model = cfg.build()
    rtol = cfg.rtol if rtol is None else rtol
    current = torch.tensor(cfg.currents, dtype=F64)[:, None]
    sol = solve_events(
        lambda t, y, x: model.dynamics(t, y, x), model.initial_state(len(cfg.currents), dtype=F64),
        cfg.t_end, event=model.threshold, jump=model.reset, check_dt=1e-3,
        input_fn=lambda t: current, method=REFERENCE_METHOD, rtol=rtol, atol=rtol * 1e-2,
    )
    return [sol.times[sol.index[:, 0] == b] for b in range(len(cfg.currents))]


def errors(cfg: Config, ref: list[Tensor], dt: float, time_mode: str, method: str) -> Tensor:
    n_steps = round(cfg.t_end / dt)
    if abs(n_steps * dt - cfg.t_end) > 1e-9 * cfg.t_end:
        raise ValueError(f"{cfg.label}: the window {cfg.t_end} s is not a multiple of dt = {dt}")
    current = torch.tensor(cfg.currents, dtype=F64)[None, :, None].expand(n_steps, -1, 1)
    spikes = ctsnn.simulate(cfg.build(), current.contiguous(), dt=dt, time=time_mode,
                            method=method).spikes
    out = []
    for b, r in enumerate(ref):
        s = spikes.times[spikes.batch == b]
        if len(s) < len(r):
            raise RuntimeError(f"{cfg.label}: {time_mode}/{method} dt={dt} sample {b}: "
                               f"{len(s)} spikes, reference {len(r)}")
        out.append((s[: len(r)] - r).abs())
    return torch.cat(out)


def fmt_range(values: list[float] | tuple[float, ...]) -> str:
    return f"{values[0]:.3g} → {values[-1]:.3g}"


def fmt_orders(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows (fast tests)")
    parser.add_argument("--check-reference", action="store_true",
                        help="also rerun every reference at rtol / 10 and report the change")
    args = parser.parse_args()
    configs = QUICK if args.quick else LONG
    torch.set_num_threads(1)

    cont_rows, disc_rows, ref_rows = [], [], []
    start = time.perf_counter()
    for cfg in configs:
        full = reference(cfg)
        if args.check_reference:
            tight = reference(cfg, cfg.rtol / 10)
            delta = max(float((a - b).abs().max()) for a, b in zip(full, tight, strict=True))
            ref_rows.append(f"| {cfg.label} | {cfg.rtol:g} | {delta:.1e} |")
        ref = [r[r < (1.0 - MARGIN) * cfg.t_end] for r in full]
        n_spikes = sum(len(r) for r in ref)
        errs = [float(errors(cfg, ref, dt, "continuous", "rk4").max()) for dt in cfg.rk4]
        cont_rows.append(
            f"| {cfg.label} | {cfg.t_end:g} | {n_spikes} | {fmt_range(cfg.rk4)} | "
            f"{errs[0]:.2e} → {errs[-1]:.2e} | {fmt_orders(observed_orders(cfg.rk4, errs))} |"
        )
        if cfg.discrete is None:
            continue
        cells = []
        for method in ("euler", "rk4"):
            e = [float(errors(cfg, ref, dt, "discrete", method).mean()) for dt in cfg.discrete]
            cells.append(f"{e[0]:.2e} → {e[-1]:.2e} | "
                         f"{fmt_orders(observed_orders(cfg.discrete, e))} | "
                         f"{fitted_order(cfg.discrete, e):.2f}")
        disc_rows.append(f"| {cfg.label} | {n_spikes} | {fmt_range(cfg.discrete)} | "
                         + " | ".join(cells) + " |")

    print("Continuous time, `method=\"rk4\"` (max |error| over all spikes, seconds)\n")
    print("| model | window (s) | spikes | dt (s) | max error (s) | observed orders |")
    print("|---|---|---|---|---|---|")
    print("\n".join(cont_rows))
    print("\nDiscrete time (mean |error| over all spikes, seconds; spikes on the grid)\n")
    print("| model | spikes | dt (s) | euler: mean error | euler: orders | euler: fit "
          "| rk4: mean error | rk4: orders | rk4: fit |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(disc_rows))
    if ref_rows:
        print(f"\nReference ({REFERENCE_METHOD}): max change of a spike time when rtol is "
              "divided by 10\n")
        print("| model | rtol | max change (s) |")
        print("|---|---|---|")
        print("\n".join(ref_rows))
    print(f"\n({len(configs)} configurations, 4 samples each, "
          f"{time.perf_counter() - start:.0f} s; torch {torch.__version__})")


if __name__ == "__main__":
    main()
