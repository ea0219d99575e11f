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

from ..network import simulate
from .spike_matching import SpikeComparison, compare_spikes


@dataclass(frozen=True)
class TimeModeRun:
    """One simulation of a :func:`run_time_modes` sweep.

    Attributes:
        time: ``"continuous"`` or ``"discrete"``. dt: grid step (s).
        result: the :func:`ctsnn.simulate` result (``result.layers[i]`` per layer).
        wall_s: wall-clock time of the simulation (s).
    """

    time: str
    dt: float
    result: Any
    wall_s: float

    @property
    def setting(self) -> tuple[str, float]:
        """``(time, dt)``."""
        return self.time, self.dt


def run_time_modes(network: Any, inputs: Any, settings: Sequence[tuple[str, float]], *,
                   record: Sequence[str] = ()) -> list[TimeModeRun]:
    """Simulate ``network`` on ``inputs`` once per ``(time, dt)`` setting, without gradients.

    Args:
        network: a layer or a list of layers, as :func:`ctsnn.simulate` takes.
        inputs: the input (e.g. :class:`~ctsnn.Spikes`), the same for every run.
        settings: ``(time mode, grid step in s)`` pairs, run in this order.
        record: state variables to record (e.g. ``("v",)``), ``[T, B, N]`` per layer.

    Returns:
        One :class:`TimeModeRun` per setting, in order.
    """
    runs = []
    with torch.no_grad():
        for mode, dt in settings:
            t0 = time.perf_counter()
            res = simulate(network, inputs, dt=dt, time=mode, record=list(record))
            runs.append(TimeModeRun(mode, dt, res, time.perf_counter() - t0))
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
    ref_layers = _layers(ref[0].result)
    return [[compare_spikes(x.spikes, r.spikes) for x, r in zip(_layers(run.result), ref_layers,
                                                                 strict=True)]
            for run in runs]


def _layers(result: Any) -> list[Any]:
    """Per-layer results of a network result (the result itself for a single layer)."""
    return list(result.layers) if result.layers else [result]


__all__ = ["TimeModeRun", "compare_runs", "run_time_modes"]
