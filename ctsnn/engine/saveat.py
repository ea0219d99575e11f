"""State at chosen times (``saveat``): values of the engine's own trajectory between grid points.

Continuous time: the state at a save time ``s`` inside step ``n`` is the dense output of that
step evaluated from the last *piece start* at or before ``s`` — the state right after the last
arrival, spike (after its reset), refractory release or grid point preceding ``s`` — with the
step's flow over ``s - (piece start)``. With ``method="exact"`` (closed-form flows: LIF,
CubaLIF, ...) this is the exact solution at ``s``; with a Runge-Kutta method it is the same dense
output the engine uses to locate spikes (one Runge-Kutta step from the piece start to ``s``;
its error shrinks with ``dt`` like the method's order). Saving only reads the trajectory: spikes,
recordings and the final state are bit for bit those of a run without ``saveat``.

Values are **right-continuous**: at an arrival time the saved state includes that jump, at a spike
time it is the state after the reset (like the step-end recordings). Times are compared with
event times in floating point: a save time equal to an event time (as the run reports it, e.g.
``result.spikes.times``) sees the event.

Discrete time: save times must be grid points ``k dt`` (within ``1e-6 dt``); the value is the
grid state there (after the threshold test and reset of that step).

Units: seconds. Save times are data (no gradient w.r.t. them); saved values carry the gradient
of the autodiff path (``gradient="surrogate"``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from solvers.events import where_state

GRID_TOLERANCE = 1e-6
"""Discrete time: a save time within ``GRID_TOLERANCE * dt`` of ``k dt`` is that grid point."""


def check_saveat(saveat: Tensor | Sequence[float] | None, dt: float, n_steps: int,
                 time: str) -> tuple[float, ...] | None:
    """Validate ``saveat`` (seconds, 1-D, finite, non-decreasing, within ``[0, n_steps dt]``).

    Returns the times as Python floats (discrete time: snapped onto their grid points).
    """
    if saveat is None:
        return None
    if isinstance(saveat, Tensor):
        if saveat.dim() != 1:
            raise ValueError(f"saveat must be a 1-D tensor of times (s), got shape "
                             f"{list(saveat.shape)}")
        if saveat.is_complex() or saveat.dtype == torch.bool:
            raise TypeError(f"saveat must hold real times (s), got dtype {saveat.dtype}")
        times = [float(v) for v in saveat.detach().cpu().double().tolist()]
    else:
        if isinstance(saveat, (str, bytes)) or not isinstance(saveat, Sequence):
            raise TypeError(f"saveat must be a 1-D tensor or a sequence of times (s), got "
                            f"{type(saveat).__name__}")
        times = []
        for i, v in enumerate(saveat):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"saveat[{i}] must be a real number (s), got "
                                f"{type(v).__name__}")
            times.append(float(v))
    end = n_steps * dt
    slack = 8 * torch.finfo(torch.float64).eps * max(end, dt)
    for i, s in enumerate(times):
        if s != s or s in (float("inf"), float("-inf")):
            raise ValueError(f"saveat[{i}] = {s} is not finite")
        if s < 0 or s > end + slack:
            raise ValueError(f"saveat[{i}] = {s} s is outside the simulated interval "
                             f"[0, n_steps dt] = [0, {end}] s")
        if i and s < times[i - 1]:
            raise ValueError(f"saveat must be sorted ascending: saveat[{i}] = {s} s < "
                             f"saveat[{i - 1}] = {times[i - 1]} s")
    if time == "discrete":
        snapped = []
        for i, s in enumerate(times):
            k = round(s / dt)
            if abs(s - k * dt) > GRID_TOLERANCE * dt:
                raise ValueError(f"saveat[{i}] = {s} s is not a grid point k dt (dt = {dt} s): "
                                 "discrete time has states on the grid only; use "
                                 "time='continuous' for states between grid points")
            snapped.append(min(k, n_steps) * dt)
        times = snapped
    return tuple(min(s, end) for s in times)


class Saver:
    """Collects the saved values of one run (see the module docstring).

    ``values[name]`` is a list with one ``[B, N]`` entry per save time, filled as the run goes.
    """

    def __init__(self, times: tuple[float, ...], names: Sequence[str], dt: float,
                 n_steps: int) -> None:
        self.times, self.names, self.dt, self.n_steps = times, tuple(names), dt, n_steps
        starts = [k * dt for k in range(n_steps)]  # the loops' own t0 = n dt
        end = n_steps * dt
        # step of each time: the last grid start at or before it (n_steps: the final state)
        self.step = [n_steps if s >= end else bisect.bisect_right(starts, s) - 1 for s in times]
        self.steps = set(self.step)
        self.values: dict[str, list[Tensor | None]] = {n: [None] * len(times) for n in names}
        self.pieces: list[tuple[tuple, Tensor, Tensor | None]] = []

    def active(self, n: int) -> bool:
        """Whether step ``n`` holds a save time (only then are its piece starts kept)."""
        return n in self.steps

    def piece(self, y: tuple, tau: Tensor, held: Tensor | None) -> None:
        """A piece of the current step starts at local time ``tau`` [B, N] in state ``y``."""
        self.pieces.append((y, tau, held))

    def _put(self, j: int, state: tuple) -> None:
        for name in self.names:
            self.values[name][j] = getattr(state, name)

    def grid(self, k: int, state: tuple) -> None:
        """The state at grid point ``k dt`` (discrete time, and the end of a continuous run)."""
        for j, n in enumerate(self.step):
            if n == k:
                self._put(j, state)

    def evaluate(self, n: int, flow: Callable) -> None:
        """Values at the save times of step ``n`` from its pieces (continuous time)."""
        pieces, self.pieces = self.pieces, []
        t0, dt = n * self.dt, self.dt
        use_held = any(p[2] is not None for p in pieces)
        for j, s in enumerate(self.times):
            if self.step[j] != n:
                continue
            y, tau, held = pieces[0]
            held = _held(held, tau) if use_held else None
            for y_k, tau_k, held_k in pieces[1:]:
                tau_k = tau_k.expand_as(tau)
                m = (tau_k + t0 <= s) & (tau_k < dt)
                y = where_state(m, y_k, y)
                tau = torch.where(m, tau_k, tau)
                if use_held:
                    held = torch.where(m, _held(held_k, tau), held)
            h = (s - t0) - tau
            moved = h > 0
            h = torch.where(moved, h, torch.zeros_like(h))
            value = where_state(moved, flow(y, tau, h, held), y)
            self._put(j, value)

    def result(self, like: Tensor) -> dict[str, Tensor]:
        """name -> ``[S, B, N]`` (``like``: a ``[B, N]`` tensor of the run's dtype)."""
        return {name: torch.stack(v) if v else like.new_zeros((0, *like.shape))
                for name, v in self.values.items()}


def _held(held: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros(like.shape, dtype=torch.bool, device=like.device) if held is None else held
