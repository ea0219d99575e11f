"""Running one network in several time modes and grid steps, compared with a reference run.

``run_time_modes(net, x, [("continuous", 1e-4), ("discrete", 1e-3)])`` simulates the same
network and input under each setting; :func:`compare_runs` then matches every layer's spikes
with those of a reference setting (:mod:`ctsnn.analysis.spike_matching`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._checks import as_dt, as_int, check_choice
from ..engine import TIME_MODES
from ..network import simulate
from .spike_matching import SpikeComparison, compare_spikes


@dataclass(frozen=True)
class TimeModeRun:
    """One simulation of a :func:`run_time_modes` sweep.

    Attributes:
        time: ``"continuous"`` or ``"discrete"``. dt: grid step (s).
        result: the :func:`ctsnn.simulate` result (``result.layers[i]`` per layer).
        wall_s: wall-clock time of the simulation (s; the fastest of ``repeats`` runs).
        method: the integrator asked for, or ``None`` (the default of :func:`ctsnn.simulate`).
    """

    time: str
    dt: float
    result: Any
    wall_s: float
    method: str | None = None

    @property
    def setting(self) -> tuple[str, float] | tuple[str, float, str]:
        """``(time, dt)``, or ``(time, dt, method)`` when a method was given."""
        return (self.time, self.dt) if self.method is None else (self.time, self.dt, self.method)


def run_time_modes(network: Any, inputs: Any, settings: Sequence[tuple], *,
                   record: Sequence[str] = (), readout: Any = None,
                   repeats: int = 1) -> list[TimeModeRun]:
    """Simulate ``network`` on ``inputs`` once per ``(time, dt)`` setting, without gradients.

    Args:
        network: a layer or a list of layers, as :func:`ctsnn.simulate` takes.
        inputs: the input (e.g. :class:`~ctsnn.Spikes`), the same for every run.
        settings: ``(time mode, grid step in s)`` or ``(time mode, grid step, method)``
            tuples, run in this order.
        record: state variables to record (e.g. ``("v",)``), ``[T, B, N]`` per layer.
        readout: passed to :func:`ctsnn.simulate` (``result.output``).
        repeats: run each setting this many times and keep the fastest wall time (the
            result of the last run is kept; runs are deterministic).

    Returns:
        One :class:`TimeModeRun` per setting, in order.
    """
    repeats = as_int("repeats", repeats, minimum=1)
    parsed = [parse_setting(s) for s in settings]
    runs = []
    with torch.no_grad():
        for mode, dt, method in parsed:
            wall = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = simulate(network, inputs, dt=dt, time=mode, method=method,
                               record=list(record), readout=readout)
                wall = min(wall, time.perf_counter() - t0)
            runs.append(TimeModeRun(mode, dt, res, wall, method))
    return runs


def compare_runs(runs: Sequence[TimeModeRun], reference: tuple[str, float]
                 ) -> list[list[SpikeComparison]]:
    """Every layer of every run compared with the same layer of the ``reference`` run.

    Args:
        runs: from :func:`run_time_modes`.
        reference: the ``(time, dt)`` setting of the reference run (one of ``runs``).

    Returns:
        ``out[i][l]``: run ``i``, layer ``l`` (input order), against the reference.
    """
    ref = [r for r in runs if r.setting == tuple(reference)]
    if not ref:
        raise ValueError(f"reference setting {reference!r} is not among the runs "
                         f"{[r.setting for r in runs]}")
    ref_layers = layer_results(ref[0].result)
    return [[compare_spikes(x.spikes, r.spikes)
             for x, r in zip(layer_results(run.result), ref_layers, strict=True)]
            for run in runs]


def parse_setting(setting: Any, where: str = "settings") -> tuple[str, float, str | None]:
    """``(time, dt)`` or ``(time, dt, method)`` checked, as ``(time, dt, method or None)``;
    ``where`` names the argument in errors."""
    if not isinstance(setting, (tuple, list)) or len(setting) not in (2, 3):
        raise ValueError(f"{where}: a setting is (time, dt) or (time, dt, method), "
                         f"got {setting!r}")
    mode = check_choice(f"time mode in {where}", setting[0], TIME_MODES)
    dt = as_dt(f"dt in {where}", setting[1])
    method = setting[2] if len(setting) == 3 else None
    if method is not None and not isinstance(method, str):
        raise TypeError(f"{where}: method must be a string or None, got {method!r}")
    return mode, dt, method


def layer_results(result: Any) -> list[Any]:
    """Per-layer results of a :func:`ctsnn.simulate` result (the result itself for a single
    layer)."""
    return list(result.layers) if result.layers else [result]


__all__ = [
    "TimeModeRun", "compare_runs", "layer_results", "parse_setting", "run_time_modes",
]
